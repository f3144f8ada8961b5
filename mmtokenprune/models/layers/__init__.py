from .attention import PrunedMultiheadAttention
from .encoder_layer import PrunedTransformerEncoderLayer, size_bias

__all__ = [
    'PrunedMultiheadAttention', 'PrunedTransformerEncoderLayer', 'size_bias'
]
