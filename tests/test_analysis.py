"""mmtokenprune.analysis, CDCP magnitude init, the benchmark and the demo.

Tiny models only; nothing here is timed (timings are the tools' job).
"""
import csv
import importlib.util
import os
import os.path as osp
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.analysis import FlopAnalyzer
from test_measure import other_thread_count, spy_timer

from mmtokenprune.analysis import (count_flops, draw_merge_regions,
                                   flop_analyzer)
from mmtokenprune.models import PrunedVisionTransformer
from mmtokenprune.models.cdcp import (init_gates_by_magnitude,
                                      magnitude_scores)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
BASELINE_CFG = osp.join(REPO, 'configs', 'ade20k',
                        'deit-s16_upernet_8xb2-80k_ade20k-512x512.py')
C, HEADS, FFN, LAYERS = 64, 2, 128, 4
TINY = dict(
    arch=dict(
        embed_dims=C,
        num_layers=LAYERS,
        num_heads=HEADS,
        feedforward_channels=FFN),
    img_size=64,
    patch_size=16,
    out_type='featmap',
    out_indices=(1, 3))
ATME = dict(type='ATME', keep_ratio=0.8)


def tiny_vit(**kwargs):
    torch.manual_seed(0)
    model = PrunedVisionTransformer(**TINY, **kwargs)
    model.init_weights()
    model.eval()
    return model


class Explicit(nn.Module):
    """Reference attention: explicit ``softmax(q k^T) v`` (matmuls)."""

    def forward(self, q, k, v):
        attn = (q @ k.transpose(-2, -1) * q.shape[-1]**-0.5).softmax(-1)
        return attn @ v


class Fused(nn.Module):

    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


@pytest.mark.parametrize('shape', [(2, 3, 17, 8, 8), (1, 6, 65, 16, 12)])
def test_sdpa_counted_like_explicit_attention(shape):
    B, h, n, dqk, dv = shape
    q, k = torch.randn(B, h, n, dqk), torch.randn(B, h, n + 3, dqk)
    v = torch.randn(B, h, n + 3, dv)
    explicit = count_flops(Explicit(), (q, k, v))['model']
    fused = count_flops(Fused(), (q, k, v))['model']
    assert fused == pytest.approx(B * h * n * (n + 3) * (dqk + dv) / 1e9)
    assert fused == pytest.approx(explicit, rel=0.01)


def test_tiny_vit_flops_by_hand():
    model = tiny_vit()
    x = torch.randn(2, 3, 64, 64)
    n, d = 1 + 16, C // HEADS
    by_op = flop_analyzer(model, x).by_operator()
    per_layer_linear = n * C * 3 * C + n * C * C + 2 * n * C * FFN
    assert by_op['linear'] == 2 * LAYERS * per_layer_linear
    attention = 2 * LAYERS * HEADS * n * n * 2 * d
    assert by_op['scaled_dot_product_attention'] == attention
    # Upstream mmengine misses exactly the attention.
    plain = FlopAnalyzer(model, (x, ))
    plain.unsupported_ops_warnings(False)
    ours = count_flops(model, x)['model'] * 1e9
    assert ours - plain.total() == pytest.approx(attention)


def test_merging_lowers_flops_and_is_counted():
    x = torch.randn(1, 3, 64, 64)
    base = count_flops(tiny_vit(), x)
    merged = count_flops(tiny_vit(token_cfg=ATME), x)
    assert merged['model'] < base['model']
    assert base['merge'] == 0
    assert merged['merge'] > 0


class IndexOps(nn.Module):

    def forward(self, x, idx):
        out = x.gather(1, idx)  # 2 x 5
        out = out + x.index_select(1, idx[0])[:, :5]  # 2 x 5
        z = torch.zeros(2, 7).scatter_add(1, idx, out)  # src 2 x 5
        z = z.scatter(1, idx, 1.0)  # index 2 x 5
        vals, _ = z.topk(3, dim=1)  # input 2 x 7
        order = z.argsort(dim=1)  # input 2 x 7
        return vals.sum() + order.sum() + z.sort(dim=1).values.sum()


def test_index_and_sort_ops_counted():
    x, idx = torch.randn(2, 7), torch.randint(0, 7, (2, 5))
    by_op = flop_analyzer(IndexOps(), (x, idx)).by_operator()
    assert by_op['gather'] == 10
    assert by_op['index_select'] == 10
    assert by_op['scatter_add'] == 10
    assert by_op['scatter'] == 10
    assert by_op['topk'] == by_op['argsort'] == by_op['sort'] == 14


@pytest.mark.parametrize('target', [0.5, 0.8])
def test_magnitude_gates_hit_target_and_export(target):
    model = tiny_vit(
        token_cfg=ATME, channel_cfg=dict(type='CDCP', flops_target=target))
    info = init_gates_by_magnitude(model, target, round_to=1, same_qk_v=False)
    assert abs(info['flops_ratio'] - target) < 0.02
    assert float(model.flops_ratio()) == pytest.approx(info['flops_ratio'])
    for layer in magnitude_scores(model):  # every gate keeps its largest
        for gate, score in layer.values():
            keep = gate.logits > 0
            assert keep.any()
            if not keep.all():
                assert score[keep].min() >= score[~keep].max()

    spec, state = model.export_pruned()
    exported = tiny_vit(token_cfg=ATME, channel_cfg=dict(spec=spec.to_dict()))
    exported.load_state_dict(state, strict=True)
    assert sum(p.numel() for p in exported.parameters()) < \
        sum(p.numel() for p in model.parameters())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model(x), exported(x)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_magnitude_gates_hardware_friendly_widths():
    model = tiny_vit(channel_cfg=dict(type='CDCP'))
    info = init_gates_by_magnitude(model, 0.6)  # round_to=8, same_qk_v
    assert abs(info['flops_ratio'] - 0.6) < 0.05
    qk, v, ffn = info['kept'][0::3], info['kept'][1::3], info['kept'][2::3]
    assert qk == v
    assert all(n % 8 == 0 for n in info['kept'])
    assert min(ffn) < FFN and min(qk) < C // HEADS


def test_magnitude_init_needs_gates():
    with pytest.raises(ValueError, match='no CDCP gates'):
        init_gates_by_magnitude(tiny_vit(), 0.5)
    gated = tiny_vit(channel_cfg=dict(type='CDCP'))
    with pytest.raises(ValueError, match='flops_target'):
        init_gates_by_magnitude(gated, 1.5)


def _boundary_by_loops(labels):
    H, W = labels.shape
    edge = np.zeros((H, W), dtype=bool)
    for y in range(H):
        for x in range(W):
            for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
                yy, xx = y + dy, x + dx
                if 0 <= yy < H and 0 <= xx < W and \
                        labels[yy, xx] != labels[y, x]:
                    edge[y, x] = True
    return edge


@pytest.mark.parametrize('size', [(8, 12), (7, 9)])
def test_draw_merge_regions_boundaries(size):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 200, (*size, 3), dtype=np.uint8)
    # 2 x 3 patch grid: token 0 = left column + top middle, 1 = bottom
    # middle, 2 = right column.
    assign = torch.tensor([0, 0, 2, 0, 1, 2])
    out = draw_merge_regions(image, assign, (2, 3), color=(255, 0, 255))
    assert out.shape == image.shape and out.dtype == np.uint8
    H, W = size
    patch = np.array([[0, 0, 2], [0, 1, 2]])
    labels = patch[np.arange(H) * 2 // H][:, np.arange(W) * 3 // W]
    edge = _boundary_by_loops(labels)
    assert edge.any() and not edge.all()
    assert (out[edge] == (255, 0, 255)).all()
    np.testing.assert_array_equal(out[~edge], image[~edge])


def test_draw_merge_regions_fill_and_errors():
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    image[:, :2] = 100
    out = draw_merge_regions(image, np.array([0, 0, 0, 0]), (2, 2), fill=1)
    np.testing.assert_array_equal(out, np.full_like(image, 50))  # one token
    with pytest.raises(ValueError, match='grid'):
        draw_merge_regions(image, np.arange(5), (2, 2))
    with pytest.raises(ValueError, match='uint8'):
        draw_merge_regions(image.astype(float), np.arange(4), (2, 2))


def _tiny_config(tmp_path) -> str:
    """A small UperNet + PrunedVisionTransformer from the ADE20K baseline."""
    path = tmp_path / 'tiny_upernet.py'
    path.write_text(f'''
_base_ = {BASELINE_CFG!r}
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=(64, 64)),
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=64, num_layers=4, num_heads=2,
                  feedforward_channels=128),
        img_size=(64, 64), out_indices=(0, 1, 2, 3), drop_path_rate=0.),
    decode_head=dict(in_channels=[64] * 4, channels=32, num_classes=5,
                     norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=64, channels=16, num_classes=5,
                        norm_cfg=norm_cfg))
''')
    return str(path)


def _tiny_settings(cfg, cdcp=True):
    atme = [
        'model.backbone.token_cfg.type=ATME',
        'model.backbone.token_cfg.keep_ratio=0.8'
    ]
    gates = [
        'model.backbone.channel_cfg.type=CDCP',
        'model.backbone.channel_cfg.flops_target=0.6',
        'model.type=mmtokenprune.PrunedEncoderDecoder'
    ]
    out = ['--setting', 'base', cfg, '--setting', 'atme', cfg, *atme]
    return out + (['--setting', 'atme-cdcp', cfg, *atme, *gates]
                  if cdcp else [])


def _load_tool(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_tool_writes_table(tmp_path, monkeypatch):
    tool = _load_tool('benchmark_tool',
                      osp.join(REPO, 'tools', 'analysis', 'benchmark.py'))
    out, out_csv = tmp_path / 'r.md', tmp_path / 'r.csv'
    seen = spy_timer(monkeypatch)
    monkeypatch.setattr(os, 'getloadavg', lambda: (4.5, 0, 0))
    threads, before = other_thread_count(), torch.get_num_threads()
    table = tool.main(
        _tiny_settings(_tiny_config(tmp_path)) + [
            '--image-size', '64', '64', '--batch-sizes', '1', '2', '--repeats',
            '1', '--warmup', '0', '--out',
            str(out), '--csv',
            str(out_csv), '--clock', 'cpu', '--threads',
            str(threads)
        ])
    # --clock and --threads reach the timer: 3 settings x 2 batches x 2
    # parts x 1 repeat, two clock reads each.
    assert seen['clock'] == [('cpu', threads)] * 24
    assert torch.get_num_threads() == before
    assert out.read_text() == table
    for column in ('setting', 'params (M)', 'backbone GFLOPs', 'model GFLOPs',
                   'backbone ms b1', 'backbone ms b2', 'model ms b1',
                   'model ms b2', 'backbone speed-up b1',
                   'backbone speed-up b2', 'FLOPs reduction', 'efficiency b1',
                   'efficiency b2', 'load avg'):
        assert f' {column} |' in table
    assert 'Machine: ' in table and f'torch {threads} threads' in table
    assert 'process CPU time' in table
    rows = list(csv.DictReader(open(out_csv)))
    assert [r['setting'] for r in rows] == ['base', 'atme', 'atme-cdcp']
    assert {float(r['load avg']) for r in rows} == {4.5}
    assert all(
        line.endswith(' 4.5 |') for line in table.splitlines()
        if line.startswith('| atme'))
    base, atme, cdcp = rows
    assert float(base['FLOPs reduction']) == 1
    assert 1 < float(atme['FLOPs reduction']) < float(cdcp['FLOPs reduction'])
    assert float(cdcp['params (M)']) < float(base['params (M)'])
    assert all(float(r['backbone ms b2']) > 0 for r in rows)
    assert 'encoder FLOPs kept 0.6' in table


def test_demo_quick(tmp_path, monkeypatch):
    demo = _load_tool('demo_tool', osp.join(REPO, 'tools', 'demo.py'))
    seen = spy_timer(monkeypatch)
    threads = other_thread_count()
    outputs = demo.main([
        '--quick', '--out-dir',
        str(tmp_path / 'demo'), '--clock', 'cpu', '--threads',
        str(threads)
    ] + _tiny_settings(_tiny_config(tmp_path), cdcp=False))
    # The demo's options reach the timer through the benchmark: 2 settings
    # x batch 1 x 2 parts x 1 repeat, two clock reads each.
    assert seen['clock'] == [('cpu', threads)] * 8
    from PIL import Image
    for key in ('regions', 'regions_fill'):
        assert Image.open(outputs[key]).size[0] > 300
    assert '| atme |' in open(outputs['table']).read()


@pytest.mark.parametrize('busy,clock,threads', [(2.0, 'cpu', 1),
                                                (0.2, 'wall', None)])
def test_demo_picks_its_clock_by_the_load(tmp_path, monkeypatch, busy,
                                          clock, threads):
    """More than half the cores busy: process CPU time on one thread,
    whatever torch's threads; otherwise wall-clock with torch's threads.
    The table says which."""
    demo = _load_tool('demo_tool', osp.join(REPO, 'tools', 'demo.py'))
    monkeypatch.setattr(demo, 'busy_cores', lambda: busy)
    monkeypatch.setattr(demo.os, 'cpu_count', lambda: 2)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = spy_timer(monkeypatch)
        outputs = demo.main(['--quick', '--out-dir', str(tmp_path)] +
                            _tiny_settings(_tiny_config(tmp_path),
                                           cdcp=False))
    finally:
        torch.set_num_threads(torch_threads)
    assert seen['clock'] == [(clock, threads or 2)] * 8
    head = open(outputs['table']).read().splitlines()[0]
    assert head.startswith(f'Timing: other processes kept {busy:.1f} of 2')
    assert ('process CPU time' in head) == (clock == 'cpu'), head


def test_busy_cores_sees_another_process():
    from mmtokenprune.analysis.latency import busy_cores
    spinner = subprocess.Popen(
        [sys.executable, '-c', 'import time\nt = time.time()\n'
         'while time.time() - t < 30: pass'])
    try:
        time.sleep(0.2)
        assert busy_cores(0.5) > 0.5
    finally:
        spinner.kill()
        spinner.wait()
