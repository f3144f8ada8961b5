"""Write a gated model's exported spec and sliced weights to disk."""
import os
import os.path as osp
from typing import Tuple

import torch
from mmengine.runner import load_checkpoint

from ...ops import PruneSpec
from ...utils.checkpoint_file import check_checkpoint_file
from ...utils.config import build_model, load_config
from .export import export_model

__all__ = ['export_checkpoint']


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
    os.makedirs(out_dir, exist_ok=True)
    spec.dump(osp.join(out_dir, 'prune_spec.json'))
    path = osp.join(out_dir, 'pruned.pth')
    meta = dict(prune_spec=spec.to_dict(), source=str(checkpoint),
                config=str(config))
    torch.save(dict(state_dict=state, meta=meta), path)
    return spec, path
