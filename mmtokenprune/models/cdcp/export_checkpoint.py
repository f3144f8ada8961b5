"""Write a gated model's exported spec and sliced weights to disk."""
import os
import os.path as osp
from typing import Dict, Tuple

import torch
from mmengine.runner import load_checkpoint

from ...ops import PruneSpec
from ...utils.checkpoint_file import check_checkpoint_file
from ...utils.config import build_model, load_config
from .export import export_model

__all__ = ['export_checkpoint', 'save_export']


def export_checkpoint(config: str, checkpoint: str,
                      out_dir: str) -> Tuple[PruneSpec, str]:
    """Build ``config``, load ``checkpoint``, slice the backbone's gates.

    Raises:
        FileNotFoundError, ValueError, SyntaxError: a missing or unreadable
            config or checkpoint, naming the file and the argument.

    Returns:
        tuple[PruneSpec, str]: the spec and the path of ``pruned.pth``.
    """
    cfg = load_config(config, key='the `config` argument')
    check_checkpoint_file(checkpoint, 'the `checkpoint` argument')
    model = build_model(cfg)
    load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    spec, state = export_model(model)
    path = save_export(spec, state, out_dir, source=str(checkpoint),
                       config=str(config))
    return spec, path


def save_export(spec: PruneSpec, state: Dict, out_dir: str,
                **meta) -> str:
    """Write ``out_dir/prune_spec.json`` and ``out_dir/pruned.pth``
    (``{'state_dict': state, 'meta': {'prune_spec': ..., **meta}}``; the
    weights file is replaced at once, never left half-written).

    Returns:
        str: the path of ``pruned.pth``.
    """
    os.makedirs(out_dir, exist_ok=True)
    spec.dump(osp.join(out_dir, 'prune_spec.json'))
    path = osp.join(out_dir, 'pruned.pth')
    torch.save(dict(state_dict=state,
                    meta=dict(prune_spec=spec.to_dict(), **meta)),
               path + '.tmp')
    os.replace(path + '.tmp', path)
    return path
