"""CDCP inside layers: gated Q/K/V widths of an attention, the MLP gate.

One implementation for every attention whose ``qkv``/``proj`` are laid out
head by head (mmpretrain's ``MultiheadAttention`` and Swin's ``WindowMSA``)
and for mmcv's two-layer ``FFN``.
"""
from typing import Optional, Tuple

import torch.nn as nn
from torch import Tensor

from ...ops import ChannelGate, split_qkv
from .channel_cfg import BlockCDCP

__all__ = ['GatedQKV', 'add_ffn_gate', 'ffn_gate']


class GatedQKV:
    """Mixin for an attention module with ``qkv``, ``proj``, ``num_heads``.

    :meth:`init_widths` sets ``head_dims``, ``qk_dims`` and ``v_dims`` of a
    :class:`BlockCDCP` (the same number in every head: *head-level
    consistency*), rebuilds ``qkv`` and ``proj`` at those widths (the
    attention scale stays ``head_dims ** -0.5``, so a sliced model computes
    what the gated one did), and with ``gated=True`` adds
    ``qk_gate`` (shared by Q and K: *attention-level consistency*) and
    ``v_gate`` (selects ``proj``'s input columns too). :meth:`gated_qkv`
    is the head-by-head split with the gates applied.
    """

    def init_widths(self, input_dims: int, embed_dims: int,
                    cdcp: Optional[BlockCDCP]) -> None:
        cdcp = cdcp or BlockCDCP()
        h = self.num_heads
        self.head_dims = embed_dims // h
        self.qk_dims = cdcp.qk_dims or self.head_dims
        self.v_dims = cdcp.v_dims or self.head_dims
        if (self.qk_dims, self.v_dims) != (self.head_dims, self.head_dims):
            self.qkv = nn.Linear(
                input_dims,
                h * (2 * self.qk_dims + self.v_dims),
                bias=self.qkv.bias is not None)
            self.proj = nn.Linear(
                h * self.v_dims, embed_dims, bias=self.proj.bias is not None)
        if cdcp.gated:
            self.qk_gate = ChannelGate(self.qk_dims, cdcp.gate_init)
            self.v_gate = ChannelGate(self.v_dims, cdcp.gate_init)
        else:
            self.qk_gate = self.v_gate = None

    def gated_qkv(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """``(B, heads, N, d)`` q, k (``qk_dims``) and v (``v_dims``)."""
        q, k, v = split_qkv(self.qkv(x), self.num_heads, self.qk_dims,
                            self.v_dims)
        if self.qk_gate is not None:
            q, k = self.qk_gate(q), self.qk_gate(k)  # k: reducers match on it
            v = self.v_gate(v)
        return q, k, v


def _first_layer(ffn: nn.Module) -> Optional[nn.Sequential]:
    layers = getattr(ffn, 'layers', None)
    if getattr(ffn, 'num_fcs', None) != 2 or layers is None:
        return None
    return layers[0] if isinstance(layers[0], nn.Sequential) else None


def add_ffn_gate(ffn: nn.Module, gate_init: float) -> None:
    """Append a :class:`ChannelGate` after the MLP activation
    (``ffn.layers.0.3``).

    Raises:
        ValueError: unless ``ffn`` is mmcv's two-layer ``FFN``.
    """
    first = _first_layer(ffn)
    if first is None:
        raise ValueError('CDCP gates need the standard two-layer FFN '
                         "(ViT: ffn_type='origin', num_fcs=2; Swin: "
                         '`ffn_cfgs.num_fcs=2`); got '
                         f'{type(ffn).__name__}.')
    first.append(ChannelGate(first[0].out_features, gate_init))


def ffn_gate(ffn: nn.Module) -> Optional[ChannelGate]:
    """The MLP gate of ``ffn``, or None."""
    first = _first_layer(ffn)
    if first is not None and isinstance(first[-1], ChannelGate):
        return first[-1]
    return None
