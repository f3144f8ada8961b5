"""The one measuring path: count FLOPs, then time models in turns.

The benchmark (``tools/analysis/benchmark.py``), the sweep
(:func:`~mmtokenprune.analysis.sweep.run_sweep`) and the demo
(``tools/demo.py``, through the benchmark) all measure with
:func:`measure`, so an option given to any of them reaches the timer the
same way.
"""
import os
import statistics
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .flops import count_flops
from .latency import check_timing, device_name, num_threads, time_interleaved

__all__ = ['PARTS', 'measure']

PARTS = ('backbone', 'model')


def _forward(module: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    return lambda: module(x)


def measure(models: Mapping[str, nn.Module],
            image_size: Tuple[int, int] = (512, 512),
            batch_sizes: Sequence[int] = (1, 8),
            parts: Sequence[str] = PARTS,
            repeats: int = 5,
            warmup: int = 1,
            device: str = 'cpu',
            dtype: str = 'fp32',
            clock: str = 'wall',
            threads: Optional[int] = None,
            log: Optional[Callable[[str], None]] = None,
            count: Optional[Sequence[str]] = None) -> Dict[str, Dict]:
    """Count each model's FLOPs, then time all models in turns (A B C A B
    C ...) for every batch size and part, on one random input per batch.

    Args:
        models (Mapping[str, nn.Module]): name -> model in eval mode (moved
            to ``device``); ``'backbone'`` in ``parts`` times
            ``model.backbone``.
        image_size (tuple[int, int]): ``(H, W)`` of the inputs.
            Defaults to (512, 512).
        batch_sizes (Sequence[int]): images per timed forward.
            Defaults to (1, 8).
        parts (Sequence[str]): what to time, of :data:`PARTS`.
            Defaults to ('backbone', 'model').
        repeats (int): timed rounds. Defaults to 5.
        warmup (int): untimed rounds first. Defaults to 1.
        device (str): where the models run. Defaults to 'cpu'.
        dtype (str): 'fp32', 'fp16' (CUDA) or 'bf16' (autocast).
            Defaults to 'fp32'.
        clock (str): 'wall' or 'cpu' (process CPU time), see
            :func:`~mmtokenprune.analysis.latency.time_forward`.
            Defaults to 'wall'.
        threads (int, optional): torch CPU threads while timing (restored
            after). Defaults to None: torch's setting.
        log (callable, optional): called with a progress line after the
            FLOPs of each model and each timed (batch, part).
            Defaults to None (silent).
        count (Sequence[str], optional): the models whose FLOPs are
            counted (the others are only timed, e.g. a reference timed
            beside them). Defaults to None: all.

    Returns:
        dict[str, dict]: name -> ``params_M``, ``gflops_model``,
        ``gflops_backbone``, ``gflops_merge`` (per image, 1 MAC = 1 FLOP;
        merge = gather/scatter/sort ops; for the models of ``count``),
        for each part and batch
        ``ms_<part>_b<n>`` (median ms per forward of the batch),
        ``min_ms_<part>_b<n>`` (minimum) and ``times_<part>_b<n>`` (all
        rounds), ``load_avg`` (mean of the 1-minute load average read
        after each timed (batch, part)) and ``device`` (the machine, with
        the torch threads the timing ran with).

    Raises:
        ValueError: for an unknown part or a bad timing option (before any
            work).
    """
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise ValueError(f'parts must be in {list(PARTS)}; got {bad}.')
    check_timing(device, dtype, clock, threads)
    say = log or (lambda msg: None)
    stats = {}
    for name, model in models.items():
        model.to(device)
        stats[name] = {}
        if count is not None and name not in count:
            continue
        flops = count_flops(model,
                            torch.randn(1, 3, *image_size, device=device))
        stats[name].update(
            params_M=sum(p.numel() for p in model.parameters()) / 1e6,
            gflops_model=flops['model'],
            gflops_backbone=flops.get('backbone', float('nan')),
            gflops_merge=flops['merge'])
        say(f'[flops] {name}: backbone {stats[name]["gflops_backbone"]:.2f}, '
            f'model {flops["model"]:.2f} GFLOPs')
    loads = []
    for batch in batch_sizes:
        x = torch.randn(batch, 3, *image_size, device=device)
        for part in parts:
            fns = {
                name: _forward(m.backbone if part == 'backbone' else m, x)
                for name, m in models.items()
            }
            times = time_interleaved(fns, repeats, warmup, device, dtype,
                                     clock, threads)
            loads.append(os.getloadavg()[0])
            for name, t in times.items():
                stats[name].update({
                    f'ms_{part}_b{batch}': statistics.median(t),
                    f'min_ms_{part}_b{batch}': min(t),
                    f'times_{part}_b{batch}': t
                })
            say(f'[time] {part} b{batch}: ' +
                ', '.join(f'{n} {statistics.median(t):.0f} ms'
                          for n, t in times.items()))
    with num_threads(threads):
        machine = device_name(device)
    for s in stats.values():
        s.update(
            load_avg=statistics.mean(loads) if loads else float('nan'),
            device=machine)
    return stats
