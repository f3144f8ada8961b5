"""Swin window attention with CDCP widths/gates and merged-window biases."""
from typing import Optional

import torch.nn as nn
from mmpretrain.models.utils import WindowMSA
from torch import Tensor

from ...ops import ChannelGate, fused_attention, split_qkv

__all__ = ['PrunedWindowMSA']


class PrunedWindowMSA(WindowMSA):
    """mmpretrain's ``WindowMSA`` that can be channel-pruned and merged.

    Modifications to upstream:

    - Q/K and V may keep fewer channels per head (``qk_dims``, ``v_dims``;
      the same number in every head), which shrinks ``qkv`` and ``proj``;
      the scale stays ``(embed_dims // num_heads) ** -0.5`` so a sliced
      model computes what the gated one did. ``gated=True`` adds the CDCP
      gates ``qk_gate`` (shared by Q and K and all heads) and ``v_gate``.
      The relative-position bias table stays per head and is never pruned.
    - The attention runs in the fused SDPA kernel (upstream: explicit
      softmax; same result within float rounding), also with Q/K and V of
      different widths (:func:`~mmtokenprune.ops.fused_attention`).
    - ``forward`` takes ``attn_bias``, a complete additive bias for windows
      of merged tokens (see :meth:`relative_bias` with ``anchor``), instead
      of the full-window bias and shift ``mask``.

    With default widths and no gate the parameters are upstream's.

    Args:
        embed_dims (int): Number of input channels.
        window_size (tuple[int]): The height and width of the window.
        num_heads (int): Number of attention heads.
        qk_dims (int, optional): Q/K channels per head. Defaults to
            ``embed_dims // num_heads``.
        v_dims (int, optional): V channels per head. Defaults to
            ``embed_dims // num_heads``.
        gated (bool): Add CDCP gates. Defaults to False.
        gate_init (float): Initial gate logit. Defaults to 3.0.
        **kwargs: upstream arguments (``qkv_bias``, ``qk_scale``,
            ``attn_drop``, ``proj_drop``, ``init_cfg``).
    """

    def __init__(self,
                 embed_dims: int,
                 window_size,
                 num_heads: int,
                 qk_dims: Optional[int] = None,
                 v_dims: Optional[int] = None,
                 gated: bool = False,
                 gate_init: float = 3.0,
                 **kwargs):
        super().__init__(embed_dims, window_size, num_heads, **kwargs)
        self.head_dims = embed_dims // num_heads
        self.qk_dims = qk_dims or self.head_dims
        self.v_dims = v_dims or self.head_dims
        if (self.qk_dims, self.v_dims) != (self.head_dims, self.head_dims):
            h = num_heads
            self.qkv = nn.Linear(
                embed_dims,
                h * (2 * self.qk_dims + self.v_dims),
                bias=self.qkv.bias is not None)
            self.proj = nn.Linear(h * self.v_dims, embed_dims)
        if gated:
            self.qk_gate = ChannelGate(self.qk_dims, gate_init)
            self.v_gate = ChannelGate(self.v_dims, gate_init)
        else:
            self.qk_gate = self.v_gate = None

    def relative_bias(self, anchor: Optional[Tensor] = None) -> Tensor:
        """The relative-position bias.

        Args:
            anchor (Tensor, optional): ``(B * nW, N')`` window cell of each
                (merged) token. The bias of a token pair is that of their
                anchor cells.

        Returns:
            Tensor: ``(heads, N, N)`` for full windows, else
            ``(B * nW, heads, N', N')``.
        """
        table = self.relative_position_bias_table  # (L, heads)
        index = self.relative_position_index  # (N, N)
        N = index.shape[0]
        full = table[index.view(-1)].t()  # (heads, N * N)
        if anchor is None:
            return full.view(-1, N, N)
        BnW, n = anchor.shape
        pair = (anchor.unsqueeze(2) * N + anchor.unsqueeze(1)).view(-1)
        out = full.contiguous().index_select(1, pair)
        return out.view(-1, BnW, n, n).transpose(0, 1)

    def forward(self,
                x: Tensor,
                mask: Optional[Tensor] = None,
                attn_bias: Optional[Tensor] = None) -> Tensor:
        """Attention inside each window.

        Args:
            x (Tensor): ``(B * nW, N, C)`` window tokens.
            mask (Tensor, optional): upstream's shift mask ``(nW, N, N)``
                (values in ``(-inf, 0]``), for full windows.
            attn_bias (Tensor, optional): ``(B * nW, heads, N, N)``, the
                whole additive bias (relative position, shift mask, token
                sizes); replaces the full-window bias and ``mask``.

        Returns:
            Tensor: ``(B * nW, N, C)``.
        """
        BnW, N, _ = x.shape
        h, dv = self.num_heads, self.v_dims
        q, k, v = split_qkv(self.qkv(x), h, self.qk_dims, dv)
        if self.qk_gate is not None:
            q = self.qk_gate(q)  # a 0/1 mask: q*m . k == q*m . k*m
            v = self.v_gate(v)
        if attn_bias is None:
            attn_bias = self.relative_bias().unsqueeze(0).to(q.dtype)
            if mask is not None:  # windows of one image are consecutive
                nW = mask.shape[0]
                attn_bias = attn_bias + mask.unsqueeze(1).to(q.dtype)
                if BnW != nW:  # (B * nW, ...): 5-D SDPA is slow on CPU
                    attn_bias = attn_bias.repeat(BnW // nW, 1, 1, 1)
        p = self.attn_drop.p if self.training else 0.
        out = fused_attention(
            q, k, v, self.scale, attn_mask=attn_bias, dropout_p=p)
        out = out.reshape(BnW, h, N, dv).transpose(1, 2)
        out = self.proj(out.reshape(BnW, N, h * dv))
        return self.proj_drop(out)
