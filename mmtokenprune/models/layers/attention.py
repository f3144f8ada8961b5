"""Multi-head attention with CDCP widths/gates and proportional attention."""
from typing import Optional, Tuple

import torch.nn as nn
from mmpretrain.models.utils import MultiheadAttention
from torch import Tensor

from ...ops import ChannelGate, fused_attention, split_qkv

__all__ = ['PrunedMultiheadAttention']


class PrunedMultiheadAttention(MultiheadAttention):
    """mmpretrain's ``MultiheadAttention`` that can be channel-pruned.

    Modifications to upstream:

    - Q/K and V may keep fewer channels per head (``qk_dims``, ``v_dims``;
      the same number in every head), which shrinks ``qkv`` and ``proj``;
      the attention scale stays ``(embed_dims // num_heads) ** -0.5`` so a
      sliced model computes what the gated one did.
    - ``gated=True`` adds CDCP gates: ``qk_gate`` (shared by Q and K and by
      all heads) and ``v_gate`` (shared by all heads; selects ``proj``'s
      input columns).
    - ``forward`` takes an optional additive ``attn_bias`` (``log(size)``
      for proportional attention), passed to the fused SDPA kernel, and
      also returns the keys for token matching.

    With default widths and no gate the parameters and outputs are
    upstream's.

    Args:
        embed_dims (int): The embedding dimension.
        num_heads (int): Parallel attention heads.
        qk_dims (int, optional): Q/K channels per head. Defaults to
            ``embed_dims // num_heads``.
        v_dims (int, optional): V channels per head. Defaults to
            ``embed_dims // num_heads``.
        gated (bool): Add CDCP gates. Defaults to False.
        gate_init (float): Initial gate logit. Defaults to 3.0.
        **kwargs: upstream arguments (``attn_drop``, ``proj_drop``,
            ``dropout_layer``, ``qkv_bias``, ``layer_scale_init_value``...).
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 qk_dims: Optional[int] = None,
                 v_dims: Optional[int] = None,
                 gated: bool = False,
                 gate_init: float = 3.0,
                 **kwargs):
        if kwargs.get('v_shortcut') or kwargs.get('qk_scale') is not None:
            raise ValueError('PrunedMultiheadAttention supports neither '
                             '`v_shortcut` nor `qk_scale`.')
        super().__init__(embed_dims, num_heads, **kwargs)
        self.qk_dims = qk_dims or self.head_dims
        self.v_dims = v_dims or self.head_dims
        self.scale = self.head_dims**-0.5
        if (self.qk_dims, self.v_dims) != (self.head_dims, self.head_dims):
            h = num_heads
            self.qkv = nn.Linear(
                self.input_dims,
                h * (2 * self.qk_dims + self.v_dims),
                bias=self.qkv.bias is not None)
            self.proj = nn.Linear(
                h * self.v_dims, embed_dims, bias=self.proj.bias is not None)
        if gated:
            self.qk_gate = ChannelGate(self.qk_dims, gate_init)
            self.v_gate = ChannelGate(self.v_dims, gate_init)
        else:
            self.qk_gate = self.v_gate = None

    def forward(self,
                x: Tensor,
                attn_bias: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Attention over ``(B, N, C)`` tokens.

        Args:
            x (Tensor): ``(B, N, C)``.
            attn_bias (Tensor, optional): broadcastable to
                ``(B, heads, N, N)``, added to the attention logits.

        Returns:
            tuple[Tensor, Tensor]: the output ``(B, N, C)`` and the keys
            ``(B, heads, N, qk_dims)``.
        """
        B, N, _ = x.shape
        h, dv = self.num_heads, self.v_dims
        q, k, v = split_qkv(self.qkv(x), h, self.qk_dims, dv)
        if self.qk_gate is not None:
            q, k = self.qk_gate(q), self.qk_gate(k)  # k: reducers match on it
            v = self.v_gate(v)
        attn_drop = self.attn_drop if self.training else 0.
        out = fused_attention(
            q, k, v, self.scale, attn_mask=attn_bias, dropout_p=attn_drop)
        out = out.transpose(1, 2).reshape(B, N, h * dv)
        out = self.out_drop(self.gamma1(self.proj_drop(self.proj(out))))
        return out, k
