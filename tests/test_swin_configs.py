"""Every Swin config builds (random init, no download) and runs a forward."""
import copy
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', '*', '*swin*.py')))


def test_swin_configs_are_found():
    names = {osp.relpath(p, osp.join(REPO, 'configs')) for p in CONFIGS}
    assert {
        'ade20k/swin-t_upernet_8xb2-160k_ade20k-512x512.py',
        'ade20k/atme_swin-t_upernet_8xb2-160k_ade20k-512x512.py',
        'ade20k/atme-cdcp_swin-t_upernet_8xb2-160k_ade20k-512x512.py',
        'ade20k/dtps_swin-t_upernet_8xb2-160k_ade20k-512x512.py',
        'ade20k/etps_swin-t_upernet_8xb2-160k_ade20k-512x512.py',
        'imagenet/atme_swin-tiny_16xb64_in1k.py',
        'camvid/swin-c48_fcn_1xb4-4k-balanced_camvid-xseq-256x256.py',
        'camvid/swin-c48_fcn_1xb4-500it-ft_camvid-xseq-256x256.py',
        'camvid/atme_swin-c48_fcn_1xb4-500it-ft_camvid-xseq-256x256.py',
        'camvid/tome_swin-c48_fcn_1xb4-500it-ft_camvid-xseq-256x256.py',
    } <= names


@pytest.mark.parametrize(
    'path', CONFIGS, ids=[osp.basename(p)[:-3] for p in CONFIGS])
def test_swin_config_builds_and_runs(path):
    cfg = Config.fromfile(path)
    scope = cfg.get('default_scope', 'mmseg')
    init_default_scope(scope)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.init_cfg = None  # no checkpoint download
    backbone = model_cfg.backbone
    assert backbone.type == 'mmtokenprune.PrunedSwinTransformer'
    model = revert_sync_batchnorm(MODELS.build(model_cfg))
    model.eval()
    name = osp.basename(path)
    for method in ('atme', 'tome', 'dtps', 'etps'):
        if name.startswith(method):
            assert model.backbone.token_cfg.type.lower() == method
            assert any(b.merge_r > 0 for b in model.backbone.blocks())
    if 'cdcp' in osp.basename(path):
        assert model.backbone.channel_cfg.gated
        assert 'loss_cdcp_budget' in model.backbone.compression_losses()
    # classification keeps upstream's strict window rule: 224 = 7 * 32
    size = (224, 224) if scope == 'mmpretrain' else (96, 80)
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        out = model(x, mode='tensor')
    if scope == 'mmpretrain':
        assert out.shape == (1, 1000)
    else:
        num_classes = model.decode_head.num_classes
        assert out.shape[:2] == (1, num_classes)
        assert torch.isfinite(out).all()


def test_benchmark_tool_has_the_swin_preset():
    import importlib.util
    path = osp.join(REPO, 'tools', 'analysis', 'benchmark.py')
    spec = importlib.util.spec_from_file_location('benchmark_tool', path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    # the preset's configs exist (a renamed config breaks the preset)
    assert tool.PRESETS['swin-t']
    assert all(p in CONFIGS for _, p in tool.PRESETS['swin-t'])


@pytest.mark.parametrize('swin, deit', [
    ('swin-c48_fcn_1xb4-4k-balanced_camvid-xseq-256x256.py',
     'deit-t16_fcn_1xb4-4k-balanced_camvid-xseq-256x256.py'),
    ('swin-c48_fcn_1xb4-500it-ft_camvid-xseq-256x256.py',
     'deit-t16_fcn_1xb4-500it-ft_camvid-xseq-256x256.py'),
])
def test_swin_camvid_follows_the_deit_xseq_recipe(swin, deit):
    """Swin's CamVid rows are comparable with the DeiT-T xseq rows: same
    split, sliding inference, loss and schedule; only the backbone (and the
    decode head's input width) differ."""
    swin = Config.fromfile(osp.join(REPO, 'configs', 'camvid', swin))
    deit = Config.fromfile(osp.join(REPO, 'configs', 'camvid', deit))
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader',
                'param_scheduler', 'train_cfg', 'randomness'):
        assert swin.get(key) == deit.get(key), key
    assert swin.optim_wrapper.optimizer == deit.optim_wrapper.optimizer
    assert swin.model.test_cfg == deit.model.test_cfg
    assert (swin.model.decode_head.loss_decode ==
            deit.model.decode_head.loss_decode)
    assert swin.model.backbone.type == 'mmtokenprune.PrunedSwinTransformer'
