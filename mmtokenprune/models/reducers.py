"""Token reducers: thin modules over :mod:`mmtokenprune.ops.matching`.

One reducer sits in each reducing layer, between attention and MLP. It
takes the layer's tokens, the attention keys and the :class:`TokenMap` of
this forward, and returns fewer tokens and the updated map. Its schedule
entry is fixed at construction; nothing is stored during a forward.
"""
from typing import Tuple

import torch
import torch.nn as nn
from torch import Tensor

from ..ops import TokenMap, atme_plan, merge_tokens, tome_plan
from ..ops.schedule import Step
from ..registry import TOKEN_REDUCERS

__all__ = ['MatchingReducer', 'ATME', 'ToMe']


class MatchingReducer(nn.Module):
    """Base of reducers that fold matched tokens into others (size-weighted).

    Args:
        step (Step): how many tokens this layer removes.
        index (int): position of this layer among the reducing layers.
        num_extra_tokens (int): leading tokens (cls, dist) left untouched.
        key (str): config key named in errors. Defaults to 'token_cfg'.
    """

    def __init__(self, step: Step, index: int, num_extra_tokens: int,
                 key: str = 'token_cfg'):
        super().__init__()
        self.step = step
        self.index = index
        self.num_extra_tokens = num_extra_tokens
        self.key = key

    def plan(self, metric: Tensor, tokens: TokenMap, r: int):
        raise NotImplementedError

    def forward(self, x: Tensor, keys: Tensor,
                tokens: TokenMap) -> Tuple[Tensor, TokenMap]:
        """Merge ``r`` patch tokens.

        Args:
            x (Tensor): ``(B, E + N, C)`` tokens, extra tokens first.
            keys (Tensor): ``(B, heads, E + N, d)`` attention keys.
            tokens (TokenMap): map of the ``N`` patch tokens.

        Returns:
            tuple[Tensor, TokenMap]: ``(B, E + N - r, C)`` and the new map.
        """
        E = self.num_extra_tokens
        patches = x[:, E:]
        r = self.step.num_removed(patches.shape[1], self.key)
        if r == 0:
            return x, tokens
        plan = self.plan(keys[:, :, E:].mean(dim=1), tokens, r)
        patches = merge_tokens(patches, plan, tokens.size)
        return torch.cat([x[:, :E], patches], dim=1), tokens.apply(plan)

    def extra_repr(self) -> str:
        return f'step={self.step}, index={self.index}'


@TOKEN_REDUCERS.register_module()
class ToMe(MatchingReducer):
    """ToMe bipartite soft matching, the training-free baseline.

    `Token Merging: Your ViT but Faster <https://arxiv.org/abs/2210.09461>`_
    """

    def plan(self, metric, tokens, r):
        return tome_plan(metric, r)


@TOKEN_REDUCERS.register_module()
class ATME(MatchingReducer):
    """Asymmetric merging of neighbouring tokens (CAIT; our reading).

    `CAIT <https://arxiv.org/abs/2309.15755>`_ names ATME and says it merges
    neighbouring tokens while preserving the spatial structure; the method
    section is not available, so the rules are ours: see
    :func:`mmtokenprune.ops.atme_plan`. Even reducing layers pair along W,
    odd ones along H.
    """

    def plan(self, metric, tokens, r):
        axis = 1 if self.index % 2 == 0 else 0
        return atme_plan(metric, tokens, r, axis=axis)
