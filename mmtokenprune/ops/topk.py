"""Fixed-count token selection: keep counts, top-k split, cls-attention.

Inference TPS (and DynamicViT) keep a fixed number of tokens per image,
the top ``num_keep`` by keep score, so a batch keeps one shape. The scores
come from a learned predictor (dTPS) or, for eTPS, from the class token's
attention as in EViT (Liang et al., ICLR 2022,
https://arxiv.org/abs/2202.07800).
"""
import math
from typing import Optional, Tuple

from torch import Tensor

__all__ = ['num_keep_from_ratio', 'topk_split', 'cls_attention_score']


def num_keep_from_ratio(num_tokens: int,
                        keep_ratio: float,
                        key: str = 'token_cfg.keep_ratio') -> int:
    """``floor(num_tokens * keep_ratio)``, as TPS's ``int(N * ratio)``.

    A relative slack of 1e-9 keeps products such as ``100 * 0.29`` from
    rounding down to 28.

    Args:
        num_tokens (int): tokens the ratio applies to (TPS: the initial
            patch count, with cumulative ratios such as 0.7, 0.49, 0.343).
        keep_ratio (float): fraction kept, in (0, 1].
        key (str): config key named in error messages. Defaults to
            ``'token_cfg.keep_ratio'``.

    Returns:
        int: tokens to keep, in ``[1, num_tokens]``.

    Raises:
        ValueError: if ``keep_ratio`` is not in (0, 1] or keeps no token.
    """
    if isinstance(keep_ratio, bool) or \
            not isinstance(keep_ratio, (int, float)) or \
            not 0 < keep_ratio <= 1:
        raise ValueError(f'`{key}` must be a number in (0, 1]; '
                         f'got {keep_ratio!r}.')
    num_keep = int(math.floor(num_tokens * keep_ratio * (1 + 1e-9)))
    if num_keep < 1:
        raise ValueError(
            f'`{key}`={keep_ratio} keeps no token of {num_tokens} '
            f'(floor({num_tokens} * {keep_ratio}) = 0); use a keep ratio of '
            f'at least {1 / num_tokens:.4g} or a larger input.')
    return min(num_keep, num_tokens)


def topk_split(scores: Tensor, num_keep: int) -> Tuple[Tensor, Tensor]:
    """Split tokens into the ``num_keep`` best and the rest, per image.

    Ties go to the lower index (stable sort). Both index sets are returned
    ascending, as :class:`MergePlan` needs for ``keep_idx``; the original
    TPS keeps them in score order, which a ViT does not notice (position
    embeddings are already added).

    Args:
        scores (Tensor): ``(B, N)`` keep scores, higher = keep.
        num_keep (int): ``0 <= num_keep <= N``; the same for every image.

    Returns:
        tuple[Tensor, Tensor]: ``keep_idx`` ``(B, num_keep)`` and
        ``prune_idx`` ``(B, N - num_keep)``, long, ascending.
    """
    N = scores.shape[1]
    if not 0 <= num_keep <= N:
        raise ValueError(f'num_keep must be in [0, {N}]; got {num_keep}.')
    order = scores.argsort(dim=1, descending=True, stable=True)
    keep_idx = order[:, :num_keep].sort(dim=1).values
    prune_idx = order[:, num_keep:].sort(dim=1).values
    return keep_idx, prune_idx


def cls_attention_score(q: Tensor,
                        k: Tensor,
                        scale: float,
                        num_extra_tokens: int = 1,
                        policy: Optional[Tensor] = None) -> Tensor:
    """EViT's score: the class token's attention to each patch token.

    Only the class token's row of the attention is computed (``O(h N d)``),
    so it works beside fused SDPA, which never forms the attention matrix.
    The softmax runs over all keys (extra tokens included), then the patch
    columns are averaged over heads, as EViT.

    Models without a class token (``num_extra_tokens=0``, e.g. Swin): the
    mean query over all tokens stands in for it (**our choice**, not from
    EViT or TPS; a proxy of "attention received", which needs the full
    matrix).

    Args:
        q, k (Tensor): ``(B, h, N, d)`` queries and keys, the class token
            first when there is one.
        scale (float): logit scale.
        num_extra_tokens (int): leading non-patch tokens (1 for DeiT, 2 for
            distilled DeiT; the class token is the first). Defaults to 1.
        policy (Tensor, optional): ``(B, N)`` keep policy over all tokens
            (training path): dropped keys get no attention, as in the
            masked softmax, so the scores equal those of the gathered
            tokens. Defaults to None.

    Returns:
        Tensor: ``(B, N - num_extra_tokens)`` scores, higher = keep; each
        row sums to at most 1.
    """
    if num_extra_tokens > 0:
        query = q[:, :, :1]
    else:
        query = q.mean(dim=2, keepdim=True)
    logits = (query @ k.transpose(-2, -1)) * scale
    if policy is not None:
        logits = logits.masked_fill(policy[:, None, None, :] == 0, -math.inf)
    attn = logits.softmax(dim=-1)
    return attn[:, :, 0, num_extra_tokens:].mean(dim=1)
