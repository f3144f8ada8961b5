"""Latency budget loss: the device latency a latency table predicts for
soft widths and soft keep ratios, held under a budget.

SPViT's latency-aware training, with the table of
:mod:`mmtokenprune.analysis.latency_table` (the one the solver reads):
the prediction is the table's multilinear interpolation evaluated at the
soft widths of CDCP gates (``keep_prob()``: the sum of the gates' keep
probabilities) and at soft token counts (``N`` times the product of the
keep ratios so far), so the gradient reaches the gate logits and any
learned keep ratio. Beyond the measured grid the edge cells are continued
linearly (training may pass through widths the table did not measure).

The loss is ``loss_weight * max(0, latency / budget - 1) ** 2``: the
squared relative excess over the budget, zero under it (as CDCP's FLOPs
budget loss).

In training, ``channel_cfg=dict(type='CDCP', latency=dict(table='T.json',
budget_ms=250., loss_weight=2.))`` makes the CDCP backbone add
``loss_latency_budget = LatencyBudgetLoss(...)(backbone)`` to
``compression_losses()``.
"""
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn as nn
from torch import Tensor

from ...analysis.latency_table import LatencyTable, reducer_traits
from ...registry import MODELS

__all__ = [
    'LatencyBudgetLoss', 'soft_latency_ms', 'soft_token_counts',
    'backbone_latency_ms', 'latency_excess'
]

Number = Union[float, Tensor]


def latency_excess(latency_ms: Number, budget_ms: float) -> Tensor:
    """``max(0, latency / budget - 1) ** 2``."""
    latency_ms = torch.as_tensor(latency_ms, dtype=torch.float32)
    return (latency_ms / budget_ms - 1).clamp(min=0).pow(2)


def soft_token_counts(num_patches: int, num_extra_tokens: int,
                      keep_ratios: Sequence[Optional[Number]],
                      reducer: Optional[str] = None) -> Dict:
    """Soft token counts of every layer from per-layer keep ratios.

    Args:
        num_patches (int): patch tokens of the input.
        num_extra_tokens (int): leading extra tokens.
        keep_ratios (Sequence): per layer, the fraction of patch tokens its
            reducer keeps (float or tensor), or None where none runs.
        reducer (str, optional): the reducer type (where it runs, tokens
            it appends).

    Returns:
        dict: per-layer lists ``attn``, ``mlp`` (tokens, extra ones
        included), ``patches`` (tokens the reducer sees) and ``removed``.
    """
    traits = reducer_traits(reducer)
    n, extra = num_patches, num_extra_tokens
    out = dict(attn=[], mlp=[], patches=[], removed=[])
    for k in keep_ratios:
        seen, before = n, n + extra
        if k is not None:
            n = n * k
            extra = extra + traits['tail_tokens']
            if traits['where'] == 'before_block':
                before = n + extra
        out['attn'].append(before)
        out['mlp'].append(n + extra)
        out['patches'].append(seen)
        out['removed'].append(0. if k is None else seen - n)
    return out


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


def backbone_latency_ms(backbone: nn.Module,
                        table: LatencyTable,
                        keep_ratios: Optional[Sequence[Optional[Number]]]
                        = None) -> Tensor:
    """Predicted latency of a (CDCP-gated) ViT backbone, differentiable in
    its gates' soft widths and in ``keep_ratios``.

    Args:
        backbone (nn.Module): a ``PrunedVisionTransformer``; gated layers
            count their gates' ``keep_prob()``, others their widths.
        table (LatencyTable): measured for its architecture.
        keep_ratios (Sequence, optional): per-layer soft keep ratios (None
            where no reducer runs); defaults to the backbone's fixed
            ``token_counts()``.

    Raises:
        ValueError: if the table was measured for another architecture.
    """
    from ..cdcp import soft_width
    from ..cdcp.gated_layers import ffn_gate
    bb = backbone
    table.check_arch(bb.embed_dims // bb.arch_settings['num_heads'],
                     bb.arch_settings['feedforward_channels'], bb.num_layers,
                     tuple(bb.patch_resolution), 'backbone')
    cfg = bb.token_cfg
    reducer = cfg.type if cfg.enabled else None
    if keep_ratios is not None:
        if len(keep_ratios) != bb.num_layers:
            raise ValueError(f'keep_ratios has {len(keep_ratios)} entries; '
                             f'the backbone has {bb.num_layers} layers.')
        counts = soft_token_counts(table.num_patches, bb.num_extra_tokens,
                                   keep_ratios, reducer)
    else:
        fixed = bb.token_counts()
        counts = dict(attn=[c[0] for c in fixed], mlp=[c[2] for c in fixed],
                      patches=[], removed=[])
        n = table.num_patches
        for layer in bb.layers:
            r = layer.reducer.num_removed(n) if layer.reducer else 0
            counts['patches'].append(n)
            counts['removed'].append(r)
            n -= r
    qk, v, ffn = [], [], []
    for _, attn, _, mlp in bb.cdcp_blocks():
        qk.append(soft_width(attn.qk_gate, attn.qk_dims))
        v.append(soft_width(attn.v_gate, attn.v_dims))
        ffn.append(soft_width(ffn_gate(mlp), mlp.layers[0][0].out_features))
    return soft_latency_ms(table, counts, qk, v, ffn, reducer,
                           bias=cfg.enabled and cfg.prop_attn,
                           out_indices=bb.out_indices)


@MODELS.register_module()
class LatencyBudgetLoss(nn.Module):
    """Squared relative excess of the predicted latency over a budget.

    Args:
        table (str | dict | LatencyTable): the device latency table.
        budget_ms (float): the budget, in the table's units (ms per
            forward of its batch, its clock).
        loss_weight (float): Defaults to 1.

    Examples:
        >>> loss = LatencyBudgetLoss('T.json', budget_ms=250.)
        >>> loss(backbone)  # the CDCP gates' soft widths, differentiable
        >>> loss(torch.tensor(300.))  # or a predicted latency
    """

    def __init__(self, table, budget_ms: float, loss_weight: float = 1.0):
        super().__init__()
        if not isinstance(budget_ms, (int, float)) or not budget_ms > 0:
            raise ValueError(f'`LatencyBudgetLoss.budget_ms` must be a '
                             f'positive number; got {budget_ms!r}.')
        if not loss_weight >= 0:
            raise ValueError(f'`LatencyBudgetLoss.loss_weight` must be >= 0;'
                             f' got {loss_weight!r}.')
        self.table = LatencyTable.load(table)
        self.budget_ms = float(budget_ms)
        self.loss_weight = float(loss_weight)

    def latency_ms(self, backbone: nn.Module,
                   keep_ratios: Optional[Sequence] = None) -> Tensor:
        """:func:`backbone_latency_ms` with this loss's table."""
        return backbone_latency_ms(backbone, self.table, keep_ratios)

    def forward(self, source: Union[nn.Module, Tensor, float],
                keep_ratios: Optional[Sequence] = None) -> Tensor:
        """The loss of a backbone (its predicted latency) or of a given
        latency in ms."""
        if isinstance(source, nn.Module):
            source = self.latency_ms(source, keep_ratios)
        return self.loss_weight * latency_excess(source, self.budget_ms)

    def extra_repr(self) -> str:
        return (f'budget_ms={self.budget_ms}, loss_weight='
                f'{self.loss_weight}, device={self.table.meta.get("device")}')
