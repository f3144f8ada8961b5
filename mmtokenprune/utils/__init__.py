"""Small helpers shared by ``mmtokenprune.compat`` and ``tools/``.

Submodules are imported on demand (``from mmtokenprune.utils.launch import
...``) so that ``import mmtokenprune`` stays cheap.
"""

__all__ = []
