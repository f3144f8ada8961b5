"""Helpers of the mmseg-zoo tests: mmseg's own zoo configs and the plugin's
mirrors of them, shrunk alike; mmseg's model with random weights saved as
a zoo-format checkpoint."""
import os.path as osp

import mmseg
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope

import mmtokenprune.models  # noqa: F401  (registers the backbones)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
MMSEG_CONFIGS = osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs')
NUM_CLASSES = 5
CROP = (64, 64)

# plugin mirror (configs/mmseg-zoo/NAME) -> mmseg's zoo config
ZOO = {
    'vit_deit-s16_upernet_8xb2-80k_ade20k-512x512.py':
    'vit/vit_deit-s16_upernet_8xb2-80k_ade20k-512x512.py',
    'vit_vit-b16_mln_upernet_8xb2-80k_ade20k-512x512.py':
    'vit/vit_vit-b16_mln_upernet_8xb2-80k_ade20k-512x512.py',
    'segmenter_vit-s_mask_8xb1-160k_ade20k-512x512.py':
    'segmenter/segmenter_vit-s_mask_8xb1-160k_ade20k-512x512.py',
}


def shrink_options(name: str) -> dict:
    """``--cfg-options`` that shrink zoo config ``name`` (either side) to a
    32-wide, 4-layer ViT on 64x64 crops with 5 classes."""
    opts = {
        'model.data_preprocessor.size': CROP,
        'model.backbone.img_size': CROP,
        'model.backbone.embed_dims': 32,
        'model.backbone.num_layers': 4,
        'model.backbone.num_heads': 2,
        'model.decode_head.num_classes': NUM_CLASSES,
    }
    if name.startswith('segmenter'):
        opts.update({
            'model.decode_head.in_channels': 32,
            'model.decode_head.channels': 32,
            'model.decode_head.embed_dims': 32,
            'model.decode_head.num_heads': 2,
            'model.decode_head.num_layers': 1,
        })
        return opts
    opts.update({
        'model.backbone.out_indices': (0, 1, 2, 3),
        'model.decode_head.in_channels': [32] * 4,
        'model.decode_head.channels': 16,
        'model.auxiliary_head.in_channels': 32,
        'model.auxiliary_head.channels': 8,
        'model.auxiliary_head.num_classes': NUM_CLASSES,
    })
    if 'mln' in name:
        opts.update({
            'model.neck.in_channels': [32] * 4,
            'model.neck.out_channels': 32
        })
    return opts


def zoo_config(name: str, plugin: bool, **options) -> Config:
    """The plugin's mirror (``plugin=True``) or mmseg's zoo config of
    ``name``, shrunk, with ``options`` merged in."""
    path = (osp.join(REPO, 'configs', 'mmseg-zoo', name)
            if plugin else osp.join(MMSEG_CONFIGS, ZOO[name]))
    cfg = Config.fromfile(path)
    cfg.merge_from_dict({**shrink_options(name), **options})
    return cfg


def build(cfg: Config) -> torch.nn.Module:
    """``cfg.model`` built on CPU (SyncBN as BN), no weights loaded."""
    init_default_scope('mmseg')
    model_cfg = cfg.model.copy()
    model_cfg.pretrained = None
    model_cfg.backbone.init_cfg = None
    return revert_sync_batchnorm(MODELS.build(model_cfg)).eval()


def save_zoo_checkpoint(name: str, path: str, seed: int = 0) -> dict:
    """mmseg's model of zoo config ``name`` (shrunk) with random weights,
    saved as the zoo saves them (``state_dict`` and ``meta``); returns the
    state dict."""
    torch.manual_seed(seed)
    model = build(zoo_config(name, plugin=False))
    state = model.state_dict()
    for key, value in state.items():
        if value.is_floating_point():
            noise = torch.randn_like(value) * 0.2
            # norms' scales and BN variances near 1, the rest around 0
            value.copy_(noise + 1 if key.endswith(
                ('ln1.weight', 'ln2.weight', 'norm.weight', 'running_var',
                 'bn.weight')) else noise)
    torch.save(dict(state_dict=state, meta=dict(mmseg_version='1.2.2')),
               path)
    return state
