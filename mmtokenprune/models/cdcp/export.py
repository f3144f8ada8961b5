"""CDCP export: slice gated modules into a genuinely smaller dense model.

Works on any attention with ``qkv``/``proj`` laid out head by head and
``qk_gate``/``v_gate`` gates (:class:`~.gated_layers.GatedQKV`) and on
mmcv's two-layer ``FFN`` with a gate after the activation. Gated modules
become the widths of a :class:`~mmtokenprune.ops.PruneSpec` and sliced
tensors under the same state_dict keys.
"""
from typing import Dict, Iterable, List, Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from ...ops import (ChannelGate, LayerDims, PruneSpec, head_channel_index,
                    slice_linear)
from .gated_layers import ffn_gate

__all__ = ['export_attention', 'export_ffn', 'export_blocks', 'export_model']


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
    fc1, fc2 = ffn.layers[0][0], ffn.layers[1]
    keep = _kept(ffn_gate(ffn), fc1.out_features, fc1.weight.device)
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


def export_model(model: nn.Module) -> Tuple[PruneSpec, Dict[str, Tensor]]:
    """Slice the gated backbone of a whole model (segmentor, classifier).

    Args:
        model (nn.Module): a model whose ``backbone`` is a CDCP backbone.

    Returns:
        tuple[PruneSpec, dict]: the backbone's spec and the model's
        state_dict with the backbone's tensors sliced (``backbone.`` keys),
        loadable with ``strict=True`` by the model built from the spec.

    Raises:
        TypeError: if the backbone cannot export.
    """
    if not hasattr(model.backbone, 'export_pruned'):
        raise TypeError(f'{type(model.backbone).__name__} cannot export a '
                        'pruned model; use an mmtokenprune backbone.')
    spec, backbone_state = model.backbone.export_pruned()
    state = {
        k: v
        for k, v in model.state_dict().items() if not k.startswith('backbone.')
    }
    state.update({f'backbone.{k}': v for k, v in backbone_state.items()})
    return spec, state
