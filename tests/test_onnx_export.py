"""ONNX export with fixed per-layer token counts, checked with onnxruntime
against PyTorch (atol 1e-4): every ViT and Swin reducer, the CDCP-exported
model, and tools/deploy/export_onnx.py on a tiny segmentor."""
import copy

import numpy as np
import onnx
import pytest
import torch
from test_compile import REDUCERS, SWIN_REDUCERS, _swin, _vit
from test_reducer_contract import SWIN
from test_tools import BACKBONE, load_tool, tiny_seg_config

from mmtokenprune.deploy import ATOL, check_onnx, export_onnx
from mmtokenprune.models import PrunedSwinTransformer
from mmtokenprune.models.cdcp import export_checkpoint, init_gates_by_magnitude
from mmtokenprune.utils.config import build_model, load_config


def _inputs(n=2, shape=(2, 3, 64, 48)):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(*shape, generator=g) for _ in range(n)]


def _onnx_params(data: bytes) -> int:
    graph = onnx.load_from_string(data).graph
    return sum(int(np.prod(t.dims)) for t in graph.initializer)


@pytest.mark.parametrize('token_cfg', REDUCERS,
                         ids=lambda c: c['type'] if c else 'baseline')
def test_vit_reducers_match_pytorch_in_onnxruntime(token_cfg):
    model = _vit(token_cfg=token_cfg)
    x = _inputs()
    report = check_onnx(model, export_onnx(model, x[0]), x)
    assert report['ok'], report
    assert report['max_abs_diff'] <= ATOL == 1e-4
    assert report['outputs'] == [(2, 32, 4, 3)] * 2


def test_swin_without_reducer_matches_pytorch():
    torch.manual_seed(0)
    model = PrunedSwinTransformer(**copy.deepcopy(SWIN)).eval()
    x = _inputs()
    assert check_onnx(model, export_onnx(model, x[0]), x)['ok']


@pytest.mark.parametrize('token_cfg', SWIN_REDUCERS, ids=lambda c: c['type'])
def test_swin_reducers_match_pytorch_in_onnxruntime(token_cfg):
    """Merged windows with shift regions and padding (the second stage):
    rows that several tokens add into (merging, squeezing) and the
    labelled scores must survive export."""
    model = _swin(token_cfg=token_cfg)
    x = _inputs()
    report = check_onnx(model, export_onnx(model, x[0]), x)
    assert report['ok'], report
    assert report['max_abs_diff'] <= ATOL
    assert report['outputs'] == [(2, 16, 16, 12), (2, 32, 8, 6)]


def test_a_wrong_export_is_caught():
    """The check compares values: a model exported from other weights
    fails it."""
    model = _vit(token_cfg=dict(type='ATME', r=3))
    x = _inputs()
    data = export_onnx(model, x[0])
    with torch.no_grad():
        model.layers[1].ffn.layers[1].weight.mul_(1.5)
    report = check_onnx(model, data, x)
    assert not report['ok'] and report['max_abs_diff'] > ATOL


def _gated_checkpoint(tmp_path):
    """A tiny segmentor config (ATME + CDCP gates) and a checkpoint whose
    gates keep about half of the encoder FLOPs."""
    path = tmp_path / 'tiny.py'
    path.write_text(tiny_seg_config(str(tmp_path / 'data'), BACKBONE))
    model = build_model(load_config(str(path)))
    init_gates_by_magnitude(model.backbone, 0.5)
    ckpt = tmp_path / 'gated.pth'
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    return str(path), str(ckpt), model


@pytest.mark.parametrize('part', ['model', 'backbone'])
def test_tool_exports_the_smaller_cdcp_model(tmp_path, part):
    config, ckpt, gated = _gated_checkpoint(tmp_path)
    out = tmp_path / f'{part}.onnx'
    tool = load_tool('deploy/export_onnx')
    report = tool.main([
        config, ckpt, '--part', part, '--shape', '64', '48', '--out',
        str(out)
    ])
    assert report['ok'] and report['max_abs_diff'] <= 1e-4
    # the sliced encoder: the gates keep about half of its FLOPs
    removed = 0.2 * sum(p.numel() for p in gated.backbone.parameters())
    module = gated if part == 'model' else gated.backbone
    gated_params = sum(p.numel() for p in module.parameters())
    assert _onnx_params(out.read_bytes()) < gated_params - removed
    if part == 'model':  # the segmentor's logits, 11 classes at 1/16
        assert report['outputs'] == [(1, 11, 4, 3)]


def test_tool_builds_from_an_exported_spec(tmp_path):
    config, ckpt, gated = _gated_checkpoint(tmp_path)
    spec, pruned = export_checkpoint(config, ckpt, str(tmp_path / 'exp'))
    tool = load_tool('deploy/export_onnx')
    report = tool.main([
        config, pruned, '--spec',
        str(tmp_path / 'exp' / 'prune_spec.json'), '--shape', '64', '64',
        '--out',
        str(tmp_path / 'spec.onnx')
    ])
    assert report['ok']
    # the same smaller model as slicing the gated checkpoint here
    sliced = tool.main([
        config, ckpt, '--shape', '64', '64', '--out',
        str(tmp_path / 'sliced.onnx')
    ])
    assert _onnx_params((tmp_path / 'spec.onnx').read_bytes()) == \
        _onnx_params((tmp_path / 'sliced.onnx').read_bytes())
    assert sliced['ok']
