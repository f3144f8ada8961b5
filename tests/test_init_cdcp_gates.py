"""tools/init_cdcp_gates.py: gates from magnitudes on a trained model."""
import importlib.util
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from test_tools import tiny_seg_config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
BACKBONE = dict(
    type='mmtokenprune.PrunedVisionTransformer',
    arch=dict(
        embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
    img_size=64,
    patch_size=16,
    out_type='featmap',
    out_indices=(1, ),
    init_cfg=None)


def load_tool():
    path = osp.join(REPO, 'tools', 'init_cdcp_gates.py')
    spec = importlib.util.spec_from_file_location('_tools_init', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gates_hit_the_target_and_weights_are_kept(tmp_path):
    plain, gated = tmp_path / 'plain.py', tmp_path / 'gated.py'
    plain.write_text(tiny_seg_config(str(tmp_path), BACKBONE))
    gated.write_text(
        tiny_seg_config(
            str(tmp_path),
            dict(BACKBONE, channel_cfg=dict(type='CDCP', flops_target=0.6))))
    init_default_scope('mmseg')
    model = MODELS.build(Config.fromfile(str(plain)).model)
    ckpt = tmp_path / 'plain.pth'
    torch.save(dict(state_dict=model.state_dict(), meta={}), ckpt)
    out = tmp_path / 'init.pth'
    load_tool().main([str(gated), str(ckpt), '--out', str(out)])
    saved = torch.load(out)
    assert abs(saved['meta']['flops_ratio'] - 0.6) < 0.1
    for k, v in model.state_dict().items():
        torch.testing.assert_close(saved['state_dict'][k], v)
    logits = [
        v for k, v in saved['state_dict'].items() if k.endswith('.logits')
    ]
    assert logits and all(
        set(v.abs().unique().tolist()) == {3.0} for v in logits)
    with pytest.raises(ValueError, match='channel_cfg.type'):
        load_tool().main([str(plain), str(ckpt), '--out', str(out)])
