"""The plugin's mirror of an mmseg zoo config against mmseg's own model, on
the same checkpoint: keys mapped and the largest logits difference."""
import copy
import os.path as osp
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config, ConfigDict

from ..utils.config import build_model
from ..utils.mmseg_keys import mmseg_vit_key

__all__ = ['mmseg_twin', 'random_zoo_checkpoint', 'compare_with_mmseg']

_PLUGIN_ONLY = ('token_cfg', 'channel_cfg')


def mmseg_twin(cfg: Config) -> Config:
    """``cfg`` (a ``PrunedMMSegVisionTransformer`` config) with mmseg's own
    ``VisionTransformer`` as backbone: the arguments are the same."""
    twin = copy.deepcopy(cfg)
    backbone = twin.model.backbone
    if backbone.type != 'mmtokenprune.PrunedMMSegVisionTransformer':
        raise ValueError(
            "`model.backbone.type` must be 'mmtokenprune."
            f"PrunedMMSegVisionTransformer' (got {backbone.type!r}).")
    backbone.type = 'mmseg.VisionTransformer'
    for key in _PLUGIN_ONLY:
        backbone.pop(key, None)
    return twin


def random_zoo_checkpoint(cfg: Config, path: str, seed: int = 0) -> None:
    """mmseg's model of ``cfg`` with random weights (its own init plus
    noise on every parameter and BN statistic, so no layer is trivial),
    saved as a zoo checkpoint (``state_dict``, ``meta``)."""
    model = build_model(mmseg_twin(cfg), seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if not value.is_floating_point():
                continue
            noise = torch.randn(value.shape, generator=gen) * 0.02
            if key.endswith('running_var'):
                value.copy_(1 + noise.abs() * 10)
            else:
                value.add_(noise)
    torch.save(dict(state_dict=model.state_dict(), meta=dict(random=True)),
               path)


def _logits(model, x: torch.Tensor, test_cfg: Dict) -> torch.Tensor:
    model.test_cfg = ConfigDict(test_cfg)
    shape = tuple(x.shape[2:])
    metas = [dict(img_shape=shape, ori_shape=shape, pad_shape=shape,
                  padding_size=[0, 0, 0, 0])] * x.shape[0]
    with torch.no_grad():
        return model.inference(x, metas)


def compare_with_mmseg(cfg: Config,
                       checkpoint: Optional[str] = None,
                       cases: Sequence[Tuple[int, int, Dict]] = (),
                       seed: int = 0) -> Dict:
    """Load ``checkpoint`` into the plugin's model of ``cfg`` and into
    mmseg's (:func:`mmseg_twin`), both with mmengine's non-strict loader
    (as ``load_from``), and compare their logits.

    Args:
        cfg (Config): the plugin's mirror config (reducers off: the
            backbone's ``token_cfg``/``channel_cfg`` are ignored).
        checkpoint (str, optional): a zoo checkpoint; None: random weights
            (:func:`random_zoo_checkpoint`).
        cases (Sequence): ``(H, W, test_cfg)`` inputs; defaults to
            ``img_size`` with ``mode='whole'``.
        seed (int): seed of the random weights and inputs.

    Returns:
        dict: ``backbone_keys`` (in the checkpoint), ``renamed`` (mmseg
        names converted), and per case ``max_abs``, ``scale`` (max |mmseg
        logit|) and ``rel`` (their ratio).
    """
    from mmengine.runner import load_checkpoint
    from mmengine.runner.checkpoint import CheckpointLoader
    cfg = copy.deepcopy(cfg)
    cfg.model.backbone.pop('token_cfg', None)
    cfg.model.backbone.pop('channel_cfg', None)
    with tempfile.TemporaryDirectory() as tmp:
        if checkpoint is None:
            checkpoint = osp.join(tmp, 'random_zoo.pth')
            random_zoo_checkpoint(cfg, checkpoint, seed)
        state = CheckpointLoader.load_checkpoint(
            checkpoint, map_location='cpu')
        state = state.get('state_dict', state)
        keys = [k[len('backbone.'):] for k in state
                if k.startswith('backbone.')]
        ours = build_model(cfg, seed=seed)
        theirs = build_model(mmseg_twin(cfg), seed=seed + 1)
        for model in (ours, theirs):
            load_checkpoint(model, checkpoint, map_location='cpu',
                            strict=False)
    if not cases:
        H, W = cfg.model.backbone.img_size
        cases = [(H, W, dict(mode='whole'))]
    gen = torch.Generator().manual_seed(seed)
    results: List[Dict] = []
    for H, W, test_cfg in cases:
        x = torch.randn(1, 3, H, W, generator=gen)
        a, b = _logits(ours, x, test_cfg), _logits(theirs, x, test_cfg)
        max_abs = float((a - b).abs().max())
        scale = float(b.abs().max())
        results.append(dict(size=(H, W), mode=test_cfg['mode'],
                            max_abs=max_abs, scale=scale,
                            rel=max_abs / scale))
    return dict(
        backbone_keys=len(keys),
        renamed=sum(mmseg_vit_key(k) != k for k in keys),
        cases=results)
