"""SPViT's package token: one token that summarises the tokens just dropped.

SPViT (Kong et al., ECCV 2022, https://arxiv.org/abs/2112.13890) appends,
at every selector, one *package* token built from the tokens dropped there
(``drop = prev_policy - keep_policy``); it is kept from then on. The
training code (``SPViT vit_l2_3keep_senet.py:
VisionTransformerDiffPruning.forward``) sums the dropped tokens weighted by
their keep probability ``S`` and does **not** normalise (the division by
``sum S`` is commented out there). The same model in eval mode, the
original's evaluated path, makes it the same way; training and inference
both use this form here.
"""
import torch
from torch import Tensor

__all__ = ['package_token']


def package_token(x: Tensor, drop: Tensor, keep_prob: Tensor) -> Tensor:
    """``pkg = sum_j drop_j * S_j * x_j`` (not normalised).

    Args:
        x (Tensor): ``(B, N, C)`` tokens the selector scored.
        drop (Tensor): ``(B, N)`` tokens dropped now, ``prev_policy -
            keep_policy`` (straight-through, so it carries gradients).
        keep_prob (Tensor): ``(B, N)`` keep probability ``S[..., 0]`` from
            :class:`MultiheadPredictorLG`.

    Returns:
        Tensor: ``(B, 1, C)``; zeros when nothing was dropped.
    """
    w = (drop * keep_prob).to(x.dtype)
    return torch.einsum('bn,bnc->bc', w, x).unsqueeze(1)
