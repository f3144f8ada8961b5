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
