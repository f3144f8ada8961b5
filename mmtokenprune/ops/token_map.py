"""The merge map: which current token stands for each original patch.

Every token reducer turns ``(B, N, C)`` patch tokens into ``(B, N', C)``
tokens. :class:`TokenMap` records, for every original patch position, which
current token now represents it (``assign``), how many original patches each
token stands for (``size``) and the original cell each token is anchored at
(``anchor``). A reduction step is a :class:`MergePlan`; applying it is one
scatter, composing it with the map is one gather, and un-merging back to the
full grid is one gather. Extra tokens (cls, dist) never enter these tensors.
"""
from dataclasses import dataclass, replace
from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = ['MergePlan', 'TokenMap', 'merge_tokens', 'unmerge_tokens']


@dataclass(frozen=True)
class MergePlan:
    """One reduction step from ``N`` to ``num_out`` tokens.

    Attributes:
        old2new (Tensor): ``(B, N)`` long, the output token each current
            token is folded into.
        keep_idx (Tensor): ``(B, num_out)`` long, the current token that
            heads each output token (its anchor is inherited), in output
            order: ascending, but for ToMe's official order (unmerged
            sources, then destinations: :func:`~mmtokenprune.ops.tome_plan`).
    """
    old2new: Tensor
    keep_idx: Tensor

    @property
    def num_out(self) -> int:
        return self.keep_idx.shape[1]


@dataclass(frozen=True)
class TokenMap:
    """Where the current patch tokens came from; a local of one forward.

    Attributes:
        assign (Tensor): ``(B, H0 * W0)`` long, index of the current token
            that represents each original patch.
        size (Tensor): ``(B, N)`` float, original patches per current token;
            ``size.sum(1) == H0 * W0``.
        anchor (Tensor): ``(B, N)`` long, flat original cell of each token.
        grid (tuple[int, int]): the original patch grid ``(H0, W0)``.
        policy (Tensor, optional): ``(B, N)`` keep policy of the training
            path of pruning reducers (TPS, SPViT): every token stays in the
            sequence, the pruned ones (0) are masked as attention keys and
            stand for no patch (``size`` 0, no ``assign`` points at them).
            May carry a straight-through gradient. None: every token is
            live (inference, merging reducers).
        aside (Tensor, optional): ``(B, M, C)`` features kept aside for
            positions whose token left the sequence without a host (SPViT:
            a dropped token's last own feature, or its package token);
            ``assign`` values ``N + j`` point at ``aside[:, j]``.
    """
    assign: Tensor
    size: Tensor
    anchor: Tensor
    grid: Tuple[int, int]
    policy: Optional[Tensor] = None
    aside: Optional[Tensor] = None

    @classmethod
    def identity(cls, batch: int, grid: Tuple[int, int],
                 device: Optional[torch.device] = None,
                 dtype: torch.dtype = torch.float32) -> 'TokenMap':
        """The map of an unreduced ``H0 x W0`` grid."""
        n = grid[0] * grid[1]
        idx = torch.arange(n, device=device).expand(batch, n)
        size = torch.ones(batch, n, device=device, dtype=dtype)
        return cls(assign=idx, size=size, anchor=idx, grid=tuple(grid))

    @property
    def num_tokens(self) -> int:
        return self.size.shape[1]

    def assign_grid(self) -> Tensor:
        """``assign`` as ``(B, H0, W0)``."""
        return self.assign.view(-1, *self.grid)

    def anchor_yx(self) -> Tuple[Tensor, Tensor]:
        """Row and column of each token's anchor cell, each ``(B, N)``."""
        return self.anchor // self.grid[1], self.anchor % self.grid[1]

    def apply(self, plan: MergePlan) -> 'TokenMap':
        """Compose this map with one more reduction step (one gather)."""
        N = self.num_tokens
        size = self.size.new_zeros(self.size.shape[0], plan.num_out)
        size.scatter_add_(1, plan.old2new, self.size)
        policy = None
        if self.policy is not None:
            policy = self.policy.gather(1, plan.keep_idx)
        assign = plan.old2new.gather(1, self.assign.clamp(max=N - 1))
        if self.aside is not None:  # aside entries move with the count
            assign = torch.where(self.assign < N, assign,
                                 self.assign - N + plan.num_out)
        return TokenMap(
            assign=assign,
            size=size,
            anchor=self.anchor.gather(1, plan.keep_idx),
            grid=self.grid,
            policy=policy,
            aside=self.aside)

    def set_aside(self, moved: Tensor, features: Tensor,
                  target: Tensor) -> 'TokenMap':
        """Point the positions of some current tokens at features aside.

        Args:
            moved (Tensor): ``(B, N)`` bool, the tokens whose positions
                move (their ``size`` becomes 0).
            features (Tensor): ``(B, K, C)`` features appended to ``aside``.
            target (Tensor): ``(B, N)`` long in ``[0, K)``, the feature each
                moved token's positions take.

        Returns:
            TokenMap: the same tokens; the moved ones stand for no patch.
        """
        N = self.num_tokens
        M = 0 if self.aside is None else self.aside.shape[1]
        own = self.assign.clamp(max=N - 1)
        move = (self.assign < N) & moved.gather(1, own)
        assign = torch.where(move, N + M + target.gather(1, own), self.assign)
        aside = features if self.aside is None else torch.cat(
            [self.aside, features], dim=1)
        return replace(
            self,
            assign=assign,
            size=self.size.masked_fill(moved, 0),
            aside=aside)


def _flat_rows(index: Tensor, num: int) -> Tensor:
    """``(B * K, )`` rows of a ``(B * num, C)`` view for a ``(B, K)``
    per-image ``index`` into ``num`` tokens."""
    if index.shape[0] > 1:
        index = index + torch.arange(
            index.shape[0], device=index.device).unsqueeze(1) * num
    return index.reshape(-1)


def merge_tokens(x: Tensor, plan: MergePlan, weight: Tensor) -> Tensor:
    """Fold tokens into their targets as a weighted average.

    Rows are summed with ``index_add_`` (whole ``C``-vectors, no
    per-element index; ONNX export takes an equal ``scatter_add_``, which
    it supports with repeated targets).

    Args:
        x (Tensor): ``(B, N, C)`` tokens.
        plan (MergePlan): the step to apply.
        weight (Tensor): ``(B, N)`` positive weights, e.g. the token sizes
            (size-weighted merging) or TPS's similarity weights.

    Returns:
        Tensor: ``(B, num_out, C)``; a token that absorbs nothing is returned
        unchanged (up to rounding).
    """
    B, N, C = x.shape
    n = plan.num_out
    w = weight.to(x.dtype)
    xw = x * w.unsqueeze(-1)
    if torch.onnx.is_in_onnx_export():
        index = plan.old2new.unsqueeze(-1).expand(-1, -1, C)
        out = x.new_zeros(B, n, C).scatter_add_(1, index, xw)
    else:
        out = x.new_zeros(B * n, C).index_add_(
            0, _flat_rows(plan.old2new, n), xw.reshape(B * N, C))
    den = w.new_zeros(B, n).scatter_add_(1, plan.old2new, w)
    return out.view(B, n, C) / den.unsqueeze(-1)


def unmerge_tokens(x: Tensor, tokens: TokenMap) -> Tensor:
    """Give every original patch the feature of the token representing it
    (one ``index_select`` of rows).

    Args:
        x (Tensor): ``(B, N, C)`` current patch tokens.
        tokens (TokenMap): the map of the same forward (positions that
            point at ``tokens.aside`` take those features).

    Returns:
        Tensor: ``(B, H0 * W0, C)``.
    """
    if tokens.aside is not None:
        x = torch.cat([x, tokens.aside.to(x.dtype)], dim=1)
    B, N, C = x.shape
    if B == 1:  # a view's rows, no copy
        return x[0].index_select(0, tokens.assign[0]).unsqueeze(0)
    rows = _flat_rows(tokens.assign, N)
    return x.reshape(B * N, C).index_select(0, rows).view(B, -1, C)
