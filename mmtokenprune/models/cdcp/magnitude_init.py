"""Training-free CDCP gates from weight magnitudes.

:func:`init_gates_by_magnitude` opens or closes every CDCP gate of a
backbone by how large the weights behind each channel are, with one global
threshold chosen so that the backbone keeps ``flops_target`` of its encoder
FLOPs (:meth:`flops_ratio`). It is what the demo and the benchmark use to
export a channel-pruned model without trained gates (none exist offline),
and a starting point for CDCP fine-tuning (then the budget loss and the
task loss move the gates from there).

Importance of a channel (L1 norms of the rows that produce it):

- Q/K gate, channel ``c``: the ``q`` and ``k`` rows of ``c`` in every head;
- V gate, channel ``c``: the ``v`` rows of ``c`` in every head;
- MLP gate, hidden channel ``j``: row ``j`` of ``fc1``.

Scores are divided by their gate's mean, so the three kinds and all layers
compare on one scale; the threshold is then global, and layers whose
channels are more uneven lose more. By default the widths are then made
hardware-friendly: multiples of 8, and Q/K as wide as V per head (fused
SDPA kernels need equal head dims; the math fallback is 2.5-3.5x slower).

:func:`init_gates_open_by_magnitude` is the start of *learned* gates: every
channel open (the model computes what the unpruned one does), logits
ordered by the same importance, so under a uniform budget push the least
important channels close first and the task gradient decides the rest.
"""
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from ...ops import ChannelGate, head_channel_index
from .gated_layers import ffn_gate

__all__ = [
    'init_gates_by_magnitude', 'init_gates_open_by_magnitude',
    'init_gates_to_widths', 'magnitude_scores'
]


def _rows_l1(weight: Tensor, rows: Tensor, num_heads: int) -> Tensor:
    """Sum over heads of the L1 norm of ``rows`` (``num_heads * d``)."""
    return weight.index_select(0, rows).abs().sum(1).view(num_heads, -1).sum(0)


def _encoder_layers(backbone: nn.Module) -> List[Tuple]:
    """``(attention, ffn, ffn gate)`` of every block of a CDCP backbone."""
    if not hasattr(backbone, 'cdcp_blocks'):
        raise TypeError(f'{type(backbone).__name__} is not a CDCP backbone '
                        '(PrunedVisionTransformer, PrunedSwinTransformer).')
    return [(attn, ffn, ffn_gate(ffn))
            for _, attn, _, ffn in backbone.cdcp_blocks()]


@torch.no_grad()
def magnitude_scores(backbone: nn.Module) -> List[Dict[str, Tuple]]:
    """Per layer, ``{'qk' | 'v' | 'ffn': (gate, importance per channel)}``.

    Raises:
        ValueError: if the backbone has no gates (build it with
            ``channel_cfg=dict(type='CDCP')``).
    """
    layers = []
    for attn, ffn, gate in _encoder_layers(backbone):
        if attn.qk_gate is None or gate is None:
            continue
        h, dqk, dv = attn.num_heads, attn.qk_dims, attn.v_dims
        w = attn.qkv.weight
        c_qk = torch.arange(dqk, device=w.device)
        c_v = torch.arange(dv, device=w.device)
        qk = (
            _rows_l1(w, head_channel_index(c_qk, h, dqk), h) +
            _rows_l1(w, head_channel_index(c_qk, h, dqk, h * dqk), h))
        v = _rows_l1(w, head_channel_index(c_v, h, dv, 2 * h * dqk), h)
        fc1 = ffn.layers[0][0].weight
        layers.append(
            dict(
                qk=(attn.qk_gate, qk),
                v=(attn.v_gate, v),
                ffn=(gate, fc1.abs().sum(1))))
    if not layers:
        raise ValueError(
            f'{type(backbone).__name__} has no CDCP gates; build it with '
            "channel_cfg=dict(type='CDCP') to initialise them.")
    return layers


def _top(score: Tensor, count: int) -> Tensor:
    """Bool mask of the ``count`` highest scores."""
    mask = torch.zeros_like(score, dtype=torch.bool)
    mask[score.topk(count).indices] = True
    return mask


def _round(count: float, size: int, round_to: int) -> int:
    """``count`` to the nearest multiple of ``round_to``, in [1, size]."""
    step = min(round_to, size)
    return min(size, max(step, step * int(round(count / step))))


@torch.no_grad()
def init_gates_by_magnitude(backbone: nn.Module,
                            flops_target: float,
                            margin: float = 8.0,
                            round_to: int = 8,
                            same_qk_v: bool = True) -> Dict:
    """Set CDCP gate logits so the backbone keeps about ``flops_target``.

    Channels are ranked by magnitude importance (module docstring) against
    one global threshold; each gate then keeps its best channels, as many
    as pass the threshold, made hardware-friendly (see ``round_to`` and
    ``same_qk_v``). The threshold is bisected so that the kept fraction of
    encoder FLOPs (:meth:`flops_ratio`) is closest to ``flops_target``.
    Every gate keeps at least one channel. Kept channels get logit
    ``+margin``, the others ``-margin``.

    Args:
        backbone (nn.Module): a gated :class:`PrunedVisionTransformer` or
            :class:`PrunedSwinTransformer`.
        flops_target (float): kept fraction of encoder FLOPs, in (0, 1].
        margin (float): logit magnitude. With the default 8 the soft widths
            of :meth:`flops_ratio` equal the hard ones to 0.04%; use a
            smaller one (e.g. 3) if the gates are to be fine-tuned, so
            they still get gradient. Defaults to 8.0.
        round_to (int): kept channels per gate are a multiple of this
            (GEMM-friendly widths); 1 keeps exact counts. Defaults to 8.
        same_qk_v (bool): Q/K and V keep as many channels per head (the
            mean of the two counts): PyTorch's fused SDPA kernels need
            equal head dims for q/k and v, otherwise attention falls back
            to the math path (2.5-3.5x slower measured on CPU).
            Defaults to True.

    Returns:
        dict: ``flops_ratio`` (float, as :meth:`flops_ratio` reports it
        now) and ``kept`` (channels kept per gate, per layer: qk, v, ffn).
    """
    if not 0 < flops_target <= 1:
        raise ValueError(f'flops_target must be in (0, 1]; got '
                         f'{flops_target!r}.')
    if round_to < 1:
        raise ValueError(f'round_to must be >= 1; got {round_to!r}.')
    layers = magnitude_scores(backbone)
    gates = [pair[0] for layer in layers for pair in layer.values()]
    scores = [[s / s.mean().clamp(min=1e-12) for _, s in layer.values()]
              for layer in layers]
    flat = torch.cat([s for layer in scores for s in layer])
    flat = flat.sort(descending=True).values

    def keep_masks(k: int) -> List[Tensor]:
        t = flat[min(k, flat.numel()) - 1] if k > 0 else flat[0] + 1
        masks = []
        for qk, v, ffn in scores:
            counts = [float((s >= t).sum()) for s in (qk, v, ffn)]
            if same_qk_v:
                counts[0] = counts[1] = min((counts[0] + counts[1]) / 2,
                                            qk.numel(), v.numel())
            masks += [
                _top(s, _round(c, s.numel(), round_to))
                for s, c in zip((qk, v, ffn), counts)
            ]
        return masks

    def ratio(k: int) -> float:
        _set_logits(gates, keep_masks(k), 1e4)  # hard widths
        return float(backbone.flops_ratio())

    lo, hi = 0, flat.numel()  # ratio(k) grows with k
    while lo < hi:
        mid = (lo + hi) // 2
        if ratio(mid) < flops_target:
            lo = mid + 1
        else:
            hi = mid
    k = min((max(lo - 1, 0), lo), key=lambda c: abs(ratio(c) - flops_target))
    masks = keep_masks(k)
    _set_logits(gates, masks, margin)
    return dict(
        flops_ratio=float(backbone.flops_ratio()),
        kept=[int(m.sum()) for m in masks])


@torch.no_grad()
def init_gates_to_widths(backbone: nn.Module,
                         widths: Sequence[Tuple[int, int, int]],
                         margin: float = 8.0) -> None:
    """Close every CDCP gate down to given widths, keeping the channels
    of the highest magnitude importance (module docstring) in each.

    Where :func:`init_gates_by_magnitude` chooses the widths from one
    FLOPs target, this takes them (e.g. from a latency budget's solver)
    and only chooses which channels stay.

    Args:
        backbone (nn.Module): a gated CDCP backbone.
        widths (Sequence[tuple[int, int, int]]): per gated layer, Q/K
            channels per head, V channels per head, MLP hidden channels.
        margin (float): logit magnitude of kept / closed channels.
            Defaults to 8.0.

    Raises:
        ValueError: a count of widths other than the gated layers', or a
            width outside ``[1, full]``, naming the layer.
    """
    layers = magnitude_scores(backbone)
    if len(widths) != len(layers):
        raise ValueError(f'{len(widths)} widths given; the backbone has '
                         f'{len(layers)} gated layers.')
    gates, masks = [], []
    for i, (layer, dims) in enumerate(zip(layers, widths)):
        for (name, (gate, score)), count in zip(layer.items(), dims):
            if not 1 <= int(count) <= score.numel():
                raise ValueError(f'layer {i}: {name} width {count} is not in '
                                 f'[1, {score.numel()}].')
            gates.append(gate)
            masks.append(_top(score, int(count)))
    _set_logits(gates, masks, margin)


def _set_logits(gates: List[ChannelGate], keep: List[Tensor],
                margin: float) -> None:
    for gate, mask in zip(gates, keep):
        gate.logits.copy_(torch.where(mask, margin, -margin))


@torch.no_grad()
def init_gates_open_by_magnitude(backbone: nn.Module, low: float = 1.0,
                                 high: float = 3.0) -> Dict:
    """Open every CDCP gate, logits ranked by magnitude importance.

    The importance of the module docstring (each gate's scores divided by
    their mean) is ranked over all gates of all layers; the least important
    channel gets logit ``low``, the most important ``high``, the others
    in between by rank (evenly spaced). All logits are positive, so the
    gated model equals the ungated one; the order only decides which
    channels a budget closes first when the task gradient does not.

    Args:
        backbone (nn.Module): a gated CDCP backbone.
        low (float): logit of the least important channel, > 0.
            Defaults to 1.0.
        high (float): logit of the most important channel, >= ``low``.
            Defaults to 3.0.

    Returns:
        dict: ``flops_ratio`` (hard widths: 1.0 up to token reduction's
        rounding) and ``kept`` (channels kept per gate, per layer).
    """
    if not 0 < low <= high:
        raise ValueError(f'need 0 < low <= high (gates start open); got '
                         f'low={low!r}, high={high!r}.')
    layers = magnitude_scores(backbone)
    gates = [pair[0] for layer in layers for pair in layer.values()]
    flat = torch.cat([s / s.mean().clamp(min=1e-12)
                      for layer in layers for _, s in layer.values()])
    rank = torch.empty_like(flat)
    rank[flat.argsort()] = torch.arange(
        flat.numel(), dtype=flat.dtype, device=flat.device)
    logits = low + (high - low) * rank / max(flat.numel() - 1, 1)
    for gate, part in zip(gates, logits.split([g.logits.numel()
                                               for g in gates])):
        gate.logits.copy_(part)
    return dict(
        flops_ratio=float(backbone.flops_ratio(hard=True)),
        kept=[len(g.kept_indices()) for g in gates])
