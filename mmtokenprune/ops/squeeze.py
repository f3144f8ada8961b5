"""TPS's squeeze: fold each pruned token into its most similar kept host.

TPS (Wei et al., CVPR 2023, https://arxiv.org/abs/2304.10716; code
``TPS-CVPR2023 torch_codebase/models/dynamic_vit.py: TPSModule``). Tokens are
split into reserved (kept) and pruned ones. Every pruned token ``i`` picks
the reserved host ``j`` with the highest cosine similarity ``c_ij``
(unidirectional: reserved tokens never move), and each reserved token
becomes::

    y_j = w_j x_j + sum_i w_i x_i,
    w_i = exp(c_ij) m_ij / (sum_i exp(c_ij) m_ij + e),
    w_j = e / (sum_i exp(c_ij) m_ij + e)

where ``m_ij`` is 1 when ``j`` is the host of ``i``; ``e = exp(1)`` is the
host's own weight (its self-similarity is 1). With a temperature ``T`` the
similarities are ``c_ij / T`` but the host weight stays ``e``, as in the
original. A reserved token with no match is unchanged.

Two forms, equal on the reserved tokens for the same decision:

- :func:`tps_squeeze` / :func:`squeeze_tokens` (inference): fixed-count
  index sets, the pruned tokens leave the tensor, and a :class:`MergePlan`
  maps every pruned position to its host so dense heads un-merge with the
  usual gather.
- :func:`squeeze_train` (training): all ``N`` tokens stay, a keep policy
  says which are reserved, and the reserved rows are fused in place.

Departure from the original: a pruned token with several equally similar
hosts goes to the first of them (``argmax``); the original's ``==`` test
gives it to all of them, which happens with duplicate tokens (flat image
regions) and cannot be expressed as a merge map.
"""
import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from .token_map import MergePlan

__all__ = ['squeeze_tokens', 'squeeze_plan', 'tps_squeeze', 'squeeze_train']


def _cosine(a: Tensor, b: Tensor, eps: float = 1e-6) -> Tensor:
    """``(B, Na, Nb)`` cosine similarities, normalised as the original."""
    a = a / (a.norm(dim=-1, keepdim=True) + eps)
    b = b / (b.norm(dim=-1, keepdim=True) + eps)
    return a @ b.transpose(1, 2)


def _fuse(hosts: Tensor, src: Tensor, host: Tensor, weight: Tensor) -> Tensor:
    """``(e * x_j + sum_i w_i x_i) / (e + sum_i w_i)`` over each host.

    Args:
        hosts (Tensor): ``(B, Nh, C)`` host tokens.
        src (Tensor): ``(B, Ns, C)`` tokens folded into them.
        host (Tensor): ``(B, Ns)`` long, the host of each source.
        weight (Tensor): ``(B, Ns)`` ``exp(c) * m``; 0 for no host.
    """
    C = hosts.shape[-1]
    weight = weight.to(hosts.dtype)
    den = hosts.new_full(hosts.shape[:2], math.e).scatter_add(1, host, weight)
    index = host.unsqueeze(-1).expand(-1, -1, C)
    num = (hosts * math.e).scatter_add(1, index, src * weight.unsqueeze(-1))
    return num / den.unsqueeze(-1)


def squeeze_tokens(kept: Tensor,
                   pruned: Tensor,
                   temperature: float = 1.) -> Tuple[Tensor, Tensor]:
    """Squeeze gathered pruned tokens into gathered kept tokens.

    Args:
        kept (Tensor): ``(B, Nr, C)`` reserved tokens, ``Nr >= 1``.
        pruned (Tensor): ``(B, Np, C)`` pruned tokens (``Np`` may be 0).
        temperature (float): similarities are divided by it; the host
            weight stays ``e``. Defaults to 1.

    Returns:
        tuple[Tensor, Tensor]: the squeezed reserved tokens ``(B, Nr, C)``
        and each pruned token's host ``(B, Np)`` (an index into ``kept``).
    """
    sim, host = _best_host(kept, pruned, temperature)
    return _fuse(kept, pruned, host, sim.exp()), host


def _best_host(kept: Tensor, pruned: Tensor,
               temperature: float) -> Tuple[Tensor, Tensor]:
    """``(B, Np)`` each pruned token's best similarity to a kept token
    (divided by ``temperature``) and that token's index in ``kept``."""
    if kept.shape[1] == 0:
        raise ValueError('squeeze_tokens needs at least one kept token.')
    return (_cosine(pruned, kept) / temperature).max(dim=-1)


def squeeze_plan(keep_idx: Tensor, prune_idx: Tensor,
                 host: Tensor) -> MergePlan:
    """The merge map of a squeeze: pruned positions point at their host.

    Args:
        keep_idx (Tensor): ``(B, Nr)`` long, ascending current indices of
            the kept tokens (the order of ``kept``).
        prune_idx (Tensor): ``(B, Np)`` long, current indices of the pruned
            tokens (the order of ``pruned``).
        host (Tensor): ``(B, Np)`` long, from :func:`squeeze_tokens`.

    Returns:
        MergePlan: from ``Nr + Np`` to ``Nr`` tokens; reserved tokens keep
        their order.
    """
    # A data-dependent check: eager only (torch.compile / export trace
    # the plan with its static shapes; the inputs are the same).
    if not torch.compiler.is_compiling() and bool(
            (keep_idx[:, 1:] <= keep_idx[:, :-1]).any()):
        raise ValueError('keep_idx must be strictly ascending per image '
                         '(MergePlan.keep_idx); sort it, e.g. topk_split.')
    B, Nr = keep_idx.shape
    old2new = keep_idx.new_empty(B, Nr + prune_idx.shape[1])
    rank = torch.arange(Nr, device=keep_idx.device).expand(B, Nr)
    old2new.scatter_(1, keep_idx, rank)
    old2new.scatter_(1, prune_idx, host)
    return MergePlan(old2new=old2new, keep_idx=keep_idx)


def _gather(x: Tensor, idx: Tensor) -> Tensor:
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def tps_squeeze(x: Tensor,
                keep_idx: Tensor,
                prune_idx: Tensor,
                temperature: float = 1.,
                fuse: bool = True) -> Tuple[Tensor, MergePlan]:
    """Inference TPS: drop the pruned tokens into their hosts.

    Args:
        x (Tensor): ``(B, N, C)`` patch tokens (no extra tokens).
        keep_idx (Tensor): ``(B, Nr)`` long, ascending.
        prune_idx (Tensor): ``(B, N - Nr)`` long, the rest.
        temperature (float): see :func:`squeeze_tokens`. Defaults to 1.
        fuse (bool): False: plain pruning, the reserved tokens are returned
            unchanged; the pruned positions still point at their most
            similar host (for dense heads). Defaults to True.

    Returns:
        tuple[Tensor, MergePlan]: ``(B, Nr, C)`` squeezed reserved tokens
        and the plan for :meth:`TokenMap.apply`.

    Examples:
        >>> keep_idx, prune_idx = topk_split(scores, num_keep)
        >>> x, plan = tps_squeeze(x, keep_idx, prune_idx)
        >>> tokens = tokens.apply(plan)
    """
    kept, pruned = _gather(x, keep_idx), _gather(x, prune_idx)
    if fuse:
        kept, host = squeeze_tokens(kept, pruned, temperature)
    else:
        host = _best_host(kept, pruned, temperature)[1]
    return kept, squeeze_plan(keep_idx, prune_idx, host)


def squeeze_train(x: Tensor,
                  keep_policy: Tensor,
                  prune_policy: Optional[Tensor] = None,
                  temperature: float = 1.,
                  return_host: bool = False,
                  fuse: bool = True):
    """Training TPS: fuse pruned tokens into reserved rows, nothing removed.

    The ``N x N`` similarity excludes the diagonal and every column that is
    not reserved (``keep_policy == 0``). Row ``i`` is a source with weight
    ``exp(m_i c_i) m_i``, ``m_i = prune_policy_i`` (0 when it has no host),
    as the original, so gradients reach ``prune_policy`` (straight-through
    Gumbel) as well as ``x``. Rows that receive nothing, pruned rows
    included, are returned unchanged.

    Args:
        x (Tensor): ``(B, N, C)`` patch tokens (no extra tokens).
        keep_policy (Tensor): ``(B, N)`` current keep mask; nonzero = host.
        prune_policy (Tensor, optional): ``(B, N)`` tokens pruned *now*,
            ``(1 - keep) * prev_policy`` in the original so that tokens
            dropped at an earlier stage are not squeezed twice. Defaults to
            ``1 - keep_policy``.
        temperature (float): see :func:`squeeze_tokens`. Defaults to 1.
        return_host (bool): also return each token's host ``(B, N)`` (an
            index into the ``N`` tokens; the token itself where it has no
            host). Defaults to False.
        fuse (bool): False: plain pruning, ``x`` is returned unchanged
            (the hosts are still found). Defaults to True.

    Returns:
        Tensor | tuple[Tensor, Tensor]: ``(B, N, C)`` (and the hosts).
    """
    if prune_policy is None:
        prune_policy = 1. - keep_policy
    N = x.shape[1]
    eye = torch.eye(N, dtype=torch.bool, device=x.device)
    hidden = (keep_policy == 0).unsqueeze(1) | eye
    sim = (_cosine(x, x) / temperature).masked_fill(hidden, -math.inf)
    best, host = sim.max(dim=-1)
    has_host = torch.isfinite(best)
    m = prune_policy.to(x.dtype) * has_host
    c = torch.where(has_host, best, torch.zeros_like(best))
    y = _fuse(x, x, host, torch.exp(m * c) * m) if fuse else x
    if not return_host:
        return y
    own = torch.arange(N, device=x.device).expand_as(host)
    return y, torch.where(has_host, host, own)
