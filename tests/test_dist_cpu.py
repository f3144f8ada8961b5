"""``torchrun --nproc_per_node 2 tools/train.py CONFIG --launcher pytorch``
on CPUs: two ranks train the tiny tool model on different shards of a tiny
CamVid-like dataset, and must end with the same weights (DDP averaged
their gradients) and a checkpoint.
"""
import os
import os.path as osp
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from test_tools import REPO, tiny_seg_config

ITERS = 2

# Each rank saves its parameters before and after training.
RANK_DUMP_HOOK = '''
import os.path as osp

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RankDumpHook(Hook):
    """Save this rank's parameters before and after training."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.start = None

    def before_train(self, runner):
        self.start = self._params(runner)

    def after_train(self, runner):
        torch.save(
            dict(start=self.start, end=self._params(runner),
                 wrapper=type(runner.model).__name__,
                 world_size=runner.world_size, iter=runner.iter),
            osp.join(self.out_dir, f'rank{runner.rank}.pth'))

    @staticmethod
    def _params(runner):
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        return {k: v.detach().clone() for k, v in model.named_parameters()}
'''


def free_port() -> int:
    """Return a TCP port that is free now, for torchrun's rendezvous."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_torchrun_two_cpu_ranks_train_in_sync(tmp_path, tiny_camvid):
    (tmp_path / 'rank_dump_hook.py').write_text(RANK_DUMP_HOOK)
    dumps = tmp_path / 'dumps'
    dumps.mkdir()
    config = tmp_path / 'tiny_ddp.py'
    config.write_text(
        tiny_seg_config(tiny_camvid) + textwrap.dedent(f'''
        custom_imports = dict(
            imports=['mmtokenprune.datasets', 'rank_dump_hook'],
            allow_failed_imports=False)
        custom_hooks = [dict(type='RankDumpHook', out_dir={str(dumps)!r})]
        train_cfg = dict(max_iters={ITERS}, val_interval={ITERS})
        '''))
    work_dir = tmp_path / 'work'
    # No GPU for the ranks even where there is one: this is the CPU path.
    env = dict(
        os.environ,
        CUDA_VISIBLE_DEVICES='',
        PYTHONPATH=os.pathsep.join([str(tmp_path), REPO]))
    proc = subprocess.run([
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
        '--master_addr', '127.0.0.1', '--master_port',
        str(free_port()), 'tools/train.py',
        str(config), '--launcher', 'pytorch', '--work-dir',
        str(work_dir)
    ],
                          cwd=REPO,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=180)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert out.count('distributed training on CPUs: process group on gloo '
                     "(the config asks for 'nccl')") == 1, out[-4000:]

    ranks = [torch.load(dumps / f'rank{r}.pth') for r in (0, 1)]
    for dump in ranks:
        assert dump['world_size'] == 2 and dump['iter'] == ITERS
        assert dump['wrapper'] == 'MMDistributedDataParallel'
    start, end = ranks[0]['start'], ranks[0]['end']
    assert end.keys() == ranks[1]['end'].keys() and len(end) > 10
    # Training moved the weights, and both ranks moved them alike.
    assert not all(torch.equal(end[k], start[k]) for k in end)
    for name, value in end.items():
        assert torch.equal(value, ranks[1]['end'][name]), name

    ckpt_path = work_dir / f'iter_{ITERS}.pth'
    assert osp.isfile(ckpt_path)
    ckpt = torch.load(ckpt_path)
    assert ckpt['meta']['iter'] == ITERS
    for name, value in end.items():
        assert torch.equal(ckpt['state_dict'][name], value), name


def test_prepare_cpu_distributed_is_narrow(monkeypatch):
    from mmengine.config import Config

    from mmtokenprune.compat import dist
    cfg = Config(
        dict(
            launcher='pytorch',
            model=dict(decode_head=dict(norm_cfg=dict(type='SyncBN')))))
    monkeypatch.setattr(dist, 'get_device', lambda: 'cuda')
    assert dist.prepare_cpu_distributed(cfg) is None
    monkeypatch.setattr(dist, 'get_device', lambda: 'cpu')
    assert dist.prepare_cpu_distributed(Config(dict(launcher='none'))) is None
    assert cfg.model.decode_head.norm_cfg.type == 'SyncBN'
    assert 'model_wrapper_cfg' not in cfg

    for name in ('RANK', 'MASTER_PORT'):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match='torchrun.*missing: RANK'):
        dist.prepare_cpu_distributed(cfg)


def test_cpu_config_changes():
    from mmengine.config import Config

    from mmtokenprune.compat import dist
    norm = dict(type='SyncBN', requires_grad=True)
    cfg = Config(
        dict(
            find_unused_parameters=True,
            sync_bn='torch',
            model=dict(
                backbone=dict(norm_cfg=dict(type='LN')),
                decode_head=dict(norm_cfg=norm),
                auxiliary_head=[dict(norm_cfg=norm)])))
    assert dist._ddp_without_device_ids(cfg) == \
        'MMDistributedDataParallel with device_ids=None'
    assert cfg.model_wrapper_cfg == dict(
        type='MMDistributedDataParallel',
        device_ids=None,
        broadcast_buffers=False,
        find_unused_parameters=True)
    notes = dist._sync_bn_to_bn(cfg)
    assert notes[0].startswith('2 SyncBN norm config(s) built as BN')
    assert notes[1] == "sync_bn='torch' ignored" and 'sync_bn' not in cfg
    assert cfg.model.decode_head.norm_cfg.type == 'BN'
    assert cfg.model.auxiliary_head[0].norm_cfg.type == 'BN'
    assert cfg.model.backbone.norm_cfg.type == 'LN'

    # A configured DDP wrapper keeps its options; device_ids only if unset.
    cfg = Config(
        dict(
            model_wrapper_cfg=dict(
                type='MMDistributedDataParallel', broadcast_buffers=True)))
    dist._ddp_without_device_ids(cfg)
    assert cfg.model_wrapper_cfg.device_ids is None
    assert cfg.model_wrapper_cfg.broadcast_buffers is True
    cfg = Config(
        dict(model_wrapper_cfg=dict(type='MMFullyShardedDataParallel')))
    assert 'kept as configured' in dist._ddp_without_device_ids(cfg)
    assert 'device_ids' not in cfg.model_wrapper_cfg


def test_finish_distributed_destroys_the_process_group():
    """The tools destroy the group after a run: gloo threads left alive at
    interpreter exit can abort a rank that finished its work."""
    import torch.distributed as torch_dist

    from mmtokenprune.utils.launch import finish_distributed
    finish_distributed()  # nothing to do outside a distributed run
    torch_dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{free_port()}', rank=0,
        world_size=1)
    try:
        finish_distributed()
        assert not torch_dist.is_initialized()
    finally:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()
