"""Keep-ratio loss: pull a learned training-time keep rate to its target.

On their training path, learned pruning reducers (dTPS, SPViT) keep every
token and record a straight-through keep decision ``policy`` ``(B, N)``,
cumulative over the reducing layers. Inference keeps a fixed count; this
loss makes the training decision keep about as many, so that training sees
what inference will do. For reducing layer ``s`` with target cumulative
kept fraction ``rho_s``:

- ``'per_sample'`` (DynamicViT, TPS): ``mean_b (mean_n policy_bn - rho_s)^2``
  (every image keeps about ``rho_s``);
- ``'batch'`` (SPViT): ``(mean_bn policy_bn - rho_s)^2`` (the batch does,
  images may differ).

The loss is ``loss_weight`` times the mean over the reducing layers (as
DynamicViT: the sum over stages divided by their number).
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from ...registry import MODELS

__all__ = ['KeepRatioLoss']

MODES = ('per_sample', 'batch')


@MODELS.register_module()
class KeepRatioLoss(nn.Module):
    """Squared distance of the kept fraction from its target per layer.

    Args:
        mode (str): 'per_sample' or 'batch' (see the module docstring).
            Defaults to 'per_sample'.
        loss_weight (float): Defaults to 2 (DynamicViT's ``ratio_weight``).
        targets (Sequence[float], optional): cumulative kept fraction after
            each reducing layer, in (0, 1]; None: the backbone's
            ``token_cfg`` schedule (what inference keeps). Defaults to None.
    """

    def __init__(self,
                 mode: str = 'per_sample',
                 loss_weight: float = 2.0,
                 targets: Optional[Sequence[float]] = None):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f'`KeepRatioLoss.mode` must be one of '
                             f'{list(MODES)}; got {mode!r}.')
        if not loss_weight >= 0:
            raise ValueError('`KeepRatioLoss.loss_weight` must be >= 0; got '
                             f'{loss_weight!r}.')
        if targets is not None:
            targets = tuple(float(t) for t in targets)
            if not targets or not all(0 < t <= 1 for t in targets):
                raise ValueError('`KeepRatioLoss.targets` must be a '
                                 'non-empty list of fractions in (0, 1]; '
                                 f'got {list(targets)}.')
        self.mode = mode
        self.loss_weight = float(loss_weight)
        self.targets = targets

    def forward(self, policies: Sequence[Tensor],
                targets: Sequence[float]) -> Tensor:
        """The loss.

        Args:
            policies (Sequence[Tensor]): ``(B, N)`` keep decision after each
                reducing layer (1 kept, 0 pruned).
            targets (Sequence[float]): the schedule's kept fractions, one
                per policy; ``self.targets`` replaces them when set.

        Returns:
            Tensor: scalar.
        """
        if self.targets is not None:
            targets = self.targets
        if not policies or len(policies) != len(targets):
            raise ValueError(
                f'KeepRatioLoss: {len(policies)} keep decisions and '
                f'{len(targets)} targets; `targets` needs one fraction per '
                'reducing layer.')
        terms = []
        for policy, rho in zip(policies, targets):
            if self.mode == 'per_sample':
                terms.append(((policy.mean(1) - rho)**2).mean())
            else:
                terms.append((policy.mean() - rho)**2)
        return self.loss_weight * torch.stack(terms).mean()
