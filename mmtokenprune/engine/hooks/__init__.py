"""Hooks registered in ``mmtokenprune.registry.HOOKS``."""
# One import line per hook module (each registers its hooks).
from . import cdcp_widths  # noqa: F401
from . import backbone_warmup  # noqa: F401
