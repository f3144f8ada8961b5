"""The latency table: interpolation, token counts, prediction, format."""
import json
import math
from typing import Dict

import pytest
import torch

from mmtokenprune.budgets import (FORMAT, LatencyTable, LayerChoice, interp,
                                 schedule_counts)
from mmtokenprune.models import PrunedVisionTransformer

# a synthetic table whose entries are multilinear in every axis, so the
# table's interpolation reproduces these functions exactly off the grid
TOKENS = [5, 9, 17, 33, 49, 65]  # one class token + 4 .. 64 patches
HEADS = [4, 8, 12, 16]
FFNS = [16, 32, 48, 64]
MERGE = [1 / 16, 1 / 4, 1 / 2]
PRUNE = [1 / 16, 1 / 4, 1 / 2, 3 / 4, 15 / 16]


def attn_fn(n, qk, v, bias=False):
    return (0.01 * n + 0.001 * n * (qk + v)) * (1.1 if bias else 1.)


def mlp_fn(n, f):
    return 0.005 * n + 0.0005 * n * f


def synthetic_table(reducer_scale: float = 1.0, batch: int = 1) -> Dict:
    """A 4-layer ViT (C=32, 2 heads of 16, MLP 64, 8x8 patches, cls)."""
    patches = [n - 1 for n in TOKENS]

    def reducer(k, fractions):
        return dict(tokens=patches, fraction=fractions,
                    ms=[[k * reducer_scale * n for _ in fractions]
                        for n in patches])

    return dict(
        format=FORMAT,
        meta=dict(device='synthetic', threads=1, dtype='fp32', batch=batch,
                  clock='cpu', torch=torch.__version__, date='today',
                  load_avg=dict(mean=0., max=0.), repeats=1),
        arch=dict(embed_dims=32, num_heads=2, head_dims=16,
                  feedforward_channels=64, num_layers=4, num_extra_tokens=1,
                  patch_grid=[8, 8], img_size=[64, 64], out_indices=[1, 3],
                  num_outputs=2, final_norm=True),
        attention=dict(
            tokens=TOKENS, qk_dims=HEADS, v_dims=HEADS,
            ms=[[[attn_fn(n, a, b) for b in HEADS] for a in HEADS]
                for n in TOKENS],
            ms_bias=[[[attn_fn(n, a, b, True) for b in HEADS] for a in HEADS]
                     for n in TOKENS]),
        mlp=dict(tokens=TOKENS, ffn_dims=FFNS,
                 ms=[[mlp_fn(n, f) for f in FFNS] for n in TOKENS]),
        reducers=dict(
            ATME=reducer(0.002, MERGE), ToMe=reducer(0.002, MERGE),
            dTPS=reducer(0.004, PRUNE), SPViT=reducer(0.004, PRUNE)),
        parts=dict(
            stem_ms=1.0, output_ms=0.01,
            final_norm=dict(tokens=TOKENS, ms=[0.001 * n for n in TOKENS]),
            unmerge=dict(tokens=patches,
                         ms=[0.02 + 0.0001 * n for n in patches])))


def tiny_vit(**kwargs):
    args = dict(
        arch=dict(embed_dims=32, num_layers=4, num_heads=2,
                  feedforward_channels=64),
        img_size=64, patch_size=8, out_indices=(1, 3), out_type='featmap')
    return PrunedVisionTransformer(**dict(args, **kwargs)).eval()


# ------------------------------------------------------------ interpolation
def test_interp_exact_for_multilinear_and_differentiable():
    grids = ([0., 1., 3.], [10., 20.])
    f = lambda x, y: 2 + 3 * x - 0.5 * y + 0.25 * x * y  # noqa: E731
    values = [[f(x, y) for y in grids[1]] for x in grids[0]]
    assert interp(grids, values, (2.2, 13.)) == pytest.approx(f(2.2, 13.))
    x = torch.tensor(2.2, requires_grad=True)
    out = interp(grids, values, (x, 13.))
    out.backward()
    assert float(out) == pytest.approx(f(2.2, 13.))
    assert float(x.grad) == pytest.approx(3 + 0.25 * 13.)  # df/dx
    # beyond the grid: an error naming the axis and the range, or the
    # edge cell continued when asked
    with pytest.raises(ValueError, match=r'qk_dims=4 .*\[10, 20\]'):
        interp(grids, values, (1., 4.), names=('tokens', 'qk_dims'))
    assert interp(grids, values, (4., 25.), extrapolate=True) == \
        pytest.approx(f(4., 25.))


# ------------------------------------------------------------ token counts
@pytest.mark.parametrize('reducer', ['ATME', 'dTPS', 'SPViT'])
def test_schedule_counts_match_the_backbone(reducer):
    r = [10, 0, 12, 0]
    model = tiny_vit(token_cfg=dict(type=reducer, r=[10, 12], layers=[0, 2]))
    got = schedule_counts(64, 1, r, reducer)
    assert [(c['attn'], c['attn'], c['mlp']) for c in got] == \
        model.token_counts()
    assert [c['patches'] for c in got] == [64, 54, 54, 42]


def test_schedule_counts_refuse_merging_more_than_half():
    with pytest.raises(ValueError, match='layer 1: r=30 of 32'):
        schedule_counts(64, 1, [32, 30], 'ToMe')
    schedule_counts(64, 1, [32, 30], 'dTPS')  # pruning may


# -------------------------------------------------------------- prediction
def test_predict_by_hand():
    table = LatencyTable.load(synthetic_table())
    full = [LayerChoice(0, 16, 16, 64)] * 4
    base = 1.0 + 4 * (attn_fn(65, 16, 16) + mlp_fn(65, 64)) + 0.065 + 0.02
    assert table.predict(full)['ms'] == pytest.approx(base)
    assert table.baseline_ms() == pytest.approx(base)
    # ATME removes 16 at layer 0 (after attention) with widths 8/12/40 at
    # layer 3: proportional attention everywhere, reducer and un-merge paid
    layers = [LayerChoice(16, 16, 16, 64)] + [LayerChoice(0, 16, 16, 64)] * 2 \
        + [LayerChoice(0, 8, 12, 40)]
    want = (1.0 + attn_fn(65, 16, 16, True) + mlp_fn(49, 64) + 0.002 * 64 +
            2 * (attn_fn(49, 16, 16, True) + mlp_fn(49, 64)) +
            attn_fn(49, 8, 12, True) + mlp_fn(49, 40) + 0.049 +
            2 * (0.02 + 0.0001 * 48))
    got = table.predict(layers, 'ATME')
    assert got['ms'] == pytest.approx(want)
    assert got['reducer'] == pytest.approx(0.002 * 64)
    assert sum(got['per_layer']) == pytest.approx(
        got['attention'] + got['mlp'] + got['reducer'])
    # no proportional attention: the plain attention entries
    assert table.predict(layers, 'ATME', prop_attn=False)['ms'] < want


def test_query_errors_name_the_problem():
    table = LatencyTable.load(synthetic_table())
    with pytest.raises(ValueError, match=r'qk_dims=2 .*\[4, 16\]'):
        table.attention_ms(65, 2, 16)
    with pytest.raises(ValueError, match="no reducer 'eTPS'"):
        table.reducer_ms('eTPS', 64, 8)
    with pytest.raises(ValueError, match='measured for'):
        table.check_arch(16, 64, 4, (16, 16))
    bad = synthetic_table()
    bad['format'] = 'something/v0'
    with pytest.raises(ValueError, match='something/v0'):
        LatencyTable.load(bad)


# ------------------------------------------------------------------ format
def test_measured_table_format(tmp_path):
    from mmtokenprune.analysis.latency_table_build import measure_table
    grids = dict(tokens=[9, 17, 33, 65], head_dims=[8, 16],
                 ffn_dims=[32, 64])
    table = measure_table(tiny_vit(), grids=grids, reducers=['ToMe', 'dTPS'],
                          repeats=1, warmup=0, check_repeats=1)
    path = tmp_path / 'table.json'
    table.dump(str(path))
    data = json.loads(path.read_text())
    assert data['format'] == FORMAT
    for key in ('device', 'threads', 'dtype', 'batch', 'torch', 'clock',
                'date', 'load_avg'):
        assert key in data['meta'], key
    assert (data['meta']['threads'], data['meta']['batch'],
            data['meta']['clock']) == (1, 1, 'cpu')
    assert data['arch']['patch_grid'] == [8, 8]
    a = data['attention']
    assert len(a['ms']) == 4 and len(a['ms'][0]) == 2 and \
        len(a['ms'][0][0]) == 2 and len(a['ms_bias'][2][1]) == 2
    assert len(data['mlp']['ms']) == 4 and len(data['mlp']['ms'][0]) == 2
    # raw medians kept beside the smoothed ones
    assert len(a['ms_raw']) == 4 and 'ms_raw' in data['reducers']['ToMe']
    assert 'attention' in data['checks']['smoothing']
    assert sorted(data['reducers']) == ['ToMe', 'dTPS']
    assert data['reducers']['dTPS']['where'] == 'before_block'
    values = [x for plane in a['ms'] for row in plane for x in row]
    assert all(x > 0 and math.isfinite(x) for x in values)
    assert data['parts']['stem_ms'] > 0
    assert {'linearity', 'holdout', 'baseline'} <= set(data['checks'])
    base = data['checks']['baseline']
    assert base['composition'] == pytest.approx(
        base['measured_ms'] / base['pieces_ms'])
    again = LatencyTable.load(str(path))
    assert again.baseline_ms() == pytest.approx(table.baseline_ms())
    with pytest.raises(ValueError, match='end at the full model'):
        measure_table(tiny_vit(), grids=dict(grids, tokens=[17, 33]),
                      repeats=1, warmup=0)


def test_smoothing_along_tokens():
    from mmtokenprune.analysis.latency_table_build import smooth_in_tokens
    tokens = [10 * k for k in range(1, 13)]
    exact = [[1 + 0.1 * n + 0.001 * n * n, 2 + 0.2 * n] for n in tokens]
    fit = smooth_in_tokens(tokens, exact)
    assert fit['max_rel_residual'] < 1e-9
    for got, want in zip(fit['ms'], exact):
        assert got == pytest.approx(want)
    spiked = [list(row) for row in exact]
    spiked[-1][1] *= 1.3  # one noisy median at the largest N
    fit = smooth_in_tokens(tokens, spiked)
    assert abs(fit['ms'][-1][1] / exact[-1][1] - 1) < 0.15
    assert fit['max_rel_residual'] > 0.05
