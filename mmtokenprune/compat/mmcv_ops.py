"""Pure-torch stand-ins for the compiled ``mmcv.ops`` that mmseg imports.

mmcv-lite ships ``mmcv/ops/*.py`` but no compiled ``mmcv._ext``, so
``import mmcv.ops`` fails and, with it, ``import mmseg.models``. These
functions reproduce the semantics of the two ops mmseg imports without a
guard; :func:`mmtokenprune.compat.apply_compat` exposes them as
``mmcv.ops`` only when the compiled ops are absent.
"""
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ['point_sample', 'sigmoid_focal_loss', 'missing_op_message']

_REDUCTIONS = ('none', 'mean', 'sum')


def missing_op_message(name: str) -> str:
    """Return the error text for an ``mmcv.ops`` name with no fallback.

    Args:
        name (str): Attribute requested from ``mmcv.ops``.

    Returns:
        str: A message that says full mmcv is needed and how to get it.
    """
    return (f'mmcv.ops.{name} needs full mmcv (compiled ops); mmcv-lite is '
            'installed, and mmtokenprune only provides pure-torch '
            'fallbacks for mmcv.ops.point_sample and '
            'mmcv.ops.sigmoid_focal_loss. Install full mmcv>=2.0.0,<2.2.0 '
            '(https://mmcv.readthedocs.io/en/latest/get_started/'
            'installation.html) to use this op.')


def point_sample(input: torch.Tensor,
                 points: torch.Tensor,
                 align_corners: bool = False,
                 **kwargs) -> torch.Tensor:
    """Sample ``input`` at points given in ``[0, 1] x [0, 1]`` coordinates.

    Same contract as ``mmcv.ops.point_sample``: a wrapper around
    :func:`torch.nn.functional.grid_sample` whose points lie in the unit
    square instead of ``[-1, 1]``, and which accepts ``(N, P, 2)`` points.

    Args:
        input (torch.Tensor): Feature map of shape (N, C, H, W).
        points (torch.Tensor): (x, y) coordinates in [0, 1], of shape
            (N, P, 2) or (N, Hg, Wg, 2).
        align_corners (bool): Passed to ``grid_sample``. Defaults to False.
        **kwargs: Other ``grid_sample`` arguments (``mode``,
            ``padding_mode``).

    Returns:
        torch.Tensor: Sampled features of shape (N, C, P) or
        (N, C, Hg, Wg).
    """
    flat = points.dim() == 3
    grid = points.unsqueeze(2) if flat else points
    out = F.grid_sample(
        input, grid * 2.0 - 1.0, align_corners=align_corners, **kwargs)
    return out.squeeze(3) if flat else out


def sigmoid_focal_loss(pred: torch.Tensor,
                       target: torch.Tensor,
                       gamma: float = 2.0,
                       alpha: float = 0.25,
                       weight: Optional[torch.Tensor] = None,
                       reduction: str = 'mean') -> torch.Tensor:
    """Sigmoid focal loss with class-index targets, as mmcv's compiled op.

    Per element ``(n, c)`` with ``p = sigmoid(pred[n, c])`` and
    ``t = target[n]``::

        loss = -alpha * (1 - p) ** gamma * log(p)          if c == t
        loss = -(1 - alpha) * p ** gamma * log(1 - p)      otherwise

    multiplied by ``weight[t]`` when ``weight`` is given. A target equal to
    ``num_classes`` marks a sample with no positive class (mmdet's
    background). ``'mean'`` divides the sum by N (not N * C), like mmcv.
    Differences from the compiled op: the log terms use ``logsigmoid``
    instead of clamping ``p`` at FLT_MIN (identical for ``|pred| < 87``),
    and gradients come from autograd.

    Args:
        pred (torch.Tensor): Logits of shape (N, C).
        target (torch.Tensor): Long class indices of shape (N,), values in
            ``[0, C]``.
        gamma (float): Focusing parameter. Defaults to 2.0.
        alpha (float): Weight of the positive term. Defaults to 0.25.
        weight (torch.Tensor, optional): Per-class weights of shape (C,),
            applied by each sample's target class. Defaults to None.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``.
            Defaults to ``'mean'``.

    Returns:
        torch.Tensor: Loss of shape (N, C) for ``'none'``, else a scalar.
    """
    _check_focal_inputs(pred, target, weight, reduction)
    num_classes = pred.size(1)
    positive = F.one_hot(target, num_classes + 1)[:, :num_classes]
    positive = positive.to(pred.dtype)
    prob = pred.sigmoid()
    pos_term = -alpha * (1 - prob).pow(gamma) * F.logsigmoid(pred)
    neg_term = -(1 - alpha) * prob.pow(gamma) * F.logsigmoid(-pred)
    loss = positive * pos_term + (1 - positive) * neg_term
    if weight is not None:
        if bool((target >= num_classes).any()):
            raise ValueError('sigmoid_focal_loss: a per-class weight needs '
                             f'every target < num_classes={num_classes}')
        loss = loss * weight[target].unsqueeze(1)
    if reduction == 'mean':
        return loss.sum() / pred.size(0)
    if reduction == 'sum':
        return loss.sum()
    return loss


def _check_focal_inputs(pred, target, weight, reduction) -> None:
    """Raise ``ValueError`` where mmcv's compiled op would assert."""
    if pred.dim() != 2 or target.dim() != 1 or \
            pred.size(0) != target.size(0):
        raise ValueError('sigmoid_focal_loss expects pred (N, C) and target '
                         f'(N,), got {tuple(pred.shape)} and '
                         f'{tuple(target.shape)}')
    if target.dtype != torch.long:
        raise ValueError('sigmoid_focal_loss expects a long target of class '
                         f'indices, got {target.dtype}')
    if weight is not None and (weight.dim() != 1
                               or weight.size(0) != pred.size(1)):
        raise ValueError('sigmoid_focal_loss expects weight of shape '
                         f'({pred.size(1)},), got {tuple(weight.shape)}')
    if reduction not in _REDUCTIONS:
        raise ValueError(f'sigmoid_focal_loss: reduction must be one of '
                         f'{_REDUCTIONS}, got {reduction!r}')
