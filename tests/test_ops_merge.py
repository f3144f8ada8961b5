"""Invariants of the merge map, ToMe and ATME (pure torch, no mm*)."""
import pytest
import torch

from mmtokenprune.ops import (MergePlan, TokenMap, atme_level, atme_plan,
                              merge_tokens, parse_schedule, tome_plan,
                              unmerge_tokens)
from mmtokenprune.ops.schedule import Step


def _reduce(x, tokens, plan):
    return merge_tokens(x, plan, tokens.size), tokens.apply(plan)


def _atme_steps(x, grid, rs):
    """Run several ATME steps with the tokens themselves as metric."""
    tokens = TokenMap.identity(x.shape[0], grid)
    for i, r in enumerate(rs):
        plan = atme_plan(x, tokens, r, axis=1 if i % 2 == 0 else 0)
        x, tokens = _reduce(x, tokens, plan)
    return x, tokens


def _region_is_connected(cells, width):
    cells = set(cells)
    todo, seen = [next(iter(cells))], set()
    while todo:
        c = todo.pop()
        if c in seen:
            continue
        seen.add(c)
        y, x = divmod(c, width)
        for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
            n = (y + dy) * width + (x + dx)
            if 0 <= x + dx < width and n in cells:
                todo.append(n)
    return seen == cells


@pytest.mark.parametrize('method', ['tome', 'atme'])
def test_sizes_sum_to_grid_and_assign_is_valid(method):
    torch.manual_seed(0)
    grid, B = (6, 8), 3
    x = torch.randn(B, 48, 16)
    tokens = TokenMap.identity(B, grid)
    for i, r in enumerate([10, 8, 6, 5]):
        if method == 'tome':
            plan = tome_plan(x, r)
        else:
            plan = atme_plan(x, tokens, r, axis=i % 2)
        n = x.shape[1]
        x, tokens = _reduce(x, tokens, plan)
        assert x.shape == (B, n - r, 16)  # one shape for the whole batch
        torch.testing.assert_close(tokens.size.sum(1),
                                   torch.full((B, ), 48.))
        assert tokens.assign.min() >= 0
        assert tokens.assign.max() < x.shape[1]
        counts = torch.stack([
            torch.bincount(a, minlength=x.shape[1]) for a in tokens.assign
        ])
        torch.testing.assert_close(counts.float(), tokens.size)


@pytest.mark.parametrize('method', ['tome', 'atme'])
def test_unmerge_of_duplicates_is_identity(method):
    """Merging equal tokens loses nothing: un-merge gives the input back."""
    torch.manual_seed(0)
    grid = (4, 6)
    base = torch.randn(2, 12, 8)
    # each token has a twin: the right neighbour in its row
    x = base.view(2, 4, 3, 8).repeat_interleave(2, dim=2).reshape(2, 24, 8)
    tokens = TokenMap.identity(2, grid)
    plan = tome_plan(x, 12) if method == 'tome' else \
        atme_plan(x, tokens, 12, axis=1)
    merged, tokens = _reduce(x, tokens, plan)
    assert merged.shape[1] == 12
    torch.testing.assert_close(unmerge_tokens(merged, tokens), x)


def test_merge_is_size_weighted_average():
    x = torch.tensor([[[0.], [4.], [10.]]])
    tokens = TokenMap.identity(1, (1, 3))
    tokens = TokenMap(tokens.assign, torch.tensor([[1., 3., 1.]]),
                      tokens.anchor, tokens.grid)
    # token 0 (size 1) folds into token 1 (size 3): (0 + 12) / 4 = 3;
    # ToMe's order: the unmerged source (token 2), then the destination
    plan = tome_plan(torch.tensor([[[1., 0.], [1., 0.], [0., 1.]]]), 1)
    out = merge_tokens(x, plan, tokens.size)
    torch.testing.assert_close(out, torch.tensor([[[10.], [3.]]]))
    assert tokens.apply(plan).size.tolist() == [[1., 4.]]


def test_atme_merges_only_touching_regions():
    """The most similar pair is far apart; ATME must still merge locally."""
    grid = (4, 4)
    x = torch.randn(1, 16, 8) * 0.01
    x[0, :, 0] = torch.arange(16.)  # neighbours differ...
    x[0, 1] = x[0, 14] = torch.ones(8) * 50  # ...but 1 and 14 are twins
    tokens = TokenMap.identity(1, grid)
    plan = atme_plan(x, tokens, 1, axis=1)
    new = tokens.apply(plan)
    merged_cells = [
        (new.assign[0] == t).nonzero().flatten().tolist()
        for t in range(new.num_tokens)
    ]
    pair = [c for c in merged_cells if len(c) == 2]
    assert len(pair) == 1
    (a, b), = pair
    assert {a, b} != {1, 14}
    assert abs(a - b) == 1 and a // 4 == b // 4  # row neighbours (W step)
    # ToMe, by contrast, merges the distant twins
    tplan = tome_plan(x, 1)
    tome_pair = (tokens.apply(tplan).size[0] == 2).nonzero().item()
    cells = (tokens.apply(tplan).assign[0] == tome_pair).nonzero().flatten()
    assert cells.tolist() == [1, 14]


def test_atme_regions_stay_connected_over_many_steps():
    torch.manual_seed(1)
    grid = (8, 10)
    _, tokens = _atme_steps(torch.randn(2, 80, 16), grid, [20, 15, 12, 9, 8])
    for b in range(2):
        for t in range(tokens.num_tokens):
            cells = (tokens.assign[b] == t).nonzero().flatten().tolist()
            assert _region_is_connected(cells, grid[1]), (b, t, cells)


def test_atme_is_asymmetric_and_alternates_axis():
    """A W step folds odd columns into touching even columns of the same
    row (destinations keep their anchor); an H step then folds odd rows."""
    torch.manual_seed(2)
    grid = (4, 4)
    tokens = TokenMap.identity(1, grid)
    new = tokens.apply(atme_plan(torch.randn(1, 16, 8), tokens, 8, axis=1))
    assert (new.anchor % 4 % 2 == 0).all()
    rows = new.assign_grid()[0]
    assert all(len(set(rows[y].tolist()) & set(rows[y + 1].tolist())) == 0
               for y in range(3))  # no region spans two rows
    final = new.apply(atme_plan(torch.randn(1, 8, 8), new, 4, axis=0))
    assert (final.anchor // 4 % 2 == 0).all()
    torch.testing.assert_close(final.size.sum(), torch.tensor(16.))


def test_atme_level_follows_token_count():
    assert atme_level(1024, 1024) == 0
    assert atme_level(300, 1024) == 0
    assert atme_level(256, 1024) == 1
    assert atme_level(64, 1024) == 2


def test_gradients_flow_through_merging():
    x = torch.randn(2, 16, 4, requires_grad=True)
    tokens = TokenMap.identity(2, (4, 4))
    plan = atme_plan(x, tokens, 4, axis=1)
    merge_tokens(x, plan, tokens.size).sum().backward()
    # every input reaches the output; each output's weights sum to one
    assert (x.grad > 0).all()
    torch.testing.assert_close(x.grad.sum(1), torch.full((2, 4), 12.))


def test_schedule_parsing_and_errors():
    steps = parse_schedule(4, r=[3, 2], layers=[0, 2])
    assert steps == (Step(r=3), None, Step(r=2), None)
    assert parse_schedule(3, keep_ratio=0.5) == (Step(keep_ratio=0.5), ) * 2 \
        + (None, )
    assert Step(keep_ratio=0.9).num_removed(100) == 10
    with pytest.raises(ValueError, match=r'token_cfg.keep_ratio.*\(0, 1\]'):
        parse_schedule(4, keep_ratio=1.5)
    with pytest.raises(ValueError, match=r'token_cfg.keep_ratio.*\(0, 1\]'):
        parse_schedule(4, keep_ratio=0.)
    with pytest.raises(ValueError, match='exactly one of `r`'):
        parse_schedule(4, r=2, keep_ratio=0.5)
    with pytest.raises(ValueError, match=r'token_cfg.layers.*\[0, 4\)'):
        parse_schedule(4, r=2, layers=[4])
    with pytest.raises(ValueError, match='token_cfg.r.*non-negative int'):
        parse_schedule(4, r=-1)
    with pytest.raises(ValueError, match='token_cfg.r` has 1 entries'):
        parse_schedule(4, r=[1], layers=[0, 1])
    with pytest.raises(ValueError, match=r'token_cfg.*r=9.*at most half'):
        Step(r=9).num_removed(16)


def test_features_set_aside_survive_later_steps():
    """Positions moved aside keep their feature while later plans remove
    and renumber the live tokens."""
    tokens = TokenMap.identity(1, (1, 6))
    x = torch.arange(6.).view(1, 6, 1)
    moved = torch.tensor([[False, True, False, False, True, False]])
    tokens = tokens.set_aside(moved, x * 10, torch.arange(6).view(1, 6))
    assert tokens.size.tolist() == [[1, 0, 1, 1, 0, 1]]
    # drop tokens 1 and 4 (no position points at them any more), then
    # merge token 3 into 2
    keep = torch.tensor([[0, 2, 3, 5]])
    old2new = torch.tensor([[0, 0, 1, 2, 0, 3]])
    tokens = tokens.apply(MergePlan(old2new=old2new, keep_idx=keep))
    old2new = torch.tensor([[0, 1, 1, 2]])
    keep = torch.tensor([[0, 1, 3]])
    tokens = tokens.apply(MergePlan(old2new=old2new, keep_idx=keep))
    live = torch.tensor([[[0.], [2.], [5.]]])
    full = unmerge_tokens(live, tokens)
    assert full.view(-1).tolist() == [0., 10., 2., 2., 40., 5.]
