"""SPViT: a multi-head token selector and a package token per stage.

`SPViT: Enabling Faster Vision Transformers via Latency-aware Soft Token
Pruning <https://arxiv.org/abs/2112.13890>`_ (Kong et al., ECCV 2022). Before
the block, :class:`~mmtokenprune.ops.MultiheadPredictorLG` scores the patch
tokens; the dropped ones are summarised into one *package token* appended
after the sequence (earlier packages always stay, and never enter the merge
map).

- **the selector** scores the patch tokens and the earlier package tokens
  (the original scores ``x[:, 1:]``, packages included, with the previous
  decision padded with ones); the packages' own scores are not used;
- **training** (as the original, ``vit_l2_3keep_senet.py``):
  straight-through Gumbel-softmax decisions within the previous keep mask,
  all tokens stay and the dropped ones are masked as attention keys; the
  package is the keep-probability-weighted sum of the dropped tokens (not
  normalised);
- **inference**: a fixed top-k by keep probability per image (batchable;
  ours: the original's evaluated path samples a per-image count, B=1,
  which ``sample=True`` reproduces); the package is the training one, the
  keep-probability-weighted sum of the dropped tokens, as the original's
  evaluated path (its model in eval mode) makes it.

Dense heads (ours; SPViT has no segmentation): a dropped position takes its
own feature at the moment it was dropped (``dense='last'``, as DToP) or the
package token as it was made (``dense='package'``), kept aside in the
:class:`~mmtokenprune.ops.TokenMap`.

Inside Swin windows (ours; :meth:`SPViT.window_reduce`): the selector scores
each window's tokens and every window keeps its top ``ws * ws - r`` under
TPS's window rules (:func:`~mmtokenprune.ops.window_prune.window_keep_split`:
padding first, every label group keeps a token); dropped tokens skip the
block (``dense='last'``: their input comes back after it). No package
token is formed in windows (see docs/methods.md, "SPViT inside Swin
windows"); ``dense='package'`` and ``sample=True`` are refused there.
"""
import math
from dataclasses import replace
from typing import Optional, Tuple

import torch
from torch import Tensor

from ...ops import (MergePlan, MultiheadPredictorLG, TokenMap, gumbel_softmax,
                    package_token, sample_keep, topk_split)
from ...ops.window_prune import (window_keep_mask, window_keep_split,
                                 window_real)
from ...registry import TOKEN_REDUCERS
from .base import TokenReducer

__all__ = ['SPViT']

DENSE = ('last', 'package')


def _gather(x: Tensor, idx: Tensor) -> Tensor:
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def _keep(x: Tensor, tokens: TokenMap, keep_idx: Tensor):
    """Gather the kept tokens and renumber the map; the dropped tokens
    were set aside, so no position points at them (``old2new`` 0)."""
    old2new = torch.zeros(x.shape[:2], dtype=torch.long, device=x.device)
    rank = torch.arange(keep_idx.shape[1], device=x.device)
    old2new.scatter_(1, keep_idx, rank.expand_as(keep_idx))
    plan = MergePlan(old2new=old2new, keep_idx=keep_idx)
    return _gather(x, keep_idx), tokens.apply(plan)


def _window_keep(x: Tensor, keep_idx: Tensor,
                 drop_idx: Tensor) -> Tuple[Tensor, TokenMap]:
    """The kept windows and their map, the dropped tokens set aside with
    their own features: ``_keep(x, identity.set_aside(...), keep_idx)``
    built at once, rows moved by ``index_select`` (no expanded gathers, no
    map composed with an identity)."""
    BnW, N, C = x.shape
    n = keep_idx.shape[1]
    offset = torch.arange(BnW, device=x.device).unsqueeze(1) * N
    flat = x.reshape(BnW * N, C)
    kept = flat.index_select(0, (keep_idx + offset).view(-1))
    aside = flat.index_select(0, (drop_idx + offset).view(-1))
    rank = torch.arange(N, device=x.device)
    assign = torch.empty(BnW, N, dtype=torch.long, device=x.device)
    assign.scatter_(1, keep_idx, rank[:n].expand(BnW, -1))
    assign.scatter_(1, drop_idx, rank[n:].expand(BnW, -1))  # aside: n + j
    ws = math.isqrt(int(N))
    tokens = TokenMap(
        assign=assign,
        size=x.new_ones(BnW, n),
        anchor=keep_idx,
        grid=(ws, ws),
        aside=aside.view(BnW, N - n, C))
    return kept.view(BnW, n, C), tokens


@TOKEN_REDUCERS.register_module()
class SPViT(TokenReducer):
    """SPViT's selector + package token, before the block.

    Options:
        share_heads (bool): one ``in_conv``/``out_conv`` for all heads, as
            the original's ``[module for _ in range(H)]``. Defaults to True.
        tau (float): Gumbel-softmax temperature. Defaults to 1.
        dense (str): what a dropped position shows dense heads: 'last' or
            'package'. Defaults to 'last'.
        sample (bool): inference keeps the sampled decision (the original's
            per-image count; batch size 1 only) instead of the top-k; an
            empty sample keeps the likeliest token. Defaults to False.
        package (bool): False: no package token, the dropped tokens are
            only set aside for dense heads (plain pruning with SPViT's
            selector, the control of the package). Defaults to True.
    """
    options = dict(share_heads=True, tau=1.0, dense='last', sample=False,
                   package=True)
    where = 'before_block'
    prunes = True
    supports_prop_attn = False
    supports_windows = True
    tail_tokens = 1
    learns_keep = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.check_choice('dense', DENSE)
        if not self.package and self.dense == 'package':
            raise ValueError(f"`{self.key}.dense='package'` needs "
                             "package=True; use dense='last'.")
        self.tail_tokens = int(bool(self.package))
        if self.embed_dims is None or self.num_heads is None:
            raise ValueError('SPViT needs the layer width and heads.')
        try:
            self.selector = MultiheadPredictorLG(
                self.embed_dims, self.num_heads, bool(self.share_heads))
        except ValueError as e:
            raise ValueError(
                f"`{self.key}` type='SPViT' at reducing layer {self.index}: "
                f'the selector splits the layer into its heads: {e}') from e

    def forward(self, x, tokens, queries=None, keys=None, scale=None):
        """As the base, but the selector also sees the earlier package
        tokens (the sequence's tail), as the original's ``x[:, 1:]``."""
        head, patches, tail = self.split(x, tokens)
        if self.training:
            patches, package, tokens = self._train_step(patches, tail, tokens)
        else:
            patches, package, tokens = self._infer_step(patches, tail, tokens)
        parts = [head, patches, tail] + ([package] if self.package else [])
        return torch.cat(parts, dim=1), tokens

    def _select(self, patches: Tensor, tail: Tensor,
                prev: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """The selector's ``(B, N + T, 2)`` scores of the patch tokens and
        the ``T`` earlier packages, under the keep policy ``prev`` of the
        patches (packages count as kept): the original scores
        ``x[:, 1:]`` with the previous decision padded with ones."""
        T = tail.shape[1]
        if T:
            patches = torch.cat([patches, tail], dim=1)
            if prev is not None:
                prev = torch.cat([prev, prev.new_ones(prev.shape[0], T)], 1)
        return self.selector(patches, prev)

    def _set_aside(self, tokens: TokenMap, moved: Tensor, patches: Tensor,
                   package: Tensor) -> TokenMap:
        """Dropped positions point at their own feature or the package."""
        if self.dense == 'package':
            return tokens.set_aside(moved, package, torch.zeros_like(
                moved, dtype=torch.long))
        own = torch.arange(moved.shape[1], device=moved.device)
        return tokens.set_aside(moved, patches, own.expand_as(moved))

    def _train_step(self, patches: Tensor, tail: Tensor, tokens: TokenMap):
        B, N, _ = patches.shape
        prev = tokens.policy
        if prev is None:
            prev = patches.new_ones(B, N)
        log_scores, scores = self._select(patches, tail, prev)
        # sampled over packages too (then cut), as the original: the same
        # noise for the same seed
        keep = sample_keep(log_scores, tau=self.tau)[:, :N] * prev
        drop = prev - keep  # dropped now (straight-through)
        package = package_token(patches, drop, scores[:, :N, 0]) \
            if self.package else None
        tokens = self._set_aside(tokens, drop.detach() > 0, patches, package)
        return patches, package, replace(tokens, policy=keep)

    def _infer_step(self, patches: Tensor, tail: Tensor, tokens: TokenMap):
        B, N, _ = patches.shape
        log_scores, scores = self._select(patches, tail)
        keep_prob = scores[:, :N, 0]
        if self.sample:
            if B != 1:
                raise ValueError(f'`{self.key}.sample=True` keeps a '
                                 'per-image count: batch size 1 only; got '
                                 f'{B}.')
            keep = sample_keep(log_scores)[0, :N].bool()
            if not keep.any():  # an empty sample: the likeliest one stays
                keep[keep_prob[0].argmax()] = True
            keep_idx = keep.nonzero()[:, 0].unsqueeze(0)
            drop_idx = (~keep).nonzero()[:, 0].unsqueeze(0)
        else:
            keep_idx, drop_idx = topk_split(keep_prob,
                                            N - self.num_removed(N))
        moved = torch.zeros(B, N, dtype=torch.uint8, device=patches.device)
        moved = moved.scatter_(1, drop_idx, 1).bool()  # int: jit-traceable
        # the package of training (and of the original's evaluated path)
        package = package_token(patches, moved.to(patches.dtype),
                                keep_prob) if self.package else None
        tokens = self._set_aside(tokens, moved, patches, package)
        patches, tokens = _keep(patches, tokens, keep_idx)
        return patches, package, tokens

    # ------------------------------------------------------------- windows
    def window_r(self, window_size, where):
        """As the base; refuses what SPViT cannot do in windows."""
        if self.dense != 'last':
            raise ValueError(
                f"`{self.key}.dense='{self.dense}'` is not supported inside "
                "Swin windows (no package token is formed there); use "
                "dense='last'.")
        if self.sample:
            raise ValueError(
                f'`{self.key}.sample=True` (a per-image count) is not '
                'supported inside Swin windows: every window drops the same '
                'count.')
        return super().window_r(window_size, where)

    def window_reduce(self, x, metric, r, labels=None, attn=None,
                      layout=None):
        """Drop ``r`` tokens of every window by the selector's keep score;
        the dropped ones skip the block.

        The selector scores each window's tokens (its global half: the mean
        over the window's image cells); the split is TPS's
        (:func:`~mmtokenprune.ops.window_prune.window_keep_split`: padding
        first, every label group keeps a token, ``r`` lowered to what every
        window of the layout allows). A dropped position is set aside with
        its input feature (``dense='last'``), so the block returns it
        unchanged. Inference gathers the kept tokens; training keeps all
        ``ws * ws`` and masks the dropped ones as keys by the map's
        ``policy``: the top Gumbel-perturbed keep probabilities of each
        window, straight-through, so the selector learns through the
        attention. No package token (``metric`` and ``attn`` are unused).
        """
        BnW, N, C = x.shape
        ws = math.isqrt(int(N))
        log_scores, scores = self.selector(
            x, window_real(labels, BnW, x.dtype))
        soft = None
        if self.training:
            soft = gumbel_softmax(log_scores, tau=self.tau, hard=False)[..., 0]
            scores = soft.detach()
        else:
            scores = scores[..., 0]
        keep_idx, drop_idx = window_keep_split(scores, r, labels, layout)
        if not self.training:
            return _window_keep(x, keep_idx, drop_idx)
        moved = torch.zeros(BnW, N, dtype=torch.uint8, device=x.device)
        moved = moved.scatter_(1, drop_idx, 1).bool()
        rank = torch.arange(drop_idx.shape[1], device=x.device)
        target = torch.zeros(BnW, N, dtype=torch.long, device=x.device)
        target.scatter_(1, drop_idx, rank.expand_as(drop_idx))
        tokens = TokenMap.identity(BnW, (ws, ws), x.device, x.dtype)
        tokens = tokens.set_aside(moved, _gather(x, drop_idx), target)
        keep = window_keep_mask(keep_idx, N, soft, x.dtype)
        return x, replace(tokens, policy=keep)
