"""Token matching: ToMe's bipartite soft matching and ATME.

Both split the current tokens into *sources* and *destinations*, let every
source pick its most similar destination, and fold the ``r`` sources with
the best matches into their destinations. They differ in how the split is
made and which pairs may match:

- ToMe (Bolya et al., ICLR 2023, https://arxiv.org/abs/2210.09461):
  alternate tokens by sequence position (extra tokens included, as the
  official code), any pair may match; the merged sequence is
  ``[extras, unmerged sources, destinations]``.
- ATME (CAIT, https://arxiv.org/abs/2309.15755; **our reading** of the
  abstract, the method section is not available): sources and destinations
  alternate by the parity of each token's anchor cell along one axis
  (W, then H, ...), and a source may only merge into a destination whose
  region touches its own on the original grid, so every merged token covers
  a connected image region. Merging is asymmetric: a source is absorbed
  into a destination (size-weighted), never the reverse, and a source never
  receives tokens, so one step has no chains. Only touching pairs are
  scored, read off the 4-neighbour cell pairs of the merge map: linear in
  the grid, where ToMe's all-pairs matrix is quadratic in the tokens.
  Variants (``roles='checkerboard'``/``'quincunx'``, ``neighbourhood=8``)
  give a source more candidate destinations and keep regions connected
  (8-connected).

Plans are computed under ``no_grad``: they are index bookkeeping.
"""
import functools
import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .token_map import MergePlan, TokenMap

__all__ = [
    'plan_from_scores', 'plan_from_best', 'tome_plan', 'ALTERNATIONS',
    'atme_plan', 'atme_plan_dense', 'atme_level'
]

# Score given to a source-destination pair whose regions do not touch:
# below any cosine similarity, so such a pair is used only when a source has
# no adjacent destination at all; the distance term then picks the nearest.
_FAR = -4.0


def plan_from_scores(scores: Tensor, src_idx: Tensor, dst_idx: Tensor,
                     r: int) -> MergePlan:
    """Fold the ``r`` best-matched sources into their best destinations.

    Args:
        scores (Tensor): ``(B, Ns, Nd)`` match scores of sources against
            destinations.
        src_idx (Tensor): ``(B, Ns)`` current indices of the sources.
        dst_idx (Tensor): ``(B, Nd)`` current indices of the destinations.
        r (int): number of sources to merge, ``0 <= r <= Ns``.

    Returns:
        MergePlan: from ``N = Ns + Nd`` to ``N - r`` tokens; kept tokens
        stay in their original order.
    """
    best_val, best_dst = scores.max(dim=-1)  # ties: the first destination
    return plan_from_best(best_val, best_dst, src_idx, dst_idx, r)


def plan_from_best(best_val: Tensor, best_dst: Tensor, src_idx: Tensor,
                   dst_idx: Tensor, r: int) -> MergePlan:
    """Fold the ``r`` sources with the highest ``best_val`` into their
    ``best_dst``: :func:`plan_from_scores` once each source's best match is
    known (ties between sources keep their order).

    Args:
        best_val (Tensor): ``(B, Ns)`` each source's best score.
        best_dst (Tensor): ``(B, Ns)`` long, the position in ``dst_idx`` of
            each source's best destination.
        src_idx (Tensor): ``(B, Ns)`` current indices of the sources.
        dst_idx (Tensor): ``(B, Nd)`` current indices of the destinations.
        r (int): number of sources to merge, ``0 <= r <= Ns``.

    Returns:
        MergePlan: from ``N = Ns + Nd`` to ``N - r`` tokens.
    """
    B, Ns = best_val.shape
    N = Ns + dst_idx.shape[1]
    device = best_val.device
    order = best_val.argsort(dim=-1, descending=True, stable=True)[:, :r]
    merged_src = src_idx.gather(1, order)
    merged_dst = dst_idx.gather(1, best_dst.gather(1, order))

    removed = torch.zeros(B, N, dtype=torch.uint8, device=device)
    removed.scatter_(1, merged_src, 1)
    keep_idx = removed.argsort(dim=1, stable=True)[:, :N - r]
    return _plan_in_order(keep_idx, merged_src, merged_dst)


def _cosine(metric: Tensor, src_idx: Tensor, dst_idx: Tensor) -> Tensor:
    metric = F.normalize(metric, dim=-1)
    d = metric.shape[-1]
    a = metric.gather(1, src_idx.unsqueeze(-1).expand(-1, -1, d))
    b = metric.gather(1, dst_idx.unsqueeze(-1).expand(-1, -1, d))
    return a @ b.transpose(1, 2)


ALTERNATIONS = ('sequence', 'patches')


@torch.no_grad()
def tome_plan(metric: Tensor,
              r: int,
              num_extra_tokens: int = 0,
              alternate: str = 'sequence') -> MergePlan:
    """ToMe's bipartite soft matching, as the official code merges.

    ``alternate='sequence'`` (the official ``tome/merge.py:
    bipartite_soft_matching``): sources (set A) and destinations (set B)
    alternate over the *whole* sequence, the ``num_extra_tokens`` leading
    extra tokens included, so patch ``i`` is a source when ``E + i`` is
    even. The extra tokens never merge (the official code protects them
    with ``-inf`` scores). The output is ``[extras, unmerged sources,
    destinations]``: the unmerged sources in sequence order when there is a
    class token (``E > 0``), otherwise in descending order of their best
    score (the official code sorts them only to keep the class token
    first); the next layer alternates over that order.

    ``alternate='patches'`` (mmtokenprune 0.1): alternate over the patch
    tokens only (patch 0 is a source) and keep the kept tokens in sequence
    order.

    Args:
        metric (Tensor): ``(B, N, d)`` features of the patch tokens (ToMe
            uses the attention keys averaged over heads).
        r (int): tokens to remove, ``0 <= r <= N // 2``.
        num_extra_tokens (int): leading extra tokens (cls, dist) of the
            sequence the patch tokens sit in. Defaults to 0.
        alternate (str): ``'sequence'`` or ``'patches'``. Defaults to
            'sequence'.

    Returns:
        MergePlan: from ``N`` to ``N - r`` tokens.
    """
    B, N, _ = metric.shape
    idx = torch.arange(N, device=metric.device).expand(B, N)
    first = num_extra_tokens % 2 if alternate == 'sequence' else 0
    src_idx, dst_idx = idx[:, first::2], idx[:, 1 - first::2]
    scores = _cosine(metric, src_idx, dst_idx)
    if alternate == 'patches':
        return plan_from_scores(scores, src_idx, dst_idx, r)
    best_val, best_dst = scores.max(dim=-1)  # ties: the first destination
    order = best_val.argsort(dim=-1, descending=True, stable=True)
    unmerged = order[:, r:]
    if num_extra_tokens:
        unmerged = unmerged.sort(dim=1).values
    keep_idx = torch.cat([src_idx.gather(1, unmerged), dst_idx], dim=1)
    merged_src = src_idx.gather(1, order[:, :r])
    merged_dst = dst_idx.gather(1, best_dst.gather(1, order[:, :r]))
    return _plan_in_order(keep_idx, merged_src, merged_dst)


def _plan_in_order(keep_idx: Tensor, merged_src: Tensor,
                   merged_dst: Tensor) -> MergePlan:
    """The plan whose output token ``k`` is headed by ``keep_idx[:, k]``
    and that folds ``merged_src`` into ``merged_dst`` (both kept tokens'
    current indices)."""
    B, n = keep_idx.shape
    old2new = keep_idx.new_empty(B, n + merged_src.shape[1])
    rank = torch.arange(n, device=keep_idx.device).expand(B, n)
    old2new.scatter_(1, keep_idx, rank)
    old2new.scatter_(1, merged_src, old2new.gather(1, merged_dst))
    return MergePlan(old2new=old2new, keep_idx=keep_idx)


def atme_level(num_tokens: int, grid_area: int) -> int:
    """Coarseness of the token grid: ``floor(log4(H0 * W0 / N))``.

    After ``k`` rounds of pairwise merging along both axes the tokens
    behave like a grid ``2**k`` times coarser, so the role of a token is
    read from bit ``k`` of its anchor coordinate.
    """
    return max(0, int(math.floor(math.log(grid_area / num_tokens, 4) + 1e-9)))


ROLES = ('axis', 'checkerboard', 'quincunx')
NEIGHBOURHOODS = (4, 8)


def _atme_roles(tokens: TokenMap, axis: int, roles: str = 'axis') -> Tensor:
    """``(B, N)`` tokens in role order: the ``N // 2`` sources, then the
    destinations, each in sequence order (ties keep sequence order).

    A token's parity is bit :func:`atme_level` of its anchor coordinate
    along ``axis`` (``roles='axis'``: sources and destinations alternate
    along one axis), or of the sum of both coordinates at that level
    (``'checkerboard'``: they alternate along both axes); odd tokens come
    first. ``'quincunx'`` takes the checkerboard's colours on W layers
    (``axis=1``) and the rows on H layers: the survivors of a colour split
    lie on a quincunx lattice, which the row split halves into two square
    lattices, the destinations' the grid of the next level. (The plain
    checkerboard splits survivors that share one colour again by colour:
    the sources run out and are filled in sequence order, from the top.)
    """
    level = atme_level(tokens.num_tokens, tokens.grid[0] * tokens.grid[1])
    W = tokens.grid[1]
    if roles == 'checkerboard' or (roles == 'quincunx' and axis == 1):
        odd = ((tokens.anchor % W >> level) +
               (tokens.anchor // W >> level)) & 1
    else:
        coord = tokens.anchor % W if axis == 1 else tokens.anchor // W
        odd = (coord >> level) & 1
    return odd.argsort(dim=1, descending=True, stable=True)  # odd first


# Offsets (dy, dx) of a cell's neighbours, one per unordered pair: right and
# below (4-neighbourhood), then the two diagonals below (8-neighbourhood).
_OFFSETS = {4: ((0, 1), (1, 0)), 8: ((0, 1), (1, 0), (1, 1), (1, -1))}


def _neighbour_pairs(t: Tensor, neighbourhood: int,
                     dim: int) -> List[Tuple[Tensor, Tensor]]:
    """Views ``(moved, origin)`` of ``t`` for every neighbour offset: the
    cells at ``(y + dy, x + dx)`` and at ``(y, x)``, aligned, for every
    pair inside the grid. ``t``'s grid axes are ``dim`` (H) and
    ``dim + 1`` (W). The one definition of which cells touch."""

    def cut(offset: int, moved: bool) -> slice:
        if offset == 0:
            return slice(None)
        if (offset > 0) == moved:
            return slice(abs(offset), None)
        return slice(None, -abs(offset))

    lead = (slice(None), ) * dim
    return [(t[lead + (cut(dy, True), cut(dx, True))],
             t[lead + (cut(dy, False), cut(dx, False))])
            for dy, dx in _OFFSETS[neighbourhood]]


def _make_cell_pairs(grid: Tuple[int, int], device: Optional[torch.device],
                     neighbourhood: int = 4) -> Tensor:
    H, W = grid
    cell = torch.arange(H * W, device=device).view(H, W)
    pairs = _neighbour_pairs(cell, neighbourhood, 0)
    return torch.cat([m.flatten() for m, _ in pairs] +
                     [o.flatten() for _, o in pairs])


_cached_cell_pairs = functools.lru_cache(maxsize=16)(_make_cell_pairs)


def _cell_pairs(grid: Tuple[int, int], device: Optional[torch.device],
                neighbourhood: int = 4) -> Tensor:
    """``(2 * U, )`` the ``U`` neighbouring cell pairs of a grid, flat:
    the right/lower cell of every horizontal, vertical and (8-neighbourhood)
    diagonal pair, then their partners (cached per grid and device in eager
    mode)."""
    if torch.compiler.is_compiling():
        return _make_cell_pairs(grid, device, neighbourhood)
    return _cached_cell_pairs(tuple(grid), device, neighbourhood)


def _neighbour_cosines(cells: Tensor, neighbourhood: int) -> Tensor:
    """``(B, U)`` cosines of the cell pairs of :func:`_cell_pairs` from
    ``(B, H, W, d)`` unit vectors."""
    return torch.cat([(m * o).sum(-1).flatten(1)
                      for m, o in _neighbour_pairs(cells, neighbourhood, 1)],
                     1)


def _touching_best(metric: Tensor, tokens: TokenMap, rank: Tensor,
                   num_src: int,
                   neighbourhood: int = 4) -> Tuple[Tensor, Tensor]:
    """Each source's best cosine to a touching destination, read off the
    neighbouring cell pairs of the map (4 or 8 neighbours):
    ``O(H0 * W0 * d)``, no token pairs.

    Args:
        metric (Tensor): ``(B, N, d)`` features.
        tokens (TokenMap): their map.
        rank (Tensor): ``(B, N)`` long, each token's place in role order
            (sources ``< num_src``, then destinations).
        num_src (int): the number of sources.

    Returns:
        tuple[Tensor, Tensor]: ``(B, Ns)`` float32 best cosine (``-inf``
        where no destination touches) and ``(B, Ns)`` long position of the
        first destination reaching it (``Nd`` where none).
    """
    B, N, d = metric.shape
    H, W = tokens.grid
    unit = F.normalize(metric.float(), dim=-1).reshape(B * N, d)
    rows = tokens.assign
    if B > 1:
        rows = rows + torch.arange(B, device=rows.device).unsqueeze(1) * N
    cells = unit.index_select(0, rows.reshape(-1)).view(B, H, W, d)
    cos = _neighbour_cosines(cells, neighbourhood)
    ends = rank.gather(1, tokens.assign.index_select(
        1, _cell_pairs(tokens.grid, rank.device, neighbourhood)))
    a, b = ends.chunk(2, dim=1)  # role places of the two cells' tokens
    src, dst = torch.minimum(a, b), torch.maximum(a, b)
    pair = (src < num_src) & (dst >= num_src)  # a source and a destination
    val = torch.where(pair, cos, -math.inf)
    # view: ONNX's scatter_reduce output has no known rank
    best = cos.new_full((B, N), -math.inf).scatter_reduce(
        1, src, val, 'amax').view(B, N)
    hit = pair & (val == best.gather(1, src))
    first = torch.full_like(rank, N).scatter_reduce(
        1, src, torch.where(hit, dst, N), 'amin').view(B, N)
    return best[:, :num_src], first[:, :num_src] - num_src


# Lines up to this long take the L1 transform as one dense min-plus (few
# ops); longer ones two running minima (linear work).
_DENSE_LINE = 32


def _make_line_distance(n: int, scale: int,
                        device: Optional[torch.device]) -> Tensor:
    i = torch.arange(n, device=device, dtype=torch.int32)
    return (i.unsqueeze(1) - i).abs() * scale


_cached_line_distance = functools.lru_cache(maxsize=16)(_make_line_distance)


def _l1_min_plus(v: Tensor, scale: int, dim: int) -> Tensor:
    """``out[.., i, ..] = min_j v[.., j, ..] + scale * |i - j|`` along
    ``dim`` (-1 or -2): a running minimum from each end of every line
    (``O(n)``), or for short lines and ONNX export (no cumulative minimum
    there) the dense ``O(n^2)`` minimum."""
    n = v.shape[dim]
    if n <= _DENSE_LINE or torch.onnx.is_in_onnx_export():
        if torch.compiler.is_compiling():
            table = _make_line_distance(n, scale, v.device)
        else:
            table = _cached_line_distance(n, scale, v.device)
        if dim == -1:
            return (v.unsqueeze(-2) + table).amin(-1)
        return (v.unsqueeze(-3) + table.unsqueeze(-1)).amin(-2)
    ramp = torch.arange(n, device=v.device, dtype=v.dtype) * scale
    if dim == -2:
        ramp = ramp.unsqueeze(-1)
    ahead = (v - ramp).cummin(dim).values + ramp
    behind = (v + ramp).flip(dim).cummin(dim).values.flip(dim) - ramp
    return torch.minimum(ahead, behind)


def _nearest_destination(tokens: TokenMap, src_idx: Tensor,
                         dst_idx: Tensor) -> Tuple[Tensor, Tensor]:
    """Each source's nearest destination by anchor L1 distance, ties to
    the first destination: an exact L1 distance transform of the grid whose
    cells hold ``Nd * distance + position`` (separable, two axes), then
    read at the source anchors: ``O(H0 * W0)`` (up to lines of
    ``_DENSE_LINE`` cells, ``O(H0 * W0 * (H0 + W0))`` below), no token
    pairs.

    Returns:
        tuple[Tensor, Tensor]: ``(B, Ns)`` distances (int) and destination
        positions (long).
    """
    (B, Nd), (H, W) = dst_idx.shape, tokens.grid
    device = dst_idx.device
    big = Nd * (H + W)  # above every real key; sums stay below 2 * big
    dtype = torch.int32 if 2 * big < 2**31 else torch.long
    pos = torch.arange(Nd, device=device).to(dtype).expand(B, Nd)
    grid = torch.full((B, H * W), big, dtype=dtype, device=device)
    grid.scatter_(1, tokens.anchor.gather(1, dst_idx), pos)
    grid = _l1_min_plus(grid.view(B, H, W), Nd, -1)  # along W
    grid = _l1_min_plus(grid, Nd, -2)  # along H
    key = grid.view(B, H * W).gather(1, tokens.anchor.gather(1, src_idx))
    dist = key // Nd
    return dist, (key - dist * Nd).long()


@torch.no_grad()
def atme_plan(metric: Tensor,
              tokens: TokenMap,
              r: int,
              axis: int,
              roles: str = 'axis',
              neighbourhood: int = 4) -> MergePlan:
    """ATME: asymmetric merging of neighbouring tokens (our reading of CAIT).

    Roles: the ``N // 2`` tokens whose anchor coordinate along ``axis`` has
    bit :func:`atme_level` set are sources (ties keep sequence order), the
    rest destinations. A source's score for a destination is their cosine
    similarity when their regions touch; otherwise it is below every cosine
    and decreases with the anchor distance, so a source without a touching
    destination can only be used when ``r`` exceeds the sources that have
    one, and then goes to the nearest destination.

    Only touching pairs are scored: they are read off the ``~2 * H0 * W0``
    pairs of 4-neighbouring cells of ``tokens`` (a source's candidates are
    the destinations next to its region, one or two on a regular grid), and
    the nearest destination comes from a distance transform of the grid.
    Time and memory are ``O(H0 * W0 * d)`` (``d``: metric channels) plus
    ``O(H0 * W0)`` integer work, with no ``N x N`` tensor;
    the plan equals :func:`atme_plan_dense` (ties: the first destination,
    then sequence order), whose cost is quadratic in ``N``. Cosines are in
    float32 whatever the metric's dtype.

    Args:
        metric (Tensor): ``(B, N, d)`` features to compare (attention keys
            averaged over heads).
        tokens (TokenMap): the map of the current tokens (``N`` of them).
        r (int): tokens to remove, ``0 <= r <= N // 2``.
        axis (int): 1 to pair along W (columns), 0 along H (rows).
        roles (str): ``'axis'`` (sources and destinations alternate along
            ``axis``: a source's candidates are its neighbours along it),
            ``'checkerboard'`` (they alternate along both axes: up to
            four candidates; ``axis`` is unused) or ``'quincunx'`` (the
            checkerboard for ``axis=1``, rows for ``axis=0``).
            Defaults to 'axis'.
        neighbourhood (int): 4, or 8 to let regions that touch only at a
            corner match too. Defaults to 4.

    Returns:
        MergePlan: from ``N`` to ``N - r`` tokens.
    """
    B, N, _ = metric.shape
    roles = _atme_roles(tokens, axis, roles)
    num_src = N // 2
    src_idx, dst_idx = roles[:, :num_src], roles[:, num_src:]
    rank = torch.empty_like(roles).scatter_(
        1, roles, torch.arange(N, device=roles.device).expand(B, N))
    best, first = _touching_best(metric, tokens, rank, num_src,
                                 neighbourhood)
    dist, nearest = _nearest_destination(tokens, src_idx, dst_idx)
    far = _FAR - dist.to(best.dtype) / (sum(tokens.grid) + 1)
    touching = first < N - num_src
    return plan_from_best(
        torch.where(touching, best, far), torch.where(touching, first,
                                                      nearest), src_idx,
        dst_idx, r)


def _touching_pairs(tokens: TokenMap, src_pos: Tensor, dst_pos: Tensor,
                    num_src: int, num_dst: int,
                    neighbourhood: int = 4) -> Tensor:
    """``(B, Ns, Nd)`` bool: the source's region touches the destination's.

    Regions touch when two neighbouring (4 or 8) original cells belong to
    them.
    ``src_pos``/``dst_pos`` (``(B, N)``) give each current token's position
    among the sources/destinations, or -1.
    """
    g = tokens.assign_grid()
    B = g.shape[0]
    pairs = _neighbour_pairs(g, neighbourhood, 1)
    a = torch.cat([o.reshape(B, -1) for _, o in pairs], dim=1)
    b = torch.cat([m.reshape(B, -1) for m, _ in pairs], dim=1)
    a, b = torch.cat([a, b], dim=1), torch.cat([b, a], dim=1)
    ps, pd = src_pos.gather(1, a), dst_pos.gather(1, b)
    valid = (ps >= 0) & (pd >= 0)
    dump = num_src * num_dst  # one spare slot takes every invalid pair
    flat = torch.where(valid, ps * num_dst + pd, torch.full_like(ps, dump))
    adj = torch.zeros(B, dump + 1, dtype=torch.bool, device=g.device)
    adj.scatter_(1, flat, 1)  # int: jit trace rejects a bool
    return adj[:, :dump].view(B, num_src, num_dst)


@torch.no_grad()
def atme_plan_dense(metric: Tensor,
                    tokens: TokenMap,
                    r: int,
                    axis: int,
                    roles: str = 'axis',
                    neighbourhood: int = 4) -> MergePlan:
    """:func:`atme_plan` from the full ``(B, Ns, Nd)`` score matrix
    (cosine, adjacency and distance of every source-destination pair):
    quadratic in ``N``, the reference the local path is tested against."""
    B, N, _ = metric.shape
    roles = _atme_roles(tokens, axis, roles)
    src_idx, dst_idx = roles[:, :N // 2], roles[:, N // 2:]
    num_src, num_dst = src_idx.shape[1], dst_idx.shape[1]
    device = metric.device
    pos = torch.arange(N, device=device).expand(B, N)
    src_pos = torch.full((B, N), -1, dtype=torch.long, device=device)
    src_pos.scatter_(1, src_idx, pos[:, :num_src])
    dst_pos = torch.full((B, N), -1, dtype=torch.long, device=device)
    dst_pos.scatter_(1, dst_idx, pos[:, :num_dst])
    touch = _touching_pairs(tokens, src_pos, dst_pos, num_src, num_dst,
                            neighbourhood)

    sim = _cosine(metric, src_idx, dst_idx)
    ys, xs = tokens.anchor_yx()
    sy, sx = ys.gather(1, src_idx), xs.gather(1, src_idx)
    dy, dx = ys.gather(1, dst_idx), xs.gather(1, dst_idx)
    dist = ((sy.unsqueeze(2) - dy.unsqueeze(1)).abs() +
            (sx.unsqueeze(2) - dx.unsqueeze(1)).abs()).to(sim.dtype)
    scores = torch.where(touch, sim, _FAR - dist / (sum(tokens.grid) + 1))
    return plan_from_scores(scores, src_idx, dst_idx, r)
