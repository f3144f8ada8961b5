"""The two commands of a zoo checkpoint, unchanged: ``tools/test.py CONFIG
ZOO_CKPT`` gives mmseg's mIoU, ``tools/analysis/sweep.py CONFIG ZOO_CKPT
--settings baseline ATME:... ToMe:...`` its mIoU-vs-speed table (mirror
config shrunk by ``--cfg-options``, a tiny ADE20K-layout folder)."""
import os
import os.path as osp

import numpy as np
import pytest
from mmseg_zoo import REPO, save_zoo_checkpoint, shrink_options
from PIL import Image
from test_tools import load_tool

NAME = 'vit_deit-s16_upernet_8xb2-80k_ade20k-512x512.py'
CONFIG = osp.join(REPO, 'configs', 'mmseg-zoo', NAME)


def make_ade20k(root: str, count: int = 2) -> str:
    """``images/validation/*.jpg`` and ``annotations/validation/*.png``
    (labels 0..5; 0 is ADE20K's 'other', ignored)."""
    rng = np.random.default_rng(0)
    for kind in ('images', 'annotations'):
        os.makedirs(osp.join(root, kind, 'validation'), exist_ok=True)
    for i in range(count):
        img = rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)
        label = np.kron(rng.integers(0, 6, (10, 10)), np.ones((8, 10)))
        Image.fromarray(img).save(
            osp.join(root, 'images', 'validation', f'ADE_val_{i}.jpg'))
        Image.fromarray(label.astype(np.uint8)).save(
            osp.join(root, 'annotations', 'validation', f'ADE_val_{i}.png'))
    return root


def options(data_root: str) -> list:
    opts = {**shrink_options(NAME), 'data_root': data_root}
    # the test pipeline's resize: 80x100 images to at most 96x128
    opts['test_dataloader.dataset.pipeline.1.scale'] = (128, 96)
    return [f'{k}={v}'.replace(' ', '') for k, v in opts.items()]


@pytest.fixture(scope='module')
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp('zoo')
    ckpt = str(root / 'upernet_deit-s16_zoo.pth')
    save_zoo_checkpoint(NAME, ckpt)
    return ckpt, options(make_ade20k(str(root / 'ade')))


def test_test_and_sweep_tools_read_the_zoo_checkpoint(zoo, tmp_path):
    ckpt, opts = zoo
    metrics = load_tool('test').main([
        CONFIG, ckpt, '--work-dir',
        str(tmp_path / 'test'), '--cfg-options', *opts
    ])
    assert 0 < metrics['mIoU'] <= 100
    out = str(tmp_path / 'sweep')
    load_tool('analysis/sweep').main([
        CONFIG, ckpt, '--out', out, '--settings', 'baseline',
        'ATME:keep_ratio=0.75,layers=0/3', 'ToMe:keep_ratio=0.75,layers=0/3',
        '--image-size', '64', '64', '--batch-sizes', '1', '--repeats', '1',
        '--warmup', '0', '--no-progress', '--cfg-options', *opts
    ])
    with open(osp.join(out, 'sweep.md')) as f:
        table = f.read().split('Per class')[0]
    rows = [line.split('|')[1:3] for line in table.splitlines()
            if line.startswith('| `')]
    assert [r[0].strip() for r in rows] == [
        '`baseline`', '`ATME:keep_ratio=0.75,layers=0/3`',
        '`ToMe:keep_ratio=0.75,layers=0/3`'
    ], table
    # the sweep's baseline is the test tool's model: same mIoU
    assert float(rows[0][1]) == pytest.approx(metrics['mIoU'], abs=0.006)


def test_parity_check_compares_with_mmseg_s_own_model():
    """tools/analysis/compare_mmseg.py's function, on the shrunk Segmenter
    mirror (random weights) whole and sliding."""
    from mmseg_zoo import zoo_config

    from mmtokenprune.analysis.mmseg_parity import (compare_with_mmseg,
                                                    mmseg_twin)
    cfg = zoo_config('segmenter_vit-s_mask_8xb1-160k_ade20k-512x512.py',
                     plugin=True)
    assert mmseg_twin(cfg).model.backbone.type == 'mmseg.VisionTransformer'
    slide = dict(mode='slide', crop_size=(64, 64), stride=(42, 42))
    result = compare_with_mmseg(
        cfg, cases=[(64, 64, dict(mode='whole')), (75, 99, slide)])
    # 4 layers x (qkv, proj) x (weight, bias) renamed, of 4 x 12 + 5 keys
    # (cls_token, pos_embed, patch weight without bias, final norm)
    assert (result['backbone_keys'], result['renamed']) == (53, 16)
    for case in result['cases']:
        assert case['scale'] > 1e-2 and case['rel'] <= 1e-4, case
