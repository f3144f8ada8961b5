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
a merged token is that of its anchor cell. :func:`max_window_r` is the
largest ``r`` every window of every input size can merge under this rule.

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
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .matching import plan_from_scores
from .token_map import MergePlan

__all__ = [
    'WindowGrid', 'window_partition', 'window_reverse', 'window_labels',
    'window_roles', 'window_merge_plan', 'max_window_r', 'region_bias',
    'METHODS'
]

METHODS = ('ATME', 'ToMe')
# Score of a non-touching ATME pair: below any cosine (as matching._FAR).
_FAR = -4.0
# Added to padding-padding pairs: above every real pair's score.
_PAD_FIRST = 8.0
# Upstream's additive mask between shift regions (mmpretrain ShiftWindowMSA).
REGION_MASK = -100.0


@dataclass(frozen=True)
class WindowGrid:
    """How an ``H x W`` map is padded, shifted and cut into windows.

    Attributes:
        hw (tuple[int, int]): the unpadded map ``(H, W)``.
        window_size (int): window side ``ws``.
        shift (int): cyclic shift (0 for regular windows).
    """
    hw: Tuple[int, int]
    window_size: int
    shift: int = 0

    @property
    def padded(self) -> Tuple[int, int]:
        ws = self.window_size
        return tuple(int(math.ceil(s / ws)) * ws for s in self.hw)

    @property
    def num_windows(self) -> int:
        Hp, Wp = self.padded
        return (Hp // self.window_size) * (Wp // self.window_size)

    @property
    def area(self) -> int:
        return self.window_size**2

    @property
    def has_regions(self) -> bool:
        """Whether some window holds padding or several shift regions."""
        return self.shift > 0 or self.padded != tuple(self.hw)


def _partition(x: Tensor, ws: int) -> Tensor:
    B, Hp, Wp, C = x.shape
    x = x.view(B, Hp // ws, ws, Wp // ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, C)


def window_partition(x: Tensor, grid: WindowGrid) -> Tensor:
    """Pad (zeros), shift and cut ``(B, H * W, C)`` into windows.

    Returns:
        Tensor: ``(B * nW, ws * ws, C)``, windows of one image together,
        in row-major window order (as upstream's ``window_partition``).
    """
    B, L, C = x.shape
    (H, W), (Hp, Wp) = grid.hw, grid.padded
    x = x.view(B, H, W, C)
    if (Hp, Wp) != (H, W):
        x = F.pad(x, (0, 0, 0, Wp - W, 0, Hp - H))
    if grid.shift > 0:
        x = torch.roll(x, shifts=(-grid.shift, -grid.shift), dims=(1, 2))
    return _partition(x, grid.window_size)


def window_reverse(windows: Tensor, grid: WindowGrid) -> Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, ws * ws, C)`` to
    ``(B, H * W, C)`` (shift undone, padding cropped)."""
    ws, (H, W), (Hp, Wp) = grid.window_size, grid.hw, grid.padded
    C = windows.shape[-1]
    x = windows.view(-1, Hp // ws, Wp // ws, ws, ws, C)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, Hp, Wp, C)
    if grid.shift > 0:
        x = torch.roll(x, shifts=(grid.shift, grid.shift), dims=(1, 2))
    if (Hp, Wp) != (H, W):
        x = x[:, :H, :W]
    return x.reshape(-1, H * W, C)


def _region_labels(pad: Tensor, ws: int, shift: int) -> Tensor:
    """Labels of ``(P, Hp, Wp)`` padding masks (before the shift), cut into
    windows: ``(P * nW, ws * ws)``."""
    P, Hp, Wp = pad.shape
    region = torch.zeros(Hp, Wp, dtype=torch.long, device=pad.device)
    if shift > 0:
        pad = torch.roll(pad, shifts=(-shift, -shift), dims=(1, 2))
        # bands of upstream's slices (0, -ws), (-ws, -shift), (-shift, None)
        rows = torch.arange(Hp, device=pad.device)
        cols = torch.arange(Wp, device=pad.device)
        band_h = (rows >= Hp - ws).long() + (rows >= Hp - shift).long()
        band_w = (cols >= Wp - ws).long() + (cols >= Wp - shift).long()
        region = band_h[:, None] * 3 + band_w[None, :]
    labels = 2 * region + pad.long()
    return _partition(labels.unsqueeze(-1), ws)[..., 0]


def window_labels(grid: WindowGrid,
                  device: Optional[torch.device] = None) -> Tensor:
    """Label of every window cell: ``2 * shift_region + is_padding``.

    Shift regions are numbered as in upstream's ``get_attn_mask`` (0..8 on
    the padded, shifted map); padding is marked before the shift, i.e.
    where the zeros really are.

    Returns:
        Tensor: ``(nW, ws * ws)`` long.
    """
    (H, W), (Hp, Wp) = grid.hw, grid.padded
    rows = torch.arange(Hp, device=device)
    cols = torch.arange(Wp, device=device)
    pad = (rows[:, None] >= H) | (cols[None, :] >= W)
    return _region_labels(pad[None], grid.window_size, grid.shift)


def region_bias(labels: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Upstream's shift mask between tokens of the given labels.

    Args:
        labels (Tensor): ``(..., N)`` labels of :func:`window_labels` (of
            the tokens' anchor cells).

    Returns:
        Tensor: ``(..., N, N)``, ``-100`` between different shift regions
        (padding does not matter, as upstream), else 0.
    """
    region = labels // 2
    differ = region.unsqueeze(-1) != region.unsqueeze(-2)
    return differ.to(dtype) * REGION_MASK


def window_roles(window_size: int, method: str, axis: int = 1,
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


@torch.no_grad()
def window_merge_plan(metric: Tensor, r: int, method: str, axis: int = 1,
                      labels: Optional[Tensor] = None) -> MergePlan:
    """Merge ``r`` tokens in every window.

    Args:
        metric (Tensor): ``(B * nW, ws * ws, d)`` features compared by
            cosine similarity.
        r (int): tokens removed per window, ``0 <= r <= ws * ws // 2``
            (and at most :func:`max_window_r` when ``labels`` has several
            labels in a window).
        method (str): ``'ATME'`` or ``'ToMe'``.
        axis (int): ATME pairing axis, 1 along W, 0 along H.
        labels (Tensor, optional): ``(nW, ws * ws)`` cell labels of
            :func:`window_labels`; None when every cell may merge with
            every other (no shift, no padding).

    Returns:
        MergePlan: from ``ws * ws`` to ``ws * ws - r`` tokens per window.
    """
    BnW, N, _ = metric.shape
    ws = math.isqrt(N)
    src_idx, dst_idx, far = window_roles(ws, method, axis, metric.device)
    m = F.normalize(metric, dim=-1)
    scores = m[:, src_idx] @ m[:, dst_idx].transpose(1, 2)
    if far is not None:
        scores = torch.where(far.isnan(), scores, far.to(scores.dtype))
    if labels is not None:
        nW = labels.shape[0]
        allowed, pads = _allowed(labels, src_idx, dst_idx)
        scores = scores.view(BnW // nW, nW, *scores.shape[1:])
        scores = (scores + pads * _PAD_FIRST).masked_fill(
            ~allowed, float('-inf')).flatten(0, 1)
    return plan_from_scores(scores, src_idx.expand(BnW, -1),
                            dst_idx.expand(BnW, -1), r)


@functools.lru_cache(maxsize=None)
def max_window_r(window_size: int, method: str, axis: int = 1,
                 shift: int = 0) -> int:
    """Largest ``r`` that every window of every input can merge.

    A source can only merge into a destination with its label, so a window
    whose regions or padding leave isolated cells has fewer usable sources.
    This enumerates every padding (0 to ``ws - 1`` cells per side) and
    window position (first, middle and last; a lone window) with and
    without ``shift`` and returns the smallest number of usable sources.
    """
    ws = window_size
    src_idx, dst_idx, _ = window_roles(ws, method, axis)
    best = len(src_idx)
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
                labels = _region_labels(pad.flatten(0, 1), ws, s)
                allowed, _ = _allowed(labels, src_idx, dst_idx)
                best = min(best, int(allowed.any(2).sum(1).min()))
    return best
