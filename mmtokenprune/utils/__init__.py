"""Helpers of ``tools/``: building Runners (:mod:`.launch`) and exporting
pruned checkpoints (:mod:`.export`).

Both enter mm code, so importing this package applies the environment
fixes (:mod:`mmtokenprune.compat`) first. Submodules are imported on
demand (``from mmtokenprune.utils.launch import ...``).
"""
from ..compat import applied  # noqa: F401  (environment fixes first)

__all__ = []
