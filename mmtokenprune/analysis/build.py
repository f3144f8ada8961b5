"""Models for measuring: a CDCP-gated model exported to the smaller dense
one. Configs are read and built by :mod:`mmtokenprune.utils.config` (no
weights are needed to count FLOPs or time a forward)."""
import copy
from typing import Dict, Tuple

import torch.nn as nn
from mmengine.config import Config

from ..utils.config import build_model

__all__ = ['export_channel_pruned']


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
    from ..models.cdcp import export_model, init_gates_by_magnitude
    info = init_gates_by_magnitude(model.backbone, flops_target)
    spec, state = export_model(model)
    cfg = copy.deepcopy(cfg)
    cfg.model.backbone.channel_cfg = dict(spec=spec.to_dict())
    exported = build_model(cfg)
    exported.load_state_dict(state, strict=True)
    return exported, info
