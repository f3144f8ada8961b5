"""ATME's and ToMe's roles and scores inside Swin attention windows.

Every Swin block starts from intact ``ws x ws`` windows, so which cells are
sources and destinations is fixed per window size (and, for ATME, axis);
only the scores depend on the features. The generic rest (shift regions,
padding, capacity, the plan itself) is :mod:`.window_merge`.

- ToMe (no official code for windows): the official alternation applied
  to the window's flat sequence (a checkerboard when ``ws`` is odd); every
  pair scores its cosine.
- ATME (our reading of CAIT, as :func:`~.matching.atme_plan` on an intact
  grid): sources have an odd coordinate along ``axis`` (plus the first even
  cells up to ``N // 2``); a destination touching the source scores its
  cosine, any other one scores below every cosine, by distance.
"""
import functools
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .window import layout_cache

__all__ = [
    'tome_window_roles', 'tome_window_scores', 'atme_window_roles',
    'atme_window_scores', 'atme_window_best'
]

# Score of a non-touching ATME pair: below any cosine (as matching._FAR).
_FAR = -4.0


def _cosine(a: Tensor, b: Tensor, norm_a: Tensor, norm_b: Tensor) -> Tensor:
    return (a * b).sum(-1) / (norm_a * norm_b).clamp(min=1e-12)


def _row_dots(a: Tensor, b: Tensor, rows: int = 2048) -> Tensor:
    """``(a * b).sum(-1)`` of ``(M, C)`` rows, in chunks of ``rows``: the
    same values, without an ``(M, C)`` temporary (memory-bound at large
    batches: 4-5x slower for Swin-T's first stage at batch 8). One
    expression while compiling or tracing."""
    M = a.shape[0]
    if M <= rows or torch.compiler.is_compiling() or \
            torch.jit.is_tracing():
        return (a * b).sum(-1)
    return torch.cat([(a[i:i + rows] * b[i:i + rows]).sum(-1)
                      for i in range(0, M, rows)])


def tome_window_roles(window_size: int,
                      device: Optional[torch.device] = None
                      ) -> Tuple[Tensor, Tensor]:
    """ToMe's sources and destinations of one window: the official
    alternation over a sequence, here the window's flat ``ws * ws`` cells
    (no extra tokens): even positions are sources. On an odd ``ws`` this is
    a checkerboard, on an even one alternate columns.

    Returns:
        tuple[Tensor, Tensor]: ``src_idx`` ``(Ns, )`` and ``dst_idx``
        ``(Nd, )`` cell indices.
    """
    idx = torch.arange(window_size * window_size, device=device)
    src = idx % 2 == 0
    return idx[src], idx[~src]


def tome_window_scores(metric: Tensor, src_idx: Tensor,
                       dst_idx: Tensor) -> Tensor:
    """ToMe's ``(B * nW, Ns, Nd)`` scores: the cosine of every pair.

    Args:
        metric (Tensor): ``(B * nW, ws * ws, d)`` window features.
        src_idx, dst_idx (Tensor): :func:`tome_window_roles`.
    """
    a, b = metric[:, 0::2], metric[:, 1::2]  # the roles' cells, as views
    norm = a.norm(dim=-1).unsqueeze(2) * b.norm(dim=-1).unsqueeze(1)
    return (a @ b.transpose(1, 2)) / norm.clamp(min=1e-12)


def atme_window_roles(window_size: int,
                      axis: int = 1,
                      device: Optional[torch.device] = None
                      ) -> Tuple[Tensor, Tensor]:
    """ATME's sources (odd coordinate along ``axis`` first) and
    destinations of one window.

    Returns:
        tuple[Tensor, Tensor]: ``src_idx`` ``(N // 2, )`` and ``dst_idx``
        cell indices.
    """
    ws = window_size
    n = ws * ws
    idx = torch.arange(n, device=device)
    coord = idx % ws if axis == 1 else idx // ws
    roles = (1 - (coord & 1)).argsort(stable=True)  # odd first
    return roles[:n // 2], roles[n // 2:]


def _far_scores(ws: int, src_idx: Tensor, dst_idx: Tensor) -> Tensor:
    """``(Ns, Nd)`` score of non-touching pairs, NaN where they touch."""
    ys, xs = src_idx // ws, src_idx % ws
    yd, xd = dst_idx // ws, dst_idx % ws
    dist = ((ys[:, None] - yd[None, :]).abs() +
            (xs[:, None] - xd[None, :]).abs()).float()
    far = _FAR - dist / (2 * ws + 1)
    return far.masked_fill(dist == 1, float('nan'))


def _touching_pairs(ws: int, axis: int) -> Tuple[list, ...]:
    """Static ATME pairs that touch, in plain Python (no data-dependent
    ops), split by orientation: the flat ``(Ns, Nd)`` score positions and
    first cells of the pairs ``(p, p + step)`` along the pairing axis, then
    positions and both cells of the other (few) pairs."""
    n, step = ws * ws, 1 if axis == 1 else ws
    coord = [i % ws if axis == 1 else i // ws for i in range(n)]
    roles = [i for i in range(n) if coord[i] % 2] + \
        [i for i in range(n) if not coord[i] % 2]
    src, dst = roles[:n // 2], roles[n // 2:]
    along, other = ([], []), ([], [], [])
    for i, p in enumerate(src):
        for j, q in enumerate(dst):
            if abs(p // ws - q // ws) + abs(p % ws - q % ws) != 1:
                continue
            if abs(p - q) == step:
                along[0].append(i * len(dst) + j)
                along[1].append(min(p, q))
            else:
                for k, v in enumerate((i * len(dst) + j, p, q)):
                    other[k].append(v)
    return along + other


def _make_window_tables(ws: int, axis: int,
                        device: Optional[torch.device]) -> Tuple[Tensor, ...]:
    src_idx, dst_idx = atme_window_roles(ws, axis, device)
    far = _far_scores(ws, src_idx, dst_idx).nan_to_num().view(-1)
    return tuple(
        torch.tensor(t, dtype=torch.long, device=device)
        for t in _touching_pairs(ws, axis)) + (far, )


_cached_window_tables = functools.lru_cache(maxsize=16)(_make_window_tables)


def _window_tables(ws: int, axis: int,
                   device: Optional[torch.device]) -> Tuple[Tensor, ...]:
    """Everything about ATME's scores that depends only on the window:
    the touching pairs of :func:`_touching_pairs` as tensors and the
    ``(Ns * Nd, )`` far-score template (0 where pairs touch); cached per
    window size, axis and device in eager mode."""
    if torch.compiler.is_compiling():
        return _make_window_tables(ws, axis, device)
    return _cached_window_tables(ws, axis, device)


def atme_window_scores(metric: Tensor, src_idx: Tensor, dst_idx: Tensor,
                       axis: int = 1) -> Tensor:
    """ATME's ``(B * nW, Ns, Nd)`` scores; cosines only where they are used
    (touching pairs, at most four per source, fixed per window size): for
    pairs along the axis from two shifted slices of the windows (no
    gather), for the few others by gathering. The rest is a per-window-size
    template, so the cost is ``O(ws^2 * d)`` per window for the cosines
    plus the ``Ns x Nd`` scores :func:`~.window_merge.window_merge_plan`
    takes (constant per window: linear in the tokens).

    Args:
        metric (Tensor): ``(B * nW, ws * ws, d)`` window features.
        src_idx, dst_idx (Tensor): :func:`atme_window_roles` of ``axis``.
        axis (int): pairing axis, 1 along W, 0 along H.
    """
    BnW, N, _ = metric.shape
    ws = math.isqrt(int(N))
    step = 1 if axis == 1 else ws
    flat, first, flat2, p2, q2, far = _window_tables(ws, axis, metric.device)
    if far.numel() != src_idx.numel() * dst_idx.numel():
        raise ValueError('atme_window_scores takes the roles of '
                         f'atme_window_roles({ws}, axis={axis}).')
    norm = metric.norm(dim=-1)
    along = _cosine(metric[:, :N - step], metric[:, step:], norm[:, :N - step],
                    norm[:, step:])
    scores = far.to(metric.dtype).view(1, -1).repeat(BnW, 1)
    scores.index_copy_(1, flat, along.index_select(1, first))
    if p2.numel():
        scores.index_copy_(
            1, flat2,
            _cosine(
                metric.index_select(1, p2), metric.index_select(1, q2),
                norm.index_select(1, p2), norm.index_select(1, q2)))
    return scores.view(BnW, len(src_idx), -1)


@functools.lru_cache(maxsize=16)
def _candidate_lists(ws: int, axis: int) -> Tuple[list, list, list]:
    """Each ATME source's candidate destinations, in plain Python.

    A source's best destination over the whole ``(Ns, Nd)`` score row of a
    window whose cells share one label is its best *touching* destination
    (cosines are at least -1, non-touching pairs score below ``_FAR``),
    or, where no destination touches it, the best far one (a constant).
    So each source gets ``K`` candidates, in destination order (ties go to
    the first, as ``max`` over the row), padded by repeating the last.

    Returns:
        tuple[list, list, list]: per source and candidate, where its value
        is in :func:`atme_window_best`'s value table (``p`` for the pair
        ``(p, p + step)`` along the axis, ``N + k`` for the ``k``-th other
        touching pair, ``N + P + f`` for the ``f``-th far constant), its
        destination position in ``dst_idx``, and the distances of the far
        candidates.
    """
    n, step = ws * ws, 1 if axis == 1 else ws
    _, _, _, p2, q2 = _touching_pairs(ws, axis)
    coord = [i % ws if axis == 1 else i // ws for i in range(n)]
    roles = [i for i in range(n) if coord[i] % 2] + \
        [i for i in range(n) if not coord[i] % 2]
    src, dst = roles[:n // 2], roles[n // 2:]
    others = {(p, q): k for k, (p, q) in enumerate(zip(p2, q2))}
    values, dsts, far = [], [], []
    for p in src:
        cand = []
        for j, q in enumerate(dst):
            d = abs(p // ws - q // ws) + abs(p % ws - q % ws)
            if d != 1:
                continue
            if abs(p - q) == step:
                cand.append((j, min(p, q)))
            else:
                cand.append((j, n + others[(p, q)]))
        if not cand:  # the nearest destination (the first of equals)
            j = min(range(len(dst)),
                    key=lambda j: abs(p // ws - dst[j] // ws) +
                    abs(p % ws - dst[j] % ws))
            far.append(abs(p // ws - dst[j] // ws) + abs(p % ws - dst[j] % ws))
            cand.append((j, n + len(p2) + len(far) - 1))
        values.append([v for _, v in cand])
        dsts.append([j for j, _ in cand])
    K = max(len(v) for v in values)
    values = [v + v[-1:] * (K - len(v)) for v in values]
    dsts = [d + d[-1:] * (K - len(d)) for d in dsts]
    return values, dsts, far


@layout_cache
def _candidate_tables(ws: int, axis: int,
                      device: Optional[torch.device]) -> Tuple[Tensor, ...]:
    values, dsts, far = _candidate_lists(ws, axis)
    _, _, _, p2, q2 = _touching_pairs(ws, axis)
    as_long = functools.partial(torch.tensor, dtype=torch.long, device=device)
    # as _far_scores computes them (float32), so the values are equal
    far = _FAR - torch.tensor(far, device=device).float() / (2 * ws + 1)
    return (as_long(values).view(-1), as_long(dsts), as_long(p2),
            as_long(q2), far)


def atme_window_best(metric: Tensor,
                     src_idx: Tensor,
                     dst_idx: Tensor,
                     axis: int = 1,
                     mixed: Optional[Tensor] = None,
                     bonus: Optional[Tensor] = None,
                     num_windows: int = 1) -> Tuple[Tensor, Tensor]:
    """Each source's best destination: ``atme_window_scores(...)``, with
    the label rules on the windows ``mixed``, then ``max`` over the
    destinations, without the ``(Ns, Nd)`` score matrices of the windows
    whose cells share one label (their sources take the best of at most
    four touching destinations, see :func:`_candidate_lists`).

    Args:
        metric (Tensor): ``(B * nW, ws * ws, d)`` window features.
        src_idx, dst_idx (Tensor): :func:`atme_window_roles` of ``axis``.
        axis (int): pairing axis, 1 along W, 0 along H.
        mixed, bonus (Tensor, optional): the windows that mix labels and
            their score terms
            (:func:`~.window_merge.window_label_rules`).
        num_windows (int): ``nW``, windows per image (with ``mixed``).

    Returns:
        tuple[Tensor, Tensor]: ``(B * nW, Ns)`` best scores and their
        positions in ``dst_idx`` (ties: the first).
    """
    BnW, N, C = metric.shape
    ws = math.isqrt(int(N))
    step = 1 if axis == 1 else ws
    values, dsts, p2, q2, far = _candidate_tables(ws, axis, metric.device)
    Ns = dsts.shape[0]
    if Ns != src_idx.numel():
        raise ValueError('atme_window_best takes the roles of '
                         f'atme_window_roles({ws}, axis={axis}).')
    norm = metric.norm(dim=-1)
    flat, nflat = metric.reshape(BnW * N, C), norm.view(-1)
    # pairs (p, p + step) of the flat windows; those across windows unused
    M = BnW * N - step
    along = _row_dots(flat[:M], flat[step:]) / (
        nflat[:M] * nflat[step:]).clamp(min=1e-12)  # as _cosine
    table = [F.pad(along, (0, step)).view(BnW, N)]
    if p2.numel():
        table.append(
            _cosine(
                metric.index_select(1, p2), metric.index_select(1, q2),
                norm.index_select(1, p2), norm.index_select(1, q2)))
    if far.numel():
        table.append(far.to(metric.dtype).expand(BnW, -1))
    cand = torch.cat(table, 1).index_select(1, values).view(BnW, Ns, -1)
    best_val, k = cand.max(dim=-1)  # candidates in destination order
    K = cand.shape[2]
    base = torch.arange(Ns, device=metric.device) * K
    best_dst = dsts.view(-1)[k + base]
    if mixed is not None:  # the full rows, with the label rules
        B = BnW // num_windows
        rows = (torch.arange(B, device=metric.device).unsqueeze(1) *
                num_windows + mixed).view(-1)
        # atme_window_scores of these windows, from the cosines above
        flat_pos, first, flat2, _, _, template = _window_tables(
            ws, axis, metric.device)
        scores = template.to(metric.dtype).view(1, -1).repeat(
            rows.numel(), 1)
        scores.index_copy_(
            1, flat_pos, table[0].index_select(0, rows).index_select(1, first))
        if p2.numel():
            scores.index_copy_(1, flat2, table[1].index_select(0, rows))
        scores = scores.view(B, -1, Ns, dst_idx.numel()) + bonus.to(
            scores.dtype)
        val, idx = scores.flatten(0, 1).max(dim=-1)
        best_val = best_val.index_copy(0, rows, val)
        best_dst = best_dst.index_copy(0, rows, idx)
    return best_val, best_dst
