"""Multi-head attention with CDCP widths/gates and proportional attention."""
from typing import Optional, Tuple

from mmpretrain.models.utils import MultiheadAttention
from torch import Tensor

from ...ops import fused_attention, policy_attention
from ..cdcp import BlockCDCP, GatedQKV

__all__ = ['PrunedMultiheadAttention']


class PrunedMultiheadAttention(GatedQKV, MultiheadAttention):
    """mmpretrain's ``MultiheadAttention`` that can be channel-pruned.

    Modifications to upstream:

    - CDCP widths and gates (``cdcp``, see
      :class:`~mmtokenprune.models.cdcp.GatedQKV`).
    - ``forward`` takes an optional additive ``attn_bias`` (``log(size)``
      for proportional attention), passed to the fused SDPA kernel, or a
      keep ``policy`` (DynamicViT's masked softmax, eps 1e-6 in training
      as the originals; attention dropout is not applied on that path),
      and also returns the queries and keys for token reducers.

    With default widths and no gate the parameters and outputs are
    upstream's.

    Args:
        embed_dims (int): The embedding dimension.
        num_heads (int): Parallel attention heads.
        cdcp (BlockCDCP, optional): pruned widths and gates of this
            block; None: upstream's widths, no gates.
        **kwargs: upstream arguments (``attn_drop``, ``proj_drop``,
            ``dropout_layer``, ``qkv_bias``, ``layer_scale_init_value``...).
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 cdcp: Optional[BlockCDCP] = None,
                 **kwargs):
        if kwargs.get('v_shortcut') or kwargs.get('qk_scale') is not None:
            raise ValueError('PrunedMultiheadAttention supports neither '
                             '`v_shortcut` nor `qk_scale`.')
        super().__init__(embed_dims, num_heads, **kwargs)
        self.init_widths(self.input_dims, embed_dims, cdcp)
        self.scale = self.head_dims**-0.5

    def forward(self,
                x: Tensor,
                attn_bias: Optional[Tensor] = None,
                policy: Optional[Tensor] = None
                ) -> Tuple[Tensor, Tensor, Tensor]:
        """Attention over ``(B, N, C)`` tokens.

        Args:
            x (Tensor): ``(B, N, C)``.
            attn_bias (Tensor, optional): broadcastable to
                ``(B, heads, N, N)``, added to the attention logits.
            policy (Tensor, optional): ``(B, N)`` keep policy; keys with 0
                get no attention (except from themselves).

        Returns:
            tuple[Tensor, Tensor, Tensor]: the output ``(B, N, C)``, the
            queries and the keys ``(B, heads, N, qk_dims)``.
        """
        B, N, _ = x.shape
        h, dv = self.num_heads, self.v_dims
        q, k, v = self.gated_qkv(x)
        if policy is not None:
            eps = 1e-6 if self.training else 0.
            out = policy_attention(q, k, v, policy, self.scale, eps)
        else:
            attn_drop = self.attn_drop if self.training else 0.
            out = fused_attention(
                q, k, v, self.scale, attn_mask=attn_bias, dropout_p=attn_drop)
        out = out.transpose(1, 2).reshape(B, N, h * dv)
        out = self.out_drop(self.gamma1(self.proj_drop(self.proj(out))))
        return out, q, k
