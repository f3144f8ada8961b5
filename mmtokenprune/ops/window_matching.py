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
from torch import Tensor

__all__ = [
    'tome_window_roles', 'tome_window_scores', 'atme_window_roles',
    'atme_window_scores'
]

# Score of a non-touching ATME pair: below any cosine (as matching._FAR).
_FAR = -4.0


def _cosine(a: Tensor, b: Tensor, norm_a: Tensor, norm_b: Tensor) -> Tensor:
    return (a * b).sum(-1) / (norm_a * norm_b).clamp(min=1e-12)


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
