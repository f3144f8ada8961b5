"""CDCP channel gates and the mechanics of slicing layers.

CDCP is CAIT's consistent dynamic channel pruning (https://arxiv.org/abs/
2309.15755); the paper's method section is not available, so this is **our
reading** of its abstract:

- head-level consistency: one gate vector per layer over the head dimension,
  shared by every head, so all heads keep the same channels and attention
  stays a dense ``(B, h, N, d')`` tensor;
- attention-level consistency: Q and K share one gate (``q . k`` sums over
  the same channels); V has its own gate, which also selects the input
  columns of ``proj``; the MLP hidden layer has a third gate;
- dynamic: how many channels each layer keeps is learned under a budget.

A gate's forward value is a hard 0/1 mask (straight-through estimator to
the logits during training), so the gated model computes exactly what the
sliced model computes and export is pure slicing.
"""
from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor

__all__ = ['ChannelGate', 'gate_mask', 'head_channel_index', 'slice_linear']


def gate_mask(logits: Tensor) -> Tensor:
    """Hard keep mask of gate logits; the best channel is always kept."""
    return ((logits > 0) | (logits == logits.max())).to(logits.dtype)


class ChannelGate(nn.Module):
    """Learned keep/drop gate over ``num_channels`` channels.

    The forward multiplies the last dimension of its input by the hard mask
    :func:`gate_mask`; in training the gradient reaches the logits through
    ``sigmoid(logits)`` (straight-through).

    Args:
        num_channels (int): channels gated.
        init_logit (float): initial logit; positive keeps every channel, so
            a freshly gated model equals the ungated one.
            Defaults to 3.0.
    """

    def __init__(self, num_channels: int, init_logit: float = 3.0):
        super().__init__()
        self.logits = nn.Parameter(torch.full((num_channels, ), init_logit))

    def mask(self) -> Tensor:
        hard = gate_mask(self.logits)
        if not self.training:
            return hard
        soft = self.logits.sigmoid()
        return hard + soft - soft.detach()

    def keep_prob(self) -> Tensor:
        """Soft count of kept channels, differentiable (for budgets)."""
        return self.logits.sigmoid().sum()

    def hard_count(self) -> Tensor:
        """Number of kept channels (the hard mask's), with the gradient of
        :meth:`keep_prob` (straight-through), for budgets on the widths the
        model really computes with."""
        soft = self.keep_prob()
        return gate_mask(self.logits.detach()).sum() + soft - soft.detach()

    def kept_indices(self) -> Tensor:
        return gate_mask(self.logits.detach()).nonzero().flatten()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask().to(x.dtype)

    def extra_repr(self) -> str:
        return f'num_channels={self.logits.numel()}'


def slice_linear(weight: Tensor, bias: Optional[Tensor],
                 out_idx: Optional[Tensor] = None,
                 in_idx: Optional[Tensor] = None):
    """Rows ``out_idx`` and columns ``in_idx`` of a linear layer.

    Returns:
        tuple[Tensor, Tensor | None]: the sliced weight and bias (the bias
        follows the rows only).
    """
    if out_idx is not None:
        weight = weight.index_select(0, out_idx)
        bias = None if bias is None else bias.index_select(0, out_idx)
    if in_idx is not None:
        weight = weight.index_select(1, in_idx)
    return weight.contiguous(), None if bias is None else bias.contiguous()


def head_channel_index(kept: Tensor, num_heads: int, head_dims: int,
                       offset: int = 0) -> Tensor:
    """Flat indices of channels ``kept`` in every head, heads in order.

    For a projection laid out as ``(num_heads, head_dims)`` starting at
    ``offset``: ``[offset + h * head_dims + c for h in heads for c in kept]``.
    """
    heads = torch.arange(num_heads, device=kept.device) * head_dims
    return (offset + heads[:, None] + kept[None, :]).flatten()
