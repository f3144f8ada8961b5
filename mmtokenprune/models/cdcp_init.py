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
channels are more uneven lose more.
"""
from typing import Dict, List, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from ..ops import ChannelGate, head_channel_index

__all__ = ['init_gates_by_magnitude', 'magnitude_scores']


def _rows_l1(weight: Tensor, rows: Tensor, num_heads: int) -> Tensor:
    """Sum over heads of the L1 norm of ``rows`` (``num_heads * d``)."""
    return weight.index_select(0, rows).abs().sum(1).view(num_heads, -1).sum(0)


@torch.no_grad()
def magnitude_scores(backbone: nn.Module) -> List[Tuple[ChannelGate, Tensor]]:
    """``(gate, importance per channel)`` for every CDCP gate of a ViT.

    Raises:
        ValueError: if the backbone has no gates (build it with
            ``channel_cfg=dict(type='CDCP')``).
    """
    pairs = []
    for layer in getattr(backbone, 'layers', []):
        attn, gate = layer.attn, getattr(layer, 'ffn_gate', None)
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
        fc1 = layer.ffn.layers[0][0].weight
        pairs += [(attn.qk_gate, qk), (attn.v_gate, v),
                  (gate, fc1.abs().sum(1))]
    if not pairs:
        raise ValueError(
            f'{type(backbone).__name__} has no CDCP gates; build it with '
            "channel_cfg=dict(type='CDCP') to initialise them.")
    return pairs


def _set_logits(pairs, keep: List[Tensor], margin: float) -> None:
    for (gate, _), mask in zip(pairs, keep):
        gate.logits.copy_(torch.where(mask, margin, -margin))


@torch.no_grad()
def init_gates_by_magnitude(backbone: nn.Module,
                            flops_target: float,
                            margin: float = 8.0) -> Dict:
    """Set CDCP gate logits so the backbone keeps about ``flops_target``.

    Channels are ranked by magnitude importance (module docstring); the
    ``k`` best over all gates are kept, ``k`` found by bisection so that
    the kept fraction of encoder FLOPs is closest to ``flops_target``. The
    best channel of every gate is always kept. Kept channels get logit
    ``+margin``, the others ``-margin``.

    Args:
        backbone (nn.Module): a gated :class:`PrunedVisionTransformer`.
        flops_target (float): kept fraction of encoder FLOPs, in (0, 1].
        margin (float): logit magnitude. With the default 8 the soft widths
            of :meth:`flops_ratio` equal the hard ones to 0.04%; use a
            smaller one (e.g. 3) if the gates are to be fine-tuned, so
            they still get gradient. Defaults to 8.0.

    Returns:
        dict: ``flops_ratio`` (float, as :meth:`flops_ratio` reports it
        now) and ``kept`` (channels kept per gate, in layer order: qk, v,
        ffn).
    """
    if not 0 < flops_target <= 1:
        raise ValueError(f'flops_target must be in (0, 1]; got '
                         f'{flops_target!r}.')
    pairs = magnitude_scores(backbone)
    scores = [s / s.mean().clamp(min=1e-12) for _, s in pairs]
    best = [s == s.max() for s in scores]
    flat = torch.cat(scores).sort(descending=True).values

    def keep_masks(k: int) -> List[Tensor]:
        if k >= flat.numel():
            return [torch.ones_like(s, dtype=torch.bool) for s in scores]
        t = flat[k - 1] if k > 0 else flat[0] + 1
        return [(s >= t) | b for s, b in zip(scores, best)]

    def ratio(k: int) -> float:
        _set_logits(pairs, keep_masks(k), 1e4)  # hard widths
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
    _set_logits(pairs, masks, margin)
    return dict(
        flops_ratio=float(backbone.flops_ratio()),
        kept=[int(m.sum()) for m in masks])
