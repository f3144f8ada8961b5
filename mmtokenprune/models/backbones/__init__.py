from .mmseg_vit import PrunedMMSegVisionTransformer
from .swin import PrunedSwinTransformer  # noqa: F401
from .vit import PrunedVisionTransformer

__all__ = ['PrunedVisionTransformer', 'PrunedMMSegVisionTransformer']
