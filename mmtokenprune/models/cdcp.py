"""CDCP for mm modules: budget (differentiable FLOPs) and export (slicing).

Works on any attention with ``qkv``/``proj`` laid out head by head and
``qk_gate``/``v_gate`` gates (:class:`PrunedMultiheadAttention`, the Swin
window attention) and on mmcv's two-layer ``FFN`` with a gate after the
activation. Export turns gated modules into the widths of a
:class:`~mmtokenprune.ops.PruneSpec` and sliced tensors under the same
state_dict keys.
"""
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from ..ops import ChannelGate, LayerDims, head_channel_index, slice_linear

__all__ = [
    'attention_flops', 'ffn_flops', 'soft_width', 'export_attention',
    'export_ffn', 'export_blocks', 'budget_loss', 'compression_losses'
]


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


def compression_losses(flops_ratio: Callable[[], Tensor],
                       channel_cfg) -> Dict[str, Tensor]:
    """A backbone's CDCP budget loss (empty without gates).

    Args:
        flops_ratio (callable): returns the differentiable kept fraction of
            encoder FLOPs; called only when gated.
        channel_cfg (ChannelCfg): the backbone's parsed ``channel_cfg``.
    """
    if not channel_cfg.gated:
        return {}
    loss = budget_loss(flops_ratio(), channel_cfg.flops_target)
    return dict(loss_cdcp_budget=channel_cfg.loss_weight * loss)


def _kept(gate: Optional[ChannelGate], full: int, device) -> Tensor:
    if gate is None:
        return torch.arange(full, device=device)
    return gate.kept_indices()


@torch.no_grad()
def export_attention(attn: nn.Module) -> Tuple[int, int, Dict[str, Tensor]]:
    """Slice a gated attention to the channels its gates keep.

    Returns:
        tuple: ``(qk_dims, v_dims, tensors)``, ``tensors`` keyed like the
        module's own state_dict (``qkv.weight``, ``qkv.bias``,
        ``proj.weight``).
    """
    h, dqk, dv = attn.num_heads, attn.qk_dims, attn.v_dims
    device = attn.qkv.weight.device
    qk = _kept(attn.qk_gate, dqk, device)
    v = _kept(attn.v_gate, dv, device)
    rows = torch.cat([
        head_channel_index(qk, h, dqk),
        head_channel_index(qk, h, dqk, offset=h * dqk),
        head_channel_index(v, h, dv, offset=2 * h * dqk)
    ])
    out = {}
    out['qkv.weight'], qkv_bias = slice_linear(attn.qkv.weight,
                                               attn.qkv.bias, out_idx=rows)
    if qkv_bias is not None:
        out['qkv.bias'] = qkv_bias
    out['proj.weight'], _ = slice_linear(
        attn.proj.weight, None, in_idx=head_channel_index(v, h, dv))
    return len(qk), len(v), out


@torch.no_grad()
def export_ffn(ffn: nn.Module) -> Tuple[int, Dict[str, Tensor]]:
    """Slice mmcv's two-layer ``FFN`` to the hidden channels its gate keeps.

    Returns:
        tuple: ``(ffn_dims, tensors)`` keyed like the FFN's state_dict.
    """
    first, fc2 = ffn.layers[0], ffn.layers[1]
    fc1 = first[0]
    gate = first[-1] if isinstance(first[-1], ChannelGate) else None
    keep = _kept(gate, fc1.out_features, fc1.weight.device)
    out = {}
    out['layers.0.0.weight'], bias = slice_linear(
        fc1.weight, fc1.bias, out_idx=keep)
    if bias is not None:
        out['layers.0.0.bias'] = bias
    out['layers.1.weight'], _ = slice_linear(fc2.weight, None, in_idx=keep)
    return len(keep), out


@torch.no_grad()
def export_blocks(
    module: nn.Module, blocks: Iterable[Tuple[str, nn.Module, str, nn.Module]]
) -> Tuple[List[LayerDims], Dict[str, Tensor]]:
    """Slice every gated block of ``module`` (a backbone).

    Args:
        module (nn.Module): the backbone; its state_dict is the base.
        blocks: ``(attn_key, attn, ffn_key, ffn)`` per block, in order, the
            keys being the modules' names in ``module``.

    Returns:
        tuple[list[LayerDims], dict]: the widths per block and the
        state_dict with sliced tensors under the same keys, gates removed.
    """
    gates = tuple(f'{name}.' for name, m in module.named_modules()
                  if isinstance(m, ChannelGate))
    state = {
        k: v
        for k, v in module.state_dict().items() if not k.startswith(gates)
    }
    dims = []
    for attn_key, attn, ffn_key, ffn in blocks:
        qk, v, attn_state = export_attention(attn)
        ffn_dims, ffn_state = export_ffn(ffn)
        state.update({f'{attn_key}.{k}': t for k, t in attn_state.items()})
        state.update({f'{ffn_key}.{k}': t for k, t in ffn_state.items()})
        dims.append(LayerDims(qk_dims=qk, v_dims=v, ffn_dims=ffn_dims))
    return dims, state
