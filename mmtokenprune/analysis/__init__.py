"""Measuring compressed models: FLOPs (merging and fused attention
counted), latency, side-by-side benchmarks, accuracy-speed sweeps and
merge-region drawings.

Used by ``tools/analysis/benchmark.py``, ``tools/analysis/sweep.py`` and
``tools/demo.py``; all of them measure through
:func:`mmtokenprune.analysis.measure.measure` (imported from its module:
the package does not re-export it, so that the module stays importable
by name). Pieces:

- ``flops.py``, ``latency.py``: FLOPs counting and the timer;
- ``measure.py``: FLOPs, then models timed in turns (the one measuring
  path);
- ``build.py``: configs to models with random weights;
- ``benchmark.py``, ``benchmark_report.py``: the benchmark's settings and
  table;
- ``sweep.py``: the sweep's loop, over ``sweep_settings.py`` (setting
  strings), ``sweep_config.py`` (config rewriting), ``sweep_eval.py``
  (evaluation), ``sweep_timing.py`` (timing against the reference),
  ``sweep_store.py`` (CSV and resume) and ``sweep_report.py`` (table and
  Pareto plot);
- ``visualize.py``: merge regions over an image.
"""
from ..compat import applied  # noqa: F401  (environment fixes first)
from .flops import count_flops, flop_analyzer, flop_handles, sdpa_flop_jit
from .latency import device_name, time_forward, time_interleaved
from .visualize import draw_merge_regions, label_image, save_merge_figure

__all__ = [
    'count_flops', 'flop_analyzer', 'flop_handles', 'sdpa_flop_jit',
    'device_name', 'time_forward', 'time_interleaved',
    'draw_merge_regions', 'label_image', 'save_merge_figure'
]
