"""TPS inside Swin attention windows: prune a fixed count, squeeze the rest.

The pruning counterpart of :mod:`.window_merge`: the windows of a block are a
batch of ``ws x ws`` grids, ``(B * nW, ws * ws, C)``; every window keeps its
``ws * ws - r`` best tokens (the same ``r`` in every window, so a batch has
one shape) and squeezes each pruned token into its most similar kept token
with TPS's weights (:mod:`.squeeze`). After the block the windows are
un-merged (a pruned position takes its host's feature), so shifts, padding
and patch merging see an intact grid.

Cells carry the labels of :func:`~.window.window_labels` (``2 * shift_region
+ is_padding``), and a pruned token may only be squeezed into a kept token
of its own label:

- every label group of a window keeps one token (its best scored, the
  *leader*), so every pruned token has a host; a window of ``g`` groups can
  prune at most ``ws * ws - g`` tokens, and where some window of a layout
  allows fewer than ``r``, every window prunes that many
  (:func:`window_prune_capacity`; the merge path's rule);
- padding is pruned first (it is cropped anyway; its one leader per padding
  group stays as the host of the rest), then real tokens by score.
"""
import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from .squeeze import squeeze_plan
from .token_map import MergePlan
from .topk import topk_split
from .window import (WindowGrid, WindowLayout, add_rows, layout_cache,
                     layout_constant, window_labels)
from .window_merge import (ascending_positions, window_layouts,
                           window_token_counts)

__all__ = [
    'window_prune_capacity', 'window_keep_split', 'window_squeeze',
    'window_prune_counts', 'max_window_prune', 'window_real',
    'window_keep_mask', 'layout_token_counts', 'prune_rules'
]

# As squeeze._cosine: tokens are divided by their norm plus this.
_EPS = 1e-6


def _batch_labels(labels: Tensor, num: int) -> Tensor:
    """``(nW, N)`` labels of one image repeated for ``num // nW`` images."""
    return labels.repeat(num // labels.shape[0], 1)


def _num_groups(labels: Tensor) -> Tensor:
    """``(nW, )`` distinct labels in each window."""
    present = labels.new_zeros(labels.shape[0], int(labels.max()) + 1)
    return present.scatter_(1, labels, 1).sum(1)  # int: jit rejects bool


def window_real(labels: Optional[Tensor], num: int,
                dtype: torch.dtype) -> Optional[Tensor]:
    """``(num, N)`` 1 for image cells and 0 for padding of ``num`` windows
    (``num // nW`` images of this layout); None without labels."""
    if labels is None:
        return None
    return (labels % 2 == 0).to(dtype).repeat(num // labels.shape[0], 1)


def window_keep_mask(keep_idx: Tensor,
                     num_tokens: int,
                     soft: Optional[Tensor] = None,
                     dtype: torch.dtype = torch.float32) -> Tensor:
    """``(B * nW, N)`` keep policy of a window split: 1 at ``keep_idx``,
    with ``soft``'s straight-through gradient when given (as
    :func:`~.gumbel.sample_keep`)."""
    keep = torch.zeros(keep_idx.shape[0], num_tokens, dtype=dtype,
                       device=keep_idx.device).scatter_(1, keep_idx, 1.)
    if soft is not None:
        keep = keep + soft - soft.detach()
    return keep


@layout_constant
def _num_labels(labels: Tensor) -> int:
    """One more than the largest label (a layout constant)."""
    return int(labels.max()) + 1


@layout_constant
def window_prune_capacity(labels: Tensor) -> int:
    """How many tokens every window of this layout can prune.

    Args:
        labels (Tensor): ``(nW, ws * ws)`` labels of
            :func:`~.window.window_labels`.

    Returns:
        int: ``ws * ws`` minus the most label groups in any window (each
        group keeps one host); a :func:`~.window.layout_constant`.
    """
    return labels.shape[1] - int(_num_groups(labels).max())


def window_keep_split(scores: Tensor,
                      r: int,
                      labels: Optional[Tensor] = None,
                      layout: Optional[WindowLayout] = None
                      ) -> Tuple[Tensor, Tensor]:
    """Split every window into its kept and pruned tokens.

    Without labels this is :func:`~.topk.topk_split` with ``ws * ws - r``
    kept. With labels, ``r`` is lowered to :func:`window_prune_capacity`;
    the best scored token of every label group is kept, padding is pruned
    before real tokens, and the rest goes by score (ties to the lower
    index).

    Args:
        scores (Tensor): ``(B * nW, N)`` keep scores, higher = keep.
        r (int): tokens pruned per window, ``0 <= r < N``.
        labels (Tensor, optional): ``(nW, N)`` cell labels; None when every
            cell may host every other.
        layout (WindowLayout, optional): the layout of ``labels``, to take
            what follows from them from the layout cache.

    Returns:
        tuple[Tensor, Tensor]: ``keep_idx`` ``(B * nW, N - r')`` and
        ``prune_idx`` ``(B * nW, r')``, long, ascending (``r' <= r``).
    """
    BnW, N = scores.shape
    if labels is None:
        return topk_split(scores, N - r)
    capacity, num_labels = prune_rules(labels, layout)
    r = min(r, capacity)
    full = _batch_labels(labels, BnW)
    order = scores.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(N, device=scores.device).expand_as(order))
    best = rank.new_full((BnW, num_labels), N).scatter_reduce(
        1, full, rank, 'amin')
    leader = rank == best.gather(1, full)
    real = full % 2 == 0
    tier = 2 * leader.long() + (real & ~leader).long()  # leaders, real, pad
    # topk_split's split, the ascending index sets from a mask (no sorts)
    order = (tier * N + (N - 1 - rank)).argsort(
        dim=1, descending=True, stable=True)
    keep = torch.zeros(BnW, N, dtype=torch.bool, device=scores.device)
    keep.scatter_(1, order[:, :N - r], 1)  # int: jit trace rejects a bool
    return ascending_positions(keep, N - r), ascending_positions(~keep, r)


def window_squeeze(x: Tensor,
                   keep_idx: Tensor,
                   prune_idx: Tensor,
                   labels: Optional[Tensor] = None,
                   temperature: float = 1.,
                   prune_policy: Optional[Tensor] = None
                   ) -> Tuple[Tensor, MergePlan]:
    """TPS's squeeze in every window, hosts of the pruned token's label.

    Each pruned token goes to the kept token of its label with the highest
    cosine similarity ``c`` and is averaged into it with weight ``exp(c /
    T)`` against the host's ``e`` (:func:`~.squeeze.squeeze_tokens`;
    without labels and ``prune_policy`` this is
    :func:`~.squeeze.tps_squeeze`, up to rounding). Rows move with
    ``index_select``/``index_add_`` (:func:`~.window.add_rows`) on the flat
    windows and the cosine is
    normalised on the ``(Np, Nr)`` products, not on the tokens (cheaper on
    CPU than gathers with expanded indices).

    Args:
        x (Tensor): ``(B * nW, N, C)`` window tokens.
        keep_idx, prune_idx (Tensor): :func:`window_keep_split` (every
            pruned token's label must have a kept token).
        labels (Tensor, optional): ``(nW, N)`` cell labels.
        temperature (float): similarities are divided by it; the host weight
            stays ``e``. Defaults to 1.
        prune_policy (Tensor, optional): ``(B * nW, N)`` pruned-now values
            ``m`` (1 for the pruned tokens, with a straight-through
            gradient); a pruned token's weight becomes ``exp(m c) m``, as
            :func:`~.squeeze.squeeze_train`, so the decision gets a
            gradient. Defaults to None (``m = 1``, no gradient).

    Returns:
        tuple[Tensor, MergePlan]: ``(B * nW, N - r, C)`` squeezed kept
        tokens and the plan (pruned positions point at their host).
    """
    BnW, N, C = x.shape
    Nr, Np = keep_idx.shape[1], prune_idx.shape[1]
    offset = torch.arange(BnW, device=x.device).unsqueeze(1)
    flat = x.reshape(BnW * N, C)
    kept = flat.index_select(0, (keep_idx + offset * N).view(-1))
    pruned = flat.index_select(0, (prune_idx + offset * N).view(-1))
    kept, pruned = kept.view(BnW, Nr, C), pruned.view(BnW, Np, C)
    norm = x.norm(dim=-1) + _EPS  # as squeeze._cosine: x / (|x| + eps)
    sim = (pruned @ kept.transpose(1, 2)) / (
        norm.gather(1, prune_idx).unsqueeze(2) *
        norm.gather(1, keep_idx).unsqueeze(1) * temperature)
    if labels is not None:
        full = _batch_labels(labels, BnW)
        differ = (full.gather(1, prune_idx).unsqueeze(2) !=
                  full.gather(1, keep_idx).unsqueeze(1))
        sim = sim.masked_fill(differ, -math.inf)
    best, host = sim.max(dim=-1)
    if prune_policy is None:
        weight = best.exp()
    else:
        m = prune_policy.gather(1, prune_idx).to(best.dtype)
        weight = torch.exp(m * best) * m
    weight = weight.to(x.dtype) / math.e
    # (e x_j + sum_i w_i x_i) / (e + sum_i w_i) over each host j, as
    # (x_j + sum_i (w_i / e) x_i) / (1 + sum_i w_i / e)
    den = weight.new_ones(BnW, Nr).scatter_add(1, host, weight)
    # kept and pruned are fresh gathers: without autograd they take the
    # sums and weights in place (no copies); with autograd, sim saved them
    inplace = not (torch.is_grad_enabled() and x.requires_grad)
    weight = weight.unsqueeze(-1)
    pruned = pruned.mul_(weight) if inplace else pruned * weight
    out = add_rows(
        kept.view(BnW * Nr, C), (host + offset * Nr).view(-1),
        pruned.view(BnW * Np, C), inplace=inplace).view(BnW, Nr, C)
    scale = den.reciprocal().unsqueeze(-1)
    out = out.mul_(scale) if inplace else out * scale
    return out, squeeze_plan(keep_idx, prune_idx, host)


def window_prune_counts(labels: Tensor, r: int) -> Tuple[int, int]:
    """What :func:`window_keep_split` leaves of one image, from its layout.

    Padding is pruned first, so the counts do not depend on the features.

    Args:
        labels (Tensor): ``(nW, ws * ws)`` labels of one image.
        r (int): requested tokens pruned per window.

    Returns:
        tuple[int, int]: ``r`` as pruned and the number of non-padding
        tokens left in all windows.
    """
    nW, N = labels.shape
    r = min(r, window_prune_capacity(labels))
    pad = labels % 2 == 1
    # every padding group keeps one cell; the rest of it is pruned first
    pad_ids = torch.where(pad, labels + 1, torch.zeros_like(labels))
    pad_groups = _num_groups(pad_ids) - (~pad).any(1).long()
    pruned_pads = (pad.sum(1) - pad_groups).clamp(max=r)
    pads_left = int((pad.sum(1) - pruned_pads).sum())
    return r, nW * (N - r) - pads_left


def max_window_prune(window_size: int, shift: int = 0) -> int:
    """Largest ``r`` that every window of every input can prune (the
    smallest :func:`window_prune_capacity` over
    :func:`~.window_merge.window_layouts`)."""
    return min(
        window_prune_capacity(labels)
        for labels in window_layouts(window_size, shift))


@layout_cache
def layout_token_counts(grid: WindowGrid, r: int,
                        roles: Optional[Tuple[Tuple[int, ...],
                                              Tuple[int, ...]]] = None
                        ) -> Tuple[int, int]:
    """``r`` as removed and the non-padding tokens left in one image of
    ``grid``'s layout, computed once per layout: pruning
    (:func:`window_prune_counts`) when ``roles`` is None, else merging
    with these ``(src_idx, dst_idx)`` cells
    (:func:`~.window_merge.window_token_counts`).
    """
    labels = window_labels(grid)
    if roles is None:
        return window_prune_counts(labels, r)
    src, dst = (torch.tensor(c, dtype=torch.long) for c in roles)
    return window_token_counts(labels, r, src, dst)


def _prune_rules(labels: Tensor) -> Tuple[int, int]:
    return window_prune_capacity(labels), _num_labels(labels)


@layout_cache
def _cached_prune_rules(grid: WindowGrid, device) -> Tuple[int, int]:
    return _prune_rules(window_labels(grid, device))


def prune_rules(labels: Tensor,
                layout: Optional[WindowLayout] = None) -> Tuple[int, int]:
    """:func:`window_prune_capacity` and the number of labels (one more
    than the largest), once per layout when ``layout`` (of ``labels``) is
    given and not compiling."""
    if layout is None or torch.compiler.is_compiling():
        return _prune_rules(labels)
    return _cached_prune_rules(layout.grid, labels.device)
