"""ATME and ToMe: reducers that fold matched tokens into others."""
import functools

import torch
from mmengine.logging import print_log

from ...ops import atme_plan, tome_plan
from ...ops.matching import ALTERNATIONS, NEIGHBOURHOODS, ROLES
from ...ops.window import layout_cache, layout_tensors
from ...ops.window_matching import (atme_window_best, atme_window_roles,
                                    atme_window_scores, tome_window_roles,
                                    tome_window_scores)
from ...ops.window_merge import window_label_rules
from ...registry import TOKEN_REDUCERS
from .base import TokenReducer

__all__ = ['ATME', 'ToMe']

METRICS = ('keys', 'tokens')
PLACES = ('after_attention', 'before_block')


@layout_cache
def _tome_roles(window_size: int, device):
    # fixed sizes for torch.compile: the roles are a boolean mask's
    return layout_tensors(tome_window_roles, window_size, device=device)


@layout_cache
def _atme_roles(window_size: int, axis: int, device):
    return atme_window_roles(window_size, axis, device)


@TOKEN_REDUCERS.register_module()
class ToMe(TokenReducer):
    """ToMe bipartite soft matching, the training-free baseline, as the
    official code merges.

    `Token Merging: Your ViT but Faster <https://arxiv.org/abs/2210.09461>`_.
    Sequence: :func:`~mmtokenprune.ops.tome_plan`; ``r`` above half of the
    patch tokens is clamped to half (once logged), as the official code
    does. Windows (no official code): the same parity rule over each
    window's flat ``ws * ws`` sequence, which has no extra tokens (on an odd
    ``ws``, Swin's 7, a checkerboard).

    Options:
        alternate (str): ``'sequence'`` (the official code: sources and
            destinations alternate over the whole sequence, extra tokens
            included, and the output is ``[extras, unmerged sources,
            destinations]``) or ``'patches'`` (mmtokenprune 0.1: alternate
            over the patch tokens, keep sequence order). Sequences only.
            Defaults to 'sequence'.
    """

    options = dict(alternate='sequence')

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.check_choice('alternate', ALTERNATIONS)

    def num_removed(self, num_tokens, where=''):
        requested = self.step.requested(num_tokens)
        r = min(requested, num_tokens // 2)
        if r < requested and not torch.compiler.is_compiling():
            _log_clamp(self.key, self.index, requested, num_tokens, where)
        return r

    def plan(self, metric, tokens, r):
        return tome_plan(metric, r, self.num_extra_tokens,
                         self.alternate)

    def window_roles(self, window_size, device=None):
        if self.alternate != 'sequence':
            raise ValueError(
                f'`{self.key}.alternate={self.alternate!r}` applies to '
                "token sequences (ViT) only; Swin windows take "
                "alternate='sequence'.")
        return _tome_roles(window_size, device)

    def window_scores(self, metric, src_idx, dst_idx):
        return tome_window_scores(metric, src_idx, dst_idx)


@functools.lru_cache(maxsize=64)
def _log_clamp(key: str, index: int, requested: int, num_tokens: int,
               where: str) -> None:
    """One log line per clamped setting (cached: not once per forward)."""
    at = f' at {where}' if where else ''
    print_log(
        f'`{key}` type=\'ToMe\' (reducing layer {index}{at}): r={requested} '
        f'is more than half of {num_tokens} patch tokens; merging '
        f'{num_tokens // 2}, as the official ToMe clamps it.',
        logger='current')


@TOKEN_REDUCERS.register_module()
class ATME(TokenReducer):
    """Asymmetric merging of neighbouring tokens (CAIT; our reading).

    `CAIT <https://arxiv.org/abs/2309.15755>`_ names ATME and says it merges
    neighbouring tokens while preserving the spatial structure; the method
    section is not available, so the rules are ours: see
    :func:`mmtokenprune.ops.atme_plan` (sequence) and
    :mod:`mmtokenprune.ops.window_matching` (windows). Even reducing layers
    pair along W, odd ones along H.

    Options (``token_cfg`` keys; sequences only, Swin windows refuse
    other values than the defaults):

    - ``roles``: ``'axis'`` (sources and destinations alternate along the
      layer's axis), ``'checkerboard'`` (along both axes, so a source
      has up to four touching destinations instead of two) or
      ``'quincunx'`` (the checkerboard on even reducing layers, rows on
      odd ones, so the next layer splits the checkerboard's survivors in
      two);
    - ``neighbourhood``: 4, or 8 (regions touching at a corner match too);
    - ``metric``: ``'keys'`` (the layer's attention keys averaged over
      heads, as ToMe) or ``'tokens'`` (the patch tokens themselves, after
      the attention's residual, or the block's input before it);
    - ``where``: ``'after_attention'`` (between attention and MLP, as
      ToMe) or ``'before_block'`` (the whole block, attention included,
      runs on the merged tokens; there are no keys yet, so it takes
      ``metric='tokens'``).
    """

    options = dict(roles='axis', neighbourhood=4, metric='keys',
                   where='after_attention')

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.check_choice('roles', ROLES)
        self.check_choice('neighbourhood', NEIGHBOURHOODS)
        self.check_choice('metric', METRICS)
        self.check_choice('where', PLACES)
        if self.where == 'before_block' and self.metric == 'keys':
            raise ValueError(
                f"`{self.key}.metric`: 'keys' needs where='after_attention' "
                "(before the block the layer has no keys yet); with "
                "where='before_block' set metric='tokens'.")

    def match_features(self, patches, keys):
        if self.metric == 'tokens':
            return patches
        return super().match_features(patches, keys)

    @property
    def axis(self) -> int:
        """Pairing axis of this layer: 1 (W) for even, 0 (H) for odd."""
        return 1 if self.index % 2 == 0 else 0

    def plan(self, metric, tokens, r):
        return atme_plan(metric, tokens, r, axis=self.axis, roles=self.roles,
                         neighbourhood=self.neighbourhood)

    def window_roles(self, window_size, device=None):
        if (self.roles, self.neighbourhood, self.metric,
                self.where) != ('axis', 4, 'keys', 'after_attention'):
            raise ValueError(
                f"`{self.key}`: ATME's roles={self.roles!r}, "
                f'neighbourhood={self.neighbourhood}, '
                f'metric={self.metric!r} and where={self.where!r} apply '
                "to token sequences (ViT) only; Swin windows take "
                "roles='axis', neighbourhood=4, metric='keys', "
                "where='after_attention' (they match on the block's input).")
        return _atme_roles(window_size, self.axis, device)

    def window_scores(self, metric, src_idx, dst_idx):
        return atme_window_scores(metric, src_idx, dst_idx, self.axis)

    def window_best(self, metric, src_idx, dst_idx, r, labels=None,
                    layout=None):
        """As the base (the max of :meth:`window_scores` under the label
        rules), from each source's touching destinations
        (:func:`~mmtokenprune.ops.window_matching.atme_window_best`)."""
        mixed = bonus = None
        num_windows = 1
        if labels is not None:
            mixed, bonus, capacity = window_label_rules(
                labels, src_idx, dst_idx, layout)
            r = min(r, capacity)
            num_windows = labels.shape[0]
        best_val, best_dst = atme_window_best(metric, src_idx, dst_idx,
                                              self.axis, mixed, bonus,
                                              num_windows)
        return best_val, best_dst, r
