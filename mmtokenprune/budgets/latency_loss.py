"""The latency budget loss on tensors: the latency a table predicts for soft
widths and soft token counts, and its excess over a budget.

SPViT's latency-aware training, with the table the solver reads
(:mod:`~.latency_table`): the prediction is the table's multilinear
interpolation evaluated at soft widths (e.g. the sum of CDCP gates' keep
probabilities) and at soft token counts
(:func:`~.token_counts.soft_token_counts`: ``N`` times the product of the
keep ratios so far), so the gradient reaches whatever the widths and keep
ratios are computed from. Beyond the measured
grid the edge cells are continued linearly (training may pass through
widths the table did not measure).

The loss is ``max(0, latency / budget - 1) ** 2``: the squared relative
excess over the budget, zero under it (as CDCP's FLOPs budget loss).
:class:`~mmtokenprune.models.losses.latency_budget.LatencyBudgetLoss` reads
a backbone's widths and applies these.
"""
from typing import Dict, Optional, Sequence, Union

import torch
from torch import Tensor

from .latency_table import LatencyTable

__all__ = ['latency_excess', 'soft_latency_ms']

Number = Union[float, Tensor]


def latency_excess(latency_ms: Number, budget_ms: float) -> Tensor:
    """``max(0, latency / budget - 1) ** 2``."""
    latency_ms = torch.as_tensor(latency_ms, dtype=torch.float32)
    return (latency_ms / budget_ms - 1).clamp(min=0).pow(2)


def soft_latency_ms(table: LatencyTable,
                    counts: Dict,
                    qk_dims: Sequence[Number],
                    v_dims: Sequence[Number],
                    ffn_dims: Sequence[Number],
                    reducer: Optional[str] = None,
                    bias: bool = False,
                    out_indices: Optional[Sequence[int]] = None) -> Tensor:
    """The table's latency of a backbone with soft counts and widths.

    Args:
        table (LatencyTable): the device table.
        counts (dict): :func:`soft_token_counts` (or the same keys from a
            fixed schedule).
        qk_dims, v_dims (Sequence): per-layer Q/K and V channels per head.
        ffn_dims (Sequence): per-layer MLP hidden channels.
        reducer (str, optional): the reducer type; None: no reduction.
        bias (bool): proportional attention in every layer.
        out_indices (Sequence[int], optional): layers with a dense output;
            defaults to the table's.

    Returns:
        Tensor: predicted ms (differentiable in every tensor input).
    """
    total = torch.as_tensor(table.parts['stem_ms'])
    removed = [float(torch.as_tensor(r).detach()) for r in counts['removed']]
    reducing = reducer is not None and any(r > 0 for r in removed)
    for i in range(len(qk_dims)):
        total = total + table.attention_ms(
            counts['attn'][i], qk_dims[i], v_dims[i], bias, extrapolate=True)
        total = total + table.mlp_ms(counts['mlp'][i], ffn_dims[i],
                                     extrapolate=True)
        if reducing and removed[i] > 0:
            total = total + table.reducer_ms(
                reducer, counts['patches'][i], counts['removed'][i],
                extrapolate=True)
    total = total + table.final_norm_ms(counts['mlp'][-1], extrapolate=True)
    if reducing:
        idx = table.arch['out_indices'] if out_indices is None \
            else out_indices
        extra = table.arch['num_extra_tokens']
        total = total + table.outputs_ms(
            [counts['mlp'][i] - extra for i in idx], extrapolate=True)
    else:
        total = total + table.outputs_ms()
    return total
