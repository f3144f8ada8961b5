"""Multiply-accumulates of a transformer block's attention and MLP at given
widths: plain arithmetic on token counts and widths, so the widths may be
soft (tensors: CDCP's differentiable FLOPs budget) or whole (the latency
solver's cost).

1 multiply-accumulate = 1 FLOP, as everywhere in mmtokenprune.
"""
from typing import Optional

__all__ = ['attention_flops', 'ffn_flops']


def attention_flops(num_tokens: int, embed_dims: int, num_heads: int,
                    qk_dims, v_dims, keys: Optional[int] = None):
    """Multiply-accumulates of ``qkv``, ``q @ k``, ``attn @ v`` and ``proj``.

    Args:
        num_tokens (int): query tokens.
        keys (int, optional): key tokens per query (window area for Swin).
            Defaults to ``num_tokens``.
    """
    keys = num_tokens if keys is None else keys
    linear = num_tokens * embed_dims * num_heads * (2 * qk_dims + 2 * v_dims)
    return linear + num_tokens * keys * num_heads * (qk_dims + v_dims)


def ffn_flops(num_tokens: int, embed_dims: int, ffn_dims):
    """Multiply-accumulates of the MLP's two linear layers."""
    return 2 * num_tokens * embed_dims * ffn_dims
