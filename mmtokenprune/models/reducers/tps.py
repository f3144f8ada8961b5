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

**Swin windows** (:meth:`TPSReducer.window_reduce`, ours: TPS has no Swin
code): before each chosen block every ``ws x ws`` window prunes the same
``r`` tokens (its lowest keep scores; padding first; never a token's last
host of its shift region or padding state, see
:mod:`mmtokenprune.ops.window_prune`) and squeezes them into kept tokens
of their own label; the block un-merges after its MLP. Scores: dTPS's
predictor on the window (the global half is the window's mean over its
non-padding tokens); eTPS: the mean query's attention over the window in
the block's own attention (``PrunedWindowMSA.mean_query_attention``; Swin
has no class token and the block has not attended yet). Training takes the
masked path, as the sequence: all ``ws * ws`` tokens stay, the kept rows
are squeezed in place and the pruned ones are masked as keys; the decision
is the inference rule on Gumbel-perturbed scores (a fixed count per
window), straight-through for dTPS.
"""
import math
from dataclasses import replace
from typing import Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from ...ops import (MergePlan, PredictorLG, TokenMap, cls_attention_score,
                    gumbel_softmax, sample_keep, squeeze_train, topk_split,
                    tps_squeeze)
from ...ops.window_prune import (window_keep_mask, window_keep_split,
                                 window_real, window_squeeze)
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
        squeeze (bool): False: plain pruning (DynamicViT / EViT without
            fusion), the control of TPS's squeeze; a pruned position still
            shows its most similar kept token to dense heads. Token
            sequences only. Defaults to True.
    """
    options = dict(temperature=1.0, squeeze=True)
    prunes = True
    supports_prop_attn = False

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
                                    self.temperature, fuse=self.squeeze)
        return patches, tokens.apply(plan)

    def _train_step(self, patches: Tensor, tokens: TokenMap, attn: Tuple):
        B, N, _ = patches.shape
        prev = tokens.policy
        if prev is None:
            prev = patches.new_ones(B, N)
        keep = self.train_keep(patches, prev, attn)
        pruned = (1. - keep) * prev  # pruned at this step
        patches, host = squeeze_train(
            patches, keep, pruned, self.temperature, return_host=True,
            fuse=self.squeeze)
        own = torch.arange(N, device=patches.device).expand(B, N)
        plan = MergePlan(
            old2new=torch.where(pruned > 0, host, own), keep_idx=own)
        return patches, replace(tokens.apply(plan), policy=keep)

    # ------------------------------------------------------------- windows
    def window_keep_scores(self, x: Tensor, metric: Tensor,
                           real: Optional[Tensor], attn: Optional[nn.Module]
                           ) -> Tuple[Tensor, Optional[Tensor]]:
        """Keep scores of every window token.

        Args:
            x, metric (Tensor): see :meth:`window_reduce`.
            real (Tensor, optional): ``(B * nW, N)`` 1 for image cells, 0
                for padding; None: no padding.
            attn (nn.Module, optional): the block's window attention.

        Returns:
            tuple[Tensor, Tensor | None]: ``(B * nW, N)`` scores the split
            ranks (detached), and the soft keep values the training
            decision passes its straight-through gradient to (None: no
            gradient).
        """
        raise NotImplementedError

    def window_reduce(self, x, metric, r, labels=None, attn=None,
                      layout=None):
        """Prune ``r`` tokens of every window and squeeze them into the
        kept ones of their label (see :mod:`mmtokenprune.ops.window_prune`).

        Inference gathers the kept tokens. Training keeps all ``ws * ws``
        tokens: the kept rows are squeezed in place and the map's
        ``policy`` (straight-through for dTPS) masks the pruned ones as
        attention keys; the pruned positions point at their hosts, as at
        inference.
        """
        if not self.squeeze:
            raise ValueError(
                f'`{self.key}.squeeze=False` (plain pruning) applies to '
                'token sequences (ViT) only; Swin windows always squeeze.')
        BnW, N, C = x.shape
        ws = math.isqrt(int(N))
        real = window_real(labels, BnW, x.dtype)
        scores, soft = self.window_keep_scores(x, metric, real, attn)
        keep_idx, prune_idx = window_keep_split(scores, r, labels, layout)
        tokens = TokenMap.identity(BnW, (ws, ws), x.device, x.dtype)
        if not self.training:
            y, plan = window_squeeze(x, keep_idx, prune_idx, labels,
                                     self.temperature)
            return y, tokens.apply(plan)
        keep = window_keep_mask(keep_idx, N, soft, x.dtype)
        y, plan = window_squeeze(x, keep_idx, prune_idx, labels,
                                 self.temperature, 1. - keep)
        x = x.scatter(1, keep_idx.unsqueeze(-1).expand(-1, -1, C), y)
        own = torch.arange(N, device=x.device).expand(BnW, N)
        host = keep_idx.gather(1, plan.old2new)  # a window cell
        tokens = tokens.apply(MergePlan(old2new=host, keep_idx=own))
        return x, replace(tokens, policy=keep)


@TOKEN_REDUCERS.register_module(name='dTPS')
class DTPS(TPSReducer):
    """dTPS: a learned keep predictor before the block (DynamicViT's
    ``PredictorLG``); straight-through Gumbel-softmax decisions in
    training, the top keep scores at inference.

    In Swin windows the predictor scores each window's tokens (its global
    half is the mean over the window's non-padding tokens), and training
    keeps the inference count: the top Gumbel-perturbed keep probabilities
    of each window, straight-through (**ours**).

    Options:
        temperature, squeeze: see :class:`TPSReducer`.
        tau (float): Gumbel-softmax temperature. Defaults to 1.
    """
    options = dict(temperature=1.0, squeeze=True, tau=1.0)
    where = 'before_block'
    learns_keep = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.embed_dims is None:
            raise ValueError('dTPS needs the layer width (embed_dims).')
        self.predictor = PredictorLG(self.embed_dims)

    def keep_scores(self, patches, tokens, attn):
        return self.predictor(patches)[..., 0]

    def train_keep(self, patches, prev, attn):
        return sample_keep(self.predictor(patches, prev), prev, tau=self.tau)

    def window_keep_scores(self, x, metric, real, attn):
        log_probs = self.predictor(x, real)  # global half: window mean
        if not self.training:
            return log_probs[..., 0], None
        # Gumbel-perturbed keep probabilities: the top ones are a sample
        # without replacement; the gradient is the relaxed sample's
        soft = gumbel_softmax(log_probs, tau=self.tau, hard=False)[..., 0]
        return soft.detach(), soft


@TOKEN_REDUCERS.register_module(name='eTPS')
class ETPS(TPSReducer):
    """eTPS: EViT's class-token attention as the keep score, inside the
    block after attention (no parameters); the same top-k in training and
    inference.

    Without a class token (``num_extra_tokens=0``) the mean query stands in
    for it (**ours**; see :func:`~mmtokenprune.ops.cls_attention_score`).
    In Swin windows (before the block: nothing has attended yet) the score
    is the window's mean query's attention in the block's own attention
    (:meth:`~mmtokenprune.models.layers.PrunedWindowMSA.mean_query_attention`,
    **ours**).
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

    def window_keep_scores(self, x, metric, real, attn):
        if attn is None:
            raise ValueError(
                'eTPS scores window tokens by the block\'s attention: '
                'window_reduce needs `attn` (the block\'s window attention).')
        with torch.no_grad():  # of the zero-padded input, as upstream's
            return attn.mean_query_attention(metric, real), None
