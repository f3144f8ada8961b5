"""mm integration: importing this registers every mmtokenprune model."""
from ..compat import applied  # noqa: F401  (environment fixes first)
from . import losses  # noqa: F401  (registers the training losses)
from . import reducers  # noqa: F401  (registers ATME, ToMe)
from .backbones import PrunedMMSegVisionTransformer, PrunedVisionTransformer
from .backbones import PrunedSwinTransformer  # noqa: F401
from .compressed_models import PrunedEncoderDecoder, PrunedImageClassifier

__all__ = [
    'PrunedVisionTransformer', 'PrunedMMSegVisionTransformer',
    'PrunedEncoderDecoder', 'PrunedImageClassifier'
]
