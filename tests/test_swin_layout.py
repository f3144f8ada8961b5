"""The window layout cache and the fewer-pass in-window merge.

Layouts (index maps, labels, shift mask, padding rows, layout counts) are
computed once per ``(grid, device)`` and shared by every block of that
layout, keyed on Python values; nothing is kept on modules, and what the
cache hands out equals a fresh computation after any forward.
"""
import copy

import pytest
import torch

from mmtokenprune.models import PrunedSwinTransformer
from mmtokenprune.models.reducers import ATME, ToMe
from mmtokenprune.ops import TokenMap
from mmtokenprune.ops.matching import plan_from_best
from mmtokenprune.ops.schedule import Step
from mmtokenprune.ops.window import WindowGrid, window_labels, window_layout
from mmtokenprune.ops.window_matching import (atme_window_best,
                                              atme_window_roles,
                                              atme_window_scores)
from mmtokenprune.ops.window_merge import (apply_label_rules, window_best,
                                           window_label_rules, window_merge,
                                           window_merge_best)
from mmtokenprune.ops.window_prune import layout_token_counts

# two stages with padding and shifts at 60 x 44 (15 x 11, then 8 x 6)
SWIN = dict(
    arch=dict(embed_dims=16, depths=(2, 2), num_heads=(2, 2)),
    window_size=4,
    img_size=64,
    out_indices=(0, 1),
    pad_small_map=True)
SHAPE = (2, 3, 60, 44)
REDUCERS = [
    dict(type='ATME', r=3),
    dict(type='ToMe', r=4),
    dict(type='eTPS', r=5),
    dict(type='dTPS', r=5),
    dict(type='SPViT', r=5),
]


def _swin(token_cfg=None):
    torch.manual_seed(0)
    model = PrunedSwinTransformer(**copy.deepcopy(SWIN), token_cfg=token_cfg)
    model.init_weights()
    model.eval()
    return model


def _equal_layouts(a, b):
    for x, y in zip(a, b):
        if isinstance(x, tuple):
            _equal_layouts(x, y)
        elif isinstance(x, torch.Tensor):
            assert torch.equal(x, y)
        else:
            assert x == y


@pytest.mark.parametrize('token_cfg', [None] + REDUCERS,
                         ids=lambda c: c['type'] if c else 'baseline')
def test_layouts_are_shared_by_blocks_and_stay_unchanged(token_cfg):
    """One layout per (shape, shift) is computed; every other block takes
    it from the cache; after forward (and backward) the cached tensors
    still equal an uncached computation (nobody wrote into them)."""
    model = _swin(token_cfg)
    window_layout.cache_clear()
    x = torch.randn(*SHAPE)
    with torch.no_grad():
        first = model(x)
    info = window_layout.cache_info()
    # stage 0: 15 x 11 regular and shifted, stage 1: 8 x 6 the same
    assert info.misses == 4 and info.hits >= 0
    with torch.no_grad():
        again = model(x)
    assert window_layout.cache_info().misses == 4  # all shared now
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    model.train()
    sum(o.square().mean() for o in model(x)).backward()
    for hw in ((15, 11), (8, 6)):
        for shift in (0, 2):
            grid = WindowGrid(hw, 4, shift)
            cached = window_layout(grid, torch.device('cpu'))
            fresh = window_layout.uncached(grid, torch.device('cpu'))
            assert cached is window_layout(grid, torch.device('cpu'))
            _equal_layouts(cached, fresh)


@pytest.mark.parametrize('token_cfg', REDUCERS, ids=lambda c: c['type'])
def test_no_module_keeps_layout_state(token_cfg):
    """Forwards leave every module's attributes as they were (no memo in
    a block's ``__dict__``)."""
    model = _swin(token_cfg)
    before = {n: set(vars(m)) for n, m in model.named_modules()}
    with torch.no_grad():
        model(torch.randn(*SHAPE))
        model(torch.randn(1, 3, 33, 47))
    after = {n: set(vars(m)) for n, m in model.named_modules()}
    assert after == before


def test_layout_made_in_inference_mode_serves_training():
    """A layout first built under ``torch.inference_mode()`` is an ordinary
    tensor: a later training forward can save it for backward."""
    model = _swin(dict(type='ATME', r=3))
    window_layout.cache_clear()
    with torch.inference_mode():
        model(torch.randn(*SHAPE))
    model.train()
    out = model(torch.randn(*SHAPE).requires_grad_())
    sum(o.sum() for o in out).backward()


GRIDS = [((15, 11), 4, 0), ((15, 11), 4, 2), ((8, 6), 4, 2),
         ((13, 10), 7, 3), ((14, 14), 7, 0)]


@pytest.mark.parametrize('hw,ws,shift', GRIDS)
@pytest.mark.parametrize('axis', [0, 1])
def test_atme_best_equals_the_max_of_its_scores(hw, ws, shift, axis):
    """Candidates instead of score matrices: the same best score and
    destination for every source, label rules included."""
    grid = WindowGrid(hw, ws, shift)
    layout = window_layout(grid, torch.device('cpu'))
    src, dst = atme_window_roles(ws, axis)
    B = 3
    metric = torch.randn(B * grid.num_windows, ws * ws, 8)
    # sources with equally good candidates: ties go to the first
    metric[:, 2] = metric[:, 0]  # source 1, pairing along W
    metric[:, 2 * ws] = metric[:, 0]  # source ws, pairing along H
    labels = layout.labels
    scores = atme_window_scores(metric, src, dst, axis)
    mixed = bonus = None
    if labels is not None:
        mixed, bonus, _ = window_label_rules(labels, src, dst, layout)
        scores = apply_label_rules(scores, mixed, bonus, grid.num_windows)
    ref_val, ref_dst = scores.max(dim=-1)
    val, best = atme_window_best(metric, src, dst, axis, mixed, bonus,
                                 grid.num_windows)
    assert torch.equal(val, ref_val)
    assert torch.equal(best, ref_dst)


@pytest.mark.parametrize('method', ['ATME', 'ToMe'])
@pytest.mark.parametrize('hw,ws,shift', GRIDS)
def test_fewer_pass_merge_equals_plan_and_merge(method, hw, ws, shift):
    """window_merge_best gives exactly what the plan, the map composed with
    it and window_merge give (same rows, same order of additions)."""
    grid = WindowGrid(hw, ws, shift)
    layout = window_layout(grid, torch.device('cpu'))
    reducer = (ATME if method == 'ATME' else ToMe)(Step(r=1), index=1)
    src, dst = reducer.window_roles(ws)
    BnW = 2 * grid.num_windows
    x = torch.randn(BnW, ws * ws, 8)
    metric = torch.randn(BnW, ws * ws, 8)
    r = 6
    val, best, r = reducer.window_best(metric, src, dst, r, layout.labels,
                                       layout)
    out, tokens = window_merge_best(x, val, best, src, dst, r)
    plan = plan_from_best(val, best, src.expand(BnW, -1),
                          dst.expand(BnW, -1), r)
    ref_tokens = TokenMap.identity(BnW, (ws, ws), dtype=x.dtype).apply(plan)
    assert torch.equal(out, window_merge(x, plan, ref_tokens.size))
    for name in ('assign', 'size', 'anchor'):
        assert torch.equal(getattr(tokens, name), getattr(ref_tokens, name))
    # and the generic path (full scores) agrees with ATME's candidates
    scores = reducer.window_scores(metric, src, dst)
    assert torch.equal(
        window_best(scores, src, dst, 6, layout.labels)[1], best)


@pytest.mark.parametrize('hw,ws,shift', GRIDS)
@pytest.mark.parametrize('method', ['ATME', 'ToMe', 'prune'])
def test_cached_layout_counts_equal_the_reducer_counts(hw, ws, shift, method):
    grid = WindowGrid(hw, ws, shift)
    labels = window_labels(grid)
    for r in (1, 4, ws * ws // 2):
        if method == 'prune':
            from mmtokenprune.ops.window_prune import window_prune_counts
            expected = window_prune_counts(labels, r)
            got = layout_token_counts(grid, r)
        else:
            reducer = (ATME if method == 'ATME' else ToMe)(Step(r=1), 0)
            expected = reducer.window_token_counts(labels, r)
            got = reducer.window_layout_counts(grid, r)
        assert got == expected
