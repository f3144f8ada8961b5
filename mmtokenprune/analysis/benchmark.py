"""The benchmark's settings: named models built from configs, with notes
on what was built.

Used by ``tools/analysis/benchmark.py`` and ``tools/demo.py``, which
measure the settings with :func:`~mmtokenprune.analysis.measure.measure`
and tabulate them with :mod:`~mmtokenprune.analysis.benchmark_report`. A
*setting* is an mm config (plus overrides) built into a segmentor with a
randomly initialised backbone (see :mod:`~mmtokenprune.analysis.build`). A
backbone with CDCP gates is measured as the smaller dense model it exports
to, after :func:`~mmtokenprune.models.cdcp.init_gates_by_magnitude`
has set its gates (no trained gates exist offline): that model is where the
speed comes from.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Union

import torch.nn as nn
from mmengine.config import Config

from ..utils.config import build_model, load_config
from .build import export_channel_pruned

__all__ = ['Setting', 'build_setting']


@dataclass
class Setting:
    """One built model to measure.

    Attributes:
        name (str): row label.
        model (nn.Module): the segmentor (or classifier), eval mode; the
            measured ``backbone`` is ``model.backbone``.
        notes (list[str]): what was built (token reducer, CDCP export).
        stats (dict): what :func:`~mmtokenprune.analysis.measure.measure`
            returned for it.
    """
    name: str
    model: nn.Module
    notes: List[str] = field(default_factory=list)
    stats: Dict = field(default_factory=dict)


def build_setting(name: str,
                  source: Union[str, Config],
                  options: Optional[Dict] = None) -> Setting:
    """Build one setting from a config file or loaded config (see
    :func:`~mmtokenprune.utils.config.load_config`); a CDCP-gated
    backbone is exported (see the module docstring).

    Args:
        name (str): row label.
        source (str | Config): config file or loaded config.
        options (dict, optional): overrides. Defaults to None.

    Returns:
        Setting: the built setting, ``stats`` empty.
    """
    cfg = load_config(source, options)
    model = build_model(cfg)
    backbone = model.backbone
    notes = []
    token_cfg = getattr(backbone, 'token_cfg', None)
    if token_cfg is not None and token_cfg.enabled:
        notes.append(token_cfg.describe())
    channel_cfg = getattr(backbone, 'channel_cfg', None)
    if channel_cfg is not None and channel_cfg.gated:
        target = channel_cfg.flops_target
        model, info = export_channel_pruned(model, cfg, target)
        notes.append(
            f'CDCP gates from weight magnitudes (training-free), exported: '
            f'encoder FLOPs kept {info["flops_ratio"]:.3f} (target '
            f'{target})')
    return Setting(name=name, model=model, notes=notes)
