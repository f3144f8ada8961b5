"""Tokens every layer of a ViT sees under a token schedule: whole counts
for a fixed per-layer ``r`` (:func:`schedule_counts`, the rule of
``PrunedVisionTransformer.token_counts``), and soft counts from per-layer
keep ratios (:func:`soft_token_counts`, differentiable in them).
"""
from typing import Dict, List, Optional, Sequence, Union

from torch import Tensor

from .reducer_traits import reducer_traits

__all__ = ['schedule_counts', 'soft_token_counts']

Number = Union[float, Tensor]


def schedule_counts(num_patches: int, num_extra_tokens: int,
                    removed: Sequence[int],
                    reducer: Optional[str]) -> List[Dict]:
    """Tokens seen by every layer of a ViT under a per-layer ``r``
    (the rule of ``PrunedVisionTransformer.token_counts``).

    Args:
        num_patches (int): patch tokens of the input.
        num_extra_tokens (int): leading extra tokens (cls).
        removed (Sequence[int]): tokens removed at each layer (0: none).
        reducer (str, optional): the reducer type.

    Returns:
        list[dict]: per layer ``attn`` (tokens of the attention), ``mlp``
        (tokens of the MLP), ``patches`` (patch tokens the reducer sees)
        and ``r``.

    Raises:
        ValueError: a step removing more than the reducer allows (merging:
            half the patch tokens; pruning: all but one).
    """
    traits = reducer_traits(reducer)
    n, extra, out = num_patches, num_extra_tokens, []
    for i, r in enumerate(removed):
        before, before_extra, seen = n, extra, n
        if r:
            most = n - 1 if traits['prunes'] else n // 2
            if not 0 < r <= most:
                raise ValueError(f'layer {i}: r={r} of {n} patch tokens; '
                                 f'{reducer} removes at most {most}.')
            n -= r
            extra += traits['tail_tokens']
        if r and traits['where'] == 'before_block':
            before, before_extra = n, extra
        out.append(
            dict(attn=before + before_extra, mlp=n + extra, patches=seen,
                 r=r))
    return out


def soft_token_counts(num_patches: int, num_extra_tokens: int,
                      keep_ratios: Sequence[Optional[Number]],
                      reducer: Optional[str] = None) -> Dict:
    """Soft token counts of every layer from per-layer keep ratios.

    Args:
        num_patches (int): patch tokens of the input.
        num_extra_tokens (int): leading extra tokens.
        keep_ratios (Sequence): per layer, the fraction of patch tokens its
            reducer keeps (float or tensor), or None where none runs.
        reducer (str, optional): the reducer type (where it runs, tokens
            it appends).

    Returns:
        dict: per-layer lists ``attn``, ``mlp`` (tokens, extra ones
        included), ``patches`` (tokens the reducer sees) and ``removed``.
    """
    traits = reducer_traits(reducer)
    n, extra = num_patches, num_extra_tokens
    out = dict(attn=[], mlp=[], patches=[], removed=[])
    for k in keep_ratios:
        seen, before = n, n + extra
        if k is not None:
            n = n * k
            extra = extra + traits['tail_tokens']
            if traits['where'] == 'before_block':
                before = n + extra
        out['attn'].append(before)
        out['mlp'].append(n + extra)
        out['patches'].append(seen)
        out['removed'].append(0. if k is None else seen - n)
    return out
