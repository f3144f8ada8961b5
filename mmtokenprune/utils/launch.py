"""Shared pieces of ``tools/train.py`` and ``tools/test.py``.

Both tools work for mmseg and mmpretrain configs alike: the config's
``default_scope`` decides which library's registries the Runner uses.
"""
import argparse
import os
import os.path as osp
from typing import Optional

from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..compat.dist import prepare_cpu_distributed
from .config import load_config

__all__ = [
    'base_parser', 'config_from_args', 'build_runner', 'finish_distributed',
    'enable_amp', 'set_resume'
]


def base_parser(description: str) -> argparse.ArgumentParser:
    """Build a parser with the arguments both tools share.

    Args:
        description (str): Text shown by ``--help``.

    Returns:
        argparse.ArgumentParser: Parser with ``config``, ``--work-dir``,
        ``--cfg-options``, ``--launcher`` and ``--local_rank``; tools add
        their own arguments.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--work-dir',
        help='folder for logs and checkpoints; defaults to the config\'s '
        '`work_dir`, else ./work_dirs/<config name>')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config keys, e.g. `data_root=/data/camvid '
        'train_cfg.max_iters=100`; a top-level `data_root` is copied into '
        'every dataloader\'s dataset')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher (`pytorch` under torchrun)')
    # torchrun sets LOCAL_RANK; older launchers pass --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    """Read ``args.config`` and apply the shared command-line options.

    Args:
        args (argparse.Namespace): Parsed arguments of :func:`base_parser`.

    Returns:
        Config: Config with ``launcher``, ``work_dir`` and the
        ``--cfg-options`` applied (:func:`~.config.load_config`).
    """
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = load_config(
        args.config, args.cfg_options, key='the `config` argument')
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        name = osp.splitext(osp.basename(args.config))[0]
        cfg.work_dir = osp.join('./work_dirs', name)
    return cfg


def enable_amp(cfg: Config) -> None:
    """Switch ``optim_wrapper`` to mmengine's ``AmpOptimWrapper``.

    Args:
        cfg (Config): Training config; needs ``optim_wrapper``.
    """
    wrapper = cfg.get('optim_wrapper', None)
    if wrapper is None:
        raise KeyError('--amp needs `optim_wrapper` in the config')
    if wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
        print_log('AMP is already enabled in the config.', logger='current')
        return
    if wrapper.get('type', 'OptimWrapper') != 'OptimWrapper':
        raise ValueError('--amp replaces `optim_wrapper.type=OptimWrapper`, '
                         f'got {wrapper["type"]!r}')
    wrapper.type = 'AmpOptimWrapper'
    wrapper.setdefault('loss_scale', 'dynamic')


def set_resume(cfg: Config, resume: Optional[str]) -> None:
    """Apply ``--resume``: ``'auto'`` finds the latest checkpoint.

    Args:
        cfg (Config): Training config.
        resume (str, optional): None (no resume), ``'auto'`` (latest
            checkpoint in ``work_dir``) or a checkpoint path.
    """
    if resume is None:
        return
    cfg.resume = True
    cfg.load_from = None if resume == 'auto' else resume


def build_runner(cfg: Config) -> Runner:
    """Build the Runner, honouring a custom ``runner_type``.

    With ``--launcher pytorch`` on a machine without CUDA it first starts
    distributed training on CPUs (gloo; see
    :func:`mmtokenprune.compat.dist.prepare_cpu_distributed`) and logs
    what it did once through the Runner's logger.

    Args:
        cfg (Config): Complete config.

    Returns:
        Runner: The built runner.
    """
    cpu_dist = prepare_cpu_distributed(cfg)
    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    if cpu_dist is not None:
        runner.logger.info(cpu_dist)
    return runner


def finish_distributed() -> None:
    """Destroy the default process group after a successful run.

    Without it gloo's worker threads may still hold work when the
    interpreter shuts down, and a rank aborts at exit ("terminate called
    without an active exception", SIGABRT) although training finished.
    Called only on success: destroying while other ranks still run
    collectives could deadlock. A no-op outside distributed runs.
    """
    import torch.distributed as torch_dist
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
