"""Export a gated classifier; transfer its backbone into a segmentor."""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from mmtokenprune.ops import ChannelGate, PruneSpec
from mmtokenprune.models.cdcp import export_checkpoint

ARCH = dict(embed_dims=32, num_layers=3, num_heads=2, feedforward_channels=64)
BACKBONE = dict(
    type='mmtokenprune.PrunedVisionTransformer',
    arch=ARCH,
    img_size=32,
    patch_size=16,
    token_cfg=dict(type='ATME', r=1))

CLASSIFIER = dict(
    default_scope='mmpretrain',
    custom_imports=dict(imports=['mmtokenprune.models']),
    model=dict(
        type='mmtokenprune.PrunedImageClassifier',
        backbone=dict(**BACKBONE, channel_cfg=dict(type='CDCP')),
        head=dict(
            type='VisionTransformerClsHead', num_classes=10,
            in_channels=32)))


def segmentor_cfg(spec_path, checkpoint):
    backbone = dict(
        BACKBONE,
        img_size=64,
        out_type='featmap',
        channel_cfg=dict(spec=spec_path),
        init_cfg=dict(
            type='Pretrained', checkpoint=checkpoint, prefix='backbone.'))
    return dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor'),
        backbone=backbone,
        decode_head=dict(
            type='FCNHead',
            in_channels=32,
            channels=16,
            num_convs=1,
            num_classes=11,
            norm_cfg=dict(type='BN')))


@pytest.fixture
def gated_classifier(tmp_path):
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    model = MODELS.build(Config(CLASSIFIER).model)
    for m in model.modules():
        if isinstance(m, ChannelGate):
            m.logits.data = torch.randn_like(m.logits)
    model.eval()
    cfg_path = tmp_path / 'cls.py'
    Config(CLASSIFIER).dump(str(cfg_path))
    ckpt = tmp_path / 'gated.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    return model, str(cfg_path), str(ckpt)


def test_exported_classifier_equals_gated(gated_classifier, tmp_path):
    model, cfg_path, ckpt = gated_classifier
    spec, path = export_checkpoint(cfg_path, ckpt, str(tmp_path / 'out'))
    assert PruneSpec.load(str(tmp_path / 'out' / 'prune_spec.json')) == spec
    cfg = Config(CLASSIFIER)
    cfg.model.backbone.channel_cfg = dict(spec=spec.to_dict())
    small = MODELS.build(cfg.model)
    state = torch.load(path)['state_dict']  # weights_only: plain tensors
    small.load_state_dict(state, strict=True)
    small.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(
        small(x, mode='tensor'), model(x, mode='tensor'), atol=1e-5,
        rtol=1e-5)


def test_transfer_into_segmentor(gated_classifier, tmp_path):
    model, cfg_path, ckpt = gated_classifier
    spec, path = export_checkpoint(cfg_path, ckpt, str(tmp_path / 'out'))
    init_default_scope('mmseg')
    seg = MODELS.build(
        segmentor_cfg(str(tmp_path / 'out' / 'prune_spec.json'), path))
    seg.init_weights()
    exported = torch.load(path)['state_dict']
    for name, tensor in seg.backbone.state_dict().items():
        if name == 'pos_embed':  # 2x2 -> 4x4 grid: resized on load
            assert tensor.shape == (1, 17, 32)
            continue
        torch.testing.assert_close(tensor, exported[f'backbone.{name}'])
    seg.eval()
    out = seg(torch.randn(1, 3, 64, 64), mode='tensor')
    assert out.shape == (1, 11, 4, 4)  # head logits at H/16
