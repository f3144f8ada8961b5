"""Settings side by side: build from configs, count FLOPs, time, tabulate.

Shared by ``tools/analysis/benchmark.py`` and ``tools/demo.py``. A
*setting* is an mm config (plus overrides) built into a segmentor with a
randomly initialised backbone (``init_cfg=None``: no weights are needed to
count FLOPs or time a forward). A backbone with CDCP gates is measured as
the smaller dense model it exports to, after
:func:`~mmtokenprune.models.cdcp_init.init_gates_by_magnitude` has set its
gates (no trained gates exist offline): that model is where the speed comes
from.
"""
import copy
import csv
import os
import statistics
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.config import Config

from .flops import count_flops
from .latency import device_name, time_interleaved

__all__ = [
    'Setting', 'load_config', 'build_model', 'export_channel_pruned',
    'build_setting', 'benchmark', 'format_markdown', 'write_csv'
]


@dataclass
class Setting:
    """One built model to measure.

    Attributes:
        name (str): row label.
        model (nn.Module): the segmentor (or classifier), eval mode; the
            measured ``backbone`` is ``model.backbone``.
        notes (list[str]): what was built (token reducer, CDCP export).
        stats (dict): filled by :func:`benchmark`.
    """
    name: str
    model: nn.Module
    notes: List[str] = field(default_factory=list)
    stats: Dict = field(default_factory=dict)


def load_config(source: Union[str, Config],
                options: Optional[Dict] = None) -> Config:
    """A config with ``options`` (``{'a.b.c': value}``) merged in and the
    backbone's ``init_cfg`` removed (no checkpoint is downloaded).

    Args:
        source (str | Config): a config file, or a loaded config (copied,
            so settings that share a file parse it once).
        options (dict, optional): overrides, as ``--cfg-options``.
    """
    if isinstance(source, Config):
        cfg = copy.deepcopy(source)
    else:
        cfg = Config.fromfile(source)
    if options:
        cfg.merge_from_dict(options)
    cfg.model.backbone.init_cfg = None
    return cfg


def build_model(cfg: Config, seed: int = 0) -> nn.Module:
    """Build ``cfg.model`` under its default scope, initialise its weights
    randomly (seeded), make SyncBN plain BN (CPU) and switch to eval."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    torch.manual_seed(seed)
    model = MODELS.build(copy.deepcopy(cfg.model))
    model.init_weights()
    model = revert_sync_batchnorm(model)
    model.eval()  # mmpretrain's ViT.train() returns None: do not chain
    return model


def export_channel_pruned(model: nn.Module, cfg: Config,
                          flops_target: float) -> Tuple[nn.Module, Dict]:
    """Gates from weight magnitudes, then the exported smaller model.

    Sets ``model.backbone``'s CDCP gates with
    :func:`init_gates_by_magnitude`, exports the prune spec and state_dict,
    builds the same config with ``channel_cfg=dict(spec=...)`` and loads
    the backbone's sliced weights and the rest of ``model``'s weights with
    ``strict=True``.

    Returns:
        tuple[nn.Module, dict]: the exported model (eval) and
        ``init_gates_by_magnitude``'s report (``flops_ratio``, ``kept``).
    """
    from ..models.cdcp_init import init_gates_by_magnitude
    info = init_gates_by_magnitude(model.backbone, flops_target)
    spec, backbone_state = model.backbone.export_pruned()
    cfg = copy.deepcopy(cfg)
    cfg.model.backbone.channel_cfg = dict(spec=spec.to_dict())
    exported = build_model(cfg)
    state = {
        k: v
        for k, v in model.state_dict().items() if not k.startswith('backbone.')
    }
    state.update({f'backbone.{k}': v for k, v in backbone_state.items()})
    exported.load_state_dict(state, strict=True)
    return exported, info


def build_setting(name: str,
                  source: Union[str, Config],
                  options: Optional[Dict] = None) -> Setting:
    """Build one setting from a config file or loaded config (see
    :func:`load_config`); a CDCP-gated backbone is exported (see module)."""
    cfg = load_config(source, options)
    model = build_model(cfg)
    backbone = model.backbone
    notes = []
    token_cfg = getattr(backbone, 'token_cfg', None)
    if token_cfg is not None and token_cfg.enabled:
        notes.append(token_cfg.describe())
    channel_cfg = getattr(backbone, 'channel_cfg', None)
    if channel_cfg is not None and channel_cfg.gated:
        target = channel_cfg.flops_target
        model, info = export_channel_pruned(model, cfg, target)
        notes.append(
            f'CDCP gates from weight magnitudes (training-free), exported: '
            f'encoder FLOPs kept {info["flops_ratio"]:.3f} (target '
            f'{target})')
    return Setting(name=name, model=model, notes=notes)


def _params(model: nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def benchmark(settings: Sequence[Setting],
              image_size: Tuple[int, int] = (512, 512),
              batch_sizes: Sequence[int] = (1, 8),
              parts: Sequence[str] = ('backbone', 'model'),
              repeats: int = 5,
              warmup: int = 1,
              device: str = 'cpu',
              dtype: str = 'fp32',
              clock: str = 'wall',
              log=print) -> List[Setting]:
    """Count FLOPs, then time every (part, batch size) over all settings
    in turns (A B C A B C ...); fills each ``setting.stats``.

    ``stats`` keys: ``params``, ``gflops_backbone``, ``gflops_model``,
    ``gflops_merge`` (per image) and ``ms_<part>_b<batch>`` (median ms per
    forward of the batch), ``times_<part>_b<batch>`` (all timings).
    """
    for part in parts:
        if part not in ('backbone', 'model'):
            raise ValueError(f"parts must be 'backbone' or 'model'; got "
                             f'{part!r}.')
    for s in settings:
        s.model.to(device)
        flops = count_flops(s.model,
                            torch.randn(1, 3, *image_size, device=device))
        s.stats.update(
            params=_params(s.model),
            gflops_backbone=flops.get('backbone', float('nan')),
            gflops_model=flops['model'],
            gflops_merge=flops['merge'])
        log(f'[flops] {s.name}: backbone {s.stats["gflops_backbone"]:.2f}, '
            f'model {flops["model"]:.2f} GFLOPs')
    for batch in batch_sizes:
        x = torch.randn(batch, 3, *image_size, device=device)
        for part in parts:
            fns = {
                s.name:
                _forward(s.model.backbone if part == 'backbone' else s.model,
                         x)
                for s in settings
            }
            times = time_interleaved(fns, repeats, warmup, device, dtype,
                                     clock)
            for s in settings:
                s.stats[f'ms_{part}_b{batch}'] = statistics.median(
                    times[s.name])
                s.stats[f'times_{part}_b{batch}'] = times[s.name]
            log(f'[time] {part} b{batch}: ' +
                ', '.join(f'{n} {statistics.median(t):.0f} ms'
                          for n, t in times.items()))
    return list(settings)


def _forward(module: nn.Module, x: torch.Tensor):
    return lambda: module(x)


def _columns(settings: Sequence[Setting]) -> List[Tuple[str, str]]:
    """``(header, stats key or derived key)`` of every table column."""
    stats = settings[0].stats
    batches = sorted(
        {int(k.rsplit('_b', 1)[1])
         for k in stats if k.startswith('ms_')})
    cols = [('params (M)', 'params'), ('backbone GFLOPs', 'gflops_backbone'),
            ('model GFLOPs', 'gflops_model')]
    for part in ('backbone', 'model'):
        cols += [(f'{part} ms b{b}', f'ms_{part}_b{b}') for b in batches
                 if f'ms_{part}_b{b}' in stats]
    cols += [(f'backbone speed-up b{b}', f'speedup_b{b}') for b in batches
             if f'ms_backbone_b{b}' in stats]
    cols.append(('FLOPs reduction', 'flops_reduction'))
    cols += [(f'efficiency b{b}', f'efficiency_b{b}') for b in batches
             if f'ms_backbone_b{b}' in stats]
    return cols


def _derived(setting: Setting, base: Setting) -> Dict[str, float]:
    """Speed-up, FLOPs reduction and efficiency against ``base``."""
    s, b = setting.stats, base.stats
    out = dict(s)
    out['flops_reduction'] = b['gflops_backbone'] / s['gflops_backbone']
    for key in s:
        if key.startswith('ms_backbone_b'):
            batch = key.rsplit('_b', 1)[1]
            speedup = b[key] / s[key]
            out[f'speedup_b{batch}'] = speedup
            out[f'efficiency_b{batch}'] = speedup / out['flops_reduction']
    return out


def _fmt(key: str, value: float) -> str:
    if key.startswith(('speedup', 'flops_red', 'efficiency')):
        return f'{value:.2f}'
    if key.startswith('ms_'):
        return f'{value:.0f}' if value >= 100 else f'{value:.1f}'
    return f'{value:.2f}' if abs(value) >= 1 else f'{value:.3g}'


def table_rows(settings: Sequence[Setting]) -> Tuple[List[str], List[List]]:
    """Headers and numeric rows; the first setting is the reference."""
    cols = _columns(settings)
    rows = []
    for s in settings:
        values = _derived(s, settings[0])
        rows.append([s.name] + [values[key] for _, key in cols])
    return ['setting'] + [h for h, _ in cols], rows


def format_markdown(settings: Sequence[Setting],
                    device: str = 'cpu',
                    dtype: str = 'fp32',
                    repeats: Optional[int] = None,
                    image_size: Tuple[int, int] = (512, 512),
                    clock: str = 'wall') -> str:
    """The results as a markdown table with the machine and method named."""
    headers, rows = table_rows(settings)
    keys = [None] + [key for _, key in _columns(settings)]
    what = ('wall-clock ms' if clock == 'wall' else
            'process CPU-time ms (with 1 thread: the latency without other '
            "jobs' preemption)")
    lines = [
        f'Machine: {device_name(device)}; 1-min load average '
        f'{os.getloadavg()[0]:.1f}. {dtype}, input {image_size[0]}x'
        f'{image_size[1]}; latency = median {what} per forward of the batch '
        '(bN = batch N)' +
        (f' over {repeats} interleaved repeats' if repeats else '') +
        '; GFLOPs per image (1 MAC = 1 FLOP). Speed-up and FLOPs reduction'
        f' are backbone vs `{settings[0].name}`; efficiency = speed-up / '
        'FLOPs reduction.', '', '| ' + ' | '.join(headers) + ' |',
        '|' + '|'.join(['---'] + ['---:'] * (len(headers) - 1)) + '|'
    ]
    for row in rows:
        cells = [row[0]] + [_fmt(k, v) for k, v in zip(keys[1:], row[1:])]
        lines.append('| ' + ' | '.join(cells) + ' |')
    notes = [f'- {s.name}: {note}' for s in settings for note in s.notes]
    if notes:
        lines += [''] + notes
    return '\n'.join(lines) + '\n'


def write_csv(settings: Sequence[Setting], path: str) -> None:
    """The numeric table (full precision) as CSV."""
    headers, rows = table_rows(settings)
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(headers)
        writer.writerows(rows)
