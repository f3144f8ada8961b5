"""The one measuring path: count FLOPs, then time models in turns.

The benchmark (``tools/analysis/benchmark.py``), the sweep
(:func:`~mmtokenprune.analysis.sweep.run_sweep`) and the demo
(``tools/demo.py``, through the benchmark) all measure with
:func:`measure`, so an option given to any of them reaches the timer the
same way.

Besides eager fp32 PyTorch, a model can be timed compiled
(``torch.compile``, static shapes), under bf16/fp16 autocast and in
onnxruntime (exported at each batch's shape, see
:mod:`mmtokenprune.deploy`): each such run is one more row beside the
models, timed in the same turns.
"""
import os
import statistics
from typing import (Callable, Dict, List, Mapping, Optional, Sequence, Tuple,
                    Union)

import torch
import torch.nn as nn

from .flops import count_flops
from .latency import (autocast, check_timing, device_name, num_threads,
                      time_interleaved)

__all__ = ['PARTS', 'RUNTIMES', 'compile_module', 'row_name', 'measure']

PARTS = ('backbone', 'model')
#: Where a model runs: PyTorch (eager or compiled) or onnxruntime (CPU,
#: fp32).
RUNTIMES = ('torch', 'onnxruntime')


def compile_module(module: nn.Module, backend: str = 'inductor'):
    """``torch.compile`` for timing: static shapes (one graph per batch
    size) and ``fullgraph=True``, so a graph break is an error rather than
    a slower model."""
    return torch.compile(
        module, backend=backend, fullgraph=True, dynamic=False)


def row_name(name: str, runtime: str = 'torch', dtype: str = 'fp32',
             first_dtype: str = 'fp32') -> str:
    """The row of model ``name`` run by ``runtime`` in ``dtype``: the name
    itself for PyTorch in the first dtype, else with a ``[...]`` suffix."""
    if runtime != 'torch':
        return f'{name} [{runtime}]'
    return name if dtype == first_dtype else f'{name} [{dtype}]'


def _variants(names: Sequence[str], dtypes: Sequence[str],
              runtimes: Sequence[str]) -> List[Tuple[str, str, str, str]]:
    """``(row, model name, runtime, dtype)`` of every timed row, grouped by
    variant (all models in the first, then all in the next ...)."""
    rows = [(row_name(n, 'torch', d, dtypes[0]), n, 'torch', d)
            for d in dtypes for n in names]
    if 'onnxruntime' in runtimes:
        rows += [(row_name(n, 'onnxruntime'), n, 'onnxruntime', 'fp32')
                 for n in names]
    return rows


def _check_variants(dtypes: Sequence[str], runtimes: Sequence[str],
                    compile: Union[bool, str], warmup: int,
                    device: str) -> None:
    bad = [r for r in runtimes if r not in RUNTIMES]
    if bad or not runtimes:
        raise ValueError(f'runtime must be in {list(RUNTIMES)}; got '
                         f'{list(runtimes)}.')
    if not dtypes or len(set(dtypes)) != len(dtypes):
        raise ValueError(f'dtype: give each of fp32/fp16/bf16 at most '
                         f'once; got {list(dtypes)}.')
    if compile and warmup < 1:
        raise ValueError('compile needs warmup >= 1 (the first call '
                         f'compiles); got warmup={warmup}.')
    if 'onnxruntime' in runtimes and torch.device(device).type != 'cpu':
        raise ValueError("runtime 'onnxruntime' times the CPU provider; "
                         f'use device cpu (got {device!r}).')


def _forward(module, x: torch.Tensor, device: str,
             dtype: str) -> Callable[[], object]:
    """``module(x)`` under the autocast of ``dtype``."""

    def run():
        with autocast(device, dtype):
            return module(x)

    return run


def measure(models: Mapping[str, nn.Module],
            image_size: Tuple[int, int] = (512, 512),
            batch_sizes: Sequence[int] = (1, 8),
            parts: Sequence[str] = PARTS,
            repeats: int = 5,
            warmup: int = 1,
            device: str = 'cpu',
            dtype: Union[str, Sequence[str]] = 'fp32',
            clock: str = 'wall',
            threads: Optional[int] = None,
            log: Optional[Callable[[str], None]] = None,
            count: Optional[Sequence[str]] = None,
            compile: Union[bool, str] = False,
            runtime: Sequence[str] = ('torch', )) -> Dict[str, Dict]:
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
        dtype (str | Sequence[str]): 'fp32', 'fp16' (CUDA) or 'bf16'
            (autocast); several: one row per dtype and model (rows after
            the first dtype's are named ``'<name> [<dtype>]'``).
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
        compile (bool | str): time PyTorch rows compiled
            (:func:`compile_module`; a str names the backend, True is
            'inductor'); compiling happens in the warm-up rounds.
            Defaults to False (eager).
        runtime (Sequence[str]): of :data:`RUNTIMES`; with
            'onnxruntime' every model also runs exported to ONNX (at each
            batch's shape, fp32, the same torch thread count) in rows
            ``'<name> [onnxruntime]'``. Defaults to ('torch', ).

    Returns:
        dict[str, dict]: row (the model's name, or a suffixed name for the
        other dtypes and runtimes, in that order) -> ``model`` (its
        model's name), ``runtime``, ``dtype``, ``compiled`` (the backend
        or None), ``params_M``, ``gflops_model``,
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
    dtypes = [dtype] if isinstance(dtype, str) else list(dtype)
    for d in dtypes:
        check_timing(device, d, clock, threads)
    _check_variants(dtypes, runtime, compile, warmup, device)
    backend = None
    if compile:
        backend = compile if isinstance(compile, str) else 'inductor'
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
    rows = _variants(list(models), dtypes, runtime)
    for row, name, rt, d in rows:
        stats[row] = dict(stats[name], model=name, runtime=rt, dtype=d,
                          compiled=backend if rt == 'torch' else None)
    torch_modules = {}  # (name, part) -> module to call, compiled once
    for name, m in models.items():
        for part in parts:
            module = m.backbone if part == 'backbone' else m
            torch_modules[name, part] = (
                compile_module(module, backend) if backend else module)
    loads = []
    for batch in batch_sizes:
        x = torch.randn(batch, 3, *image_size, device=device)
        for part in parts:
            fns = {}
            for row, name, rt, d in rows:
                if rt == 'torch':
                    fns[row] = _forward(torch_modules[name, part], x,
                                        device, d)
                else:
                    from ..deploy import OnnxForward
                    m = models[name]
                    with num_threads(threads):
                        fns[row] = OnnxForward(
                            m.backbone if part == 'backbone' else m, x,
                            threads)
            times = time_interleaved(fns, repeats, warmup, device, 'fp32',
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
