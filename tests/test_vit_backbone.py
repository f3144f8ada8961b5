"""PrunedVisionTransformer: equal to upstream when off, sound when on."""
import copy

import pytest
import torch
from mmpretrain.models import VisionTransformer

from mmtokenprune.models import PrunedVisionTransformer

TINY = dict(
    arch=dict(
        embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64),
    img_size=64,
    patch_size=16,
    out_indices=(1, 3))
ATME = dict(type='ATME', r=3)


def build(**kwargs):
    cfg = copy.deepcopy(TINY)
    cfg.update(kwargs)
    model = PrunedVisionTransformer(**cfg)
    model.init_weights()
    model.eval()
    return model


@pytest.mark.parametrize('out_type',
                         ['cls_token', 'featmap', 'avg_featmap', 'raw'])
def test_off_equals_upstream(out_type):
    torch.manual_seed(0)
    ref = VisionTransformer(**TINY, out_type=out_type)
    ref.init_weights()
    ref.eval()
    model = build(out_type=out_type)
    assert list(model.state_dict()) == list(ref.state_dict())
    model.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 80)  # not square: the grid is 4 x 5
    for ours, theirs in zip(model(x), ref(x)):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize('reducer', ['ATME', 'ToMe'])
@pytest.mark.parametrize('out_type', ['featmap', 'avg_featmap', 'raw'])
def test_merged_outputs_have_unmerged_shapes(reducer, out_type):
    model = build(out_type=out_type, token_cfg=dict(type=reducer, r=4))
    ref = build(out_type=out_type)
    for size in [(64, 64), (96, 80)]:
        x = torch.randn(2, 3, *size)
        for ours, theirs in zip(model(x), ref(x)):
            assert ours.shape == theirs.shape


def test_merged_featmap_is_piecewise_constant_over_regions():
    model = build(out_type='featmap', token_cfg=ATME)
    x = torch.randn(2, 3, 64, 64)
    maps = model.token_maps(x)
    feat = model(x)[1]  # after layer 3
    flat = feat.flatten(2).transpose(1, 2)  # (B, 16, C)
    assign = maps[3].assign
    for b in range(2):
        for t in assign[b].unique():
            cells = flat[b, assign[b] == t]
            torch.testing.assert_close(cells, cells[:1].expand_as(cells))


def test_cls_token_untouched_by_merging_inputs():
    """Extra tokens never merge: with all patch tokens equal, merging is
    exact and the cls output matches the unmerged model."""
    ref = build(out_type='cls_token')
    model = build(
        out_type='cls_token', token_cfg=dict(type='ToMe', r=4,
                                             prop_attn=True))
    with torch.no_grad():
        ref.pos_embed.zero_()
    model.load_state_dict(ref.state_dict())
    # a constant image and no position embedding: identical patch tokens,
    # so merging with proportional attention changes nothing
    x = torch.ones(2, 3, 64, 64)
    for ours, theirs in zip(model(x), ref(x)):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_batch_items_are_independent():
    model = build(out_type='featmap', token_cfg=ATME)
    x = torch.randn(3, 3, 64, 64)
    batched = model(x)[1]
    for i in range(3):
        torch.testing.assert_close(
            model(x[i:i + 1])[1], batched[i:i + 1], atol=1e-5, rtol=1e-5)


def test_gradients_reach_every_parameter():
    model = build(
        out_type='featmap',
        token_cfg=ATME,
        channel_cfg=dict(type='CDCP', flops_target=0.5))
    model.loss_owner = 'this test'  # adds the budget loss below
    model.train()
    out = model(torch.randn(2, 3, 64, 64))
    loss = sum(o.square().mean() for o in out)
    loss = loss + model.compression_losses()['loss_cdcp_budget']
    loss.backward()
    missing = [
        n for n, p in model.named_parameters()
        if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert missing == [], missing


def test_with_cp_gives_same_output_and_grads():
    torch.manual_seed(0)
    model = build(out_type='featmap', token_cfg=ATME)
    model_cp = build(out_type='featmap', token_cfg=ATME, with_cp=True)
    model_cp.load_state_dict(model.state_dict())
    model.train()
    model_cp.train()
    x = torch.randn(2, 3, 64, 64)
    outs = [m(x.clone().requires_grad_()) for m in (model, model_cp)]
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)
    for m, out in zip((model, model_cp), outs):
        out[1].sum().backward()
    for (n, p), (_, q) in zip(model.named_parameters(),
                              model_cp.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)


def test_no_state_between_forwards():
    """Different resolutions in a row give what fresh models give."""
    token_cfg = dict(type='ATME', keep_ratio=0.8)
    model = build(out_type='featmap', token_cfg=token_cfg)
    fresh = build(out_type='featmap', token_cfg=token_cfg)
    fresh.load_state_dict(model.state_dict())
    small, large = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 128, 96)
    model(small)
    got_large = model(large)
    got_small = model(small)
    torch.testing.assert_close(got_large[1], fresh(large)[1])
    torch.testing.assert_close(got_small[1], fresh(small)[1])


def test_merging_reduces_tokens_per_layer():
    model = build(token_cfg=dict(type='ATME', r=[4, 3], layers=[0, 2]))
    counts = model.token_counts()
    assert counts == [(17, 17, 13), (13, 13, 13), (13, 13, 10), (10, 10, 10)]
    maps = model.token_maps(torch.randn(1, 3, 64, 64))
    assert [m.num_tokens for m in maps] == [12, 12, 9, 9]


@pytest.mark.parametrize(
    'kwargs, match',
    [
        (dict(token_cfg=dict(type='Nope', r=2)),
         r"token_cfg.type` must be one of \['ATME', 'SPViT', 'ToMe', 'dTPS', "
         r"'eTPS'\]"),
        (dict(token_cfg=dict(type='ATME', keep_ratio=1.2)),
         r'token_cfg.keep_ratio` must be in \(0, 1\]'),
        (dict(token_cfg=dict(type='ATME', r=2, ratio=3)),
         r"token_cfg` has unknown keys \['ratio'\]"),
        (dict(channel_cfg=dict(type='Magnitude')),
         r"channel_cfg.type` must be one of \['CDCP'\]"),
        (dict(channel_cfg=dict(type='CDCP', flops_target=2)),
         r'channel_cfg.flops_target` must be in \(0, 1\]'),
        (dict(channel_cfg=dict()), 'channel_cfg` needs'),
    ])
def test_bad_config_names_the_key(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build(**kwargs)


def test_r_too_large_for_the_grid_is_reported():
    model = build(token_cfg=dict(type='ATME', r=9))
    with pytest.raises(ValueError, match=r'token_cfg.*r=9.*at most half'):
        model(torch.randn(1, 3, 64, 64))


@pytest.mark.parametrize('token_cfg', [
    dict(type='ATME', r=6, layers=[0, 1, 2]),
    dict(type='ToMe', r=6, layers=[0, 1, 2])
])
def test_unmerged_maps_equal_the_unmerged_model_on_duplicated_patches(
        token_cfg):
    """The ViT twin of Swin's value-level test: when every merged token
    stands for identical patches, proportional attention makes merging
    exact, so the un-merged feature maps equal the unmerged model's at
    every position (a wrong or blurred un-merge cannot pass)."""
    torch.manual_seed(0)
    ref = build(out_type='featmap', out_indices=(1, 2, 3))
    model = build(out_type='featmap', out_indices=(1, 2, 3),
                  token_cfg=dict(token_cfg, prop_attn=True))
    model.load_state_dict(ref.state_dict())
    for m in (ref, model):
        m.pos_embed.data.zero_()  # identical patches -> identical tokens
    # 8 x 8 patches in 2 x 2 blocks of one random patch each: 16 regions
    patches = torch.randn(2, 3, 4, 4, 16, 16)
    x = patches.repeat_interleave(2, 2).repeat_interleave(2, 3)
    x = x.permute(0, 1, 2, 4, 3, 5).reshape(2, 3, 128, 128)
    with torch.no_grad():
        maps = model.token_maps(x)
        outs, refs = model(x), ref(x)
    assert [m.num_tokens for m in maps[:3]] == [58, 52, 46]
    for ours, theirs in zip(outs, refs):
        assert ours.shape == theirs.shape == (2, 32, 8, 8)
        assert theirs.std(dim=(2, 3)).min() > 0.1  # maps vary in space
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
