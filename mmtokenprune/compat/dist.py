"""``--launcher pytorch`` on machines without CUDA.

mmengine 0.10.7 cannot start distributed training on CPUs:
``init_dist('pytorch')`` calls ``torch.cuda.set_device`` unconditionally
and configs ask for ``nccl``; ``Runner.wrap_model`` passes
``device_ids=[LOCAL_RANK]``, which ``DistributedDataParallel`` rejects for
a CPU module; and ``torch.nn.SyncBatchNorm`` trains on accelerators only.

When mmengine's device is the CPU, :func:`prepare_cpu_distributed`
initialises the process group itself (``gloo``, ``env://``), so that the
Runner, which calls ``init_dist`` only while ``is_distributed()`` is
false, skips it; and it adjusts the config: DDP gets ``device_ids=None``,
SyncBN layers become BN. With CUDA (or another accelerator mmengine knows)
nothing changes, so the same command trains on CPUs and GPUs. Nothing of
mmengine is patched.
"""
import datetime
import os
from typing import List, Optional

import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.device import get_device
from mmengine.registry import MODEL_WRAPPERS
from torch.nn.parallel import DistributedDataParallel

__all__ = ['prepare_cpu_distributed']

_TORCHRUN_ENV = ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')


def prepare_cpu_distributed(cfg: Config) -> Optional[str]:
    """Start CPU distributed training for ``cfg.launcher == 'pytorch'``.

    Call it before building the Runner; log the returned text through the
    Runner's logger (it does not exist yet).

    Args:
        cfg (Config): Complete config; ``model_wrapper_cfg``, ``sync_bn``
            and the ``SyncBN`` norms of ``cfg.model`` are changed in place.

    Returns:
        str, optional: What was done, or None when nothing was (another
        launcher, or a CUDA/accelerator machine).

    Raises:
        RuntimeError: If the torchrun environment (``RANK``,
            ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) is missing.
    """
    if cfg.get('launcher', 'none') != 'pytorch' or get_device() != 'cpu':
        return None
    notes = [_init_gloo(cfg)] if not torch_dist.is_initialized() else []
    notes.append(_ddp_without_device_ids(cfg))
    notes.extend(_sync_bn_to_bn(cfg))
    return ('mmtokenprune: no CUDA, distributed training on CPUs: ' +
            '; '.join(notes) + '.')


def _init_gloo(cfg: Config) -> str:
    """Initialise the default process group with gloo from torchrun's env."""
    missing = [name for name in _TORCHRUN_ENV if name not in os.environ]
    if missing:
        raise RuntimeError(
            '--launcher pytorch expects to be started by torchrun (or '
            '`python -m torch.distributed.run`), which sets '
            f'{", ".join(_TORCHRUN_ENV)}; missing: {", ".join(missing)}')
    kwargs = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}))
    asked = kwargs.pop('backend', 'nccl')
    if kwargs.get('timeout') is not None:  # seconds, as mmengine takes it
        kwargs['timeout'] = datetime.timedelta(seconds=kwargs['timeout'])
    torch_dist.init_process_group(
        backend='gloo', init_method='env://', **kwargs)
    return (f'process group on gloo (the config asks for {asked!r}), '
            f'rank {torch_dist.get_rank()} of {torch_dist.get_world_size()}')


def _ddp_without_device_ids(cfg: Config) -> str:
    """Make the Runner's DDP wrapper take a CPU module."""
    wrapper = cfg.get('model_wrapper_cfg', None)
    if wrapper is None:
        # What Runner.wrap_model builds by default, without device_ids.
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel',
            device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
        return 'MMDistributedDataParallel with device_ids=None'
    name = wrapper.get('type', 'MMDistributedDataParallel')
    wrapper_type = MODEL_WRAPPERS.get(name) if isinstance(name, str) else name
    # The wrappers Runner.wrap_model gives device_ids=[LOCAL_RANK].
    if isinstance(wrapper_type, type) and issubclass(
            wrapper_type, DistributedDataParallel) \
            and 'device_ids' not in wrapper:
        wrapper['device_ids'] = None
        return f'{wrapper_type.__name__} with device_ids=None'
    return f'model_wrapper_cfg {name} kept as configured'


def _sync_bn_to_bn(cfg: Config) -> List[str]:
    """Turn ``SyncBN`` norms of ``cfg.model`` into ``BN``, drop ``sync_bn``.

    Each rank then normalises over its own batch, as one process does.
    """
    notes = []
    count = _replace_types(cfg.get('model', {}), 'SyncBN', 'BN')
    if count:
        notes.append(f'{count} SyncBN norm config(s) built as BN '
                     '(SyncBatchNorm needs an accelerator)')
    if cfg.get('sync_bn', None) is not None:
        notes.append(f'sync_bn={cfg.pop("sync_bn")!r} ignored')
    return notes


def _replace_types(node, old: str, new: str) -> int:
    """Set ``type=new`` in every dict of ``node`` with ``type == old``."""
    count = 0
    if isinstance(node, dict):
        if node.get('type', None) == old:
            node['type'] = new
            count += 1
        for value in node.values():
            count += _replace_types(value, old, new)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += _replace_types(value, old, new)
    return count
