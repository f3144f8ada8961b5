"""The model to deploy, from a config, a checkpoint and an optional spec.

A CDCP model is deployed as the smaller dense model: either built from an
exported spec (``tools/export_pruned.py``'s ``prune_spec.json``, with its
``pruned.pth``), or, given a gated checkpoint, sliced here with
:func:`~mmtokenprune.models.cdcp.export_model`.
"""
import copy
from typing import Dict, Optional, Tuple

import torch.nn as nn
from mmengine.runner import load_checkpoint

from ..utils.checkpoint_file import check_checkpoint_file
from ..utils.config import build_model, load_config

__all__ = ['build_deploy_model']


def build_deploy_model(config: str,
                       checkpoint: str,
                       spec: Optional[str] = None,
                       options: Optional[Dict] = None
                       ) -> Tuple[nn.Module, str]:
    """Build the model to deploy and load its weights (strict).

    Args:
        config (str): the config file.
        checkpoint (str): its weights; with ``spec``, the exported
            ``pruned.pth`` of that spec.
        spec (str, optional): an exported prune spec (JSON); sets
            ``model.backbone.channel_cfg=dict(spec=spec)``. Defaults to
            None.
        options (dict, optional): config overrides. Defaults to None.

    Returns:
        tuple[nn.Module, str]: the model (eval) and what was built.
    """
    cfg = load_config(config, options, key='the CONFIG argument')
    check_checkpoint_file(checkpoint, 'the CKPT argument')
    if spec is not None:
        cfg.model.backbone.channel_cfg = dict(spec=spec)
    model = build_model(cfg)
    load_checkpoint(model, checkpoint, map_location='cpu', strict=True,
                    logger='silent')
    channel_cfg = getattr(model.backbone, 'channel_cfg', None)
    if channel_cfg is not None and channel_cfg.gated:
        from ..models.cdcp import export_model
        spec_obj, state = export_model(model)
        cfg = copy.deepcopy(cfg)
        cfg.model.backbone.channel_cfg = dict(spec=spec_obj.to_dict())
        model = build_model(cfg)
        model.load_state_dict(state, strict=True)
        return model.eval(), 'CDCP gates sliced: the smaller dense model'
    if spec is not None:
        return model, f'CDCP spec {spec}: the smaller dense model'
    return model, 'as configured'
