from .vit import PrunedVisionTransformer

__all__ = ['PrunedVisionTransformer']
