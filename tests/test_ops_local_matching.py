"""ATME's local matching equals the dense (all-pairs) reference.

``atme_plan`` scores only touching source-destination pairs (read off the
cell grid) and finds the nearest destination by a distance transform;
``atme_plan_dense`` builds the full score matrix. Their plans must be the
same, ties included, on irregular maps made by real merging. In Swin
windows the touching pairs are precomputed per window size.
"""
import pytest
import torch

from mmtokenprune.ops import MergePlan, TokenMap, tome_plan
from mmtokenprune.ops import matching
from mmtokenprune.ops import token_map as merging
from mmtokenprune.ops.matching import (_atme_roles, _touching_best,
                                       atme_plan, atme_plan_dense)
from mmtokenprune.ops.window_matching import (atme_window_roles,
                                              atme_window_scores)
from mmtokenprune.ops.window_merge import window_merge_plan


def _same(plan, ref):
    return (torch.equal(plan.old2new, ref.old2new)
            and torch.equal(plan.keep_idx, ref.keep_idx))


def _metric(gen, B, N, tied):
    """Gaussian features, or +-1 vectors (exact cosines, many ties)."""
    if tied:
        return torch.randint(0, 2, (B, N, 4), generator=gen).float() * 2 - 1
    return torch.randn(B, N, 8, generator=gen)


def _no_touch_count(metric, tokens, axis):
    """Sources without a touching destination (the fallback's users)."""
    roles = _atme_roles(tokens, axis)
    B, N = roles.shape
    rank = torch.empty_like(roles).scatter_(
        1, roles, torch.arange(N).expand(B, N))
    _, first = _touching_best(metric, tokens, rank, N // 2)
    return int((first == N - N // 2).sum())


def _compare_on_merged_maps(grids, seed, roles='axis', neighbourhood=4):
    """Plans of both paths at every step of several merging rounds (ATME
    and ToMe steps, so regions get irregular and some disconnected)."""
    variant = dict(roles=roles, neighbourhood=neighbourhood)
    gen = torch.Generator().manual_seed(seed)
    checked = fallback = 0
    for k, (H, W) in enumerate(grids):
        B = 3
        tokens = TokenMap.identity(B, (H, W))
        step = 0
        while tokens.num_tokens >= 2:
            N = tokens.num_tokens
            metric = _metric(gen, B, N, tied=(k + step) % 2 == 1)
            for axis in (0, 1):
                fallback += _no_touch_count(metric, tokens, axis)
                for r in sorted({0, 1, N // 4, N // 2}):
                    ref = atme_plan_dense(metric, tokens, r, axis, **variant)
                    assert _same(
                        atme_plan(metric, tokens, r, axis, **variant),
                        ref), (H, W, N, r, axis)
                    checked += 1
            r = int(torch.randint(1, N // 2 + 1, (1, ), generator=gen))
            plan = tome_plan(metric, r) if step % 3 == 2 else \
                atme_plan_dense(metric, tokens, r, step % 2, **variant)
            tokens = tokens.apply(plan)
            step += 1
    return checked, fallback


@pytest.mark.parametrize('seed', [0, 1])
def test_local_plan_equals_dense_on_merged_maps(seed):
    grids = [(6, 8), (7, 5), (1, 9), (9, 1), (10, 9), (4, 4)]
    checked, fallback = _compare_on_merged_maps(grids, seed)
    assert checked > 200
    assert fallback > 0  # the no-touching-destination path was exercised


@pytest.mark.parametrize('roles,neighbourhood', [('axis', 8),
                                                  ('checkerboard', 4),
                                                  ('checkerboard', 8),
                                                  ('quincunx', 4),
                                                  ('quincunx', 8)])
def test_variants_local_plan_equals_dense(roles, neighbourhood):
    grids = [(6, 8), (7, 5), (1, 9), (10, 9)]
    checked, _ = _compare_on_merged_maps(grids, 0, roles, neighbourhood)
    assert checked > 100


def test_quincunx_splits_the_checkerboard_survivors_by_row():
    """After a full colour merge (W layer), the H layer's sources are the
    survivors on odd rows and its destinations the cells of the next
    level's grid (even row, even column): half and half, none picked by
    sequence order."""
    gen = torch.Generator().manual_seed(0)
    tokens = TokenMap.identity(2, (8, 8))
    first = atme_plan(torch.randn(2, 64, 8, generator=gen), tokens, 32,
                      axis=1, roles='quincunx')
    tokens = tokens.apply(first)
    ys, xs = tokens.anchor_yx()
    assert bool(((ys + xs) % 2 == 0).all())  # one colour survived
    order = _atme_roles(tokens, axis=0, roles='quincunx')
    src, dst = order[:, :16], order[:, 16:]
    assert bool((ys.gather(1, src) % 2 == 1).all())
    assert bool((ys.gather(1, dst) % 2 == 0).all())
    assert bool((xs.gather(1, dst) % 2 == 0).all())


def _one_similar_neighbour(src_yx, offset):
    """A 4x4 grid where the cell at ``src_yx`` matches only the cell at
    ``offset`` from it (every other pair of cells is orthogonal)."""
    metric = torch.eye(16).unsqueeze(0)
    src = src_yx[0] * 4 + src_yx[1]
    dst = (src_yx[0] + offset[0]) * 4 + src_yx[1] + offset[1]
    metric[0, dst] = metric[0, src]
    return metric, src, dst


# (1, 1) is a source along W (odd column): its W neighbours are
# destinations, its H neighbours sources, its diagonals destinations.
# (1, 2) is a checkerboard source: its four neighbours are destinations,
# its diagonals sources.
@pytest.mark.parametrize('roles,neighbourhood,src_yx,offset,merges', [
    ('axis', 4, (1, 1), (0, 1), True),
    ('axis', 4, (1, 1), (1, 0), False),
    ('axis', 4, (1, 1), (1, 1), False),
    ('axis', 8, (1, 1), (1, 1), True),
    # every diagonal direction (local and dense share the neighbour
    # geometry, so it is pinned here, not by their equality)
    ('axis', 8, (1, 1), (1, -1), True),
    ('axis', 8, (1, 1), (-1, -1), True),
    ('axis', 8, (1, 1), (-1, 1), True),
    ('axis', 4, (1, 1), (1, -1), False),
    ('axis', 8, (1, 1), (1, 0), False),
    ('checkerboard', 4, (1, 2), (1, 0), True),
    ('checkerboard', 4, (1, 2), (0, -1), True),
    ('checkerboard', 8, (1, 2), (1, 1), False),
])
def test_variants_widen_the_candidates(roles, neighbourhood, src_yx, offset,
                                       merges):
    """The first merge of a 4x4 grid joins a source to its only similar
    neighbour exactly when the variant makes that neighbour a candidate."""
    metric, src, dst = _one_similar_neighbour(src_yx, offset)
    tokens = TokenMap.identity(1, (4, 4))
    plan = atme_plan(metric, tokens, 1, axis=1, roles=roles,
                     neighbourhood=neighbourhood)
    assert bool(plan.old2new[0, src] == plan.old2new[0, dst]) is merges


@pytest.mark.parametrize('dense_line', [1, 10**6])
def test_both_distance_transforms_match_dense(monkeypatch, dense_line):
    """Lines longer than ``_DENSE_LINE`` take running minima, shorter ones
    (and ONNX export) a dense min-plus: both must give the dense plan."""
    monkeypatch.setattr(matching, '_DENSE_LINE', dense_line)
    checked, fallback = _compare_on_merged_maps([(5, 13), (10, 7)], 3)
    assert checked > 50 and fallback > 0


def test_source_without_touching_destination_takes_nearest_first():
    """A 1x8 row: tokens T0..T5 with anchors 0 1 3 5 6 7. Odd anchors are
    T1 T2 T3 T5 but only N // 2 = 3 are sources (T1 T2 T3), so T5 becomes
    a destination and the destinations are, in order, T5 T0 T4. T2 (cell
    3) touches only sources; its nearest destinations, T0 and T4, are both
    3 cells away: the first in destination order (T0) must win."""
    assign = torch.tensor([[0, 1, 1, 2, 3, 3, 4, 5]]).repeat(2, 1)
    tokens = TokenMap(
        assign=assign,
        size=torch.tensor([[1., 2., 1., 2., 1., 1.]]).repeat(2, 1),
        anchor=torch.tensor([[0, 1, 3, 5, 6, 7]]).repeat(2, 1),
        grid=(1, 8))
    metric = torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(0))
    assert _no_touch_count(metric, tokens, axis=1) == 2  # T2, both images
    plan = atme_plan(metric, tokens, 3, axis=1)
    assert _same(plan, atme_plan_dense(metric, tokens, 3, axis=1))
    o2n = plan.old2new
    assert (o2n[:, 2] == o2n[:, 0]).all()  # T2 -> T0 (tie with T4)
    assert (o2n[:, 1] == o2n[:, 0]).all()  # T1 touches T0 only
    assert (o2n[:, 3] == o2n[:, 4]).all()  # T3 touches T4 only
    # with r = 2 the sources with a touching destination go first
    assert (atme_plan(metric, tokens, 2, axis=1).old2new[:, 2] ==
            torch.tensor([1, 1])).all()


def test_ties_go_to_the_first_destination():
    """Equal features: every cosine ties. On a 3x5 grid the odd columns
    give 6 sources of N // 2 = 7, so cell 0 is the seventh (ties keep
    sequence order). Sources merge in sequence order (cells 1, 3, 6), each
    into its first touching destination: cell 1 into cell 2 (its left
    neighbour is a source), cell 3 into cell 2 (the first of 2 and 4),
    cell 6 into cell 5 (the first of 5 and 7)."""
    tokens = TokenMap.identity(1, (3, 5))
    metric = torch.ones(1, 15, 4)
    plan = atme_plan(metric, tokens, 3, axis=1)
    assert _same(plan, atme_plan_dense(metric, tokens, 3, axis=1))
    assert tokens.apply(plan).size[0].tolist()[:6] == [1, 3, 1, 2, 1, 1]


def test_local_plan_has_no_quadratic_tensor():
    """Peak memory of the local plan grows linearly: no ``Ns x Nd``
    tensor is built (checked by the largest tensor any op returns)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Largest(TorchDispatchMode):
        numel = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor):
                    Largest.numel = max(Largest.numel, t.numel())
            return out

    H = W = 32
    N, d = H * W, 8
    metric = torch.randn(1, N, d)
    tokens = TokenMap.identity(1, (H, W))
    with Largest():
        atme_plan(metric, tokens, N // 4, axis=1)
    local = Largest.numel
    Largest.numel = 0
    with Largest():
        atme_plan_dense(metric, tokens, N // 4, axis=1)
    # cells and their neighbour products; short lines of the distance
    # transform take a dense (line x line) minimum
    assert local <= N * max(2 * d, matching._DENSE_LINE)
    assert Largest.numel >= (N // 2)**2  # the reference is quadratic


def test_compiles_without_graph_breaks():
    """One graph (``fullgraph``; the eager backend keeps this fast: graph
    breaks are found while tracing, before any code generation)."""
    compiled = torch.compile(
        atme_plan, fullgraph=True, dynamic=False, backend='eager')
    gen = torch.Generator().manual_seed(5)
    tokens = TokenMap.identity(2, (6, 6))
    tokens = tokens.apply(
        atme_plan_dense(torch.randn(2, 36, 8, generator=gen), tokens, 9, 1))
    metric = torch.randn(2, 27, 8, generator=gen)
    for r in (6, 13):
        assert _same(
            compiled(metric, tokens, r, 0),
            atme_plan_dense(metric, tokens, r, 0))


def _dense_window_scores(metric, src_idx, dst_idx, ws):
    """Every source-destination pair of a window: cosine where the cells
    touch, the distance-ordered far score elsewhere."""
    a, b = metric[:, src_idx], metric[:, dst_idx]
    norm = a.norm(dim=-1)[:, :, None] * b.norm(dim=-1)[:, None]
    cos = (a[:, :, None] * b[:, None]).sum(-1) / norm.clamp(min=1e-12)
    dist = ((src_idx[:, None] // ws - dst_idx[None] // ws).abs() +
            (src_idx[:, None] % ws - dst_idx[None] % ws).abs())
    return torch.where(dist == 1, cos,
                       matching._FAR - dist.float() / (2 * ws + 1))


@pytest.mark.parametrize('ws', [2, 3, 4, 7])
@pytest.mark.parametrize('axis', [0, 1])
def test_window_scores_equal_dense_and_compile(ws, axis):
    """In a window the touching pairs are fixed per window size: the
    precomputed ones must give every pair's dense score, with no graph
    break (no data-dependent ops at run time)."""
    src_idx, dst_idx = atme_window_roles(ws, axis)
    metric = torch.randn(5, ws * ws, 8,
                         generator=torch.Generator().manual_seed(ws))
    ref = _dense_window_scores(metric, src_idx, dst_idx, ws)
    torch.testing.assert_close(
        atme_window_scores(metric, src_idx, dst_idx, axis), ref,
        rtol=0, atol=1e-6)
    for r in (1, len(src_idx)):
        assert _same(
            window_merge_plan(
                atme_window_scores(metric, src_idx, dst_idx, axis), src_idx,
                dst_idx, r),
            window_merge_plan(ref.clone(), src_idx, dst_idx, r))
    if ws == 7:
        compiled = torch.compile(
            atme_window_scores, fullgraph=True, backend='eager')
        assert torch.equal(
            compiled(metric, src_idx, dst_idx, axis),
            atme_window_scores(metric, src_idx, dst_idx, axis))


def test_merge_overhead_tool_smoke():
    """The timing tool runs and reports every method (no speed asserted)."""
    import importlib.util
    import os.path as osp
    path = osp.join(
        osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools', 'analysis',
        'merge_overhead.py')
    spec = importlib.util.spec_from_file_location('merge_overhead', path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.removed(1024, 0.75, 2) == [256, 192]
    assert tool.removed(100, 0.5, 3) == [50, 25, 12]  # at most half
    text = tool.main([
        '--grids', '4', '--repeats', '1', '--warmup', '0', '--inner', '1',
        '--methods', 'atme', 'atme-dense', 'tome', '--channels', '8'
    ])
    rows = [line for line in text.splitlines() if line.startswith('| 4x4')]
    assert [row.split(' | ')[2] for row in rows] == \
        ['atme', 'atme-dense', 'tome']
    assert 'load average' in text


def _reference_merge(x, plan, weight):
    """Element-wise scatter (the previous implementation)."""
    w = weight.to(x.dtype).unsqueeze(-1)
    index = plan.old2new.unsqueeze(-1)
    out = x.new_zeros(x.shape[0], plan.num_out, x.shape[2])
    out.scatter_add_(1, index.expand(-1, -1, x.shape[2]), x * w)
    den = x.new_zeros(x.shape[0], plan.num_out, 1).scatter_add_(1, index, w)
    return out / den


@pytest.mark.parametrize('onnx', [False, True])
@pytest.mark.parametrize('B', [1, 3])
def test_row_merge_and_unmerge_equal_elementwise(monkeypatch, onnx, B):
    """Merging by rows (``index_add_``; ``scatter_add_`` while exporting
    to ONNX) and un-merging by ``index_select`` give the element-wise
    results, for one image and a batch, with features kept aside."""
    monkeypatch.setattr(torch.onnx, 'is_in_onnx_export', lambda: onnx)
    gen = torch.Generator().manual_seed(B)
    tokens = TokenMap.identity(B, (5, 6))
    x = torch.randn(B, 30, 7, generator=gen)
    for r, axis in ((10, 1), (6, 0)):
        plan = atme_plan(torch.randn(B, x.shape[1], 4, generator=gen),
                         tokens, r, axis)
        weight = tokens.size * torch.rand(B, x.shape[1], generator=gen)
        merged = merging.merge_tokens(x, plan, weight)
        torch.testing.assert_close(
            merged, _reference_merge(x, plan, weight), rtol=0, atol=1e-6)
        x, tokens = merged, tokens.apply(plan)
    x = x[:, 1:]  # a non-contiguous view, as the backbone's patch slice
    tokens = tokens.apply(  # fold token 0 into 1: 13 tokens
        MergePlan(old2new=(torch.arange(14) - 1).clamp(min=0).expand(B, -1),
                  keep_idx=torch.arange(1, 14).expand(B, -1)))
    tokens = tokens.set_aside(
        torch.arange(13).expand(B, -1) % 4 == 0,
        torch.randn(B, 2, 7, generator=gen),
        torch.arange(13).expand(B, -1) % 2)
    full = torch.cat([x, tokens.aside], 1)
    expect = full.gather(1, tokens.assign.unsqueeze(-1).expand(-1, -1, 7))
    assert torch.equal(merging.unmerge_tokens(x, tokens), expect)
