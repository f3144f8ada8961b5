"""Token merging inside Swin attention windows; the ``(H, W)`` grid survives.

After window partition the tokens are a batch of small grids,
``(B * nW, ws * ws, C)``, so each window is merged on its own with the
matching of :mod:`.matching` (``r`` tokens per window, the same ``r`` in
every window so a batch has one shape) and un-merged with
:func:`~.token_map.unmerge_tokens` after the block: shifted windows,
padding and patch merging always see an intact grid.

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

Roles (which cells are sources) are fixed per window and method, because
every block starts from an intact window:

- ``'ToMe'``: bipartite soft matching with a checkerboard split (the same
  as ToMe's alternating split when ``ws`` is odd), any allowed pair.
- ``'ATME'``: as :func:`~.matching.atme_plan` on an intact grid: sources
  have an odd coordinate along ``axis`` (plus the first even cells up to
  ``N // 2``); a destination touching the source scores its cosine, any
  other allowed one scores below every cosine, by distance.
"""

import functools
import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from .matching import plan_from_scores
from .token_map import MergePlan
from .window import WindowGrid, padding_labels

__all__ = [
    'METHODS', 'window_roles', 'window_merge_plan', 'window_merge',
    'window_unmerge', 'window_capacity', 'window_token_counts', 'max_window_r'
]

METHODS = ('ATME', 'ToMe')
# Score of a non-touching ATME pair: below any cosine (as matching._FAR).
_FAR = -4.0
# Added to padding-padding pairs: above every real pair's score.
_PAD_FIRST = 8.0


def window_roles(window_size: int,
                 method: str,
                 axis: int = 1,
                 device: Optional[torch.device] = None):
    """Sources, destinations and the static ATME score of one window.

    Returns:
        tuple[Tensor, Tensor, Tensor | None]: ``src_idx`` ``(Ns, )`` and
        ``dst_idx`` ``(Nd, )`` cell indices, and for ATME the ``(Ns, Nd)``
        score of non-touching pairs (NaN where the pair touches).
    """
    if method not in METHODS:
        raise ValueError(f'in-window merging supports {list(METHODS)}; got '
                         f'{method!r}.')
    ws = window_size
    n = ws * ws
    idx = torch.arange(n, device=device)
    ys, xs = idx // ws, idx % ws
    if method == 'ToMe':
        src = ((ys + xs) % 2 == 0)
        return idx[src], idx[~src], None
    coord = xs if axis == 1 else ys
    roles = (1 - (coord & 1)).argsort(stable=True)  # odd first
    src_idx, dst_idx = roles[:n // 2], roles[n // 2:]
    dist = ((ys[src_idx, None] - ys[None, dst_idx]).abs() +
            (xs[src_idx, None] - xs[None, dst_idx]).abs()).float()
    far = _FAR - dist / (2 * ws + 1)
    return src_idx, dst_idx, far.masked_fill(dist == 1, float('nan'))


def _allowed(labels: Tensor, src_idx: Tensor, dst_idx: Tensor):
    ls, ld = labels[:, src_idx], labels[:, dst_idx]
    allowed = ls.unsqueeze(2) == ld.unsqueeze(1)
    pads = allowed & (ls % 2 == 1).unsqueeze(2)
    return allowed, pads


def _cosine(a: Tensor, b: Tensor, norm_a: Tensor, norm_b: Tensor) -> Tensor:
    return (a * b).sum(-1) / (norm_a * norm_b).clamp(min=1e-12)


def _touching_pairs(ws: int, src_idx: Tensor, dst_idx: Tensor, step: int):
    """Static ATME pairs that touch, split by orientation: the flat
    ``(Ns, Nd)`` score positions and first cells of the pairs ``(p, p +
    step)`` along the pairing axis, then positions and both cells of the
    other (few) pairs."""
    sy, sx = src_idx // ws, src_idx % ws
    dy, dx = dst_idx // ws, dst_idx % ws
    ddy, ddx = dy[None, :] - sy[:, None], dx[None, :] - sx[:, None]
    i, j = ((ddy.abs() + ddx.abs()) == 1).nonzero(as_tuple=True)
    p, q = src_idx[i], dst_idx[j]
    flat = i * len(dst_idx) + j
    along = (p - q).abs() == step
    return (flat[along], torch.minimum(p, q)[along], flat[~along], p[~along],
            q[~along])


def _atme_scores(metric: Tensor, ws: int, axis: int):
    """ATME's ``(B * nW, Ns, Nd)`` scores; cosines only where they are
    used (touching pairs): for pairs along the axis from two shifted
    slices of the windows (no gather), for the few others by gathering."""
    BnW, N, _ = metric.shape
    src_idx, dst_idx, far = window_roles(ws, 'ATME', axis, metric.device)
    step = 1 if axis == 1 else ws
    flat, first, flat2, p2, q2 = _touching_pairs(ws, src_idx, dst_idx, step)
    norm = metric.norm(dim=-1)
    along = _cosine(metric[:, :N - step], metric[:, step:], norm[:, :N - step],
                    norm[:, step:])
    scores = far.nan_to_num().to(metric.dtype).view(1, -1).repeat(BnW, 1)
    scores.index_copy_(1, flat, along.index_select(1, first))
    if len(p2):
        scores.index_copy_(
            1, flat2,
            _cosine(
                metric.index_select(1, p2), metric.index_select(1, q2),
                norm.index_select(1, p2), norm.index_select(1, q2)))
    return scores.view(BnW, len(src_idx), -1), src_idx, dst_idx


def _tome_scores(metric: Tensor, ws: int):
    """ToMe's ``(B * nW, Ns, Nd)`` scores: cosine of every pair."""
    src_idx, dst_idx, _ = window_roles(ws, 'ToMe', 1, metric.device)
    if ws % 2 == 1:  # checkerboard == alternating cells: views, no gather
        a, b = metric[:, 0::2], metric[:, 1::2]
    else:
        a, b = metric.index_select(1, src_idx), metric.index_select(1, dst_idx)
    norm = a.norm(dim=-1).unsqueeze(2) * b.norm(dim=-1).unsqueeze(1)
    scores = (a @ b.transpose(1, 2)) / norm.clamp(min=1e-12)
    return scores, src_idx, dst_idx


def _apply_labels(scores: Tensor, labels: Tensor, src_idx: Tensor,
                  dst_idx: Tensor) -> int:
    """In place: forbid pairs of different labels (``-inf``) and favour
    padding pairs, in the windows whose cells do not all share a label.

    Returns:
        int: the capacity, the fewest sources with an allowed destination
        in any window.
    """
    nW, (BnW, Ns, Nd) = labels.shape[0], scores.shape
    mixed = (labels != labels[:, :1]).any(1).nonzero().squeeze(1)
    if mixed.numel() == 0:
        return Ns
    allowed, pads = _allowed(labels.index_select(0, mixed), src_idx, dst_idx)
    view = scores.view(BnW // nW, nW, Ns, Nd)
    part = view.index_select(1, mixed)
    view.index_copy_(1, mixed,
                     torch.where(allowed, part + pads * _PAD_FIRST, -math.inf))
    return int(allowed.any(2).sum(1).min())


def window_capacity(labels: Tensor, method: str, axis: int = 1) -> int:
    """How many tokens every window of this layout can merge.

    Args:
        labels (Tensor): ``(nW, ws * ws)`` labels of :func:`window_labels`.
        method (str): ``'ATME'`` or ``'ToMe'``.
        axis (int): ATME pairing axis.

    Returns:
        int: the fewest sources with a same-label destination in any
        window; ``r`` is lowered to it by :func:`window_merge_plan`.
    """
    ws = math.isqrt(labels.shape[1])
    src_idx, dst_idx, _ = window_roles(ws, method, axis, labels.device)
    scores = labels.new_zeros(
        labels.shape[0], len(src_idx), len(dst_idx), dtype=torch.float32)
    return _apply_labels(scores, labels, src_idx, dst_idx)


@torch.no_grad()
def window_merge_plan(metric: Tensor,
                      r: int,
                      method: str,
                      axis: int = 1,
                      labels: Optional[Tensor] = None) -> MergePlan:
    """Merge ``r`` tokens in every window.

    Args:
        metric (Tensor): ``(B * nW, ws * ws, d)`` features compared by
            cosine similarity.
        r (int): tokens removed per window, ``0 <= r <= ws * ws // 2``.
            Where padding or shift regions leave some window fewer
            sources with a same-label destination (see
            :func:`window_capacity`), every window merges that many
            instead, so the batch keeps one shape and no token crosses a
            region; :func:`max_window_r` is the ``r`` every layout allows.
        method (str): ``'ATME'`` or ``'ToMe'``.
        axis (int): ATME pairing axis, 1 along W, 0 along H.
        labels (Tensor, optional): ``(nW, ws * ws)`` cell labels of
            :func:`window_labels`; None when every cell may merge with
            every other (no shift, no padding).

    Returns:
        MergePlan: from ``ws * ws`` to ``ws * ws - r`` tokens per window.
    """
    ws = math.isqrt(metric.shape[1])
    if method == 'ATME':
        scores, src_idx, dst_idx = _atme_scores(metric, ws, axis)
    elif method == 'ToMe':
        scores, src_idx, dst_idx = _tome_scores(metric, ws)
    else:
        raise ValueError(f'in-window merging supports {list(METHODS)}; got '
                         f'{method!r}.')
    if labels is not None:
        r = min(r, _apply_labels(scores, labels, src_idx, dst_idx))
    BnW = metric.shape[0]
    return plan_from_scores(scores, src_idx.expand(BnW, -1),
                            dst_idx.expand(BnW, -1), r)


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
    src = (~kept).nonzero()[:, 1].view(BnW, N - n)  # r per window
    dst = (plan.old2new.gather(1, src) + offset * n).view(-1)
    out.index_add_(0, dst, flat.index_select(0, (src + offset * N).view(-1)))
    out.mul_(size.reciprocal().to(x.dtype).view(-1, 1))
    return out.view(BnW, n, C)


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
    rows = assign + torch.arange(BnW, device=x.device).unsqueeze(1) * n
    B = BnW // grid.num_windows
    rows = rows.view(B, -1).index_select(1, index[1])  # (B, H * W)
    out = x.reshape(BnW * n, C).index_select(0, rows.view(-1))
    return out.view(B, -1, C)


def window_token_counts(labels: Tensor,
                        r: int,
                        method: str,
                        axis: int = 1) -> Tuple[int, int]:
    """What :func:`window_merge_plan` leaves of one image, from its layout.

    Padding merges first, so the counts do not depend on the features.

    Args:
        labels (Tensor): ``(nW, ws * ws)`` labels of :func:`window_labels`.
        r (int): requested tokens merged per window.
        method (str): ``'ATME'`` or ``'ToMe'``.
        axis (int): ATME pairing axis.

    Returns:
        tuple[int, int]: ``r`` as merged (see :func:`window_capacity`) and
        the number of non-padding tokens left in all windows.
    """
    nW, N = labels.shape
    r = min(r, window_capacity(labels, method, axis))
    src_idx, dst_idx, _ = window_roles(
        math.isqrt(N), method, axis, labels.device)
    allowed, _ = _allowed(labels, src_idx, dst_idx)
    pad = labels % 2 == 1
    pad_merges = (allowed.any(2) & pad[:, src_idx]).sum(1).clamp(max=r)
    pads_left = int((pad.sum(1) - pad_merges).sum())
    return r, nW * (N - r) - pads_left


@functools.lru_cache(maxsize=None)
def max_window_r(window_size: int,
                 method: str,
                 axis: int = 1,
                 shift: int = 0) -> int:
    """Largest ``r`` that every window of every input can merge.

    A source can only merge into a destination with its label, so a window
    whose regions or padding leave isolated cells has fewer usable sources.
    This enumerates every padding (0 to ``ws - 1`` cells per side) and
    window position (first, middle and last; a lone window) with and
    without ``shift`` and returns the smallest number of usable sources.
    """
    ws = window_size
    best = ws * ws
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
                labels = padding_labels(pad.flatten(0, 1), ws, s)
                best = min(best, window_capacity(labels, method, axis))
    return best
