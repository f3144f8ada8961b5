"""Token merging inside Swin attention windows; the ``(H, W)`` grid survives.

After window partition the tokens are a batch of small grids,
``(B * nW, ws * ws, C)``, so each window is merged on its own (``r`` tokens
per window, the same ``r`` in every window so a batch has one shape) and
un-merged after the block: shifted windows, padding and patch merging always
see an intact grid. Which cells are sources and destinations and how pairs
score is the reducer's (:mod:`.window_matching` for ATME and ToMe); this
module is the part every reducer shares.

A window may hold cells that must not become one token:

- *shift regions*: in a shifted window, cells rolled in from the opposite
  border must not attend to each other (upstream's ``-100`` mask); a token
  made of cells from two regions would have no correct mask;
- *padding*: zero tokens added to fill the last window row/column; folding
  one into a real token would dilute its residual.

Every cell therefore gets a *label* (``2 * region + is_padding``) and a
source may only merge into a destination with the same label (forbidden
pairs score ``-inf``). Pairs of padding cells score above every real pair,
so windows spend their ``r`` on padding first (it is cropped anyway). As a
merged token's cells share one label, the label (and so the shift mask) of
a merged token is that of its anchor cell. A layout whose pieces leave some
window fewer than ``r`` usable sources merges as many as every window can
(:func:`window_capacity`; the batch keeps one shape); :func:`max_window_r`
is the ``r`` that every input size allows.
"""

import functools
import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from .matching import plan_from_best
from .token_map import MergePlan, TokenMap
from .window import (WindowGrid, WindowLayout, add_rows, layout_cache,
                     layout_constant, padding_labels, window_layout)

__all__ = [
    'window_merge_plan', 'window_merge', 'window_unmerge', 'window_capacity',
    'window_token_counts', 'window_layouts', 'max_window_r',
    'window_label_rules', 'apply_label_rules', 'window_best',
    'window_merge_best', 'unmerge_rows', 'ascending_positions'
]

# Added to padding-padding pairs: above every real pair's score.
_PAD_FIRST = 8.0


def _allowed(labels: Tensor, src_idx: Tensor, dst_idx: Tensor):
    ls, ld = labels[:, src_idx], labels[:, dst_idx]
    allowed = ls.unsqueeze(2) == ld.unsqueeze(1)
    pads = allowed & (ls % 2 == 1).unsqueeze(2)
    return allowed, pads


@layout_constant
def _label_layout(labels: Tensor, src_idx: Tensor,
                  dst_idx: Tensor) -> Tuple[Tuple[int, ...], int]:
    """The windows whose cells do not all share a label, and the capacity
    (the fewest sources with an allowed destination in any window); layout
    constants, evaluated once when compiled."""
    mixed = (labels != labels[:, :1]).any(1).nonzero().squeeze(1)
    if mixed.numel() == 0:
        return (), len(src_idx)
    allowed, _ = _allowed(labels.index_select(0, mixed), src_idx, dst_idx)
    return tuple(mixed.tolist()), int(allowed.any(2).sum(1).min())


def _label_rules(labels: Tensor, src_idx: Tensor, dst_idx: Tensor
                 ) -> Tuple[Optional[Tensor], Optional[Tensor], int]:
    mixed, capacity = _label_layout(labels, src_idx, dst_idx)
    if not mixed:
        return None, None, capacity
    mixed = torch.tensor(mixed, dtype=torch.long, device=labels.device)
    allowed, pads = _allowed(labels.index_select(0, mixed), src_idx, dst_idx)
    bonus = torch.where(allowed, pads * _PAD_FIRST, -math.inf)
    return mixed, bonus, capacity


@layout_cache
def _cached_label_rules(grid: WindowGrid, device: torch.device,
                        src: Tuple[int, ...], dst: Tuple[int, ...]):
    labels = window_layout(grid, device).labels
    as_tensor = functools.partial(
        torch.tensor, dtype=torch.long, device=device)
    return _label_rules(labels, as_tensor(src), as_tensor(dst))


def window_label_rules(labels: Tensor,
                       src_idx: Tensor,
                       dst_idx: Tensor,
                       layout: Optional[WindowLayout] = None
                       ) -> Tuple[Optional[Tensor], Optional[Tensor], int]:
    """What the labels change in the scores, a layout constant.

    Args:
        labels (Tensor): ``(nW, ws * ws)`` labels of :func:`window_labels`.
        src_idx, dst_idx (Tensor): the reducer's window roles.
        layout (WindowLayout, optional): the layout ``labels`` belong to;
            given (and not compiling), the rules are computed once per
            layout and roles and shared.

    Returns:
        tuple: the windows whose cells do not all share a label (``(M, )``
        long, None if there are none), the ``(M, Ns, Nd)`` float32 term
        added to their scores (0 for allowed pairs, ``_PAD_FIRST`` for
        padding pairs, ``-inf`` for pairs of different labels; None) and
        the capacity (see :func:`window_capacity`).
    """
    if layout is None or torch.compiler.is_compiling():
        return _label_rules(labels, src_idx, dst_idx)
    return _cached_label_rules(layout.grid, labels.device,
                               tuple(src_idx.tolist()),
                               tuple(dst_idx.tolist()))


def apply_label_rules(scores: Tensor, mixed: Optional[Tensor],
                      bonus: Optional[Tensor], num_windows: int) -> Tensor:
    """Scores with the :func:`window_label_rules` applied to the windows
    that mix labels: a new tensor (ONNX export lost an in-place write into
    a view of them).

    Args:
        scores (Tensor): ``(B * nW, Ns, Nd)``.
        mixed, bonus (Tensor, optional): of :func:`window_label_rules`.
        num_windows (int): ``nW``, windows per image.
    """
    if mixed is None:
        return scores
    BnW, Ns, Nd = scores.shape
    view = scores.view(BnW // num_windows, num_windows, Ns, Nd)
    part = view.index_select(1, mixed) + bonus.to(scores.dtype)
    return view.index_copy(1, mixed, part).view(BnW, Ns, Nd)


def window_capacity(labels: Tensor, src_idx: Tensor,
                    dst_idx: Tensor) -> int:
    """How many tokens every window of this layout can merge.

    Args:
        labels (Tensor): ``(nW, ws * ws)`` labels of :func:`window_labels`.
        src_idx, dst_idx (Tensor): the reducer's window roles, ``(Ns, )``
            and ``(Nd, )`` cell indices.

    Returns:
        int: the fewest sources with a same-label destination in any
        window; ``r`` is lowered to it by :func:`window_merge_plan`.
    """
    return _label_layout(labels, src_idx, dst_idx)[1]


@torch.no_grad()
def window_merge_plan(scores: Tensor,
                      src_idx: Tensor,
                      dst_idx: Tensor,
                      r: int,
                      labels: Optional[Tensor] = None,
                      layout: Optional[WindowLayout] = None) -> MergePlan:
    """Merge ``r`` tokens in every window, from a reducer's scores.

    Args:
        scores (Tensor): ``(B * nW, Ns, Nd)`` scores of sources against
            destinations.
        src_idx, dst_idx (Tensor): the window roles, ``(Ns, )`` and
            ``(Nd, )`` cell indices.
        r (int): tokens removed per window, ``0 <= r <= Ns``. Where padding
            or shift regions leave some window fewer sources with a
            same-label destination (see :func:`window_capacity`), every
            window merges that many instead, so the batch keeps one shape
            and no token crosses a region; :func:`max_window_r` is the
            ``r`` every layout allows.
        labels (Tensor, optional): ``(nW, ws * ws)`` cell labels of
            :func:`window_labels`; None when every cell may merge with
            every other (no shift, no padding).
        layout (WindowLayout, optional): the layout of ``labels``, to take
            their rules from the layout cache.

    Returns:
        MergePlan: from ``ws * ws`` to ``ws * ws - r`` tokens per window.
    """
    best_val, best_dst, r = window_best(scores, src_idx, dst_idx, r, labels,
                                        layout)
    BnW = scores.shape[0]
    return plan_from_best(best_val, best_dst, src_idx.expand(BnW, -1),
                          dst_idx.expand(BnW, -1), r)


def window_best(scores: Tensor,
                src_idx: Tensor,
                dst_idx: Tensor,
                r: int,
                labels: Optional[Tensor] = None,
                layout: Optional[WindowLayout] = None
                ) -> Tuple[Tensor, Tensor, int]:
    """Each source's best destination under the label rules.

    Args: as :func:`window_merge_plan`.

    Returns:
        tuple[Tensor, Tensor, int]: ``(B * nW, Ns)`` best scores, their
        ``(B * nW, Ns)`` positions in ``dst_idx`` (ties: the first) and
        ``r`` lowered to the layout's capacity.
    """
    if labels is not None:
        mixed, bonus, capacity = window_label_rules(labels, src_idx, dst_idx,
                                                    layout)
        scores = apply_label_rules(scores, mixed, bonus, labels.shape[0])
        r = min(r, capacity)
    best_val, best_dst = scores.max(dim=-1)  # ties: the first destination
    return best_val, best_dst, r


def ascending_positions(mask: Tensor, count: int) -> Tensor:
    """``(B, count)`` positions of the ``True`` entries of every row of
    ``mask`` ``(B, N)``, ascending, when every row has ``count`` of them (a
    ``nonzero`` of fixed size, without sorting)."""
    B, N = mask.shape
    # long: ONNX has no cumsum of bool
    pos = (mask.long().cumsum(1) - 1).masked_fill(~mask, count)
    out = pos.new_zeros(B, count + 1)
    out.scatter_(1, pos, torch.arange(N, device=mask.device).expand(B, N))
    return out[:, :count]


@torch.no_grad()
def _merge_maps(best_val: Tensor, best_dst: Tensor, src_idx: Tensor,
                dst_idx: Tensor, r: int, N: int):
    """``(keep_idx, old2new, merged, into)``: the kept cells and the map
    of :func:`~.matching.plan_from_best`, and the merged cells, ascending,
    with the output token each one joins."""
    BnW = best_val.shape[0]
    order = best_val.argsort(dim=-1, descending=True, stable=True)[:, :r]
    merged_src = src_idx[order]
    merged_dst = dst_idx[best_dst.gather(1, order)]
    removed = torch.zeros(BnW, N, dtype=torch.bool, device=best_val.device)
    removed.scatter_(1, merged_src, 1)  # int: jit trace rejects a bool
    kept = ~removed
    rank = kept.long().cumsum(1) - 1  # output token of each kept cell
    keep_idx = ascending_positions(kept, N - r)
    old2new = rank.scatter(1, merged_src, rank.gather(1, merged_dst))
    merged = ascending_positions(removed, r)
    return keep_idx, old2new, merged, old2new.gather(1, merged)


def window_merge_best(x: Tensor, best_val: Tensor, best_dst: Tensor,
                      src_idx: Tensor, dst_idx: Tensor,
                      r: int) -> Tuple[Tensor, TokenMap]:
    """Merge every window from its sources' best destinations:
    ``window_merge(x, plan, tokens.size)`` and the map ``tokens`` of the
    plan :func:`~.matching.plan_from_best` makes, with fewer index passes
    (no sort of the cells: the kept and merged cells come from running
    counts; the map is built, not composed with an identity).

    Args:
        x (Tensor): ``(B * nW, N, C)`` unmerged window tokens.
        best_val, best_dst (Tensor): of :func:`window_best`.
        src_idx, dst_idx (Tensor): the window roles.
        r (int): tokens merged per window.

    Returns:
        tuple[Tensor, TokenMap]: ``(B * nW, N - r, C)`` merged windows and
        the map of a window's cells onto them.
    """
    BnW, N, C = x.shape
    n = N - r
    keep_idx, old2new, merged, into = _merge_maps(best_val, best_dst,
                                                  src_idx, dst_idx, r, N)
    size = torch.ones(BnW, n, device=x.device, dtype=x.dtype)
    size.scatter_add_(1, into, torch.ones_like(merged, dtype=x.dtype))
    offset = torch.arange(BnW, device=x.device).unsqueeze(1)
    flat = x.reshape(BnW * N, C)
    out = flat.index_select(0, (keep_idx + offset * N).view(-1))
    add_rows(
        out, (into + offset * n).view(-1),
        flat.index_select(0, (merged + offset * N).view(-1)),
        inplace=True)
    out.mul_(size.reciprocal().view(-1, 1))
    ws = math.isqrt(int(N))
    tokens = TokenMap(assign=old2new, size=size, anchor=keep_idx,
                      grid=(ws, ws))
    return out.view(BnW, n, C), tokens


def window_merge(x: Tensor, plan: MergePlan, size: Tensor) -> Tensor:
    """Average each window's merged groups: ``merge_tokens(x, plan, ones)``
    for unit-size tokens, touching the unmerged tokens once.

    Args:
        x (Tensor): ``(B * nW, N, C)`` unmerged window tokens.
        plan (MergePlan): from ``N`` to ``N - r`` tokens per window.
        size (Tensor): ``(B * nW, N - r)`` group sizes (the merged
            :class:`~.token_map.TokenMap`'s ``size``).

    Returns:
        Tensor: ``(B * nW, N - r, C)``.
    """
    BnW, N, C = x.shape
    n = plan.num_out
    flat = x.reshape(BnW * N, C)
    offset = torch.arange(BnW, device=x.device).unsqueeze(1)
    out = flat.index_select(0, (plan.keep_idx + offset * N).view(-1))
    kept = torch.zeros(BnW, N, dtype=torch.bool, device=x.device)
    kept.scatter_(1, plan.keep_idx, 1)  # int: jit trace rejects a bool
    # the r merged cells of each window, ascending (a fixed-size nonzero)
    src = kept.long().argsort(dim=1, stable=True)[:, :N - n]
    dst = (plan.old2new.gather(1, src) + offset * n).view(-1)
    add_rows(
        out, dst, flat.index_select(0, (src + offset * N).view(-1)),
        inplace=True)
    out.mul_(size.reciprocal().to(x.dtype).view(-1, 1))
    return out.view(BnW, n, C)


def unmerge_rows(assign: Tensor, num_tokens: int, grid: WindowGrid,
                 index: Tuple[Tensor, Tensor]) -> Tensor:
    """``(B, H * W)`` the row of the flat merged windows ``(B * nW *
    num_tokens, C)`` that every map cell takes after un-merging and
    reversing the windows.

    Args:
        assign (Tensor): ``(B * nW, ws * ws)`` the merged
            :class:`~.token_map.TokenMap`'s ``assign``.
        num_tokens (int): tokens per merged window.
        grid (WindowGrid): the windows.
        index (tuple[Tensor, Tensor]): :func:`window_index` of ``grid``.
    """
    BnW = assign.shape[0]
    rows = assign + torch.arange(
        BnW, device=assign.device).unsqueeze(1) * num_tokens
    B = BnW // grid.num_windows
    return rows.view(B, -1).index_select(1, index[1])


def window_unmerge(x: Tensor, assign: Tensor, grid: WindowGrid,
                   index: Tuple[Tensor, Tensor]) -> Tensor:
    """Un-merge and reverse windows in one ``index_select``:
    ``window_reverse(unmerge_tokens(x, tokens), grid, index)``.

    Args:
        x (Tensor): ``(B * nW, N', C)`` merged window tokens.
        assign (Tensor): ``(B * nW, ws * ws)`` the merged
            :class:`~.token_map.TokenMap`'s ``assign``.
        grid (WindowGrid): the windows.
        index (tuple[Tensor, Tensor]): :func:`window_index` of ``grid``.

    Returns:
        Tensor: ``(B, H * W, C)``.
    """
    BnW, n, C = x.shape
    rows = unmerge_rows(assign, n, grid, index)  # (B, H * W)
    out = x.reshape(BnW * n, C).index_select(0, rows.view(-1))
    return out.view(rows.shape[0], -1, C)


def window_token_counts(labels: Tensor, r: int, src_idx: Tensor,
                        dst_idx: Tensor) -> Tuple[int, int]:
    """What :func:`window_merge_plan` leaves of one image, from its layout.

    Padding merges first, so the counts do not depend on the features.

    Args:
        labels (Tensor): ``(nW, ws * ws)`` labels of :func:`window_labels`.
        r (int): requested tokens merged per window.
        src_idx, dst_idx (Tensor): the reducer's window roles.

    Returns:
        tuple[int, int]: ``r`` as merged (see :func:`window_capacity`) and
        the number of non-padding tokens left in all windows.
    """
    nW, N = labels.shape
    r = min(r, window_capacity(labels, src_idx, dst_idx))
    allowed, _ = _allowed(labels, src_idx, dst_idx)
    pad = labels % 2 == 1
    pad_merges = (allowed.any(2) & pad[:, src_idx]).sum(1).clamp(max=r)
    pads_left = int((pad.sum(1) - pad_merges).sum())
    return r, nW * (N - r) - pads_left


def window_layouts(window_size: int, shift: int = 0):
    """Labels of every window layout an input can produce.

    Every padding (0 to ``ws - 1`` cells per side) and window position
    (first, middle and last; a lone window), with and without ``shift``:
    a capacity (:func:`window_capacity`, or the pruning one) that holds on
    all of them holds for every input size.

    Yields:
        Tensor: ``(P * nW, ws * ws)`` labels of :func:`window_labels`, one
        tensor per window count and shift.
    """
    ws = window_size
    pads = torch.arange(ws)
    for s in sorted({0, shift}):
        for nh in (1, 3):
            for nw in (1, 3):
                Hp, Wp = nh * ws, nw * ws
                rows, cols = torch.arange(Hp), torch.arange(Wp)
                # every (pad_bottom, pad_right): (ws * ws, Hp, Wp)
                pad_h = rows[None, :] >= Hp - pads[:, None]
                pad_w = cols[None, :] >= Wp - pads[:, None]
                pad = (pad_h[:, None, :, None] | pad_w[None, :, None, :])
                yield padding_labels(pad.flatten(0, 1), ws, s)


def max_window_r(window_size: int, src_idx: Tensor, dst_idx: Tensor,
                 shift: int = 0) -> int:
    """Largest ``r`` that every window of every input can merge.

    A source can only merge into a destination with its label, so a window
    whose regions or padding leave isolated cells has fewer usable sources.
    This is the smallest :func:`window_capacity` over
    :func:`window_layouts`.

    Args:
        window_size (int): ``ws``.
        src_idx, dst_idx (Tensor): the reducer's window roles.
        shift (int): the shift of shifted blocks. Defaults to 0.
    """
    return min(
        window_capacity(labels, src_idx, dst_idx)
        for labels in window_layouts(window_size, shift))
