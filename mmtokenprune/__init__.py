"""mmtokenprune: token merging/pruning and consistent channel pruning for
OpenMMLab Vision Transformers.

Importing the package has no side effects: ``mmtokenprune.ops`` is pure
torch, and the environment fixes (:mod:`mmtokenprune.compat`) are applied
by the modules that enter mm code (``models``, ``datasets``, ``registry``,
``analysis``, ``utils``).
"""
from .version import __version__

__all__ = ['__version__']
