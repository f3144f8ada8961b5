"""State-dict keys of mmseg's ``VisionTransformer`` (its model-zoo
checkpoints, and ImageNet weights converted by mmseg's ``vit2mmseg``) as
:class:`~mmtokenprune.models.PrunedMMSegVisionTransformer` names them.

mmseg's encoder layer wraps torch's ``nn.MultiheadAttention``: its
``attn.attn.in_proj_weight`` is ``[W_q; W_k; W_v]`` stacked on the output
axis, which is exactly mmpretrain's ``attn.qkv.weight`` (both split Q, K, V
first and heads second), and ``attn.attn.out_proj`` is ``attn.proj``. The
pre-norm is ``ln_pre`` there and ``pre_norm`` here. Every other key (patch
embedding, ``ln1``/``ln2``, ``ffn.layers.0.0``/``ffn.layers.1``, the final
``ln1``, ``cls_token``, ``pos_embed``) has the same name on both sides.
"""
import re
from typing import Dict, Iterable

__all__ = ['is_mmseg_vit', 'mmseg_vit_key', 'mmseg_vit_state_dict']

_RENAMES = (
    (r'^layers\.(\d+)\.attn\.attn\.in_proj_(weight|bias)$',
     r'layers.\1.attn.qkv.\2'),
    (r'^layers\.(\d+)\.attn\.attn\.out_proj\.', r'layers.\1.attn.proj.'),
    (r'^ln_pre\.', 'pre_norm.'),
)
_MMSEG_ONLY = re.compile(r'^(layers\.\d+\.attn\.attn\.|ln_pre\.)')


def is_mmseg_vit(keys: Iterable[str]) -> bool:
    """Whether ``keys`` (without any module prefix) name mmseg's ViT:
    a key only mmseg's attention or pre-norm has."""
    return any(_MMSEG_ONLY.match(k) for k in keys)


def mmseg_vit_key(key: str) -> str:
    """The backbone's name for mmseg key ``key`` (unchanged when both
    sides share it)."""
    for pattern, repl in _RENAMES:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return key


def mmseg_vit_state_dict(state_dict: Dict) -> Dict:
    """:func:`mmseg_vit_key` applied to every key, order kept."""
    return {mmseg_vit_key(k): v for k, v in state_dict.items()}
