"""Latency budget loss: the device latency a latency table predicts for a
backbone's soft widths and soft keep ratios, held under a budget.

A thin registered module: it reads the widths from the backbone's CDCP
gates (``keep_prob()``: the sum of the gates' keep probabilities) and its
token schedule (or given soft keep ratios), and applies the tensor math of
:mod:`mmtokenprune.budgets.latency_loss` with the table of
:mod:`mmtokenprune.budgets.latency_table` (the one the solver reads), so
the gradient reaches the gate logits and any learned keep ratio.

The loss is ``loss_weight * max(0, latency / budget - 1) ** 2``: the
squared relative excess over the budget, zero under it (as CDCP's FLOPs
budget loss).

In training, ``channel_cfg=dict(type='CDCP', latency=dict(table='T.json',
budget_ms=250., loss_weight=2.))`` makes the CDCP backbone build this loss
(through the registry) and add ``loss_latency_budget = loss(backbone)`` to
``compression_losses()``.
"""
from typing import Optional, Sequence, Union

import torch.nn as nn
from torch import Tensor

from ...budgets import (LatencyTable, latency_excess, soft_latency_ms,
                        soft_token_counts)
from ...registry import MODELS
from ..cdcp import ffn_gate, soft_width

__all__ = ['LatencyBudgetLoss', 'backbone_latency_ms']

Number = Union[float, Tensor]


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
