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

__all__ = ['PrunedTransformerEncoderLayer', 'size_bias', 'full_policy']


def _with_extras(values: Tensor, num_extra_tokens: int, length: int,
                 fill: float) -> Tensor:
    """``(B, N)`` patch values padded with ``fill`` for the leading extra
    tokens and the trailing ones, to ``(B, length)``."""
    B, N = values.shape
    head = values.new_full((B, num_extra_tokens), fill)
    tail = values.new_full((B, length - num_extra_tokens - N), fill)
    return torch.cat([head, values, tail], dim=1)


def size_bias(tokens: TokenMap, num_extra_tokens: int, length: int,
              dtype: torch.dtype) -> Tensor:
    """``log(size)`` as an additive attention bias ``(B, 1, 1, length)``.

    Proportional attention (ToMe): a token standing for ``s`` patches gets
    the attention mass of ``s`` copies. Extra tokens have size 1.
    """
    log_size = tokens.size.log().to(dtype)
    return _with_extras(log_size, num_extra_tokens, length,
                        0.)[:, None, None, :]


def full_policy(tokens: TokenMap, num_extra_tokens: int,
                length: int) -> Tensor:
    """The training-path keep policy over all ``length`` tokens (extra
    tokens always kept)."""
    return _with_extras(tokens.policy, num_extra_tokens, length, 1.)


class PrunedTransformerEncoderLayer(TransformerEncoderLayer):
    """mmpretrain's ``TransformerEncoderLayer`` with two additions.

    Modifications to upstream:

    - ``attn`` is a :class:`PrunedMultiheadAttention` (same parameter
      names), so Q/K/V widths can be pruned and gated, and with
      ``gated=True`` a :class:`ChannelGate` follows the MLP activation
      (``ffn.layers.0.3``); the MLP width is ``cdcp.ffn_dims``.
    - ``forward(x, tokens)`` runs ``reducer`` (if any) between attention and
      MLP or before the block (``reducer.where``) and returns
      ``(x, tokens)``; with ``prop_attn`` the attention is biased by
      ``log(size)``; on the training path of a pruning reducer
      (``tokens.policy``) pruned tokens are masked as keys (DynamicViT's
      masked softmax).

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
            x (Tensor): ``(B, E + N + T, C)``: extra tokens, patch tokens,
                trailing extra tokens (SPViT's packages).
            tokens (TokenMap, optional): map of the ``N`` patch tokens;
                None when no layer of the model reduces tokens.

        Returns:
            tuple[Tensor, TokenMap | None]: ``(B, E + N' + T', C)`` and the
            map.
        """
        reducer, E = self.reducer, self.num_extra_tokens
        if reducer is not None and reducer.where == 'before_block':
            x, tokens = reducer(x, tokens)
        bias = policy = None
        if tokens is not None and tokens.policy is not None:
            policy = full_policy(tokens, E, x.shape[1])
        elif tokens is not None and self.prop_attn:
            bias = size_bias(tokens, E, x.shape[1], x.dtype)
        out, q, k = self.attn(self.ln1(x), attn_bias=bias, policy=policy)
        x = x + out
        if reducer is not None and reducer.where == 'after_attention':
            x, tokens = reducer(
                x, tokens, queries=q, keys=k, scale=self.attn.scale)
        x = self.ffn(self.ln2(x), identity=x)
        return x, tokens
