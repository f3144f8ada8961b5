"""The distillation configs train 2 iterations on tiny synthetic data, from
a checkpoint of their unpruned model that is also their teacher: every
extra loss is logged, the warm-up hook holds the backbone still, and the
saved checkpoint is the student's alone."""
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import Runner
from PIL import Image

from mmtokenprune.models.teacher import _uncompressed

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CAMVID = ('configs/camvid/'
          'spvit-distill_deit-t16_fcn_1xb4-1k-ft_camvid-256x256.py')
CIFAR = ('configs/cifar10/'
         'spvit-distill_deit-t16_1xb64-600it-ft_cifar10-128px.py')


def make_cifar(root: str) -> str:
    """Two classes of two 32x32 images each, in CustomDataset's layout."""
    rng = np.random.default_rng(0)
    for cls in ('airplane', 'cat'):
        os.makedirs(osp.join(root, 'train', cls))
        for i in range(2):
            img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(img).save(
                osp.join(root, 'train', cls, f'{i}.png'))
    return root


def _teacher_checkpoint(cfg, path):
    """What the teacher loads: the config's model, compression off."""
    init_default_scope(cfg.default_scope)
    model_cfg = _uncompressed(cfg.model)
    model_cfg['type'] = model_cfg['type'].split('.')[-1].replace(
        'Pruned', '')
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    torch.save({'state_dict': model.state_dict()}, path)
    return model.state_dict()


def _train(cfg, tmp_path, data_root, name):
    ckpt = str(tmp_path / 'baseline.pth')
    base = _teacher_checkpoint(cfg, ckpt)
    loader = cfg.train_dataloader
    loader.update(batch_size=1, num_workers=0, persistent_workers=False)
    loader.dataset.data_root = data_root
    cfg.merge_from_dict({
        'model.teacher.checkpoint': ckpt,
        'load_from': ckpt,
        'work_dir': str(tmp_path / 'work'),
        'experiment_name': name,
        'train_cfg.max_iters': 2,
        'train_cfg.val_interval': 100,
        'default_hooks.logger.interval': 1,
        'default_hooks.checkpoint.interval': 2,
    })
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator',
                'test_dataloader', 'test_cfg', 'test_evaluator'):
        cfg[key] = None
    cfg.default_hooks.checkpoint.pop('save_best', None)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        log = f.read()
    keys = [f'loss_distill_{k}: ' for k in cfg.model.distill]
    for key in keys + ['loss_keep_ratio: ', 'backbone_lr_mult: 0.0000']:
        assert key in log, key
    saved = torch.load(
        osp.join(cfg.work_dir, 'iter_2.pth'), map_location='cpu',
        weights_only=False)['state_dict']
    assert set(saved) == set(runner.model.state_dict())
    assert not any(k.startswith('teacher') for k in saved)
    # warm-up: the backbone (reducers aside) did not move, the head did
    frozen = [k for k in base if k.startswith('backbone.')
              and base[k].is_floating_point()]
    assert frozen and all(torch.equal(saved[k], base[k]) for k in frozen)
    head = [k for k in saved if k.startswith(('decode_head.', 'head.'))
            and k.endswith('weight')]
    assert any(not torch.equal(saved[k], base[k]) for k in head)
    selector = [k for k in saved if '.reducer.' in k]
    assert selector and not set(selector) & set(base)
    return runner


def test_camvid_config_trains(tmp_path, tiny_camvid):
    cfg = Config.fromfile(osp.join(ROOT, CAMVID))
    _train(cfg, tmp_path, tiny_camvid, 'distill_camvid')


def test_cifar10_config_trains(tmp_path):
    cfg = Config.fromfile(osp.join(ROOT, CIFAR))
    _train(cfg, tmp_path, make_cifar(str(tmp_path / 'cifar')),
           'distill_cifar')


@pytest.mark.parametrize('path', [CAMVID, CIFAR])
def test_configs_are_deltas(path):
    cfg = Config.fromfile(osp.join(ROOT, path))
    assert cfg.model.teacher.checkpoint is None  # the user names it
    assert cfg.model.keep_ratio_loss.mode == 'batch'
    assert 'kl' in cfg.model.distill
    assert cfg.model.backbone.token_cfg.type == 'SPViT'
    with open(osp.join(ROOT, path)) as f:
        assert f.read().count('_base_ = ') == 1
