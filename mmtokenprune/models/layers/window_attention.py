"""Swin window attention with CDCP widths/gates and merged-window biases."""
from typing import Optional

from mmpretrain.models.utils import WindowMSA
from torch import Tensor

from ...ops import fused_attention
from ..cdcp import BlockCDCP, GatedQKV

__all__ = ['PrunedWindowMSA']


class PrunedWindowMSA(GatedQKV, WindowMSA):
    """mmpretrain's ``WindowMSA`` that can be channel-pruned and merged.

    Modifications to upstream:

    - CDCP widths and gates (``cdcp``, see
      :class:`~mmtokenprune.models.cdcp.GatedQKV`); the relative-position
      bias table stays per head and is never pruned.
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
        cdcp (BlockCDCP, optional): pruned widths and gates of this
            block; None: upstream's widths, no gates.
        **kwargs: upstream arguments (``qkv_bias``, ``qk_scale``,
            ``attn_drop``, ``proj_drop``, ``init_cfg``).
    """

    def __init__(self,
                 embed_dims: int,
                 window_size,
                 num_heads: int,
                 cdcp: Optional[BlockCDCP] = None,
                 **kwargs):
        super().__init__(embed_dims, window_size, num_heads, **kwargs)
        self.init_widths(embed_dims, embed_dims, cdcp)

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
        q, k, v = self.gated_qkv(x)
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
