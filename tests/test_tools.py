"""tools/train.py and tools/test.py end to end on a tiny mmseg model.

Each tool runs in a subprocess, as a user would run it: train 2 iterations
with checkpoints, resume to 3 (which loads the Runner's own checkpoint
under torch's default ``weights_only=True``), then test the checkpoint.
"""
import importlib.util
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

from mmtokenprune.utils.launch import (base_parser, config_from_args,
                                       enable_amp, set_resume)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CAMVID_BASE = osp.join(REPO, 'configs', '_base_', 'datasets', 'camvid.py')

# The tiny backbone every tool test builds on (32 output channels).
PLAIN_BACKBONE = dict(
    type='mmtokenprune.PrunedVisionTransformer',
    arch=dict(
        embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
    img_size=64,
    patch_size=16,
    out_type='featmap',
    out_indices=(1, ),
    init_cfg=None)
# Merging tokens and gating channels, so training exercises the budget loss.
BACKBONE = dict(
    PLAIN_BACKBONE,
    token_cfg=dict(type='ATME', keep_ratio=0.8),
    channel_cfg=dict(type='CDCP', flops_target=0.5))


def tiny_seg_config(data_root: str, backbone: dict = BACKBONE) -> str:
    """Return the text of a tiny mmseg config on a CamVid-layout folder.

    Args:
        data_root (str): Dataset folder (``images/``, ``labels/``).
        backbone (dict): Backbone config; its output must have 32 channels.

    Returns:
        str: Python config text with ``_base_`` pointing at the repo's
        CamVid dataset config and mmseg's default runtime.
    """
    return f'''
_base_ = [{CAMVID_BASE!r}, 'mmseg::_base_/default_runtime.py']
crop_size = (64, 64)
# The tests pass the real folder with `--cfg-options data_root=...`.
data_root = {data_root!r}
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(64, 48), ratio_range=(1.0, 1.5),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 48), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
model = dict(
    type='mmtokenprune.PrunedEncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0,
        seg_pad_val=255, size=crop_size),
    backbone={backbone!r},
    decode_head=dict(
        type='FCNHead', in_channels=32, in_index=0, channels=16,
        num_convs=1, concat_input=False, num_classes=11,
        norm_cfg=dict(type='BN', requires_grad=True), align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
optim_wrapper = dict(
    type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3))
param_scheduler = []
train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1),
    visualization=dict(type='SegVisualizationHook', draw=False))
env_cfg = dict(cudnn_benchmark=False)
'''


def load_tool(name: str):
    """Import ``tools/<name>.py`` as a module (tools/ is no package);
    ``name`` may have a folder, e.g. ``'analysis/sweep'``."""
    path = osp.join(REPO, 'tools', f'{name}.py')
    spec = importlib.util.spec_from_file_location(
        '_tools_' + name.replace('/', '_'), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_log(runner) -> str:
    """Return the text of a Runner's log file."""
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        return f.read()


def test_train_resume_then_test(tmp_path, tiny_camvid):
    config = tmp_path / 'tiny_camvid.py'
    config.write_text(tiny_seg_config('/nonexistent/camvid'))
    work_dir = str(tmp_path / 'work')
    common = [
        str(config), '--work-dir', work_dir, '--cfg-options',
        f'data_root={tiny_camvid}'
    ]
    train = load_tool('train')

    # In-process, to pay for importing mmseg once. Distinct experiment
    # names keep mmengine's per-experiment singletons apart.
    runner = train.main(common + ['experiment_name=train'])
    assert runner.iter == 2
    assert 'loss_cdcp_budget' in read_log(runner)  # the backbone's loss
    assert osp.isfile(osp.join(work_dir, 'iter_2.pth'))

    runner = train.main(
        common + ['experiment_name=resume', 'train_cfg.max_iters=3'] +
        ['--resume'])  # auto: the latest checkpoint in the work dir
    log = read_log(runner)
    assert runner.iter == 3
    assert 'resumed epoch: 0, iter: 2' in log
    assert 'Iter(train) [3/3]' in log and 'Iter(train) [1/3]' not in log

    # A fresh process loads the checkpoint with torch's default
    # weights_only=True, as a user's `python tools/test.py` does.
    out = tmp_path / 'metrics.json'
    env = dict(os.environ, PYTHONPATH=REPO)
    argv = ['tools/test.py', common[0], osp.join(work_dir, 'iter_3.pth')]
    argv += common[1:] + ['--out', str(out)]
    proc = subprocess.run(
        [sys.executable] + argv,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    metrics = json.loads(out.read_text())
    assert set(metrics) >= {'mIoU', 'aAcc', 'mAcc'}
    assert 0.0 <= metrics['mIoU'] <= 100.0
    assert re.search(r'Iter\(test\) \[2/2\].*mIoU', proc.stdout)


def test_load_config_options(tmp_path):
    config = tmp_path / 'wrapped.py'
    config.write_text("""
data_root = 'old'
inner = dict(type='CamVidDataset', data_root=data_root)
train_dataloader = dict(dataset=dict(type='RepeatDataset', times=2,
                                     dataset=inner))
val_dataloader = dict(dataset=dict(type='ConcatDataset',
                                   datasets=[inner, dict(type='X')]))
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD'))
""")
    parser = base_parser('test')
    args = parser.parse_args(
        [str(config), '--cfg-options', 'data_root=new', 'a.b=1'])
    cfg = config_from_args(args)
    assert cfg.work_dir == osp.join('./work_dirs', 'wrapped')
    assert cfg.launcher == 'none' and cfg.a.b == 1
    assert cfg.data_root == 'new'
    assert cfg.train_dataloader.dataset.dataset.data_root == 'new'
    assert cfg.val_dataloader.dataset.datasets[0].data_root == 'new'
    assert 'data_root' not in cfg.val_dataloader.dataset.datasets[1]

    args = parser.parse_args([str(config), '--work-dir', 'elsewhere'])
    assert config_from_args(args).work_dir == 'elsewhere'

    set_resume(cfg, 'auto')
    assert cfg.resume is True and cfg.load_from is None
    set_resume(cfg, 'ckpt.pth')
    assert cfg.load_from == 'ckpt.pth'

    enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    cfg.pop('optim_wrapper')
    with pytest.raises(KeyError, match='optim_wrapper'):
        enable_amp(cfg)


def test_reproduce_results_checks_stages(tmp_path):
    """The results script names its stages and what a stage needs first,
    before running anything."""
    script = osp.join(REPO, 'tools', 'reproduce_results.sh')
    env = dict(os.environ, WORK=str(tmp_path))

    def run(*stages):
        return subprocess.run(['bash', script, *stages],
                              env=env,
                              capture_output=True,
                              text=True,
                              timeout=60)

    proc = run('baseline', 'finetuning')
    assert proc.returncode == 2
    assert "unknown stage 'finetuning'" in proc.stderr
    assert ('baseline trainingfree finetune cifar10 transfer spvit '
            'cdcp-learned retime budgets deploy xseq') in proc.stderr
    proc = run('finetune')
    assert proc.returncode == 1
    assert 'camvid_deit-t16_4k/iter_4000.pth' in proc.stderr
    assert "run stage 'baseline' first" in proc.stderr
    assert not os.listdir(tmp_path)
