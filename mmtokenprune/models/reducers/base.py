"""The contract every token reducer fulfils, for ViT and Swin alike.

A reducer is one registered :class:`TokenReducer` subclass, built once per
reducing layer from the backbone's ``token_cfg``. It plans a reduction
step, a :class:`~mmtokenprune.ops.MergePlan`, in two settings:

- a token sequence (:class:`PrunedVisionTransformer`): :meth:`plan` gets the
  per-token metric and the :class:`~mmtokenprune.ops.TokenMap` of the
  current tokens;
- a batch of windows (:class:`PrunedSwinTransformer`): the block hands
  :meth:`window_reduce` its windows and gets them back reduced, with their
  :class:`~mmtokenprune.ops.TokenMap`. The default merges: the reducer
  names its sources and destinations per window (:meth:`window_roles`,
  fixed: every Swin block starts from intact windows) and scores them
  (:meth:`window_scores`); shift regions, padding and the plan itself are
  the shared part (:mod:`mmtokenprune.ops.window_merge`). Pruning reducers
  (TPS) override :meth:`window_reduce`, :meth:`window_token_counts` and
  :meth:`max_window_r`.

Options of its own are class attributes listed in ``options`` (name ->
default); ``token_cfg`` keys that are not common schedule keys reach the
reducer, which refuses unknown ones by name. A few class attributes say
where and how it acts (``where``, ``prunes``, ``supports_prop_attn``,
``supports_windows``). Backbones never branch on the reducer's type, so
adding one is writing one class and registering it. Learned parts (a
predictor) are submodules of the reducer, so they load with the layer that
uses them. Nothing is stored during a forward.

In a sequence the patch tokens sit between leading extra tokens (cls,
dist) and trailing ones (SPViT's package tokens); the
:class:`~mmtokenprune.ops.TokenMap` covers the patch tokens only.
"""
import math
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from ...ops import MergePlan, TokenMap, merge_tokens
from ...ops.schedule import Step
from ...ops.matching import plan_from_best
from ...ops.window import WindowLayout
from ...ops.window_merge import (max_window_r, window_best,
                                 window_merge_best, window_token_counts)
from ...ops.window_prune import (layout_token_counts, max_window_prune,
                                 window_prune_counts)

__all__ = ['TokenReducer']


class TokenReducer(nn.Module):
    """Base of token reducers (one instance per reducing layer).

    Subclasses implement :meth:`plan`, :meth:`window_roles` and
    :meth:`window_scores` (or override :meth:`reduce` and
    :meth:`window_reduce`), and list their own options in ``options``.

    Args:
        step (Step): how many tokens this layer removes.
        index (int): position of this layer among the reducing layers.
        num_extra_tokens (int): leading tokens (cls, dist) left untouched.
            Defaults to 0.
        key (str): config key named in errors. Defaults to 'token_cfg'.
        **options: the reducer's own options (see ``options``).
    """

    #: The reducer's own ``token_cfg`` keys and their defaults.
    options: Dict[str, Any] = {}
    #: Where a ViT layer runs it: ``'after_attention'`` (between attention
    #: and MLP; gets the layer's queries and keys) or ``'before_block'``.
    where: str = 'after_attention'
    #: Pruning reducers may remove all tokens but one per step (merging:
    #: at most half, a source needs a destination).
    prunes: bool = False
    #: Whether proportional attention (``log(size)`` bias) applies.
    supports_prop_attn: bool = True
    #: Whether it reduces inside Swin windows (:meth:`window_reduce`).
    supports_windows: bool = True
    #: Trailing extra tokens one step appends (SPViT: its package token).
    tail_tokens: int = 0
    #: Whether training makes a learned keep decision: a straight-through
    #: ``TokenMap.policy`` whose kept count varies (dTPS, SPViT), which a
    #: keep-ratio loss can steer.
    learns_keep: bool = False

    def __init__(self,
                 step: Step,
                 index: int,
                 num_extra_tokens: int = 0,
                 embed_dims: Optional[int] = None,
                 num_heads: Optional[int] = None,
                 key: str = 'token_cfg',
                 **options):
        super().__init__()
        self.check_options(options, key)
        self.step = step
        self.index = index
        self.num_extra_tokens = num_extra_tokens
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.key = key
        for name, default in self.options.items():
            setattr(self, name, options.get(name, default))

    @classmethod
    def check_options(cls, options: Dict, key: str = 'token_cfg') -> None:
        """Refuse options this reducer does not have, naming them.

        Raises:
            ValueError: for unknown option names.
        """
        unknown = sorted(set(options) - set(cls.options))
        if unknown:
            from .token_cfg import TokenCfg
            raise ValueError(
                f'`{key}` has unknown keys {unknown} for '
                f"type='{cls.__name__}'; allowed: {list(TokenCfg.COMMON)} "
                f'and its own {sorted(cls.options)}.')

    def check_choice(self, name: str, choices) -> None:
        """Refuse a value of option ``name`` outside ``choices``, naming
        the key and the allowed values.

        Raises:
            ValueError: if ``getattr(self, name)`` is not in ``choices``.
        """
        value = getattr(self, name)
        if value not in choices:
            raise ValueError(f'`{self.key}.{name}` must be one of '
                             f'{list(choices)}; got {value!r}.')

    def num_removed(self, num_tokens: int, where: str = '') -> int:
        """Tokens this step removes from ``num_tokens`` (checked)."""
        key = f'{self.key} ({where})' if where else self.key
        most = num_tokens - 1 if self.prunes else None
        return self.step.num_removed(num_tokens, key, max_removed=most)

    # ------------------------------------------------------ token sequence
    def split(self, x: Tensor,
              tokens: TokenMap) -> Tuple[Tensor, Tensor, Tensor]:
        """``(B, E, C)`` leading extras, ``(B, N, C)`` patch tokens and
        ``(B, T, C)`` trailing extras of a sequence."""
        E, N = self.num_extra_tokens, tokens.num_tokens
        return x[:, :E], x[:, E:E + N], x[:, E + N:]

    def plan(self, metric: Tensor, tokens: TokenMap, r: int) -> MergePlan:
        """Plan removing ``r`` of the current patch tokens.

        Args:
            metric (Tensor): ``(B, N, d)`` features to compare (attention
                keys averaged over heads).
            tokens (TokenMap): the map of the ``N`` current tokens.
            r (int): tokens to remove.

        Returns:
            MergePlan: from ``N`` to ``N - r`` tokens.
        """
        raise NotImplementedError

    def forward(self,
                x: Tensor,
                tokens: TokenMap,
                queries: Optional[Tensor] = None,
                keys: Optional[Tensor] = None,
                scale: Optional[float] = None) -> Tuple[Tensor, TokenMap]:
        """Reduce the patch tokens of a sequence by this layer's step
        (:meth:`reduce`); extra tokens are never touched.

        Args:
            x (Tensor): ``(B, E + N + T, C)`` tokens, extra tokens first
                and (packages) last.
            tokens (TokenMap): map of the ``N`` patch tokens.
            queries, keys (Tensor, optional): ``(B, heads, E + N + T, d)``
                of this layer's attention (``where='after_attention'``).
            scale (float, optional): the attention's logit scale.

        Returns:
            tuple[Tensor, TokenMap]: ``(B, E + N' + T + A, C)`` (``A``
            tokens appended, e.g. a package) and the map.
        """
        head, patches, tail = self.split(x, tokens)
        patches, tokens, appended = self.reduce(patches, tokens,
                                                (queries, keys, scale))
        parts = [head, patches, tail]
        if appended is not None:
            parts.append(appended)
        return torch.cat(parts, dim=1), tokens

    def reduce(self, patches: Tensor, tokens: TokenMap, attn: Tuple
               ) -> Tuple[Tensor, TokenMap, Optional[Tensor]]:
        """Reduce ``(B, N, C)`` patch tokens.

        This default merges with :meth:`plan` on the keys averaged over
        heads (size-weighted average); pruning reducers override it.

        Args:
            patches (Tensor): ``(B, N, C)``.
            tokens (TokenMap): their map.
            attn (tuple): the layer's ``(queries, keys, scale)``, keys over
                all tokens (extra ones included); Nones before the block.

        Returns:
            tuple: ``(B, N', C)`` patch tokens, their map, and ``(B, A, C)``
            tokens to append after the sequence (or None).
        """
        N = patches.shape[1]
        r = self.num_removed(N)
        if r == 0:
            return patches, tokens, None
        plan = self.plan(self.match_features(patches, attn[1]), tokens, r)
        patches = merge_tokens(patches, plan, tokens.size)
        return patches, tokens.apply(plan), None

    def match_features(self, patches: Tensor, keys: Tensor) -> Tensor:
        """``(B, N, d)`` features :meth:`plan` compares: the layer's
        attention keys of the patch tokens averaged over heads (ToMe's
        choice).

        Args:
            patches (Tensor): ``(B, N, C)`` patch tokens.
            keys (Tensor): ``(B, heads, E + N + T, d)`` keys of all tokens.
        """
        E, N = self.num_extra_tokens, patches.shape[1]
        return keys[:, :, E:E + N].mean(dim=1)

    # ------------------------------------------------------------- windows
    def window_reduce(self,
                      x: Tensor,
                      metric: Tensor,
                      r: int,
                      labels: Optional[Tensor] = None,
                      attn: Optional[nn.Module] = None,
                      layout: Optional[WindowLayout] = None
                      ) -> Tuple[Tensor, TokenMap]:
        """Reduce every window of a Swin block by ``r`` tokens.

        The block calls this before its attention, on intact windows, and
        un-merges the result after its MLP. This default merges
        (:meth:`window_best`, size-weighted average:
        :func:`~mmtokenprune.ops.window_merge.window_merge_best`).

        Args:
            x (Tensor): ``(B * nW, ws * ws, C)`` windows of the residual
                stream (padding cells are zero), windows of one image
                together.
            metric (Tensor): ``(B * nW, ws * ws, C)`` the block's attention
                input before reduction (``norm1(x)``).
            r (int): tokens removed per window; fewer where ``labels``
                leave some window fewer (the same count in every window).
            labels (Tensor, optional): ``(nW, ws * ws)`` cell labels of
                :func:`~mmtokenprune.ops.window.window_labels`; None when
                the windows hold no padding and no shift regions.
            attn (nn.Module, optional): the block's window attention
                (:class:`~mmtokenprune.models.layers.PrunedWindowMSA`),
                for reducers that score by it (its
                ``mean_query_attention``).
            layout (WindowLayout, optional): the
                :func:`~mmtokenprune.ops.window.window_layout` of
                ``labels``: what follows from the labels alone is then
                taken from the layout cache instead of recomputed.

        Returns:
            tuple[Tensor, TokenMap]: ``(B * nW, n, C)`` reduced windows and
            the map of one window's ``ws x ws`` cells onto them (its
            ``anchor`` gives the relative-position bias and shift mask, its
            ``assign`` the un-merge; a ``policy`` keeps all ``ws * ws``
            tokens and masks the pruned ones as keys).
        """
        ws = math.isqrt(int(x.shape[1]))
        src_idx, dst_idx = self.window_roles(ws, x.device)
        with torch.no_grad():
            best_val, best_dst, r = self.window_best(metric, src_idx, dst_idx,
                                                     r, labels, layout)
        return window_merge_best(x, best_val, best_dst, src_idx, dst_idx, r)

    def window_best(self,
                    metric: Tensor,
                    src_idx: Tensor,
                    dst_idx: Tensor,
                    r: int,
                    labels: Optional[Tensor] = None,
                    layout: Optional[WindowLayout] = None
                    ) -> Tuple[Tensor, Tensor, int]:
        """Each source's best destination under the label rules: the max
        of :meth:`window_scores` (see
        :func:`~mmtokenprune.ops.window_merge.window_best`); a reducer may
        compute it without the full score matrices.

        Returns:
            tuple[Tensor, Tensor, int]: ``(B * nW, Ns)`` best scores, their
            positions in ``dst_idx`` and ``r`` as the layout allows it.
        """
        scores = self.window_scores(metric, src_idx, dst_idx)
        return window_best(scores, src_idx, dst_idx, r, labels, layout)

    def window_roles(self, window_size: int,
                     device: Optional[torch.device] = None
                     ) -> Tuple[Tensor, Tensor]:
        """Sources and destinations of one ``ws x ws`` window.

        Returns:
            tuple[Tensor, Tensor]: ``src_idx`` ``(Ns, )`` and ``dst_idx``
            ``(Nd, )`` cell indices.
        """
        raise NotImplementedError

    def window_scores(self, metric: Tensor, src_idx: Tensor,
                      dst_idx: Tensor) -> Tensor:
        """``(B * nW, Ns, Nd)`` scores of sources against destinations.

        Args:
            metric (Tensor): ``(B * nW, ws * ws, d)`` window features.
            src_idx, dst_idx (Tensor): :meth:`window_roles`.
        """
        raise NotImplementedError

    def window_r(self, window_size: int, where: str) -> int:
        """Tokens this reducer merges per ``ws x ws`` window (checked).

        Raises:
            ValueError: naming ``where`` when the window is too small.
        """
        area = window_size * window_size
        where = f'{where} (window {window_size}x{window_size} = {area} ' \
            'tokens)'
        if self.step.r is not None and self.step.r >= area:
            most = area - 1 if self.prunes else area // 2
            raise ValueError(f'`{self.key}.r`: r={self.step.r} at {where} '
                             'must be smaller than the window area (and at '
                             f'most {"" if self.prunes else "half of it, "}'
                             f'{most}).')
        return self.num_removed(area, where)

    @torch.no_grad()
    def window_plan(self,
                    metric: Tensor,
                    r: int,
                    labels: Optional[Tensor] = None,
                    layout: Optional[WindowLayout] = None) -> MergePlan:
        """Plan merging ``r`` tokens in every window.

        Args:
            metric (Tensor): ``(B * nW, ws * ws, d)`` window features.
            r (int): tokens merged per window.
            labels (Tensor, optional): ``(nW, ws * ws)`` cell labels of
                :func:`~mmtokenprune.ops.window.window_labels`; None when
                every cell may merge with every other.
            layout (WindowLayout, optional): the layout of ``labels``.

        Returns:
            MergePlan: from ``ws * ws`` to ``ws * ws - r`` tokens per window
            (fewer merged where labels leave some window fewer pairs; see
            :func:`~mmtokenprune.ops.window_merge.window_merge_plan`).
        """
        ws = math.isqrt(int(metric.shape[1]))
        src_idx, dst_idx = self.window_roles(ws, metric.device)
        best_val, best_dst, r = self.window_best(metric, src_idx, dst_idx, r,
                                                 labels, layout)
        BnW = metric.shape[0]
        return plan_from_best(best_val, best_dst, src_idx.expand(BnW, -1),
                              dst_idx.expand(BnW, -1), r)

    def window_token_counts(self, labels: Tensor, r: int) -> Tuple[int, int]:
        """``r`` as removed by :meth:`window_reduce` and the non-padding
        tokens left, for one image of this window layout (merging:
        :func:`~mmtokenprune.ops.window_merge.window_token_counts`; pruning
        reducers: :func:`~mmtokenprune.ops.window_prune.window_prune_counts`).
        """
        if self.prunes:
            return window_prune_counts(labels, r)
        ws = math.isqrt(int(labels.shape[1]))
        return window_token_counts(labels, r,
                                   *self.window_roles(ws, labels.device))

    def window_layout_counts(self, grid, r: int) -> Tuple[int, int]:
        """:meth:`window_token_counts` of the labels of ``grid`` (a
        :class:`~mmtokenprune.ops.window.WindowGrid`), computed once per
        layout, ``r`` and roles and shared by every block (a reducer that
        overrides :meth:`window_token_counts` overrides this too)."""
        if self.prunes:
            return layout_token_counts(grid, r)
        src, dst = self.window_roles(grid.window_size)
        return layout_token_counts(grid, r, (tuple(src.tolist()),
                                             tuple(dst.tolist())))

    def max_window_r(self, window_size: int, shift: int = 0) -> int:
        """The ``r`` that every window of every input allows."""
        if self.prunes:
            return max_window_prune(window_size, shift)
        return max_window_r(window_size, *self.window_roles(window_size),
                            shift)

    def extra_repr(self) -> str:
        opts = ''.join(f', {k}={getattr(self, k)!r}' for k in self.options)
        return f'step={self.step}, index={self.index}{opts}'
