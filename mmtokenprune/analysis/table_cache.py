"""Latency tables measured once per device and model shape, then reused.

A table depends on the machine and on what is timed, not on weights:
:func:`table_key` names the device (CPU model and cores, or the GPU),
torch's version, the threads, dtype, clock and batch, the input shape and
the backbone's architecture. :func:`cached_table` returns the table stored
under that key in the cache folder, or measures it
(:func:`~.latency_table_build.measure_table`, every registered reducer, so
one table serves any ``--reducers``) and stores it there.
"""
import hashlib
import json
import os
import os.path as osp
import platform
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn as nn

from ..budgets import LatencyTable
from .latency import cpu_model
from .latency_table_build import measure_table

__all__ = ['DEFAULT_CACHE', 'table_key', 'table_path', 'cached_table']

#: ``$MMTOKENPRUNE_CACHE/latency_tables``, else
#: ``~/.cache/mmtokenprune/latency_tables``.
DEFAULT_CACHE = osp.join(
    os.environ.get('MMTOKENPRUNE_CACHE',
                   osp.join(osp.expanduser('~'), '.cache', 'mmtokenprune')),
    'latency_tables')


def _device(device: str) -> str:
    dev = torch.device(device)
    if dev.type == 'cuda':
        return torch.cuda.get_device_name(dev)
    return f'{cpu_model()} ({os.cpu_count()} cores, {platform.machine()})'


def table_key(backbone: nn.Module, device: str, threads: int, dtype: str,
              batch: int, clock: str) -> Dict:
    """What a latency table depends on (see the module docstring)."""
    settings = backbone.arch_settings
    return dict(
        device=_device(device),
        torch=torch.__version__,
        threads=int(threads),
        dtype=dtype,
        clock=clock,
        batch=int(batch),
        shape=[int(v) for v in backbone.img_size]
        if hasattr(backbone, 'img_size') else None,
        arch=dict(
            type=type(backbone).__name__,
            embed_dims=int(backbone.embed_dims),
            num_layers=int(backbone.num_layers),
            num_heads=int(settings['num_heads']),
            feedforward_channels=int(settings['feedforward_channels']),
            num_extra_tokens=int(backbone.num_extra_tokens),
            patch_grid=[int(v) for v in backbone.patch_resolution],
            out_indices=[int(v) for v in backbone.out_indices],
            final_norm=bool(getattr(backbone, 'final_norm', True))))


def table_path(cache_dir: str, key: Dict) -> str:
    """The cache file of ``key`` (a readable name and the key's hash)."""
    text = json.dumps(key, sort_keys=True)
    digest = hashlib.sha1(text.encode()).hexdigest()[:16]
    a = key['arch']
    name = (f'{a["type"]}-{a["embed_dims"]}x{a["num_layers"]}-'
            f'{a["patch_grid"][0]}x{a["patch_grid"][1]}-b{key["batch"]}-'
            f'{key["dtype"]}-{key["clock"]}-t{key["threads"]}-{digest}')
    return osp.join(cache_dir, name + '.json')


def cached_table(backbone: nn.Module,
                 cache_dir: str = DEFAULT_CACHE,
                 batch: int = 1,
                 device: str = 'cpu',
                 dtype: str = 'fp32',
                 clock: str = 'cpu',
                 threads: int = 1,
                 repeats: int = 7,
                 warmup: int = 2,
                 refresh: bool = False,
                 log: Optional[Callable[[str], None]] = None
                 ) -> Tuple[LatencyTable, str, bool]:
    """The latency table of ``backbone`` on this device, from the cache or
    measured now.

    Args:
        backbone (nn.Module): the unreduced, unpruned backbone.
        cache_dir (str): the cache folder. Defaults to
            :data:`DEFAULT_CACHE`.
        batch, device, dtype, clock, threads, repeats, warmup: as
            :func:`~.latency_table_build.measure_table`.
        refresh (bool): measure again even if the cache has it.
        log (callable, optional): progress lines.

    Returns:
        tuple: the table, its file, and whether it came from the cache.
    """
    say = log or (lambda msg: None)
    key = table_key(backbone, device, threads, dtype, batch, clock)
    path = table_path(cache_dir, key)
    if osp.isfile(path) and not refresh:
        table = LatencyTable.load(path)
        if table.meta.get('cache_key') == key:
            say(f'[table] reused {path} (measured {table.meta["date"]})')
            return table, path, True
        say(f'[table] {path} was measured for another key; measuring again')
    say(f'[table] measuring the latency table ({key["device"]}, '
        f'{threads} thread(s), {dtype}, batch {batch}, clock {clock}); '
        'about 2-3 minutes for a ViT-T at 256x256 on 2 CPU cores')
    table = measure_table(  # its default grids
        backbone, batch=batch, repeats=repeats, warmup=warmup,
        device=device, dtype=dtype, clock=clock, threads=threads, log=log)
    table.meta['cache_key'] = key
    os.makedirs(cache_dir, exist_ok=True)
    tmp = path + '.tmp'
    table.dump(tmp)
    os.replace(tmp, path)
    say(f'[table] stored {path}')
    return table, path, False
