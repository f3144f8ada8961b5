"""CDCP: gated model == exported smaller model; specs; budget."""
import copy
import json

import pytest
import torch

from mmtokenprune.models import PrunedVisionTransformer
from mmtokenprune.models.cdcp import budget_loss, ffn_gate
from mmtokenprune.ops import ChannelGate, PruneSpec

TINY = dict(
    arch=dict(
        embed_dims=32, num_layers=3, num_heads=2, feedforward_channels=64),
    img_size=64,
    patch_size=16,
    out_indices=(0, 2),
    out_type='featmap')


def build(**kwargs):
    cfg = copy.deepcopy(TINY)
    cfg.update(kwargs)
    model = PrunedVisionTransformer(**cfg)
    model.eval()
    return model


def gated_model(seed=0, **kwargs):
    """A gated model whose gates drop a random part of every group."""
    torch.manual_seed(seed)
    model = build(channel_cfg=dict(type='CDCP'), **kwargs)
    for m in model.modules():
        if isinstance(m, ChannelGate):
            m.logits.data = torch.randn_like(m.logits)
    return model


# per-layer `layer_cfgs`: a wider MLP than the arch's in layer 0
WIDE_FIRST = [dict(feedforward_channels=96), {}, {}]


@pytest.mark.parametrize('token_cfg,layer_cfgs',
                         [(None, {}), (dict(type='ATME', r=3), {}),
                          (None, WIDE_FIRST)])
def test_gated_equals_exported(token_cfg, layer_cfgs):
    model = gated_model(token_cfg=token_cfg, layer_cfgs=layer_cfgs)
    ffn_gate(model.layers[0].ffn).logits.data.fill_(3.)  # keeps its whole MLP
    spec, state = model.export_pruned()
    small = build(
        channel_cfg=dict(spec=spec.to_dict()),
        token_cfg=token_cfg,
        layer_cfgs=layer_cfgs)
    small.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 64, 64)
    for ours, theirs in zip(small(x), model(x)):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    n_small = sum(p.numel() for p in small.parameters())
    n_gated = sum(p.numel() for p in model.parameters())
    assert n_small < n_gated


def test_matching_keys_equal_after_export():
    """Token matching sees the same keys in the gated and sliced model
    (pruned key channels must not steer merging)."""
    model = gated_model()
    spec, state = model.export_pruned()
    small = build(channel_cfg=dict(spec=spec.to_dict()))
    small.load_state_dict(state, strict=True)
    x = torch.randn(2, 17, 32)
    for big, little in zip(model.layers, small.layers):
        keys = big.attn(x)[1]
        kept = big.attn.qk_gate.kept_indices()
        torch.testing.assert_close(keys[..., kept], little.attn(x)[1])
        dropped = torch.ones(keys.shape[-1], dtype=torch.bool)
        dropped[kept] = False
        assert (keys[..., dropped] == 0).all()


def test_heads_stay_uniform_and_qk_tied():
    model = gated_model()
    spec, state = model.export_pruned()
    for i, dims in enumerate(spec.layers):
        attn = model.layers[i].attn
        assert dims.qk_dims == len(attn.qk_gate.kept_indices())
        assert dims.v_dims == len(attn.v_gate.kept_indices())
        h = attn.num_heads
        assert state[f'layers.{i}.attn.qkv.weight'].shape[0] == \
            h * (2 * dims.qk_dims + dims.v_dims)
        assert state[f'layers.{i}.attn.proj.weight'].shape[1] == \
            h * dims.v_dims
        assert state[f'layers.{i}.ffn.layers.0.0.weight'].shape[0] == \
            dims.ffn_dims
    small = build(channel_cfg=dict(spec=spec.to_dict()))
    for layer, dims in zip(small.layers, spec.layers):
        assert (layer.attn.qk_dims, layer.attn.v_dims) == (dims.qk_dims,
                                                           dims.v_dims)


def test_exported_keys_are_upstream_keys(tmp_path):
    plain = build()
    model = gated_model()
    spec, state = model.export_pruned()
    assert set(state) == set(plain.state_dict())
    path = tmp_path / 'spec.json'
    spec.dump(str(path))
    assert json.loads(path.read_text())['layers'][0].keys() == {
        'qk_dims', 'v_dims', 'ffn_dims'
    }
    small = build(channel_cfg=dict(spec=str(path)))
    small.load_state_dict(state, strict=True)


def test_fresh_gates_change_nothing():
    torch.manual_seed(0)
    plain = build()
    gated = build(channel_cfg=dict(type='CDCP'))
    gated.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(gated(x), plain(x))
    assert float(gated.flops_ratio()) > 0.9


def test_budget_loss_pushes_gates_down():
    model = build(channel_cfg=dict(type='CDCP', flops_target=0.3))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=50.)
    before = float(model.flops_ratio())
    for _ in range(5):
        opt.zero_grad()
        model.compression_losses()['loss_cdcp_budget'].backward()
        opt.step()
    assert float(model.flops_ratio()) < before


def test_budget_loss_is_the_squared_excess_only():
    ratio = torch.tensor([0.9, 0.7, 0.5])
    torch.testing.assert_close(
        budget_loss(ratio, 0.7), torch.tensor([0.04, 0., 0.]))
    assert build().compression_losses() == {}


def test_spec_that_does_not_fit_names_the_key():
    spec = gated_model().export_pruned()[0].to_dict()
    bad = copy.deepcopy(spec)
    bad['layers'][1]['qk_dims'] = 99
    with pytest.raises(ValueError,
                       match=r'channel_cfg.spec`: layers\[1\].qk_dims=99'):
        build(channel_cfg=dict(spec=bad))
    short = copy.deepcopy(spec)
    short['layers'] = short['layers'][:2]
    with pytest.raises(ValueError, match='has 2 layers but the model has 3'):
        build(channel_cfg=dict(spec=short))
    with pytest.raises(ValueError, match='needs `arch` and `layers`'):
        PruneSpec.load({'layers': [{'qk': 1}]})


@pytest.mark.parametrize('segmentor', ['EncoderDecoder',
                                       'mmtokenprune.PrunedEncoderDecoder'])
def test_gates_train_only_where_the_budget_loss_is_added(segmentor):
    """A CDCP config that forgets the Pruned* segmentor would train its
    gates without the budget loss; the backbone refuses that by name."""
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    init_default_scope('mmseg')
    model = MODELS.build(
        dict(
            type=segmentor,
            backbone=dict(
                TINY,
                type='mmtokenprune.PrunedVisionTransformer',
                out_type='featmap',
                channel_cfg=dict(type='CDCP')),
            decode_head=dict(
                type='FCNHead',
                in_channels=32,
                channels=16,
                num_convs=1,
                num_classes=3,
                norm_cfg=dict(type='BN'))))
    model.train()
    sample = SegDataSample(
        gt_sem_seg=PixelData(data=torch.randint(0, 3, (1, 64, 64))),
        metainfo=dict(img_shape=(64, 64), pad_shape=(64, 64)))
    inputs = torch.randn(2, 3, 64, 64)
    if segmentor == 'EncoderDecoder':
        with pytest.raises(RuntimeError,
                           match='PrunedEncoderDecoder.*PrunedImageClassi'):
            model.loss(inputs, [sample, sample])
        with torch.no_grad():  # inference is fine
            model.eval()
            assert model(inputs, mode='tensor').shape[:2] == (2, 3)
    else:
        losses = model.loss(inputs, [sample, sample])
        assert losses['loss_cdcp_budget'].requires_grad
