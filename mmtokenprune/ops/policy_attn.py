"""Attention over a keep policy: DynamicViT's masked softmax.

While training, DynamicViT, TPS and SPViT keep every token in the tensor and
hide the dropped ones from attention instead (DynamicViT, Rao et al.,
NeurIPS 2021, https://arxiv.org/abs/2106.02034; ``Attention.
softmax_with_policy`` in ``TPS-CVPR2023 torch_codebase/models/
dynamic_vit.py`` and ``SPViT vit_l2_3keep_senet.py``). With a keep policy
``p`` over the keys and ``P = p + (1 - p) * I`` (a token always sees
itself)::

    A_ij = (exp(s_ij - max_k s_ik) * P_ij + eps / N)
           / (sum_j exp(s_ij - max_k s_ik) * P_ij + eps)

The originals use ``eps=1e-6`` in training and 0 in evaluation. With
``eps=0`` this is ``softmax(s + log P)``, so the policy becomes an additive
bias for fused SDPA (:func:`policy_bias`); ``eps > 0`` or a policy that
needs gradients takes the explicit form (:func:`policy_softmax`).
"""
from typing import Optional

import torch
from torch import Tensor

from .attention import fused_attention

__all__ = [
    'policy_matrix', 'policy_bias', 'policy_softmax', 'policy_attention'
]


def policy_matrix(policy: Tensor) -> Tensor:
    """``P = p + (1 - p) * I``: key ``j`` visible to query ``i``.

    Args:
        policy (Tensor): ``(B, N)`` keep policy over all tokens (extra tokens
            included, normally 1), in {0, 1} or soft in [0, 1].

    Returns:
        Tensor: ``(B, 1, N, N)``, broadcastable over heads.
    """
    N = policy.shape[1]
    eye = torch.eye(N, dtype=policy.dtype, device=policy.device)
    p = policy[:, None, None, :]
    return p + (1. - p) * eye


def policy_bias(policy: Tensor, dtype: Optional[torch.dtype] = None) -> Tensor:
    """``log P`` as an additive attention bias (``-inf`` where ``P = 0``).

    ``softmax(s + log P)`` equals the masked softmax with ``eps=0``. The bias
    passes no usable gradient to a hard policy (``d log P / dP`` is infinite
    at 0), so it refuses a policy that needs one: use
    :func:`policy_softmax` there.

    Args:
        policy (Tensor): ``(B, N)`` keep policy.
        dtype (torch.dtype, optional): dtype of the bias (the query's).
            Defaults to the policy's.

    Returns:
        Tensor: ``(B, 1, N, N)`` float bias for ``attn_mask``.

    Raises:
        ValueError: if the policy requires grad while grad is enabled.
    """
    if policy.requires_grad and torch.is_grad_enabled():
        raise ValueError(
            'policy_bias passes no gradient to the keep policy; use '
            'policy_softmax (or policy_attention, which picks it) when the '
            'policy must be trained through attention.')
    return policy_matrix(policy.to(dtype or policy.dtype)).log()


def policy_softmax(logits: Tensor, policy: Tensor, eps: float = 0.) -> Tensor:
    """DynamicViT's masked softmax, written out.

    The maximum is taken over all keys, masked ones included, as in the
    originals (it matters only when ``eps > 0``). Computed in float32 and
    returned in the logits' dtype.

    Args:
        logits (Tensor): ``(B, h, N, N)`` scaled ``q . k`` scores.
        policy (Tensor): ``(B, N)`` keep policy, hard or soft.
        eps (float): smoothing; the originals use 1e-6 in training and 0 in
            evaluation. Defaults to 0.

    Returns:
        Tensor: ``(B, h, N, N)`` attention weights; rows sum to 1.
    """
    N = logits.shape[-1]
    shifted = logits - logits.amax(dim=-1, keepdim=True)
    num = shifted.float().exp() * policy_matrix(policy.float())
    attn = (num + eps / N) / (num.sum(dim=-1, keepdim=True) + eps)
    return attn.to(logits.dtype)


def policy_attention(q: Tensor,
                     k: Tensor,
                     v: Tensor,
                     policy: Tensor,
                     scale: float,
                     eps: float = 0.) -> Tensor:
    """Attention restricted to the kept keys (plus each token itself).

    With ``eps=0`` and a policy that needs no gradient this is one fused SDPA
    call with :func:`policy_bias`; otherwise the weights come from
    :func:`policy_softmax` (``eps`` as the originals: 1e-6 in training).

    Args:
        q, k (Tensor): ``(B, h, N, dqk)``.
        v (Tensor): ``(B, h, N, dv)``.
        policy (Tensor): ``(B, N)`` keep policy over all tokens.
        scale (float): logit scale.
        eps (float): see :func:`policy_softmax`. Defaults to 0.

    Returns:
        Tensor: ``(B, h, N, dv)``.
    """
    needs_grad = policy.requires_grad and torch.is_grad_enabled()
    if eps == 0 and not needs_grad:
        return fused_attention(
            q, k, v, scale, attn_mask=policy_bias(policy, q.dtype))
    attn = policy_softmax((q @ k.transpose(-2, -1)) * scale, policy, eps)
    return attn @ v
