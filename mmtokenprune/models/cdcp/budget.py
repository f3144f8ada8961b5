"""CDCP's budget: the soft widths of gates and the loss on the kept FLOPs
(counted by :mod:`mmtokenprune.budgets.block_flops`)."""
from typing import Optional

from torch import Tensor

from ...ops import ChannelGate

__all__ = ['soft_width', 'budget_loss', 'PENALTIES']


def soft_width(gate: Optional[ChannelGate], full: int, hard: bool = False):
    """Differentiable kept-channel count of a gate (``full`` without one).

    Args:
        hard (bool): the hard mask's count with the soft count's gradient
            (straight-through) instead of the soft count
            ``sum(sigmoid(logits))``. Defaults to False.
    """
    if gate is None:
        return full
    return gate.hard_count() if hard else gate.keep_prob()


#: ``channel_cfg.penalty`` values: how the excess over the target is paid.
PENALTIES = ('squared', 'linear', 'two-sided')


def budget_loss(ratio: Tensor, target: float,
                penalty: str = 'squared') -> Tensor:
    """How far the kept FLOPs fraction is from ``target``.

    ``'squared'``: the squared excess over the target; ``'linear'``: the
    excess as is (a pull that does not fade as the target comes near);
    both are zero at or below the target. ``'two-sided'``: ``|ratio -
    target|``, which also reopens channels when training has closed more
    than the budget asks (to land *at* the target, e.g. for a comparison
    at equal FLOPs).
    """
    if penalty not in PENALTIES:
        raise ValueError(f'penalty must be one of {list(PENALTIES)}; got '
                         f'{penalty!r}.')
    if penalty == 'two-sided':
        return (ratio - target).abs()
    excess = (ratio - target).clamp(min=0)
    return excess.pow(2) if penalty == 'squared' else excess
