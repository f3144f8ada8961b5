"""CDCP's budget: differentiable FLOPs of gated blocks and the loss on them.

1 multiply-accumulate = 1 FLOP, as everywhere in mmtokenprune.
"""
from typing import Optional

from torch import Tensor

from ...ops import ChannelGate

__all__ = ['soft_width', 'attention_flops', 'ffn_flops', 'budget_loss']


def soft_width(gate: Optional[ChannelGate], full: int):
    """Differentiable kept-channel count of a gate (``full`` without one)."""
    return full if gate is None else gate.keep_prob()


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
    return 2 * num_tokens * embed_dims * ffn_dims


def budget_loss(ratio: Tensor, target: float) -> Tensor:
    """Squared excess of the kept FLOPs fraction over ``target``."""
    return (ratio - target).clamp(min=0).pow(2)
