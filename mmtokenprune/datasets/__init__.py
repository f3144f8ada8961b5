"""Datasets registered into mmseg's ``DATASETS`` registry.

Configs load them with ``custom_imports=dict(
imports=['mmtokenprune.datasets'], allow_failed_imports=False)``.
"""
from ..compat import applied  # noqa: F401  (environment fixes first)
from .camvid import CamVidDataset

__all__ = ['CamVidDataset']
