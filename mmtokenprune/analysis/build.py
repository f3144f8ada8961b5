"""Models for measuring: a CDCP-gated model exported to the smaller dense
one, and the check that a built backbone runs the token counts and widths
a budget chose. Configs are read and built by
:mod:`mmtokenprune.utils.config` (no weights are needed to count FLOPs or
time a forward)."""
import copy
from typing import Dict, Optional, Sequence, Tuple

import torch.nn as nn
from mmengine.config import Config

from ..utils.config import build_model

__all__ = ['export_channel_pruned', 'check_built']


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


def check_built(backbone: nn.Module, name: str, removed: Sequence[int],
                widths: Sequence[Tuple[int, int, int]],
                reducer: Optional[str]) -> None:
    """The built ViT backbone runs, at its input size, the token counts of
    ``removed`` (tokens removed per layer by ``reducer``) and the per-layer
    ``(qk, v, ffn)`` ``widths``.

    Raises:
        RuntimeError: naming ``name`` and what differs.
    """
    from ..budgets import schedule_counts
    counts = schedule_counts(
        int(backbone.patch_resolution[0] * backbone.patch_resolution[1]),
        backbone.num_extra_tokens, list(removed), reducer)
    want = [(n['attn'], n['attn'], n['mlp']) for n in counts]
    built = [(b.attn.qk_dims, b.attn.v_dims,
              b.ffn.layers[0][0].out_features) for b in backbone.layers]
    if backbone.token_counts() != want or built != [
            tuple(w) for w in widths]:
        raise RuntimeError(
            f'{name}: the built backbone has token counts '
            f'{backbone.token_counts()} and widths {built}; the schedule '
            f'is {want} and {[tuple(w) for w in widths]}.')
