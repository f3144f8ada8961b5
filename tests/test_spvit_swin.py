"""SPViT inside Swin windows (SPViT.window_reduce on TPS's window split;
dropped tokens skip the block)."""
import pytest
import torch
from mmpretrain.models.backbones import SwinTransformer
from test_swin import TINY
from test_swin_window import GRIDS
from test_tps_swin import assert_full_stage_outputs
from test_tps_swin import no_gumbel_noise  # noqa: F401 (a fixture)

from mmtokenprune.models import PrunedSwinTransformer
from mmtokenprune.models.reducers import SPViT
from mmtokenprune.ops import unmerge_tokens
from mmtokenprune.ops.schedule import Step
from mmtokenprune.ops.window import (WindowGrid, window_index, window_labels,
                                     window_partition, window_reverse)
from mmtokenprune.ops.window_prune import (window_prune_capacity,
                                           window_prune_counts)

C = 16
# every stage has at least 2 heads of at least 4 channels (the selector's)
ARCH = dict(embed_dims=C, depths=(2, 2, 2, 2), num_heads=(2, 2, 2, 4))


def _model(window_size=4, **kw):
    torch.manual_seed(0)
    token_cfg = dict(type='SPViT', keep_ratio=0.7, prop_attn=False, **kw)
    return PrunedSwinTransformer(
        **dict(TINY, arch=ARCH, window_size=window_size),
        token_cfg=token_cfg).eval()


def _reducer(r):
    torch.manual_seed(0)
    return SPViT(Step(r=r), 0, embed_dims=C, num_heads=2).eval()


def _windows(grid, B=2, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(B, grid.hw[0] * grid.hw[1], C)
    return window_partition(x, grid)  # padding rows are zero


@pytest.mark.parametrize('train', [False, True])
@pytest.mark.parametrize('hw,ws,shift', GRIDS)
def test_exact_counts_per_window_padding_first(hw, ws, shift, train):
    grid = WindowGrid(hw, ws, shift)
    labels = window_labels(grid) if grid.has_regions else None
    N, r = ws * ws, ws * ws - 1  # as many as a window can drop
    x = _windows(grid)
    out, tokens = _reducer(r).train(train).window_reduce(x, x, r, labels)
    r_eff, real_left = r, 2 * grid.num_windows * (N - r)
    if labels is not None:  # the layout, not r, limits these windows
        r_eff = window_prune_capacity(labels)
        assert r_eff < r
        r_eff, real_left = window_prune_counts(labels, r)
        real_left *= 2  # B=2 images
    live = tokens.size > 0  # dropped tokens stand for no patch
    assert out.shape == (2 * grid.num_windows, N if train else N - r_eff, C)
    assert torch.all(live.sum(1) == N - r_eff)  # the same in every window
    assert torch.all(tokens.size.sum(1) == N - r_eff)
    if train:
        keep = tokens.policy.detach()  # 0 or 1 up to the straight-through
        torch.testing.assert_close(keep, keep.round(), rtol=0, atol=1e-6)
        assert torch.equal(keep > .5, live)
    n_out = out.shape[1]
    dropped = tokens.assign >= n_out  # positions set aside
    assert torch.all(dropped.sum(1) == r_eff)
    assert tokens.aside.shape == (2 * grid.num_windows, r_eff, C)
    # padding first: the kept tokens hold as many image cells as the layout
    # counts say (one padding cell per padding group stays, at most)
    if labels is not None:
        real = (labels % 2 == 0).repeat(2, 1)
        assert int((real & ~dropped).sum()) == real_left


@pytest.mark.parametrize('train', [False, True])
def test_dropped_positions_keep_their_input_in_the_map(train):
    grid = WindowGrid((9, 6), 4, 2)
    labels = window_labels(grid)
    x = _windows(grid)
    out, tokens = _reducer(8).train(train).window_reduce(x, x, 8, labels)
    full = unmerge_tokens(out, tokens)
    dropped = tokens.assign >= out.shape[1]
    assert dropped.any() and (~dropped).any()
    assert torch.equal(full, x)  # kept: themselves; dropped: set aside


@pytest.mark.parametrize('train', [False, True])
@pytest.mark.parametrize('hw,ws,shift', GRIDS)
def test_dropped_positions_skip_the_block(hw, ws, shift, train,
                                          no_gumbel_noise):  # noqa: F811
    """The block's output at a dropped position is its input feature, every
    other position changed (a value test through the whole block)."""
    model = _model(window_size=ws, layers=[2, 3]).train(train)
    block = model.stages[1].blocks[1 if shift else 0]
    assert block.merge_r > 0 and block.attn.shift_size == shift
    torch.manual_seed(1)
    x = torch.randn(2, hw[0] * hw[1], 2 * C)
    grid = block.window_grid(hw)
    assert grid.shift == shift
    index = window_index(grid)
    xw = window_partition(x, grid, index)
    labels = window_labels(grid) if grid.has_regions else None
    with torch.no_grad():
        out = block(x, hw)
        red, tokens = block.reducer.window_reduce(xw, block.norm1(xw),
                                                  block.merge_r, labels)
    dropped = (tokens.assign >= red.shape[1]).unsqueeze(-1).to(x.dtype)
    dropped = window_reverse(dropped, grid, index)[..., 0].bool()  # (B, L)
    assert dropped.any() and (~dropped).any()
    assert torch.equal(out[dropped], x[dropped])
    assert not torch.isclose(out[~dropped], x[~dropped]).all(-1).any()


@pytest.mark.parametrize('ws', [4, 7])
def test_stage_outputs_keep_their_shapes(ws):
    torch.manual_seed(0)
    ref = SwinTransformer(**dict(TINY, arch=ARCH, window_size=ws))
    ref.eval()  # upstream's train() returns None
    assert_full_stage_outputs(_model(window_size=ws), ref)


def test_selector_gets_gradients():
    model = _model(layers=[2, 3, 4, 5]).train()
    x = torch.randn(2, 3, 45, 61)
    sum(o.square().mean() for o in model(x)).backward()
    for i in (2, 3, 4, 5):
        selector = model.blocks()[i].reducer.selector
        grads = [p.grad for p in selector.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(g.abs().sum() for g in grads) > 0, i


def test_clear_errors():
    # TINY's first stage has one head of 16 channels: no multi-head selector
    with pytest.raises(ValueError,
                       match=r"`token_cfg` type='SPViT'.*num_heads >= 2"):
        PrunedSwinTransformer(
            **TINY, token_cfg=dict(type='SPViT', keep_ratio=0.5,
                                   prop_attn=False))
    with pytest.raises(ValueError,
                       match=r"token_cfg.dense='package'.*Swin windows"):
        _model(dense='package')
    with pytest.raises(ValueError, match=r'token_cfg.sample=True.*Swin'):
        _model(sample=True)
    with pytest.raises(ValueError, match='prop_attn'):
        PrunedSwinTransformer(
            **dict(TINY, arch=ARCH),
            token_cfg=dict(type='SPViT', r=4, prop_attn=True))
    with pytest.raises(ValueError, match=r'token_cfg.r.*r=16.*at most 15'):
        PrunedSwinTransformer(
            **dict(TINY, arch=ARCH),
            token_cfg=dict(type='SPViT', r=16, prop_attn=False))
