"""Keep-ratio losses: hand-computed values, the backbone's keep trace, the
models' ``loss_keep_ratio`` and the reducers it refuses."""
import copy

import pytest
import torch
from mmengine.registry import init_default_scope
from mmpretrain.structures import DataSample

from mmtokenprune.models import PrunedImageClassifier, PrunedVisionTransformer
from mmtokenprune.models.losses import KeepRatioLoss

TINY = dict(
    arch=dict(
        embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64),
    img_size=64)
CLS_HEAD = dict(type='VisionTransformerClsHead', num_classes=5,
                in_channels=32)

# two reducing layers, batch 2, 4 tokens
P1 = torch.tensor([[1., 1., 0., 0.], [1., 0., 0., 0.]])
P2 = torch.tensor([[1., 0., 0., 0.], [0., 0., 0., 0.]])


def test_per_sample_hand_computed():
    # layer 1, target 1/2: means (1/2, 1/4) -> (0 + 1/16) / 2 = 1/32
    # layer 2, target 1/4: means (1/4, 0) -> (0 + 1/16) / 2 = 1/32
    # weight 2 x mean over layers 1/32 = 1/16
    loss = KeepRatioLoss()([P1, P2], [.5, .25])
    assert loss.item() == pytest.approx(1 / 16)
    loss = KeepRatioLoss(loss_weight=1.)([P1], [.5])
    assert loss.item() == pytest.approx(1 / 32)


def test_batch_level_hand_computed():
    # layer 1: batch mean 3/8, (3/8 - 1/2)^2 = 1/64
    # layer 2: batch mean 1/8, (1/8 - 1/4)^2 = 1/64 -> x 2 = 1/32
    loss = KeepRatioLoss(mode='batch')([P1, P2], [.5, .25])
    assert loss.item() == pytest.approx(1 / 32)
    # the two forms differ when images differ and agree when they don't
    same = torch.tensor([[1., 1., 0., 0.], [1., 1., 0., 0.]])
    a = KeepRatioLoss(mode='batch')([same], [.25])
    b = KeepRatioLoss(mode='per_sample')([same], [.25])
    assert a.item() == pytest.approx(b.item()) == pytest.approx(2 / 16)


def test_configured_targets_replace_the_schedule():
    loss = KeepRatioLoss(targets=[.5, .5])([P1, P2], [.9, .9])
    # layer 2 at 1/2: ((1/4)^2 + (1/2)^2) / 2 = 5/32; layer 1: 1/32
    assert loss.item() == pytest.approx(2 * (1 / 32 + 5 / 32) / 2)
    with pytest.raises(ValueError, match='one fraction per reducing layer'):
        KeepRatioLoss(targets=[.5])([P1, P2], [.5, .5])


@pytest.mark.parametrize('kwargs, match', [
    (dict(mode='global'), r"`KeepRatioLoss\.mode` must be one of "
     r"\['per_sample', 'batch'\]; got 'global'"),
    (dict(targets=[0.5, 1.5]), r'KeepRatioLoss\.targets'),
    (dict(loss_weight=-1), r'KeepRatioLoss\.loss_weight'),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KeepRatioLoss(**kwargs)


@pytest.mark.parametrize('type_', ['SPViT', 'dTPS'])
def test_backbone_trace_records_cumulative_keep_decisions(type_):
    torch.manual_seed(0)
    model = PrunedVisionTransformer(
        **copy.deepcopy(TINY), out_type='featmap', out_indices=(3, ),
        token_cfg=dict(type=type_, keep_ratio=0.6, layers=[1, 2],
                       prop_attn=False))
    model.train()
    x = torch.randn(3, 3, 64, 80)  # 20 patches
    torch.manual_seed(1)
    outs, trace = model.forward_trace(x)
    torch.manual_seed(1)
    torch.testing.assert_close(outs, model(x))  # forward's outputs
    assert trace.layers == (1, 2)
    # the schedule: 20 -> 12 -> 8 patches
    assert trace.targets == pytest.approx((12 / 20, 8 / 20))
    p1, p2 = trace.policies
    assert p1.shape == p2.shape == (3, 20)
    assert torch.all(p2 <= p1)  # cumulative
    assert trace.patch_tokens.shape == (3, 20, 32)
    torch.testing.assert_close(trace.patch_keep, p2 > 0.5)
    # the straight-through decision reaches the learned scorer
    KeepRatioLoss()(trace.policies, trace.targets).backward()
    reducer = model.layers[1].reducer
    grads = [p.grad for p in reducer.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_trace_without_reducers_has_no_decisions():
    model = PrunedVisionTransformer(**copy.deepcopy(TINY)).train()
    outs, trace = model.forward_trace(torch.randn(2, 3, 64, 64))
    assert trace.policies == () and trace.patch_keep is None
    assert trace.patch_tokens.shape == (2, 16, 32)


def _classifier(token_cfg, **kw):
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    return PrunedImageClassifier(
        backbone=dict(
            type='mmtokenprune.PrunedVisionTransformer', **TINY,
            token_cfg=token_cfg),
        head=CLS_HEAD, **kw)


@pytest.mark.parametrize('mode', ['per_sample', 'batch'])
def test_classifier_adds_the_keep_ratio_loss(mode):
    model = _classifier(
        dict(type='SPViT', keep_ratio=[0.5, 0.5], layers=[1, 2],
             prop_attn=False),
        keep_ratio_loss=dict(mode=mode, loss_weight=3.))
    model.train()
    x = torch.randn(4, 3, 64, 64)
    samples = [DataSample().set_gt_label(i) for i in range(4)]
    torch.manual_seed(5)
    losses = model.loss(x, samples)
    torch.manual_seed(5)
    _, trace = model.backbone.forward_trace(x)
    assert trace.targets == pytest.approx((8 / 16, 4 / 16))
    expected = KeepRatioLoss(mode, 3.)(trace.policies, trace.targets)
    torch.testing.assert_close(losses['loss_keep_ratio'], expected)
    assert set(losses) == {'loss', 'loss_keep_ratio'}


@pytest.mark.parametrize('token_cfg, got', [
    (dict(type='ATME', r=2), "'ATME'"),
    (dict(type='ToMe', r=2), "'ToMe'"),
    (dict(type='eTPS', keep_ratio=0.7, layers=[1], prop_attn=False),
     "'eTPS'"),
    (None, 'None'),
])
def test_reducers_without_a_learned_decision_are_refused(token_cfg, got):
    match = (r"`model\.keep_ratio_loss` needs a reducer that learns a "
             r"training-time keep decision: `model\.backbone\.token_cfg\."
             r"type` in \['SPViT', 'dTPS'\]; got " + got)
    with pytest.raises(ValueError, match=match):
        _classifier(token_cfg, keep_ratio_loss=dict())


def test_targets_must_match_the_reducing_layers():
    with pytest.raises(ValueError,
                       match=r'model\.keep_ratio_loss\.targets.*\(2\)'):
        _classifier(
            dict(type='dTPS', keep_ratio=0.7, layers=[1, 2],
                 prop_attn=False),
            keep_ratio_loss=dict(targets=[0.5]))
    with pytest.raises(ValueError, match=r"model\.keep_ratio_loss` has "
                       r"unknown keys \['ratio'\]; allowed: \['mode', "
                       r"'loss_weight', 'targets'\]"):
        _classifier(dict(type='dTPS', keep_ratio=0.7, layers=[1, 2],
                         prop_attn=False), keep_ratio_loss=dict(ratio=.5))


def test_swin_is_refused_by_name():
    init_default_scope('mmseg')
    from mmtokenprune.models import PrunedEncoderDecoder
    with pytest.raises(ValueError, match=r'model\.keep_ratio_loss.*'
                       r'PrunedSwinTransformer'):
        PrunedEncoderDecoder(
            backbone=dict(
                type='mmtokenprune.PrunedSwinTransformer',
                arch=dict(embed_dims=16, depths=(2, 2, 2, 2),
                          num_heads=(1, 2, 2, 4)),
                token_cfg=dict(type='dTPS', r=4, prop_attn=False)),
            decode_head=dict(
                type='FCNHead', in_channels=128, channels=8, num_convs=1,
                num_classes=3, norm_cfg=dict(type='BN')),
            keep_ratio_loss=dict())
