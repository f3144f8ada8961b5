"""Configs to models for measuring: load a config, build a model with random
weights, export a CDCP-gated model to the smaller dense one.

No weights are needed to count FLOPs or time a forward, so the backbone's
``init_cfg`` is dropped (nothing is downloaded) and weights are initialised
randomly, seeded.
"""
import copy
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.config import Config

from ..utils.launch import propagate_data_root

__all__ = ['load_config', 'build_model', 'export_channel_pruned']


def load_config(source: Union[str, Config],
                options: Optional[Dict] = None) -> Config:
    """A config with ``options`` (``{'a.b.c': value}``) merged in and the
    backbone's ``init_cfg`` removed (no checkpoint is downloaded).

    Args:
        source (str | Config): a config file, or a loaded config (copied,
            so settings that share a file parse it once).
        options (dict, optional): overrides, as ``--cfg-options``; a
            top-level ``data_root`` is copied into every dataloader's
            dataset (:func:`~mmtokenprune.utils.launch.propagate_data_root`).
            Defaults to None.

    Returns:
        Config: the new config (``source`` is not changed).
    """
    if isinstance(source, Config):
        cfg = copy.deepcopy(source)
    else:
        cfg = Config.fromfile(source)
    if options:
        cfg.merge_from_dict(options)
        if 'data_root' in options:
            propagate_data_root(cfg, options['data_root'])
    cfg.model.backbone.init_cfg = None
    return cfg


def build_model(cfg: Config, seed: int = 0) -> nn.Module:
    """Build ``cfg.model`` under its default scope, initialise its weights
    randomly (seeded), make SyncBN plain BN (CPU) and switch to eval.

    Args:
        cfg (Config): a config with ``model`` (see :func:`load_config`).
        seed (int): torch seed of the random weights. Defaults to 0.

    Returns:
        nn.Module: the model, in eval mode.
    """
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    torch.manual_seed(seed)
    model = MODELS.build(copy.deepcopy(cfg.model))
    model.init_weights()
    model = revert_sync_batchnorm(model)
    model.eval()  # mmpretrain's ViT.train() returns None: do not chain
    return model


def export_channel_pruned(model: nn.Module, cfg: Config,
                          flops_target: float) -> Tuple[nn.Module, Dict]:
    """Gates from weight magnitudes, then the exported smaller model.

    Sets ``model.backbone``'s CDCP gates with
    :func:`~mmtokenprune.models.cdcp.init_gates_by_magnitude`, exports
    the prune spec and state_dict, builds the same config with
    ``channel_cfg=dict(spec=...)`` and loads the backbone's sliced weights
    and the rest of ``model``'s weights with ``strict=True``.

    Args:
        model (nn.Module): a model with a CDCP-gated backbone, built from
            ``cfg``.
        cfg (Config): its config.
        flops_target (float): fraction of the encoder FLOPs to keep.

    Returns:
        tuple[nn.Module, dict]: the exported model (eval) and
        ``init_gates_by_magnitude``'s report (``flops_ratio``, ``kept``).
    """
    from ..models.cdcp import init_gates_by_magnitude
    info = init_gates_by_magnitude(model.backbone, flops_target)
    spec, backbone_state = model.backbone.export_pruned()
    cfg = copy.deepcopy(cfg)
    cfg.model.backbone.channel_cfg = dict(spec=spec.to_dict())
    exported = build_model(cfg)
    state = {
        k: v
        for k, v in model.state_dict().items() if not k.startswith('backbone.')
    }
    state.update({f'backbone.{k}': v for k, v in backbone_state.items()})
    exported.load_state_dict(state, strict=True)
    return exported, info
