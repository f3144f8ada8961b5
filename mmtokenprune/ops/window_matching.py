"""ATME's and ToMe's roles and scores inside Swin attention windows.

Every Swin block starts from intact ``ws x ws`` windows, so which cells are
sources and destinations is fixed per window size (and, for ATME, axis);
only the scores depend on the features. The generic rest (shift regions,
padding, capacity, the plan itself) is :mod:`.window_merge`.

- ToMe: a checkerboard split (the same as ToMe's alternating split when
  ``ws`` is odd); every pair scores its cosine.
- ATME (our reading of CAIT, as :func:`~.matching.atme_plan` on an intact
  grid): sources have an odd coordinate along ``axis`` (plus the first even
  cells up to ``N // 2``); a destination touching the source scores its
  cosine, any other one scores below every cosine, by distance.
"""
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
    """ToMe's sources and destinations of one window: a checkerboard.

    Returns:
        tuple[Tensor, Tensor]: ``src_idx`` ``(Ns, )`` and ``dst_idx``
        ``(Nd, )`` cell indices.
    """
    ws = window_size
    idx = torch.arange(ws * ws, device=device)
    src = ((idx // ws + idx % ws) % 2 == 0)
    return idx[src], idx[~src]


def tome_window_scores(metric: Tensor, src_idx: Tensor,
                       dst_idx: Tensor) -> Tensor:
    """ToMe's ``(B * nW, Ns, Nd)`` scores: the cosine of every pair.

    Args:
        metric (Tensor): ``(B * nW, ws * ws, d)`` window features.
        src_idx, dst_idx (Tensor): :func:`tome_window_roles`.
    """
    if metric.shape[1] % 2 == 1:  # odd ws: checkerboard == every other
        a, b = metric[:, 0::2], metric[:, 1::2]  # views, no gather
    else:
        a, b = metric.index_select(1, src_idx), metric.index_select(1, dst_idx)
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


def atme_window_scores(metric: Tensor, src_idx: Tensor, dst_idx: Tensor,
                       axis: int = 1) -> Tensor:
    """ATME's ``(B * nW, Ns, Nd)`` scores; cosines only where they are used
    (touching pairs): for pairs along the axis from two shifted slices of
    the windows (no gather), for the few others by gathering.

    Args:
        metric (Tensor): ``(B * nW, ws * ws, d)`` window features.
        src_idx, dst_idx (Tensor): :func:`atme_window_roles` of ``axis``.
        axis (int): pairing axis, 1 along W, 0 along H.
    """
    BnW, N, _ = metric.shape
    ws = math.isqrt(int(N))
    step = 1 if axis == 1 else ws
    flat, first, flat2, p2, q2 = _touching_pairs(ws, src_idx, dst_idx, step)
    norm = metric.norm(dim=-1)
    along = _cosine(metric[:, :N - step], metric[:, step:], norm[:, :N - step],
                    norm[:, step:])
    far = _far_scores(ws, src_idx, dst_idx).nan_to_num()
    scores = far.to(metric.dtype).view(1, -1).repeat(BnW, 1)
    scores.index_copy_(1, flat, along.index_select(1, first))
    if len(p2):
        scores.index_copy_(
            1, flat2,
            _cosine(
                metric.index_select(1, p2), metric.index_select(1, q2),
                norm.index_select(1, p2), norm.index_select(1, q2)))
    return scores.view(BnW, len(src_idx), -1)
