"""ViT encoder layer that can merge tokens and prune channels."""
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmpretrain.models.backbones.vision_transformer import \
    TransformerEncoderLayer
from torch import Tensor

from ...ops import TokenMap
from ..cdcp import BlockCDCP, add_ffn_gate
from .attention import PrunedMultiheadAttention

__all__ = ['PrunedTransformerEncoderLayer', 'size_bias']


def size_bias(tokens: TokenMap, num_extra_tokens: int,
              dtype: torch.dtype) -> Tensor:
    """``log(size)`` as an additive attention bias ``(B, 1, 1, E + N)``.

    Proportional attention (ToMe): a token standing for ``s`` patches gets
    the attention mass of ``s`` copies. Extra tokens have size 1.
    """
    log_size = tokens.size.log().to(dtype)
    extra = log_size.new_zeros(log_size.shape[0], num_extra_tokens)
    return torch.cat([extra, log_size], dim=1)[:, None, None, :]


class PrunedTransformerEncoderLayer(TransformerEncoderLayer):
    """mmpretrain's ``TransformerEncoderLayer`` with two additions.

    Modifications to upstream:

    - ``attn`` is a :class:`PrunedMultiheadAttention` (same parameter
      names), so Q/K/V widths can be pruned and gated, and with
      ``gated=True`` a :class:`ChannelGate` follows the MLP activation
      (``ffn.layers.0.3``); the MLP width is ``cdcp.ffn_dims``.
    - ``forward(x, tokens)`` runs ``reducer`` (if any) between attention and
      MLP and returns ``(x, tokens)``; with ``prop_attn`` the attention is
      biased by ``log(size)``.

    Args:
        embed_dims, num_heads, feedforward_channels, layer_scale_init_value,
        drop_rate, attn_drop_rate, drop_path_rate, num_fcs, qkv_bias,
        ffn_type, act_cfg, norm_cfg, init_cfg: as upstream.
        cdcp (BlockCDCP, optional): pruned widths (``ffn_dims`` replaces
            the MLP width) and gates; None: upstream's, no gates.
        reducer (nn.Module, optional): token reducer of this layer.
        prop_attn (bool): proportional attention. Defaults to False.
        num_extra_tokens (int): leading tokens never reduced. Defaults to 1.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 feedforward_channels: int,
                 layer_scale_init_value: float = 0.,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 num_fcs: int = 2,
                 qkv_bias: bool = True,
                 ffn_type: str = 'origin',
                 act_cfg: dict = dict(type='GELU'),
                 norm_cfg: dict = dict(type='LN'),
                 init_cfg: Optional[dict] = None,
                 cdcp: Optional[BlockCDCP] = None,
                 reducer: Optional[nn.Module] = None,
                 prop_attn: bool = False,
                 num_extra_tokens: int = 1):
        super().__init__(
            embed_dims,
            num_heads,
            (cdcp and cdcp.ffn_dims) or feedforward_channels,
            layer_scale_init_value=layer_scale_init_value,
            drop_rate=drop_rate,
            attn_drop_rate=attn_drop_rate,
            drop_path_rate=drop_path_rate,
            num_fcs=num_fcs,
            qkv_bias=qkv_bias,
            ffn_type=ffn_type,
            act_cfg=act_cfg,
            norm_cfg=norm_cfg,
            init_cfg=init_cfg)
        self.attn = PrunedMultiheadAttention(
            embed_dims,
            num_heads,
            cdcp=cdcp,
            attn_drop=attn_drop_rate,
            proj_drop=drop_rate,
            dropout_layer=dict(type='DropPath', drop_prob=drop_path_rate),
            qkv_bias=qkv_bias,
            layer_scale_init_value=layer_scale_init_value)
        if cdcp is not None and cdcp.gated:
            add_ffn_gate(self.ffn, cdcp.gate_init)
        self.reducer = reducer
        self.prop_attn = prop_attn
        self.num_extra_tokens = num_extra_tokens

    def forward(self, x: Tensor, tokens: Optional[TokenMap] = None
                ) -> Tuple[Tensor, Optional[TokenMap]]:
        """Attention, token reduction, MLP.

        Args:
            x (Tensor): ``(B, E + N, C)``.
            tokens (TokenMap, optional): map of the ``N`` patch tokens;
                None when no layer of the model reduces tokens.

        Returns:
            tuple[Tensor, TokenMap | None]: ``(B, E + N', C)`` and the map.
        """
        bias = None
        if self.prop_attn and tokens is not None:
            bias = size_bias(tokens, self.num_extra_tokens, x.dtype)
        out, keys = self.attn(self.ln1(x), attn_bias=bias)
        x = x + out
        if self.reducer is not None:
            x, tokens = self.reducer(x, keys, tokens)
        x = self.ffn(self.ln2(x), identity=x)
        return x, tokens
