"""Learned keep/drop predictors: DynamicViT/TPS's and SPViT's.

Both score every token from its own features (*local* half of the
channels) and a policy-weighted mean over the kept tokens (*global* half),
and return 2-way scores (class 0 = keep) for :func:`sample_keep`.

- :class:`PredictorLG`: DynamicViT's predictor, used unchanged by dTPS
  (``TPS-CVPR2023 torch_codebase/models/dynamic_vit.py: PredictorLG``).
- :class:`MultiheadPredictorLG`: SPViT's multi-head token selector with
  head-importance weights (``SPViT vit_l2_3keep_senet.py:
  MultiheadPredictorLG``).

Module names follow the originals (``in_conv``, ``out_conv``, ``senet``), so
their state_dict keys match.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

__all__ = ['PredictorLG', 'MultiheadPredictorLG']


def _local_global(f: Tensor, policy: Optional[Tensor]) -> Tensor:
    """``[f[..., :C/2], policy-weighted mean over tokens of f[..., C/2:]]``.

    Args:
        f (Tensor): ``(B, N, C)`` features.
        policy (Tensor, optional): ``(B, N)`` keep policy; None = all kept.
    """
    B, N, C = f.shape
    local, rest = f[..., :C // 2], f[..., C // 2:]
    if policy is None:
        pooled = rest.mean(dim=1, keepdim=True)
    else:
        p = policy.to(f.dtype).unsqueeze(-1)
        # clamp: an image with nothing kept gets 0, not NaN (the original
        # divides by the bare sum).
        count = p.sum(dim=1, keepdim=True).clamp_min(torch.finfo(f.dtype).tiny)
        pooled = (rest * p).sum(dim=1, keepdim=True) / count
    return torch.cat([local, pooled.expand(B, N, -1)], dim=-1)


def _in_conv(dims: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(dims), nn.Linear(dims, dims), nn.GELU())


def _out_conv(dims: int) -> nn.Sequential:
    """``Linear(d, d/2) -> GELU -> Linear(d/2, d/4) -> GELU -> Linear(d/4,
    2)``."""
    return nn.Sequential(
        nn.Linear(dims, dims // 2), nn.GELU(), nn.Linear(dims // 2, dims // 4),
        nn.GELU(), nn.Linear(dims // 4, 2))


class PredictorLG(nn.Module):
    """DynamicViT's local-global keep predictor (used by dTPS).

    ``LN -> Linear(C, C) -> GELU``, then local/global halves, then
    ``Linear(C, C/2) -> GELU -> Linear(C/2, C/4) -> GELU -> Linear(C/4, 2)
    -> LogSoftmax``.

    Args:
        embed_dims (int): token width ``C``, at least 4.

    Examples:
        >>> pred = PredictorLG(384)
        >>> log_probs = pred(x, prev_policy)  # (B, N, 2)
        >>> keep = sample_keep(log_probs, prev_policy)
    """

    def __init__(self, embed_dims: int):
        super().__init__()
        if embed_dims < 4:
            raise ValueError(f'PredictorLG needs embed_dims >= 4, got '
                             f'{embed_dims}.')
        self.in_conv = _in_conv(embed_dims)
        self.out_conv = nn.Sequential(*_out_conv(embed_dims),
                                      nn.LogSoftmax(dim=-1))

    def forward(self, x: Tensor, policy: Optional[Tensor] = None) -> Tensor:
        """Score ``(B, N, C)`` tokens under a ``(B, N)`` keep policy.

        Returns:
            Tensor: ``(B, N, 2)`` log-probabilities, class 0 = keep.
        """
        return self.out_conv(_local_global(self.in_conv(x), policy))


class MultiheadPredictorLG(nn.Module):
    """SPViT's multi-head token selector.

    Channels are split into ``H`` heads of ``d = C / H``. Per head ``h``:
    ``in_conv`` (``LN(d) -> Linear(d, d) -> GELU``), local/global halves
    (global = mean over kept tokens), ``out_conv`` (``Linear(d, d/2) -> GELU
    -> Linear(d/2, d/4) -> GELU -> Linear(d/4, 2)``) giving ``t_h``. Head
    weights per token, from each head's channel mean ``X_bar`` ``(B, N,
    H)``: ``a = Sigmoid(Linear(H/2, H)(GELU(Linear(H, H/2)(X_bar))))``
    (``senet``). Returns

    - ``T = sum_h a_h LogSoftmax(t_h) / sum_h a_h`` (for Gumbel), and
    - ``S = sum_h a_h Softmax(t_h) / sum_h a_h`` (for the package token).

    ``share_heads=True`` reproduces the original: it builds one ``in_conv``
    and one ``out_conv`` and lists the *same* module object ``H`` times
    (``[onehead_in_conv for _ in range(num_heads)]``, likewise for
    ``out_conv``), so **both** are shared by all heads; only ``senet`` sees
    heads apart. State_dict keys are the original's
    (``in_conv.{h}.1.weight`` for every ``h``). ``share_heads=False`` gives
    each head its own ``in_conv`` and ``out_conv``.

    Args:
        embed_dims (int): token width ``C``.
        num_heads (int): ``H``; ``C / H`` must be an integer >= 4.
        share_heads (bool): one ``in_conv``/``out_conv`` for all heads, as
            the original. Defaults to True.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 share_heads: bool = True):
        super().__init__()
        if num_heads < 2 or embed_dims % num_heads or \
                embed_dims // num_heads < 4:
            raise ValueError(
                'MultiheadPredictorLG needs num_heads >= 2 and embed_dims / '
                'num_heads an integer >= 4; got embed_dims='
                f'{embed_dims}, num_heads={num_heads}.')
        self.num_heads = num_heads
        d = embed_dims // num_heads
        self.senet = nn.Sequential(
            nn.Linear(num_heads, num_heads // 2), nn.GELU(),
            nn.Linear(num_heads // 2, num_heads), nn.Sigmoid())
        if share_heads:
            in_conv, out_conv = _in_conv(d), _out_conv(d)
            self.in_conv = nn.ModuleList([in_conv] * num_heads)
            self.out_conv = nn.ModuleList([out_conv] * num_heads)
        else:
            self.in_conv = nn.ModuleList(
                [_in_conv(d) for _ in range(num_heads)])
            self.out_conv = nn.ModuleList(
                [_out_conv(d) for _ in range(num_heads)])

    def forward(self,
                x: Tensor,
                policy: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Score ``(B, N, C)`` tokens under a ``(B, N)`` keep policy.

        Returns:
            tuple[Tensor, Tensor]: ``T`` and ``S``, each ``(B, N, 2)``,
            class 0 = keep.
        """
        heads = x.unflatten(-1, (self.num_heads, -1))  # (B, N, H, d)
        a = self.senet(heads.mean(dim=-1))  # (B, N, H)
        per_head = zip(heads.unbind(2), self.in_conv, self.out_conv)
        logits = [
            out_conv(_local_global(in_conv(xh), policy))
            for xh, in_conv, out_conv in per_head
        ]
        logits = torch.stack(logits, dim=2)  # (B, N, H, 2)
        w = (a / a.sum(dim=-1, keepdim=True)).unsqueeze(-1)
        log_scores = (w * logits.log_softmax(dim=-1)).sum(dim=2)
        soft_scores = (w * logits.softmax(dim=-1)).sum(dim=2)
        return log_scores, soft_scores
