"""tools/init_cdcp_gates.py: gates from magnitudes on a trained model."""

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from test_tools import PLAIN_BACKBONE as BACKBONE
from test_tools import load_tool, tiny_seg_config


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
    tool = load_tool('init_cdcp_gates')
    tool.main([str(gated), str(ckpt), '--out', str(out)])
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
        tool.main([str(plain), str(ckpt), '--out', str(out)])
