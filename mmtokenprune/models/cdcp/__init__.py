"""CDCP (CAIT's consistent dynamic channel pruning; our reading).

Everything CDCP is in this package, except the pure-torch mechanics in
:mod:`mmtokenprune.ops` (``channel.py``: gates and slicing;
``prune_spec.py``: the exported widths):

- ``channel_cfg.py``: the backbone's ``channel_cfg``;
- ``gated_layers.py``: gated Q/K/V widths of an attention, the MLP gate;
- ``budget.py``: soft widths of gates and the FLOPs budget loss (the FLOPs
  formulas are :mod:`mmtokenprune.budgets.block_flops`);
- ``backbone.py``: the backbone mixin (spec, budget, export);
- ``export.py``, ``export_checkpoint.py``: slicing a gated model, and a
  gated checkpoint on disk;
- ``magnitude_init.py``: training-free gates from weight magnitudes, and
  open gates ranked by them (the start of learned gates).
"""
from .backbone import LOSS_OWNERS, CDCPBackbone
from .budget import budget_loss, soft_width
from .channel_cfg import BlockCDCP, ChannelCfg
from .export import (export_attention, export_blocks, export_ffn,
                     export_model)
from .export_checkpoint import export_checkpoint, save_export
from .gated_layers import GatedQKV, add_ffn_gate, ffn_gate
from .magnitude_init import (init_gates_by_magnitude,
                             init_gates_open_by_magnitude,
                             init_gates_to_widths, magnitude_scores)

__all__ = [
    'LOSS_OWNERS', 'CDCPBackbone', 'budget_loss', 'soft_width', 'BlockCDCP',
    'ChannelCfg', 'export_attention', 'export_blocks', 'export_ffn',
    'export_model', 'export_checkpoint', 'save_export',
    'GatedQKV', 'add_ffn_gate', 'ffn_gate', 'init_gates_by_magnitude',
    'init_gates_open_by_magnitude', 'init_gates_to_widths',
    'magnitude_scores'
]
