"""mmseg zoo checkpoints through the plugin's mirror configs: with reducers
off, the same logits as mmseg's own model, whole and sliding-window."""
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.runner import load_checkpoint
from mmseg_zoo import CROP, ZOO, build, save_zoo_checkpoint, zoo_config

SLIDE = dict(mode='slide', crop_size=CROP, stride=(48, 48))


def logits(model, x, test_cfg):
    model.test_cfg = ConfigDict(test_cfg)
    metas = [
        dict(
            img_shape=tuple(x.shape[2:]),
            ori_shape=tuple(x.shape[2:]),
            pad_shape=tuple(x.shape[2:]),
            padding_size=[0, 0, 0, 0])
    ] * x.shape[0]
    with torch.no_grad():
        return model.inference(x, metas)


@pytest.mark.parametrize('name', sorted(ZOO))
def test_zoo_checkpoint_gives_mmseg_logits(name, tmp_path):
    ckpt = str(tmp_path / 'zoo.pth')
    save_zoo_checkpoint(name, ckpt)
    theirs = build(zoo_config(name, plugin=False))
    ours = build(zoo_config(name, plugin=True))
    assert type(ours.backbone).__name__ == 'PrunedMMSegVisionTransformer'
    # the Runner's own loader (non-strict, as `load_from`)
    for model in (theirs, ours):
        load_checkpoint(model, ckpt, map_location='cpu', strict=False)
    torch.manual_seed(1)
    cases = [
        ((64, 64), dict(mode='whole')),  # the training crop (512 at scale)
        ((83, 101), SLIDE),  # odd: overlapping 64x64 windows
        ((40, 101), SLIDE),  # shorter than a crop: pos_embed interpolated
        # 2x8 patches, as many as the table's 4x4: mmseg adds the table
        # unresized (its rule: interpolate when the count differs)
        ((32, 128), dict(mode='whole')),
    ]
    for size, test_cfg in cases:
        x = torch.randn(2, 3, *size)
        a, b = logits(ours, x, test_cfg), logits(theirs, x, test_cfg)
        assert a.shape == (2, 5, *size)
        scale = b.abs().max()
        assert scale > 1e-2  # not a degenerate comparison
        rel = float((a - b).abs().max() / scale)
        assert rel <= 1e-4, (name, size, rel)


@pytest.mark.parametrize('options', [
    dict(final_norm=True, norm_cfg=dict(type='LN', eps=1e-6)),  # Segmenter
    dict(with_cls_token=False),  # SETR-MLA: the cls token never enters
    dict(output_cls_token=True),  # DPT: [map, cls token] per output
    dict(pre_norm=True, patch_bias=True, patch_norm=True),
], ids=['final_norm', 'no_cls_token', 'output_cls_token', 'pre_patch_norm'])
def test_backbone_options_of_other_zoo_configs(options):
    """The options of mmseg's other ViT configs, backbone against backbone
    on mmseg's keys, at the table's size and two others (4x5 patches: an
    interpolated table; 2x8: as many patches, mmseg adds it unresized)."""
    from mmengine.runner.checkpoint import load_state_dict
    from mmseg.models.backbones import VisionTransformer as MMSegViT

    from mmtokenprune.models import PrunedMMSegVisionTransformer
    args = dict(img_size=64, embed_dims=32, num_layers=3, num_heads=2,
                out_indices=(0, 2), **options)
    torch.manual_seed(0)
    ref = MMSegViT(**args)
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.3)
    ours = PrunedMMSegVisionTransformer(**args)
    load_state_dict(ours, ref.state_dict(), strict=False)
    ref.eval()
    ours.eval()
    for size in [(64, 64), (50, 70), (32, 128)]:
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            for a, b in zip(ours(x), ref(x)):
                if options.get('output_cls_token'):
                    torch.testing.assert_close(a[1], b[1], atol=1e-5, rtol=0)
                    a, b = a[0], b[0]
                assert a.shape[2:] == ((size[0] + 15) // 16,
                                       (size[1] + 15) // 16)
                torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
