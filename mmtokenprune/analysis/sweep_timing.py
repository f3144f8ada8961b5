"""A sweep setting's FLOPs and latency against the unreduced model, timed
in turns with it in the same run (through
:func:`~mmtokenprune.analysis.measure.measure`)."""
from typing import Dict, Optional, Sequence, Tuple

import torch.nn as nn

from .measure import PARTS, measure

__all__ = ['time_setting']


def time_setting(model: nn.Module,
                 ref: nn.Module,
                 image_size: Tuple[int, int],
                 batch_sizes: Sequence[int],
                 repeats: int,
                 warmup: int,
                 clock: str = 'wall',
                 threads: Optional[int] = None) -> Dict:
    """FLOPs of ``model`` and median latency of ``model`` and ``ref`` timed
    in turns, for the backbone and the whole model at each batch size.

    Args:
        model (nn.Module): the setting's model (eval, CPU).
        ref (nn.Module): the unreduced, unpruned model; ``model`` itself
            for the baseline (then timed alone, speed-up 1).
        image_size (tuple[int, int]): ``(H, W)`` of the inputs.
        batch_sizes (Sequence[int]): images per timed forward.
        repeats (int): timed rounds.
        warmup (int): untimed rounds first.
        clock (str): 'wall', or 'cpu' (the process's CPU time; with one
            torch thread on a CPU shared with other jobs, the latency the
            forward would have on a free core). Defaults to 'wall'.
        threads (int, optional): torch CPU threads while timing.
            Defaults to None: torch's setting.

    Returns:
        dict: ``params_M``, ``gflops_{model,backbone,merge}`` (per image,
        1 MAC = 1 FLOP) and for each part and batch ``ms_<part>_b<n>``,
        ``ref_ms_<part>_b<n>`` and ``speedup_<part>_b<n>`` (medians), the
        same with ``min_`` (minima: on a loaded machine, where noise only
        adds, the closer estimate of the unloaded latency), ``load_avg``
        and ``device`` (see :func:`~mmtokenprune.analysis.measure.measure`).
    """
    models = {'setting': model}
    if ref is not model:
        models['ref'] = ref
    stats = measure(
        models,
        image_size=image_size,
        batch_sizes=batch_sizes,
        parts=PARTS,
        repeats=repeats,
        warmup=warmup,
        clock=clock,
        threads=threads,
        count=('setting', ))  # the reference is only timed
    mine = stats['setting']
    theirs = stats.get('ref', mine)
    out = {
        k: mine[k]
        for k in ('params_M', 'gflops_model', 'gflops_backbone',
                  'gflops_merge')
    }
    for batch in batch_sizes:
        for part in PARTS:
            for stat in ('', 'min_'):
                ms = mine[f'{stat}ms_{part}_b{batch}']
                ref_ms = theirs[f'{stat}ms_{part}_b{batch}']
                out[f'{stat}ms_{part}_b{batch}'] = ms
                out[f'ref_{stat}ms_{part}_b{batch}'] = ref_ms
                out[f'speedup_{stat}{part}_b{batch}'] = ref_ms / ms
    out.update(load_avg=mine['load_avg'], device=mine['device'])
    return out
