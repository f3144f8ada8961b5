"""Latency and FLOPs budgets: the layer below the models that both the
models (budget losses) and the measuring tools (:mod:`mmtokenprune.analysis`)
use. Plain arithmetic on token counts and widths, floats or tensors; it
imports :mod:`mmtokenprune.ops` and torch only, never the models or the
analysis package (``tests/test_import_layers.py`` checks it).

- ``latency_table.py``: the device latency table (format, look-ups,
  prediction of a whole backbone); measured by
  :mod:`mmtokenprune.analysis.latency_table_build`;
- ``multilinear.py``: the interpolation every table entry is read with;
- ``token_counts.py``: tokens every layer sees, whole or soft;
- ``reducer_traits.py``: what counts depend on in a reducer, declared by
  the registered reducers (this package never imports them);
- ``block_flops.py``: multiply-accumulates of attention and MLP;
- ``latency_solver.py``: a token schedule and widths for a latency budget;
- ``candidates.py``: every compressed model a table predicts within a
  budget (``tools/compress.py`` scores and times them);
- ``latency_loss.py``: the differentiable latency and its excess over a
  budget (registered as a loss by
  :mod:`mmtokenprune.models.losses.latency_budget`).
"""
from .block_flops import attention_flops, ffn_flops
from .candidates import (Candidate, enumerate_candidates, keep_for,
                         keep_schedule, layer_families, smallest_reachable,
                         solver_candidate)
from .latency_loss import latency_excess, soft_latency_ms
from .latency_solver import BudgetSolution, encoder_flops, solve_budget
from .latency_table import FORMAT, LatencyTable, LayerChoice
from .multilinear import interp
from .reducer_traits import declare_reducers, reducer_traits
from .token_counts import schedule_counts, soft_token_counts

__all__ = [
    'attention_flops', 'ffn_flops', 'Candidate', 'enumerate_candidates',
    'keep_for', 'keep_schedule', 'layer_families', 'smallest_reachable',
    'solver_candidate', 'latency_excess', 'soft_latency_ms',
    'BudgetSolution', 'encoder_flops', 'solve_budget', 'FORMAT',
    'LatencyTable', 'LayerChoice', 'interp', 'declare_reducers',
    'reducer_traits', 'schedule_counts', 'soft_token_counts'
]
