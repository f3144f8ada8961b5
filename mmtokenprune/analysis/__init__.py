"""Measuring compressed models: FLOPs (merging and fused attention
counted), latency, side-by-side benchmarks and merge-region drawings.

Used by ``tools/analysis/benchmark.py`` and ``tools/demo.py``.
"""
from ..compat import applied  # noqa: F401  (environment fixes first)
from .flops import count_flops, flop_analyzer, flop_handles, sdpa_flop_jit
from .latency import (device_name, measure_latency, time_forward,
                      time_interleaved)
from .visualize import draw_merge_regions, label_image, save_merge_figure

__all__ = [
    'count_flops', 'flop_analyzer', 'flop_handles', 'sdpa_flop_jit',
    'device_name', 'measure_latency', 'time_forward', 'time_interleaved',
    'draw_merge_regions', 'label_image', 'save_merge_figure'
]
