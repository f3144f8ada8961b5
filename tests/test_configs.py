"""Every config under configs/ builds its model and runs one forward."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / 'configs').rglob('*.py')
    if '_base_' not in p.parts)


def test_configs_are_found():
    # a glob gone wrong must not make the parametrized test vacuous
    assert len(CONFIGS) >= 7, CONFIGS
    for sub in ('ade20k', 'imagenet', 'camvid'):
        assert any(c.startswith(f'configs/{sub}/') for c in CONFIGS), sub


def _input_size(cfg):
    """A small input the model accepts (forward cost, not accuracy)."""
    if cfg.model.type.endswith('ImageClassifier'):
        return (224, 224)  # Swin-T needs >= 7x7 tokens in its last stage
    return (128, 96)  # not square, not a multiple of a Swin window


@pytest.mark.parametrize('path', CONFIGS)
def test_config_builds_and_runs(path):
    cfg = Config.fromfile(str(ROOT / path))
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    cfg.model.backbone.init_cfg = None  # no weights offline
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.eval()
    x = torch.randn(2, 3, *_input_size(cfg))
    with torch.no_grad():
        out = model(x, mode='tensor')
    if cfg.model.type.endswith('ImageClassifier'):
        assert out.shape == (2, cfg.model.head.num_classes)
    else:
        num_classes = cfg.model.decode_head.num_classes
        assert out.shape[:2] == (2, num_classes)
    assert torch.isfinite(out).all()
    losses = getattr(model.backbone, 'compression_losses', dict)()
    if cfg.model.backbone.get('channel_cfg'):
        assert 'loss_cdcp_budget' in losses
    if getattr(model.backbone, 'channel_cfg', None) and \
            model.backbone.channel_cfg.gated:  # a model adds the budget
        assert model.backbone.loss_owner == cfg.model.type.split('.')[-1]
    # presets are deltas of `model`, not top-level variables that do nothing
    assert not {'token_cfg', 'channel_cfg', 'gate_paramwise'} & set(cfg)


def test_cfg_options_reach_the_reducer():
    cfg = Config.fromfile(
        str(ROOT / 'configs/camvid/atme_deit-t16_fcn_1xb4-4k_camvid-256x256.py'))
    cfg.merge_from_dict({'model.backbone.token_cfg.keep_ratio': 0.5})
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    steps = [s for s in model.backbone.token_cfg.schedule if s is not None]
    assert [s.keep_ratio for s in steps] == [0.5, 0.5]
