"""Window layout and in-window merging (mmtokenprune.ops.window*, and the
window half of the ATME and ToMe reducers)."""
import pytest
import torch
from mmpretrain.models.utils import ShiftWindowMSA

from mmtokenprune.models.reducers import ATME, ToMe
from mmtokenprune.ops import (TokenMap, atme_plan, merge_tokens, tome_plan,
                              unmerge_tokens)
from mmtokenprune.ops.schedule import Step
from mmtokenprune.ops.window import (WindowGrid, region_bias, window_index,
                                     window_labels, window_partition,
                                     window_reverse)
from mmtokenprune.ops.window_merge import (window_capacity, window_merge,
                                           window_unmerge)


def _reducer(method, axis=1):
    """A reducer of ``method`` whose layer pairs along ``axis``."""
    cls = dict(ATME=ATME, ToMe=ToMe)[method]
    return cls(Step(r=1), index=0 if axis == 1 else 1)

GRIDS = [((8, 8), 4, 0), ((8, 8), 4, 2), ((9, 6), 4, 2), ((13, 10), 7, 3),
         ((7, 7), 7, 3), ((15, 5), 7, 0)]


def _upstream_windows(x, grid):
    B, L, C = x.shape
    (H, W), (Hp, Wp), ws = grid.hw, grid.padded, grid.window_size
    x = torch.nn.functional.pad(
        x.view(B, H, W, C), (0, 0, 0, Wp - W, 0, Hp - H))
    if grid.shift:
        x = torch.roll(x, (-grid.shift, -grid.shift), dims=(1, 2))
    return ShiftWindowMSA.window_partition(x, ws).view(-1, ws * ws, C)


@pytest.mark.parametrize('hw,ws,shift', GRIDS)
def test_partition_matches_upstream_and_reverses(hw, ws, shift):
    grid = WindowGrid(hw, ws, shift)
    x = torch.randn(2, hw[0] * hw[1], 5)
    windows = window_partition(x, grid)
    assert windows.shape == (2 * grid.num_windows, ws * ws, 5)
    torch.testing.assert_close(windows, _upstream_windows(x, grid))
    torch.testing.assert_close(window_reverse(windows, grid), x)


@pytest.mark.parametrize('hw,ws,shift', GRIDS)
def test_labels_give_upstream_shift_mask_and_padding(hw, ws, shift):
    grid = WindowGrid(hw, ws, shift)
    labels = window_labels(grid)
    ref = ShiftWindowMSA.get_attn_mask(grid.padded, ws, shift)
    if ref is None:
        ref = torch.zeros(grid.num_windows, ws * ws, ws * ws)
    torch.testing.assert_close(region_bias(labels), ref)
    ones = torch.ones(1, hw[0] * hw[1], 1)
    is_real = window_partition(ones, grid)[..., 0] == 1
    assert torch.equal(labels % 2 == 0, is_real)


def test_roles_split_window_in_halves():
    for ws, method in ((7, 'ToMe'), (7, 'ATME'), (4, 'ToMe'), (4, 'ATME')):
        src, dst = _reducer(method).window_roles(ws)
        assert torch.equal(
            torch.cat([src, dst]).sort().values, torch.arange(ws * ws))
        assert len(dst) >= ws * ws // 2


@pytest.mark.parametrize('axis', [0, 1])
def test_atme_on_intact_window_equals_atme_plan(axis):
    metric = torch.randn(6, 49, 8)
    plan = _reducer('ATME', axis).window_plan(metric, 12)
    ref = atme_plan(metric, TokenMap.identity(6, (7, 7)), 12, axis)
    assert torch.equal(plan.old2new, ref.old2new)
    assert torch.equal(plan.keep_idx, ref.keep_idx)


@pytest.mark.parametrize('ws', [7, 8])
def test_tome_window_merges_as_tome_plan(ws):
    # the same parity rule as the sequence (flat cells, no extra tokens):
    # the same tokens fold into the same heads (windows keep cell order)
    metric = torch.randn(6, ws * ws, 8)
    plan = _reducer('ToMe').window_plan(metric, 20)
    ref = tome_plan(metric, 20)
    assert torch.equal(plan.keep_idx.gather(1, plan.old2new),
                       ref.keep_idx.gather(1, ref.old2new))


@pytest.mark.parametrize('method', ['ATME', 'ToMe'])
@pytest.mark.parametrize('hw,ws,shift', GRIDS)
def test_merge_invariants(method, hw, ws, shift):
    grid = WindowGrid(hw, ws, shift)
    labels = window_labels(grid)
    B, N = 2, ws * ws
    r = min(_reducer(method).max_window_r(ws, shift), N // 2)
    metric = torch.randn(B * grid.num_windows, N, 6)
    plan = _reducer(method).window_plan(metric, r, labels)
    tokens = TokenMap.identity(B * grid.num_windows, (ws, ws)).apply(plan)
    # sizes sum to the window area, r tokens gone from every window
    assert tokens.size.shape == (B * grid.num_windows, N - r)
    assert torch.all(tokens.size.sum(1) == N)
    # every merged token's cells share one label (shift region, padding),
    # the label of its anchor; assign never leaves its window (row)
    full = labels.repeat(B, 1)
    anchor_label = full.gather(1, tokens.anchor)
    assert torch.equal(anchor_label.gather(1, tokens.assign), full)
    assert tokens.assign.max() < N - r


def test_padding_merges_first():
    grid = WindowGrid((5, 5), 4, 0)  # 8x8 padded: 39 of 64 cells padding
    labels = window_labels(grid)
    real = labels % 2 == 0
    metric = torch.randn(grid.num_windows, 16, 4) * real.unsqueeze(-1)
    plan = _reducer('ToMe', 1).window_plan(metric, 4, labels)
    tokens = TokenMap.identity(4, (4, 4)).apply(plan)
    per_token = torch.zeros(4, 12).scatter_add_(1, tokens.assign, real.float())
    # window 0 has no padding and merges real tokens; windows 1-3 have 12,
    # 12 and 15 padding cells and spend all of r=4 on them
    assert per_token[0].count_nonzero() == 12
    assert torch.equal(per_token[1:].count_nonzero(1), real[1:].sum(1))
    assert per_token[1:].max() == 1


@pytest.mark.parametrize('method', ['ATME', 'ToMe'])
def test_unmerge_of_duplicates_is_identity(method):
    grid = WindowGrid((9, 6), 4, 2)
    labels = window_labels(grid)
    n = 2 * grid.num_windows
    plan = _reducer(method, 0).window_plan(torch.randn(n, 16, 4), 4, labels)
    tokens = TokenMap.identity(n, (4, 4)).apply(plan)
    # every merged group holds copies of one feature
    x = unmerge_tokens(torch.randn(n, 12, 8), tokens)
    merged = merge_tokens(x, plan, torch.rand(n, 16) + 0.5)
    torch.testing.assert_close(unmerge_tokens(merged, tokens), x)


def test_max_window_r_values():
    assert _reducer('ToMe').max_window_r(7, 3) == 24
    assert _reducer('ATME').max_window_r(7, 3) == 17
    assert _reducer('ATME', 0).max_window_r(7, 0) == 18
    assert _reducer('ATME').max_window_r(4, 2) == 4


@pytest.mark.parametrize('hw,ws,shift', GRIDS[2:4])
def test_fast_merge_and_unmerge_equal_token_map_ops(hw, ws, shift):
    grid = WindowGrid(hw, ws, shift)
    index = window_index(grid)
    x = torch.randn(2, hw[0] * hw[1], 6)
    w = window_partition(x, grid, index)
    n = w.shape[0]
    plan = _reducer('ToMe', 1).window_plan(w, 5, window_labels(grid))
    tokens = TokenMap.identity(n, (ws, ws)).apply(plan)
    merged = window_merge(w, plan, tokens.size)
    torch.testing.assert_close(merged,
                               merge_tokens(w, plan, torch.ones(n, ws * ws)))
    torch.testing.assert_close(
        window_unmerge(merged, tokens.assign, grid, index),
        window_reverse(unmerge_tokens(merged, tokens), grid, index))


def test_r_is_capped_by_the_layout():
    # ws=7, shift 3, one padding column: a pure-padding odd column (ATME
    # sources) has no padding destination, so at most 17 of 24 merge
    grid = WindowGrid((14, 13), 7, 3)
    labels = window_labels(grid)
    atme = _reducer('ATME')
    assert window_capacity(labels, *atme.window_roles(7)) == 17
    metric = torch.randn(2 * grid.num_windows, 49, 4)
    plan = _reducer('ATME', 1).window_plan(metric, 20, labels)
    assert plan.num_out == 49 - 17
    assert atme.window_token_counts(labels, 20)[0] == 17
    # without padding and shift the same r is merged as asked
    plan = _reducer('ATME', 1).window_plan(metric, 20, None)
    assert plan.num_out == 29
