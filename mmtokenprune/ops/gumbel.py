"""Straight-through Gumbel-softmax for learned keep/drop decisions.

DynamicViT, TPS (dTPS) and SPViT turn a predictor's 2-way scores into a
hard keep mask with a straight-through Gumbel-softmax: the forward value is
one-hot, the gradient is that of the relaxed sample. TPS's copy
(``TPS-CVPR2023 torch_codebase/models/functions.py: gumbel_softmax``)
redraws the noise when it contains NaN or inf (``-log`` of an exponential
sample that came out as 0); that guard is kept here. Class 0 means *keep*,
as in all three originals.
"""
from typing import Optional

import torch
from torch import Tensor

__all__ = ['gumbel_softmax', 'sample_keep']

# Redraws of the noise before giving up; one bad draw is already rare.
_MAX_DRAWS = 10


def _sample_exponential(like: Tensor) -> Tensor:
    """Exponential(1) samples shaped like ``like`` (patched in tests)."""
    return torch.empty_like(like).exponential_()


def _gumbel_noise(like: Tensor) -> Tensor:
    """Gumbel(0, 1) noise, redrawn while any entry is NaN or inf."""
    for _ in range(_MAX_DRAWS):
        noise = -_sample_exponential(like).log()
        if torch.isfinite(noise).all():
            return noise
    raise RuntimeError(f'Gumbel noise was not finite in {_MAX_DRAWS} draws.')


def gumbel_softmax(logits: Tensor,
                   tau: float = 1.,
                   hard: bool = True,
                   dim: int = -1,
                   noise: bool = True) -> Tensor:
    """Gumbel-softmax sample, straight-through when ``hard``.

    Args:
        logits (Tensor): ``(..., K)`` unnormalised log-probabilities, e.g.
            a predictor's ``(B, N, 2)`` log-softmax output.
        tau (float): temperature of the relaxation. Defaults to 1.
        hard (bool): return the one-hot ``argmax`` in the forward pass and
            the relaxed sample's gradient (straight-through). Defaults to
            True.
        dim (int): the class dimension. Defaults to -1.
        noise (bool): add Gumbel noise. False gives the deterministic
            ``softmax(logits / tau)`` (one-hot of ``argmax(logits)`` when
            ``hard``), e.g. for evaluation. Defaults to True.

    Returns:
        Tensor: same shape as ``logits``; one-hot along ``dim`` when
        ``hard``, otherwise a distribution along ``dim``.
    """
    if noise:
        logits = logits + _gumbel_noise(logits)
    soft = (logits / tau).softmax(dim)
    if not hard:
        return soft
    index = soft.argmax(dim, keepdim=True)
    one_hot = torch.zeros_like(soft).scatter_(dim, index, 1.)
    return one_hot - soft.detach() + soft


def sample_keep(logits: Tensor,
                prev_policy: Optional[Tensor] = None,
                tau: float = 1.,
                noise: bool = True) -> Tensor:
    """Hard keep mask from 2-way scores, within the previous keep mask.

    ``keep = GumbelSoftmax(logits, hard=True)[..., 0] * prev_policy``, as in
    DynamicViT/TPS/SPViT: a token dropped earlier stays dropped.

    Args:
        logits (Tensor): ``(B, N, 2)`` scores, class 0 = keep.
        prev_policy (Tensor, optional): ``(B, N)`` previous keep mask in
            {0, 1}. Defaults to all ones.
        tau (float): Gumbel temperature. Defaults to 1.
        noise (bool): sample (True) or take the argmax (False). Defaults to
            True.

    Returns:
        Tensor: ``(B, N)`` keep mask in {0, 1}, differentiable w.r.t.
        ``logits`` (straight-through).
    """
    keep = gumbel_softmax(logits, tau=tau, hard=True, noise=noise)[..., 0]
    return keep if prev_policy is None else keep * prev_policy
