"""Helpers of ``tools/`` that build and run mm models (:mod:`.launch`:
parsers, configs and Runners of ``tools/train.py`` and ``tools/test.py``).

They enter mm code, so importing this package applies the environment
fixes (:mod:`mmtokenprune.compat`) first. Submodules are imported on
demand (``from mmtokenprune.utils.launch import ...``).
"""
from ..compat import applied  # noqa: F401  (environment fixes first)

__all__ = []
