"""State-dict keys of timm's ViT/DeiT (and of the official ToMe and SPViT
models built on it) as :class:`~mmtokenprune.models.PrunedVisionTransformer`
names them.

timm's ``VisionTransformer`` and mmpretrain's differ in names only:
``patch_embed.proj`` / ``patch_embed.projection``, ``blocks.i`` /
``layers.i`` with ``norm1``/``norm2`` as ``ln1``/``ln2`` and the MLP's
``fc1``/``fc2`` as ``ffn.layers.0.0``/``ffn.layers.1``, the final ``norm``
as ``ln1``. SPViT's ``score_predictor.k`` is the selector of the ``k``-th
pruning layer (``layers.{loc}.reducer.selector``).
"""
import re
from typing import Dict, Iterable, Optional, Sequence

__all__ = ['is_timm_vit', 'timm_vit_key', 'timm_vit_state_dict']

_RENAMES = (
    (r'^patch_embed\.proj\.', 'patch_embed.projection.'),
    (r'^blocks\.(\d+)\.norm1\.', r'layers.\1.ln1.'),
    (r'^blocks\.(\d+)\.norm2\.', r'layers.\1.ln2.'),
    (r'^blocks\.(\d+)\.mlp\.fc1\.', r'layers.\1.ffn.layers.0.0.'),
    (r'^blocks\.(\d+)\.mlp\.fc2\.', r'layers.\1.ffn.layers.1.'),
    (r'^blocks\.(\d+)\.attn\.', r'layers.\1.attn.'),
    (r'^norm\.', 'ln1.'),
)


_TIMM_ONLY = re.compile(r'^(blocks\.\d+\.|patch_embed\.proj\.)')


def is_timm_vit(keys: Iterable[str]) -> bool:
    """Whether ``keys`` name timm's ViT/DeiT (``blocks.i``,
    ``patch_embed.proj``)."""
    return any(_TIMM_ONLY.match(k) for k in keys)


def timm_vit_key(key: str,
                 selector_layers: Optional[Sequence[int]] = None
                 ) -> Optional[str]:
    """The backbone's name for timm key ``key``; None for the classifier
    (``head``, ``head_dist``, ``pre_logits``).

    Args:
        key (str): a key of timm's (or SPViT's) ViT state dict.
        selector_layers (list[int], optional): SPViT's ``pruning_loc``,
            for its ``score_predictor.k`` keys.

    Raises:
        KeyError: for a key with no counterpart, naming it.
    """
    if re.match(r'^(head|head_dist|pre_logits|fc_norm)\b', key):
        return None
    m = re.match(r'^score_predictor\.(\d+)\.(.*)$', key)
    if m:
        if selector_layers is None:
            raise KeyError(f'{key!r}: SPViT selector keys need '
                           'selector_layers (its pruning_loc).')
        return (f'layers.{selector_layers[int(m.group(1))]}.reducer.'
                f'selector.{m.group(2)}')
    if key in ('cls_token', 'pos_embed', 'dist_token'):
        return key
    for pattern, repl in _RENAMES:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    raise KeyError(f'{key!r} has no counterpart in PrunedVisionTransformer.')


def timm_vit_state_dict(state_dict: Dict,
                        selector_layers: Optional[Sequence[int]] = None
                        ) -> Dict:
    """:func:`timm_vit_key` applied to every key (classifier dropped)."""
    out = {}
    for key, value in state_dict.items():
        new = timm_vit_key(key, selector_layers)
        if new is not None:
            out[new] = value
    return out
