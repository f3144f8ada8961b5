"""A trained model compressed as a candidate says, with its own weights.

:class:`CandidateBuilder` reads the checkpoint once. A candidate with full
widths is the config with its ``token_cfg``, loaded strictly. One with cut
widths is built gated (``channel_cfg=dict(type='CDCP')``), its gates closed
to the candidate's widths by weight magnitude
(:func:`~mmtokenprune.models.cdcp.init_gates_to_widths`), and exported
(:func:`~mmtokenprune.models.cdcp.export_model`) to the smaller dense model
that is then built from the spec and loaded strictly: the model scored is
the model timed and shipped.
"""
import copy
import os.path as osp
import re
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config

from ..budgets import Candidate
from ..ops import PruneSpec
from ..utils.config import build_model
from .build import check_built

__all__ = ['CandidateBuilder', 'candidate_config', 'save_candidate', 'slug']


def candidate_config(cfg: Config, candidate: Optional[Candidate],
                     spec: Optional[PruneSpec] = None) -> Config:
    """``cfg`` with the candidate's ``token_cfg`` (and the spec's widths);
    None gives the baseline (reducers and pruning off)."""
    cfg = copy.deepcopy(cfg)
    backbone = cfg.model.backbone
    backbone.token_cfg = None if candidate is None else candidate.token_cfg()
    backbone.channel_cfg = None if spec is None else dict(
        spec=spec.to_dict())
    return cfg


def _check(backbone: nn.Module, c: Candidate) -> None:
    """The built backbone is the candidate at the table's input size."""
    removed = [0] * backbone.num_layers
    for i, r in zip(c.layers, c.r):
        removed[i] = r
    check_built(backbone, c.name, removed, c.widths,
                c.reducer if c.layers else None)


def _state_dict(checkpoint: str) -> Dict[str, torch.Tensor]:
    from mmengine.runner.checkpoint import _load_checkpoint
    ckpt = _load_checkpoint(checkpoint, map_location='cpu')
    state = ckpt.get('state_dict', ckpt)
    return {(k[7:] if k.startswith('module.') else k): v
            for k, v in state.items()}


class CandidateBuilder:
    """Builds candidates of one trained model (see the module docstring).

    Args:
        cfg (Config): the trained model's config.
        checkpoint (str): its weights.
    """

    def __init__(self, cfg: Config, checkpoint: str):
        self.cfg = cfg
        self.checkpoint = checkpoint
        self.state = _state_dict(checkpoint)
        self._exported: Dict[Tuple, Tuple[PruneSpec, Dict]] = {}

    def baseline(self) -> nn.Module:
        """The trained model, reducers and pruning off."""
        return self._load(build_model(candidate_config(self.cfg, None)),
                          self.state)

    def build(self, candidate: Candidate
              ) -> Tuple[nn.Module, Optional[PruneSpec], Optional[Dict]]:
        """The candidate with the trained weights, in eval mode.

        Returns:
            tuple: the model, its prune spec (None at full widths) and the
            state_dict it was loaded from when widths are cut (None
            otherwise: the checkpoint's).
        """
        if not candidate.pruned:
            model = build_model(candidate_config(self.cfg, candidate))
            _check(model.backbone, candidate)
            return self._load(model, self.state), None, None
        spec, state = self.exported(candidate.widths)
        model = build_model(candidate_config(self.cfg, candidate, spec))
        _check(model.backbone, candidate)
        return self._load(model, state), spec, state

    def exported(self, widths) -> Tuple[PruneSpec, Dict]:
        """The prune spec and sliced state_dict of the checkpoint at
        ``widths`` (per layer ``(qk, v, ffn)``), made once per widths."""
        from ..models.cdcp import export_model, init_gates_to_widths
        key = tuple(tuple(w) for w in widths)
        if key not in self._exported:
            gated = self.gated()
            init_gates_to_widths(gated.backbone, key)
            self._exported[key] = export_model(gated)
        return self._exported[key]

    def gated(self) -> nn.Module:
        """The trained model with open CDCP gates (gates not in the
        checkpoint; every other key must match)."""
        cfg = candidate_config(self.cfg, None)
        cfg.model.backbone.channel_cfg = dict(type='CDCP')
        model = build_model(cfg)
        missing, unexpected = model.load_state_dict(self.state, strict=False)
        bad = [k for k in missing if not k.endswith('.logits')]
        bad += list(unexpected)
        if bad:
            raise KeyError(f'{self.checkpoint}: the gated model differs from '
                           f'the checkpoint beyond its gates: {bad[:8]}.')
        return model.eval()

    @staticmethod
    def _load(model: nn.Module, state: Dict) -> nn.Module:
        model.load_state_dict(state, strict=True)
        return model.eval()

    def magnitude_widths(self, flops_target: float):
        """Per-layer ``(qk, v, ffn)`` widths magnitude pruning keeps at
        ``flops_target`` of the encoder FLOPs
        (:func:`~mmtokenprune.models.cdcp.init_gates_by_magnitude`)."""
        from ..models.cdcp import init_gates_by_magnitude
        if flops_target >= 1:
            bb = build_model(candidate_config(self.cfg, None)).backbone
            d = bb.embed_dims // bb.arch_settings['num_heads']
            ffn = bb.arch_settings['feedforward_channels']
            return tuple((d, d, ffn) for _ in range(bb.num_layers))
        gated = self.gated()
        info = init_gates_by_magnitude(gated.backbone, flops_target)
        kept = info['kept']
        return tuple(tuple(kept[3 * i:3 * i + 3])
                     for i in range(len(kept) // 3))


def slug(name: str) -> str:
    """A folder name for a candidate name."""
    return re.sub(r'[^A-Za-z0-9.=-]+', '_', name).strip('_')[:80]


def save_candidate(builder: CandidateBuilder, c: Candidate,
                   out_dir: str):
    """Write a width-cut candidate's ``prune_spec.json`` and
    ``pruned.pth`` under ``out_dir/candidates/<name>/``; returns the spec
    and the weights' path."""
    from ..models.cdcp import save_export
    spec, state = builder.exported(c.widths)
    folder = osp.join(out_dir, 'candidates', slug(c.name))
    path = osp.join(folder, 'pruned.pth')
    if not osp.isfile(path):
        save_export(spec, state, folder, source=builder.checkpoint,
                    widths_target=c.widths_target)
    return spec, path
