"""Every reducer under Segmenter's mask-transformer head (the zoo mirror
config, shrunk): the head gets the full, un-merged grid; batch 2 trains
and infers, gradients reach the backbone, the reducer and the head."""
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from mmseg_zoo import NUM_CLASSES, build, zoo_config

NAME = 'segmenter_vit-s_mask_8xb1-160k_ade20k-512x512.py'
REDUCERS = {
    'ATME': dict(type='ATME', keep_ratio=0.75, layers=[0, 2]),
    'ToMe': dict(type='ToMe', keep_ratio=0.75, layers=[0, 2]),
    'dTPS': dict(type='dTPS', keep_ratio=0.7, layers=[1]),
    'eTPS': dict(type='eTPS', keep_ratio=0.7, layers=[1]),
    'SPViT': dict(type='SPViT', keep_ratio=0.6, layers=[1, 2]),
}


def samples(batch, size):
    out = []
    for _ in range(batch):
        sample = SegDataSample(metainfo=dict(
            img_shape=size, ori_shape=size, pad_shape=size,
            padding_size=[0, 0, 0, 0]))
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, NUM_CLASSES, (1, *size)))
        out.append(sample)
    return out


@pytest.mark.parametrize('reducer', sorted(REDUCERS))
def test_reducer_runs_under_the_mask_transformer_head(reducer):
    torch.manual_seed(0)
    cfg = zoo_config(NAME, plugin=True,
                     **{'model.backbone.token_cfg': REDUCERS[reducer]})
    model = build(cfg)
    backbone = model.backbone
    assert type(model.decode_head).__name__ == 'SegmenterMaskTransformerHead'
    assert backbone.token_cfg.type == reducer

    # inference: tokens are reduced, the head still sees the 4x4 grid
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        maps = backbone.token_maps(x)
        feats = backbone(x)
        assert maps[-1].num_tokens < 16
        assert [tuple(f.shape) for f in feats] == [(2, 32, 4, 4)]
        model.test_cfg = ConfigDict(
            mode='slide', crop_size=(64, 64), stride=(48, 48))
        seg = model.predict(torch.randn(2, 3, 83, 101), samples(2, (83, 101)))
    assert seg[0].seg_logits.data.shape == (NUM_CLASSES, 83, 101)
    assert torch.isfinite(seg[1].seg_logits.data).all()

    # training: one loss, gradients everywhere they should be
    model.train()
    losses = model.loss(x, samples(2, (64, 64)))
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for name in ('backbone.patch_embed.projection.weight',
                 'backbone.layers.0.attn.qkv.weight',
                 'backbone.layers.3.ffn.layers.1.weight',
                 'decode_head.mask_norm.weight'):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name
    learned = [n for n in grads if '.reducer.' in n]
    assert bool(learned) == (reducer in ('dTPS', 'SPViT'))
    assert all(grads[n] is not None for n in learned), learned
