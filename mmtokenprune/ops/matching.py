"""Token matching: ToMe's bipartite soft matching and ATME.

Both split the current tokens into *sources* and *destinations*, let every
source pick its most similar destination, and fold the ``r`` sources with
the best matches into their destinations. They differ in how the split is
made and which pairs may match:

- ToMe (Bolya et al., ICLR 2023, https://arxiv.org/abs/2210.09461):
  alternate tokens by sequence position, any pair may match.
- ATME (CAIT, https://arxiv.org/abs/2309.15755; **our reading** of the
  abstract, the method section is not available): sources and destinations
  alternate by the parity of each token's anchor cell along one axis
  (W, then H, ...), and a source may only merge into a destination whose
  region touches its own on the original grid, so every merged token covers
  a connected image region. Merging is asymmetric: a source is absorbed
  into a destination (size-weighted), never the reverse, and a source never
  receives tokens, so one step has no chains.

Plans are computed under ``no_grad``: they are index bookkeeping.
"""
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .token_map import MergePlan, TokenMap

__all__ = ['plan_from_scores', 'tome_plan', 'atme_plan', 'atme_level']

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
    B, Ns, _ = scores.shape
    N = Ns + dst_idx.shape[1]
    best_val, best_dst = scores.max(dim=-1)
    order = best_val.argsort(dim=-1, descending=True, stable=True)[:, :r]
    merged_src = src_idx.gather(1, order)
    merged_dst = dst_idx.gather(1, best_dst.gather(1, order))

    removed = torch.zeros(B, N, dtype=torch.uint8, device=scores.device)
    removed.scatter_(1, merged_src, 1)
    keep_idx = removed.argsort(dim=1, stable=True)[:, :N - r]
    old2new = torch.empty_like(removed, dtype=torch.long)
    rank = torch.arange(N - r, device=scores.device).expand(B, -1)
    old2new.scatter_(1, keep_idx, rank)
    old2new.scatter_(1, merged_src, old2new.gather(1, merged_dst))
    return MergePlan(old2new=old2new, keep_idx=keep_idx)


def _cosine(metric: Tensor, src_idx: Tensor, dst_idx: Tensor) -> Tensor:
    metric = F.normalize(metric, dim=-1)
    d = metric.shape[-1]
    a = metric.gather(1, src_idx.unsqueeze(-1).expand(-1, -1, d))
    b = metric.gather(1, dst_idx.unsqueeze(-1).expand(-1, -1, d))
    return a @ b.transpose(1, 2)


@torch.no_grad()
def tome_plan(metric: Tensor, r: int) -> MergePlan:
    """ToMe's bipartite soft matching.

    Args:
        metric (Tensor): ``(B, N, d)`` per-token features to compare (ToMe
            uses the attention keys averaged over heads).
        r (int): tokens to remove, ``0 <= r <= N // 2``.

    Returns:
        MergePlan: from ``N`` to ``N - r`` tokens.
    """
    B, N, _ = metric.shape
    idx = torch.arange(N, device=metric.device).expand(B, N)
    src_idx, dst_idx = idx[:, ::2], idx[:, 1::2]
    return plan_from_scores(
        _cosine(metric, src_idx, dst_idx), src_idx, dst_idx, r)


def atme_level(num_tokens: int, grid_area: int) -> int:
    """Coarseness of the token grid: ``floor(log4(H0 * W0 / N))``.

    After ``k`` rounds of pairwise merging along both axes the tokens
    behave like a grid ``2**k`` times coarser, so the role of a token is
    read from bit ``k`` of its anchor coordinate.
    """
    return max(0, int(math.floor(math.log(grid_area / num_tokens, 4) + 1e-9)))


def _touching_pairs(tokens: TokenMap, src_pos: Tensor, dst_pos: Tensor,
                    num_src: int, num_dst: int) -> Tensor:
    """``(B, Ns, Nd)`` bool: the source's region touches the destination's.

    Regions touch when two 4-neighbouring original cells belong to them.
    ``src_pos``/``dst_pos`` (``(B, N)``) give each current token's position
    among the sources/destinations, or -1.
    """
    g = tokens.assign_grid()
    B = g.shape[0]
    a = torch.cat([g[:, :, :-1].reshape(B, -1), g[:, :-1, :].reshape(B, -1)],
                  dim=1)
    b = torch.cat([g[:, :, 1:].reshape(B, -1), g[:, 1:, :].reshape(B, -1)],
                  dim=1)
    a, b = torch.cat([a, b], dim=1), torch.cat([b, a], dim=1)
    ps, pd = src_pos.gather(1, a), dst_pos.gather(1, b)
    valid = (ps >= 0) & (pd >= 0)
    dump = num_src * num_dst  # one spare slot takes every invalid pair
    flat = torch.where(valid, ps * num_dst + pd, torch.full_like(ps, dump))
    adj = torch.zeros(B, dump + 1, dtype=torch.bool, device=g.device)
    adj.scatter_(1, flat, 1)  # int: jit trace rejects a bool
    return adj[:, :dump].view(B, num_src, num_dst)


@torch.no_grad()
def atme_plan(metric: Tensor, tokens: TokenMap, r: int,
              axis: int) -> MergePlan:
    """ATME: asymmetric merging of neighbouring tokens (our reading of CAIT).

    Roles: the ``N // 2`` tokens whose anchor coordinate along ``axis`` has
    bit :func:`atme_level` set are sources (ties keep sequence order), the
    rest destinations. A source's score for a destination is their cosine
    similarity when their regions touch; otherwise it is below every cosine
    and decreases with the anchor distance, so a source without a touching
    destination can only be used when ``r`` exceeds the sources that have
    one, and then goes to the nearest destination.

    Args:
        metric (Tensor): ``(B, N, d)`` features to compare (attention keys
            averaged over heads).
        tokens (TokenMap): the map of the current tokens (``N`` of them).
        r (int): tokens to remove, ``0 <= r <= N // 2``.
        axis (int): 1 to pair along W (columns), 0 along H (rows).

    Returns:
        MergePlan: from ``N`` to ``N - r`` tokens.
    """
    B, N, _ = metric.shape
    grid_area = tokens.grid[0] * tokens.grid[1]
    level = atme_level(N, grid_area)
    ys, xs = tokens.anchor_yx()
    coord = xs if axis == 1 else ys
    odd = (coord >> level) & 1
    roles = (1 - odd).argsort(dim=1, stable=True)  # odd first, then even
    num_src = N // 2
    src_idx, dst_idx = roles[:, :num_src], roles[:, num_src:]
    num_dst = N - num_src

    device = metric.device
    pos = torch.arange(N, device=device).expand(B, N)
    src_pos = torch.full((B, N), -1, dtype=torch.long, device=device)
    src_pos.scatter_(1, src_idx, pos[:, :num_src])
    dst_pos = torch.full((B, N), -1, dtype=torch.long, device=device)
    dst_pos.scatter_(1, dst_idx, pos[:, :num_dst])
    touch = _touching_pairs(tokens, src_pos, dst_pos, num_src, num_dst)

    sim = _cosine(metric, src_idx, dst_idx)
    sy, sx = ys.gather(1, src_idx), xs.gather(1, src_idx)
    dy, dx = ys.gather(1, dst_idx), xs.gather(1, dst_idx)
    dist = ((sy.unsqueeze(2) - dy.unsqueeze(1)).abs() +
            (sx.unsqueeze(2) - dx.unsqueeze(1)).abs()).to(sim.dtype)
    scores = torch.where(touch, sim, _FAR - dist / (sum(tokens.grid) + 1))
    return plan_from_scores(scores, src_idx, dst_idx, r)
