"""``PrunedMMSegVisionTransformer``: mmseg's ViT, as its model zoo trained
it, compressing itself."""
import re
from typing import Dict, Optional, Sequence, Set, Tuple, Union

from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader
from torch import Tensor

from ...ops import ChannelGate
from ...registry import MODELS
from ...utils.mmseg_keys import is_mmseg_vit, mmseg_vit_state_dict
from ...utils.timm_keys import is_timm_vit, timm_vit_state_dict
from .vit import PrunedVisionTransformer

__all__ = ['PrunedMMSegVisionTransformer']


def _pair(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    size = (size, size) if isinstance(size, int) else tuple(size)
    return (size[0], size[0]) if len(size) == 1 else (size[0], size[1])


def _out_indices(out_indices: Union[int, Sequence[int]],
                 num_layers: int) -> list:
    """mmseg's ``out_indices`` (an int, -1 for the last layer, or a list)
    as a list of layer indices."""
    if isinstance(out_indices, int):
        out_indices = [out_indices]
    return [i + num_layers if i < 0 else i for i in out_indices]


@MODELS.register_module()
class PrunedMMSegVisionTransformer(PrunedVisionTransformer):
    """mmseg's ``VisionTransformer``, with its arguments and checkpoints,
    merging tokens and pruning channels.

    A subclass of :class:`PrunedVisionTransformer` that takes the arguments
    of mmseg's ``VisionTransformer`` (so a config is ``type=`` plus
    ``token_cfg`` on top of an mmseg zoo config) and reproduces what those
    arguments do: no final norm and no patch-embedding bias by default,
    ``with_cls_token=False`` (the class token is dropped before the
    encoder), ``output_cls_token``, ``patch_norm``, ``pre_norm``, and the
    position embedding interpolated (``interpolate_mode``) only when the
    number of patches differs from the one of ``img_size``, as mmseg does.
    With reducers off its outputs equal mmseg's on the same weights.

    Modifications to :class:`PrunedVisionTransformer`:

    - Loading converts keys: mmseg's (model-zoo checkpoints, ``vit2mmseg``
      files: ``attn.attn.in_proj_*``, ``attn.attn.out_proj``, ``ln_pre``),
      timm's (the official DeiT/ViT files) and this backbone's own are all
      accepted, under any loader (``load_from``, ``init_cfg``,
      ``load_state_dict``). Then every key is checked, even under
      mmengine's non-strict loading: a missing, unexpected or wrongly
      shaped key raises, naming them. Only the learned parts of a reducer
      or CDCP gates may be missing (they are logged).
    - ``init_cfg=dict(type='Pretrained', checkpoint=...)`` (or mmseg's
      ``pretrained``) reads mmengine, mmseg and DeiT (``{'model': ...}``)
      files and leaves out, by name, what mmseg's recipe does not use:
      the classifier, the final norm when ``final_norm=False`` and the
      patch-embedding bias when ``patch_bias=False``. ``pos_embed`` is
      interpolated to ``img_size`` (bicubic, as mmseg).

    The arguments not listed below (``img_size``, ``patch_size``,
    ``patch_pad``, ``in_channels``, ``embed_dims``, ``num_layers``,
    ``num_heads``, ``mlp_ratio``, ``out_indices``, ``qkv_bias``,
    ``drop_rate``, ``attn_drop_rate``, ``drop_path_rate``,
    ``with_cls_token``, ``output_cls_token``, ``norm_cfg``, ``act_cfg``,
    ``patch_norm``, ``patch_bias``, ``pre_norm``, ``final_norm``,
    ``interpolate_mode``, ``num_fcs``, ``with_cp``, ``pretrained``,
    ``init_cfg``) are those of mmseg's ``VisionTransformer``, with the
    same defaults.

    Args:
        out_origin (bool): must be False (not supported).
        norm_eval (bool): accepted; a no-op for LayerNorm, as in mmseg.
        frozen_exclude (list[str]): must be ``['all']`` (nothing frozen).
        token_cfg, channel_cfg: as :class:`PrunedVisionTransformer`.

    Examples:
        >>> import torch
        >>> from mmtokenprune.models import PrunedMMSegVisionTransformer
        >>> model = PrunedMMSegVisionTransformer(
        ...     img_size=64, embed_dims=32, num_layers=2, num_heads=2,
        ...     token_cfg=dict(type='ToMe', r=4)).eval()
        >>> model(torch.rand(1, 3, 64, 64))[0].shape
        torch.Size([1, 32, 4, 4])
    """

    def __init__(self,
                 img_size: Union[int, Sequence[int]] = 224,
                 patch_size: int = 16,
                 patch_pad: Union[str, int] = 'corner',
                 in_channels: int = 3,
                 embed_dims: int = 768,
                 num_layers: int = 12,
                 num_heads: int = 12,
                 mlp_ratio: int = 4,
                 out_origin: bool = False,
                 out_indices: Union[int, Sequence[int]] = -1,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 with_cls_token: bool = True,
                 output_cls_token: bool = False,
                 norm_cfg: Dict = dict(type='LN'),
                 act_cfg: Dict = dict(type='GELU'),
                 patch_norm: bool = False,
                 patch_bias: bool = False,
                 pre_norm: bool = False,
                 final_norm: bool = False,
                 interpolate_mode: str = 'bicubic',
                 num_fcs: int = 2,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 frozen_exclude: Sequence[str] = ('all', ),
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[Dict] = None,
                 token_cfg: Optional[Dict] = None,
                 channel_cfg: Optional[Dict] = None):
        if out_origin:
            raise ValueError('`out_origin=True` is not supported by '
                             'PrunedMMSegVisionTransformer; allowed: False.')
        if 'all' not in frozen_exclude:
            raise ValueError(
                f'`frozen_exclude={list(frozen_exclude)}` is not supported '
                "by PrunedMMSegVisionTransformer; allowed: ['all'] "
                '(nothing frozen).')
        if output_cls_token and not with_cls_token:
            raise ValueError('`output_cls_token=True` needs '
                             '`with_cls_token=True` (got False).')
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError('set one of `pretrained` and `init_cfg` '
                                 f'(got {pretrained!r} and {init_cfg}).')
            if not isinstance(pretrained, str):
                raise TypeError('`pretrained` must be a checkpoint path or '
                                f'None, got {type(pretrained).__name__}.')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        img_size = _pair(img_size)
        if any(s % patch_size for s in img_size):
            raise ValueError(
                f'`img_size={img_size}` must be a multiple of `patch_size='
                f'{patch_size}` (mmseg sizes `pos_embed` by the floor, '
                'mmpretrain by the ceiling of their ratio).')
        super().__init__(
            arch=dict(
                embed_dims=embed_dims,
                num_layers=num_layers,
                num_heads=num_heads,
                feedforward_channels=int(mlp_ratio * embed_dims)),
            img_size=img_size,
            patch_size=patch_size,
            in_channels=in_channels,
            out_indices=_out_indices(out_indices, num_layers),
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            qkv_bias=qkv_bias,
            norm_cfg=norm_cfg,
            final_norm=final_norm,
            out_type='featmap',
            with_cls_token=with_cls_token,
            interpolate_mode=interpolate_mode,
            patch_cfg=dict(
                padding=patch_pad,
                bias=patch_bias,
                norm_cfg=norm_cfg if patch_norm else None),
            layer_cfgs=dict(
                attn_drop_rate=attn_drop_rate,
                act_cfg=act_cfg,
                num_fcs=num_fcs),
            pre_norm=pre_norm,
            init_cfg=init_cfg,
            token_cfg=token_cfg,
            channel_cfg=channel_cfg,
            with_cp=with_cp)
        self.output_cls_token = output_cls_token
        self.norm_eval = norm_eval

    # ------------------------------------------------------------ forward
    def position_embedding(self, hw: Tuple[int, int]) -> Tensor:
        """Modifications to upstream: interpolated only when the number of
        patches differs from the one of ``img_size`` (mmseg's rule: a
        32 x 32 table serves a 16 x 64 grid unchanged)."""
        H, W = self.patch_resolution
        if hw[0] * hw[1] == H * W:
            return self.pos_embed
        return super().position_embedding(hw)

    def _format_output(self, x: Tensor, hw: Tuple[int, int]):
        """Upstream's feature map; ``[map, cls token]`` with
        ``output_cls_token`` (as mmseg)."""
        out = super()._format_output(x, hw)
        return [out, x[:, 0]] if self.output_cls_token else out

    # ------------------------------------------------------------ loading
    @staticmethod
    def to_own_keys(state_dict: Dict) -> Tuple[Dict, str]:
        """``state_dict`` (no prefix) in this backbone's names, and which
        names it had: ``'mmseg'``, ``'timm'`` or ``'mmpretrain'``."""
        if is_mmseg_vit(state_dict):
            return mmseg_vit_state_dict(state_dict), 'mmseg'
        if is_timm_vit(state_dict):
            return timm_vit_state_dict(state_dict), 'timm'
        return dict(state_dict), 'mmpretrain'

    def compression_keys(self) -> Set[str]:
        """Keys of the learned reducer parts and CDCP gates: new
        parameters, absent from checkpoints of the uncompressed model."""
        keys = set()
        for name, module in self.named_modules():
            if isinstance(module, ChannelGate) or name.endswith('.reducer'):
                keys.update(f'{name}.{k}' for k in module.state_dict())
        return keys

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Convert this backbone's keys (see the class docstring), check
        them, then load as upstream."""
        mine = [k for k in state_dict if k.startswith(prefix)]
        given, source = self.to_own_keys(
            {k[len(prefix):]: state_dict.pop(k) for k in mine})
        if not self.with_cls_token:
            given.pop('cls_token', None)  # mmseg keeps an unused one
        self._check_keys(given, source, prefix)
        state_dict.update({prefix + k: v for k, v in given.items()})
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _check_keys(self, given: Dict, source: str, prefix: str) -> None:
        """Raise unless ``given`` holds exactly this backbone's keys, with
        their shapes (``pos_embed`` is interpolated afterwards); only
        :meth:`compression_keys` may be missing."""
        own = self.state_dict(keep_vars=True)
        optional = self.compression_keys()
        missing = sorted(set(own) - set(given) - optional)
        unexpected = sorted(set(given) - set(own))
        shapes = sorted(
            f'{k}: {tuple(given[k].shape)} vs {tuple(own[k].shape)}'
            for k in set(given) & set(own) if k != 'pos_embed'
            and tuple(given[k].shape) != tuple(own[k].shape))
        if missing or unexpected or shapes:
            raise RuntimeError(
                f'{type(self).__name__} (prefix {prefix!r}) does not match '
                f'the checkpoint ({source} keys): missing keys {missing}, '
                f'unexpected keys {unexpected}, shape mismatches {shapes}. '
                'Check that the config is the one the checkpoint was '
                'trained with (embed_dims, num_layers, final_norm, '
                'patch_bias, ...).')
        left = sorted(optional - set(given))
        if left:
            print_log(
                f'{type(self).__name__}: {len(left)} reducer/gate keys not '
                f'in the checkpoint keep their initial values: {left}',
                logger='current')

    def init_weights(self) -> None:
        """Upstream's initialisation; then, for a ``Pretrained``
        ``init_cfg``, the checkpoint read as the class docstring says."""
        cfg = self.init_cfg
        if not (isinstance(cfg, dict) and cfg.get('type') == 'Pretrained'):
            super().init_weights()
            return
        self.init_cfg = None  # random init of what the file lacks
        try:
            super().init_weights()
        finally:
            self.init_cfg = cfg
        state_dict, source = self.to_own_keys(
            _read_state_dict(cfg['checkpoint'], cfg.get('prefix')))
        unused = [
            k for k in state_dict
            if k.startswith('head.') or (
                k.startswith('ln1.') and not self.final_norm) or (
                    k == 'patch_embed.projection.bias'
                    and self.patch_embed.projection.bias is None)
        ]
        for k in unused:
            del state_dict[k]
        self.load_state_dict(state_dict, strict=True)
        print_log(
            f'{type(self).__name__}: loaded {cfg["checkpoint"]} ({source} '
            f'keys); left out as mmseg\'s recipe does: {unused}',
            logger='current')


def _read_state_dict(path: str, prefix: Optional[str] = None) -> Dict:
    """The state dict of an mmengine/mmseg (``state_dict``), DeiT
    (``model``) or plain checkpoint file, ``module.`` removed, restricted
    to the keys under ``prefix`` (stripped) if given."""
    ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    for key in ('state_dict', 'model'):
        if isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
            break
    state_dict = {re.sub(r'^module\.', '', k): v for k, v in ckpt.items()}
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        state_dict = {
            k[len(prefix):]: v
            for k, v in state_dict.items() if k.startswith(prefix)
        }
        if not state_dict:
            raise KeyError(f'no key of {path!r} starts with the init_cfg '
                           f'prefix {prefix!r}.')
    return state_dict
