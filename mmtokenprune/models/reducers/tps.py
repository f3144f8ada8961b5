"""TPS: prune tokens, then squeeze each pruned token into its nearest host.

`Joint Token Pruning and Squeezing Towards More Aggressive Compression of
Vision Transformers <https://arxiv.org/abs/2304.10716>`_ (Wei et al., CVPR
2023). Pruning picks the reserved tokens; squeezing fuses every pruned
token into its most similar reserved token (cosine, unidirectional) with
the weights of :func:`~mmtokenprune.ops.squeeze_tokens`, so the pruned
information is kept and every pruned position's ``assign`` points at its
host (dense heads un-merge with the usual gather). Reserved tokens never
move.

Two paths, as the original:

- **training** (``reducer.training``): all ``N`` tokens stay; the new keep
  decision becomes ``tokens.policy``, which masks pruned tokens as
  attention keys in every later layer (DynamicViT's masked softmax); the
  squeeze updates the reserved rows in place;
- **inference**: a fixed number of tokens per image (``r`` or
  ``keep_ratio`` of the current ones, so a batch has one shape) is
  gathered, the rest squeezed into them.

For a fixed decision both give the same reserved tokens (tested).
"""
from dataclasses import replace
from typing import Tuple

import torch
from torch import Tensor

from ...ops import (MergePlan, PredictorLG, TokenMap, cls_attention_score,
                    sample_keep, squeeze_train, topk_split, tps_squeeze)
from ...registry import TOKEN_REDUCERS
from .base import TokenReducer

__all__ = ['TPSReducer', 'DTPS', 'ETPS']


class TPSReducer(TokenReducer):
    """Base of dTPS and eTPS: the squeeze and the two paths.

    Subclasses give :meth:`keep_scores` (inference: the top ``N - r``
    are reserved) and :meth:`train_keep` (training: the new keep mask).

    Options:
        temperature (float): squeeze similarities are divided by it (the
            host weight stays ``e``, as the original). Defaults to 1.
    """
    options = dict(temperature=1.0)
    prunes = True
    supports_prop_attn = False
    supports_windows = False

    def keep_scores(self, patches: Tensor, tokens: TokenMap,
                    attn: Tuple) -> Tensor:
        """``(B, N)`` keep scores of the live patch tokens (inference)."""
        raise NotImplementedError

    def train_keep(self, patches: Tensor, prev: Tensor, attn: Tuple) -> Tensor:
        """``(B, N)`` new keep mask within ``prev`` (training path)."""
        raise NotImplementedError

    def reduce(self, patches: Tensor, tokens: TokenMap, attn: Tuple):
        if self.training:
            return (*self._train_step(patches, tokens, attn), None)
        return (*self._infer_step(patches, tokens, attn), None)

    def _infer_step(self, patches: Tensor, tokens: TokenMap, attn: Tuple):
        N = patches.shape[1]
        r = self.num_removed(N)
        if r == 0:
            return patches, tokens
        keep_idx, prune_idx = topk_split(
            self.keep_scores(patches, tokens, attn), N - r)
        patches, plan = tps_squeeze(patches, keep_idx, prune_idx,
                                    self.temperature)
        return patches, tokens.apply(plan)

    def _train_step(self, patches: Tensor, tokens: TokenMap, attn: Tuple):
        B, N, _ = patches.shape
        prev = tokens.policy
        if prev is None:
            prev = patches.new_ones(B, N)
        keep = self.train_keep(patches, prev, attn)
        pruned = (1. - keep) * prev  # pruned at this step
        patches, host = squeeze_train(
            patches, keep, pruned, self.temperature, return_host=True)
        own = torch.arange(N, device=patches.device).expand(B, N)
        plan = MergePlan(
            old2new=torch.where(pruned > 0, host, own), keep_idx=own)
        return patches, replace(tokens.apply(plan), policy=keep)


@TOKEN_REDUCERS.register_module(name='dTPS')
class DTPS(TPSReducer):
    """dTPS: a learned keep predictor before the block (DynamicViT's
    ``PredictorLG``); straight-through Gumbel-softmax decisions in
    training, the top keep scores at inference.

    Options:
        temperature (float): see :class:`TPSReducer`. Defaults to 1.
        tau (float): Gumbel-softmax temperature. Defaults to 1.
    """
    options = dict(temperature=1.0, tau=1.0)
    where = 'before_block'

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.embed_dims is None:
            raise ValueError('dTPS needs the layer width (embed_dims).')
        self.predictor = PredictorLG(self.embed_dims)

    def keep_scores(self, patches, tokens, attn):
        return self.predictor(patches)[..., 0]

    def train_keep(self, patches, prev, attn):
        return sample_keep(self.predictor(patches, prev), prev, tau=self.tau)


@TOKEN_REDUCERS.register_module(name='eTPS')
class ETPS(TPSReducer):
    """eTPS: EViT's class-token attention as the keep score, inside the
    block after attention (no parameters); the same top-k in training and
    inference.

    Without a class token (``num_extra_tokens=0``) the mean query stands in
    for it (**ours**; see :func:`~mmtokenprune.ops.cls_attention_score`).
    """
    where = 'after_attention'

    def _scores(self, attn, policy=None):
        queries, keys, scale = attn
        return cls_attention_score(queries, keys, scale,
                                   self.num_extra_tokens, policy)

    def keep_scores(self, patches, tokens, attn):
        return self._scores(attn)

    def train_keep(self, patches, prev, attn):
        E, N = self.num_extra_tokens, prev.shape[1]
        length = attn[1].shape[2]
        full = torch.cat([
            prev.new_ones(prev.shape[0], E), prev,
            prev.new_ones(prev.shape[0], length - E - N)
        ], 1)
        with torch.no_grad():
            scores = self._scores(attn, full).masked_fill(prev == 0, -1.)
        live = int(prev[0].sum())  # fixed-count steps: equal per image
        keep_idx, _ = topk_split(scores, live - self.num_removed(live))
        return prev.new_zeros(prev.shape).scatter_(1, keep_idx, 1.)
