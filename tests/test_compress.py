"""tools/compress.py: candidates, proxy, timing rounds, outputs, resume,
the latency table cache, and the errors users see."""
import json
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from test_latency_table import synthetic_table
from test_tools import PLAIN_BACKBONE, load_tool, tiny_seg_config

import mmtokenprune.analysis.compress as compress_mod
import mmtokenprune.analysis.measure as measure_mod
import mmtokenprune.analysis.table_cache as cache_mod
from mmtokenprune.analysis.compress_models import CandidateBuilder
from mmtokenprune.analysis.compress_proxy import proxy_scores, spearman
from mmtokenprune.budgets import (LatencyTable, LayerChoice,
                                  enumerate_candidates, keep_for,
                                  keep_schedule, layer_families,
                                  solver_candidate)
from mmtokenprune.models.cdcp import init_gates_to_widths, magnitude_scores
from mmtokenprune.utils.config import build_model, load_config

# the synthetic table's architecture (tests/test_latency_table.py)
BACKBONE = dict(
    PLAIN_BACKBONE,
    arch=dict(embed_dims=32, num_layers=4, num_heads=2,
              feedforward_channels=64),
    patch_size=8,
    out_indices=(3, ))
FULL = ((16, 16, 64), ) * 4


@pytest.fixture(scope='module')
def table():
    return LatencyTable.load(synthetic_table())


# ---------------------------------------------------------------- candidates
def test_candidates_are_the_least_compression_within_the_budget(table):
    base = table.baseline_ms()
    budget = 0.7 * base
    narrow = ((16, 16, 48), (8, 8, 48), (16, 16, 32), (16, 16, 64))
    found = enumerate_candidates(table, budget, ['ATME', 'ToMe', 'dTPS'],
                                 {1.0: FULL, 0.8: narrow})
    fams = layer_families(4)
    assert len({c.name for c in found}) == len(found)
    assert {c.reducer for c in found} == {'ATME', 'ToMe', 'dTPS'}
    for c in found:
        assert c.predicted_ms <= budget
        removed = [0] * 4
        for i, r in zip(c.layers, c.r):
            removed[i] = r
        assert c.predicted_ms == pytest.approx(table.predict(
            [LayerChoice(r, *w) for r, w in zip(removed, c.widths)],
            c.reducer)['ms'])
        # the largest keep ratio that fits: one step more does not
        up = keep_schedule(64, fams[c.family], c.keep_ratio + 0.01, 4,
                           c.reducer)
        if up != removed:
            assert table.predict(
                [LayerChoice(r, *w) for r, w in zip(up, c.widths)],
                c.reducer)['ms'] > budget
        assert c.widths == (FULL if c.widths_target == 1 else narrow)
        assert c.pruned == (c.widths_target < 1)
    # no schedule below the fewest tokens the table measured (4 patches):
    # at a tight budget every-layer merging would go there
    tight = enumerate_candidates(table, 0.4 * base, ['ATME', 'dTPS'],
                                 {1.0: FULL})
    assert tight
    for c in found + tight:
        left = 64
        for r in c.r:
            left -= r
            assert left >= 4, c.name
    # merging keeps at least half of a layer's tokens
    n = 64
    for c in found:
        if c.reducer != 'dTPS':
            left = n
            for r in c.r:
                assert r <= left // 2
                left -= r


def test_solver_candidate_is_the_solvers_pick(table):
    c = solver_candidate(table, 0.6 * table.baseline_ms(), 'ATME')
    assert c.family == 'solver' and c.predicted_ms <= 0.6 * \
        table.baseline_ms()
    assert c.name == 'ATME FLOPs-solver'
    # written as per-layer keep ratios that give the solver's r
    tc = c.token_cfg()
    assert tc['type'] == 'ATME' and tc['layers'] == list(c.layers)
    n = 64
    for i in range(4):
        if i in c.layers:
            k = tc['keep_ratio'][c.layers.index(i)]
            assert n - math.ceil(n * k) == c.r[c.layers.index(i)]
            n -= c.r[c.layers.index(i)]


def test_keep_ratio_for_r_survives_the_backbones_rounding():
    # (n - r) / n alone is off by one token for e.g. n=25, r=11
    for n in range(2, 300):
        for r in range(0, n // 2 + 1):
            assert n - math.ceil(n * keep_for(n, r)) == r, (n, r)


# ------------------------------------------------------------------- proxy
def test_proxy_scores_and_rank_correlation():
    torch.manual_seed(0)
    p = torch.log_softmax(torch.randn(3, 5, 4), 0)
    same = proxy_scores([p], [p.clone()])
    assert same['kl'] == pytest.approx(0, abs=1e-7)
    assert same['agreement'] == 100
    q = torch.log_softmax(torch.randn(3, 5, 4), 0)
    moved = proxy_scores([p], [q])
    kl = float((p.exp() * (p - q)).sum(0).mean())
    assert moved['kl'] == pytest.approx(kl) and moved['kl'] > 0
    agree = float((p.argmax(0) == q.argmax(0)).float().mean()) * 100
    assert moved['agreement'] == pytest.approx(agree)
    assert spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9487, 1e-3)
    assert math.isnan(spearman([1, 2], [2, 1]))


def test_gates_to_widths_keep_the_largest_channels():
    cfg = Config(dict(model=dict(
        type='mmtokenprune.PrunedVisionTransformer', **{
            k: v for k, v in BACKBONE.items() if k != 'type'},
        channel_cfg=dict(type='CDCP'))))
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope('mmseg')
    torch.manual_seed(0)
    bb = MODELS.build(cfg.model)
    widths = ((8, 8, 32), (16, 8, 64), (4, 12, 16), (16, 16, 8))
    init_gates_to_widths(bb, widths)
    for layer, dims in zip(magnitude_scores(bb), widths):
        for (gate, score), count in zip(layer.values(), dims):
            kept = gate.kept_indices()
            assert len(kept) == count
            assert set(kept.tolist()) == set(
                score.topk(count).indices.tolist())
    with pytest.raises(ValueError, match='layer 2: qk width 17'):
        init_gates_to_widths(bb, widths[:2] + ((17, 8, 8), ) + widths[3:])


# -------------------------------------------------------- the whole command
@pytest.fixture
def trained(tmp_path, tiny_camvid):
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_seg_config(tiny_camvid, BACKBONE))
    torch.manual_seed(0)
    model = build_model(load_config(str(config)))
    ckpt = tmp_path / 'tiny.pth'
    torch.save(dict(state_dict=model.state_dict(), meta={}), ckpt)
    return str(config), str(ckpt)


def cache_table(trained, cache_dir, threads=1, batch=1, clock='cpu'):
    """Store the synthetic table in the cache under the tiny model's key."""
    bb = build_model(load_config(trained[0])).backbone
    key = cache_mod.table_key(bb, 'cpu', threads, 'fp32', batch, clock)
    data = synthetic_table(batch=batch)
    data['meta']['cache_key'] = key
    data['checks'] = dict(baseline=dict(measured_ms=10.0))
    path = cache_mod.table_path(str(cache_dir), key)
    import os
    os.makedirs(str(cache_dir), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(data, f)
    return path


def fake_timing(monkeypatch, factor=1.0, seen=None):
    """Time models by the synthetic table's prediction of what they are
    (candidates ``factor`` times slower than predicted), recording what
    the timer was given."""
    table = LatencyTable.load(synthetic_table())

    def predicted(model):
        bb = model.backbone
        removed = [a - m for a, _, m in bb.token_counts()]
        choices = [
            LayerChoice(r, layer.attn.qk_dims, layer.attn.v_dims,
                        layer.ffn.layers[0][0].out_features)
            for r, layer in zip(removed, bb.layers)
        ]
        reducer = bb.token_cfg.type if any(removed) else None
        return table.predict(choices, reducer)['ms']

    def measure(models, **kwargs):
        if seen is not None:
            seen.append(dict(kwargs, names=list(models)))
        return {
            name: {
                f'ms_backbone_b{kwargs["batch_sizes"][0]}':
                predicted(m) * (1 if name == 'baseline' else factor),
                'device': 'fake', 'load_avg': 0.0
            }
            for name, m in models.items()
        }

    monkeypatch.setattr(measure_mod, 'measure', measure)


def run(trained, out, cache, *extra):
    tool = load_tool('compress')
    return tool.main([*trained, '--out', str(out), '--table-cache',
                      str(cache), '--calib', '2', *extra])


def test_compress_picks_writes_and_resumes(trained, tmp_path, monkeypatch):
    cache = tmp_path / 'cache'
    cache_table(trained, cache)
    seen = []
    fake_timing(monkeypatch, seen=seen)
    out = tmp_path / 'out'
    run(trained, out, cache, '--latency', '0.7', '--widths', '1', '0.8',
        '--evaluate', '2')
    state = json.loads((out / 'compress_state.json').read_text())
    # the timer got the table's clock, threads, batch and shape
    assert seen[0]['clock'] == 'cpu' and seen[0]['threads'] == 1
    assert seen[0]['batch_sizes'] == [1]
    assert tuple(seen[0]['image_size']) == (64, 64)
    assert seen[0]['names'][0] == 'baseline'
    # the first round: the 3 best by proxy, then the solver's pick
    proxy = state['proxy']
    ranked = sorted(proxy, key=lambda n: proxy[n]['kl'])
    assert seen[0]['names'][1:4] == ranked[:3]
    assert seen[0]['names'][4:] == ['ATME FLOPs-solver',
                                    'ToMe FLOPs-solver'][:len(
                                        seen[0]['names']) - 4]
    # the pick: the best by proxy measured within the budget
    assert state['pick'] == ranked[0]
    assert len(state['timing']) == 1
    # validation scores: the baseline and the 2 best, and every timed one
    assert 'baseline' in state['eval']
    assert set(ranked[:2]) <= set(state['eval'])
    # outputs: the compressed config is a delta on the user's, builds the
    # pick with the checkpoint's weights
    cfg = Config.fromfile(str(out / 'compressed.py'))
    assert cfg.model.backbone.token_cfg is not None or 'widths' in \
        state['pick']
    assert osp.isfile(cfg.load_from)
    model = build_model(cfg)
    state_dict = torch.load(cfg.load_from, map_location='cpu')['state_dict']
    model.load_state_dict(state_dict, strict=True)
    ft = Config.fromfile(str(out / 'finetune_distill.py'))
    assert ft.model.type == 'mmtokenprune.PrunedEncoderDecoder'
    assert ft.model.teacher.checkpoint == osp.abspath(trained[1])
    assert ft.model.backbone.token_cfg == cfg.model.backbone.token_cfg
    student = build_model(ft)  # builds and loads the teacher strictly
    teacher = student.checked_teacher()
    assert teacher.backbone.token_cfg.type is None
    assert 'python tools/train.py ' + str(out / 'finetune_distill.py') in \
        (out / 'finetune_distill.py').read_text()
    report = (out / 'report.md').read_text()
    assert f'**Pick: {state["pick"]}**' in report
    assert 'Rank correlation' in report and (out / 'report.png').is_file()
    # killed and run again: nothing is scored, timed or evaluated twice
    calls = []
    real = compress_mod.proxy_scores
    monkeypatch.setattr(compress_mod, 'proxy_scores',
                        lambda *a: calls.append(1) or real(*a))
    run(trained, out, cache, '--latency', '0.7', '--widths', '1', '0.8',
        '--evaluate', '2')
    assert calls == [] and len(seen) == 1
    # ... but not with other options
    with pytest.raises(ValueError, match='latency=0.7.*latency=0.6'):
        run(trained, out, cache, '--latency', '0.6', '--widths', '1', '0.8',
            '--evaluate', '2')


def test_compress_corrects_the_table_by_what_it_measured(
        trained, tmp_path, monkeypatch):
    cache = tmp_path / 'cache'
    cache_table(trained, cache)
    fake_timing(monkeypatch, factor=1.3)
    out = tmp_path / 'out'
    run(trained, out, cache, '--latency', '0.7', '--widths', '1',
        '--reducers', 'ATME', '--top', '1')
    state = json.loads((out / 'compress_state.json').read_text())
    rounds = state['timing']
    assert len(rounds) >= 2
    assert rounds[0]['scale'] == pytest.approx(1.3)
    ratio = {n: v / r['baseline_ms'] for r in rounds
             for n, v in r['ms'].items()}
    assert all(ratio[n] > 0.7 * 1.05 for n in rounds[0]['ms'])
    assert ratio[state['pick']] <= 0.7 * 1.05
    # the second round times only what fits the corrected budget
    table = LatencyTable.load(synthetic_table())
    pred = {c['name']: c['predicted_ms'] / table.baseline_ms()
            for c in state['candidates']}
    assert rounds[1]['ms'] and all(pred[n] <= 0.7 / 1.3 + 1e-9
                                   for n in rounds[1]['ms'])
    # ... the solver's pick for the corrected budget among them
    assert 'ATME FLOPs-solver (budget / 1.30)' in rounds[1]['ms']
    assert 'ATME FLOPs-solver (budget / 1.30)' in state['settings']


@pytest.mark.parametrize('args,match', [
    (['--latency', '0'], r'--latency must be .* \(0, 1\); got 0.0'),
    (['--latency', '1.2'], r'--latency must be .* \(0, 1\)'),
    (['--latency-ms', '-3'], '--latency-ms must be positive'),
    (['--latency', '0.05'], r'smallest reachable latency is [\d.]+ ms \(0.3'),
    (['--latency', '0.7', '--widths', '0'], r'--widths are FLOPs fractions'),
    (['--latency', '0.7', '--calib', '99'], r'--calib must be in \[1, 2\]'),
])
def test_bad_budgets_and_options_name_themselves(trained, tmp_path,
                                                 monkeypatch, capsys, args,
                                                 match):
    cache = tmp_path / 'cache'
    cache_table(trained, cache)
    fake_timing(monkeypatch)
    tool = load_tool('compress')
    with pytest.raises(SystemExit) as err:
        tool.main([*trained, '--out', str(tmp_path / 'o'), '--table-cache',
                   str(cache), *(['--calib', '2'] if '--calib' not in args
                                 else []), *args])
    import re
    assert re.search(match, str(err.value.code)), err.value.code


def test_pruned_candidate_is_the_gated_model_it_was_cut_from(trained):
    cfg = load_config(trained[0])
    builder = CandidateBuilder(cfg, trained[1])
    table = LatencyTable.load(synthetic_table())
    narrow = ((8, 8, 32), (16, 8, 48), (8, 16, 64), (16, 16, 16))
    c = enumerate_candidates(table, 0.75 * table.baseline_ms(), ['ATME'],
                             {0.6: narrow})[0]
    model, spec, _ = builder.build(c)
    assert [(d.qk_dims, d.v_dims, d.ffn_dims)
            for d in spec.layers] == list(narrow)
    gated_cfg = load_config(trained[0])
    gated_cfg.model.backbone.channel_cfg = dict(type='CDCP')
    gated_cfg.model.backbone.token_cfg = c.token_cfg()
    gated = build_model(gated_cfg)
    gated.load_state_dict(builder.gated().state_dict())
    init_gates_to_widths(gated.backbone, narrow, margin=1e4)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = gated.backbone(x)[0]
        got = model.backbone(x)[0]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_table_cache_reuses_by_key(tmp_path, monkeypatch, trained):
    calls = []

    def measure_table(backbone, **kwargs):
        calls.append(kwargs)
        return LatencyTable.load(synthetic_table())

    monkeypatch.setattr(cache_mod, 'measure_table', measure_table)
    bb = build_model(load_config(trained[0])).backbone
    t1, p1, reused1 = cache_mod.cached_table(bb, str(tmp_path), threads=1)
    t2, p2, reused2 = cache_mod.cached_table(bb, str(tmp_path), threads=1)
    assert (reused1, reused2, p1 == p2, len(calls)) == (False, True, True, 1)
    assert t2.meta['cache_key'] == cache_mod.table_key(bb, 'cpu', 1, 'fp32',
                                                       1, 'cpu')
    # what the table depends on changes the key: measured again
    _, p3, reused3 = cache_mod.cached_table(bb, str(tmp_path), threads=2)
    _, p4, reused4 = cache_mod.cached_table(bb, str(tmp_path), batch=4)
    assert not reused3 and not reused4 and len({p1, p3, p4}) == 3
    assert [c['threads'] for c in calls] == [1, 2, 1]
    assert calls[-1]['batch'] == 4
    # a file under the key's name that was measured for another key is
    # not trusted
    data = json.loads(open(p1).read())
    data['meta']['cache_key']['threads'] = 7
    with open(p1, 'w') as f:
        json.dump(data, f)
    _, _, reused5 = cache_mod.cached_table(bb, str(tmp_path), threads=1)
    assert not reused5 and len(calls) == 4


def test_compare_table_takes_the_best_fixed_setting_within_budget(tmp_path):
    from mmtokenprune.analysis.sweep_store import write_rows
    rows = [
        dict(setting='baseline', score=25.0, speedup_backbone_b1=1.0),
        dict(setting='P', score=25.5, speedup_backbone_b1=1.5),
        dict(setting='S', score=20.0, speedup_backbone_b1=1.6),
        dict(setting='R1', score=26.0, speedup_backbone_b1=1.2),  # too slow
        dict(setting='R2', score=24.0, speedup_backbone_b1=1.45),
        dict(setting='R3', score=23.0, speedup_backbone_b1=1.8),
    ]
    sweep = tmp_path / 'sweep'
    sweep.mkdir()
    write_rows(rows, str(sweep / 'sweep.csv'))
    run = tmp_path / 'run'
    run.mkdir()
    (run / 'compress_state.json').write_text(json.dumps(dict(
        how=dict(latency=0.7, tolerance=0.0), pick='p',
        settings={'p': 'P', 'ATME FLOPs-solver': 'S'})))
    tool = load_tool('analysis/compress_compare')
    out = tmp_path / 'c.md'
    result = tool.main(['--runs', str(run), '--sweep', str(sweep),
                        '--references', 'R1', 'R2', 'R3', '--out',
                        str(out)])
    row = result['rows'][0]
    # 1/1.45 = 0.690 <= 0.7; 1/1.2 = 0.833 is over the budget
    assert row['reference']['setting'] == 'R2'
    assert row['pick']['setting'] == 'P' and row['solver']['setting'] == 'S'
    text = out.read_text()
    assert '| +5.50 |  | +1.50 |' in text
    with pytest.raises(KeyError, match='R9'):
        tool.main(['--runs', str(run), '--sweep', str(sweep),
                   '--references', 'R9'])


def test_every_timing_and_scoring_option_reaches_the_code(
        trained, tmp_path, monkeypatch):
    cache = tmp_path / 'cache'
    path = cache_table(trained, cache, threads=2, batch=2, clock='wall')
    seen, scoring = [], []
    fake_timing(monkeypatch, seen=seen)
    real = compress_mod.outputs
    monkeypatch.setattr(
        compress_mod, 'outputs',
        lambda *a, **k: scoring.append(torch.get_num_threads()) or real(
            *a, **k))
    threads = 1 if torch.get_num_threads() != 1 else 2
    run(trained, tmp_path / 'out', cache, '--latency', '0.7', '--widths',
        '1', '--batch', '2', '--clock', 'wall', '--timing-threads', '2',
        '--repeats', '4', '--threads', str(threads))
    state = json.loads((tmp_path / 'out' / 'compress_state.json').read_text())
    assert state['table'] == path  # the table of this batch/clock/threads
    assert seen and all(
        (s['batch_sizes'], s['clock'], s['threads'], s['repeats']) ==
        ([2], 'wall', 2, 4) for s in seen)
    assert scoring and set(scoring) == {threads}
