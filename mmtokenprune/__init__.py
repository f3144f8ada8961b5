"""mmtokenprune: token merging/pruning and consistent channel pruning for
OpenMMLab Vision Transformers."""
from .compat import apply_compat
from .version import __version__

apply_compat()

__all__ = ['__version__']
