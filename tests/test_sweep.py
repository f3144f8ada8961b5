"""tools/analysis/sweep.py on a tiny synthetic CamVid and a tiny model."""
import csv
import os
import os.path as osp
import shutil

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from PIL import Image
from test_measure import other_thread_count, spy_timer
from test_tools import PLAIN_BACKBONE as BACKBONE
from test_tools import load_tool, tiny_seg_config

import mmtokenprune.analysis.sweep as sweep_mod
from mmtokenprune.analysis.sweep_report import short_label
from mmtokenprune.analysis.sweep_settings import parse_setting
from mmtokenprune.ops import ChannelGate
from mmtokenprune.models.cdcp import export_checkpoint

CLASSES = ('Sky', 'Building', 'Pole', 'Road', 'Pavement', 'Tree', 'SignSymbol',
           'Fence', 'Car', 'Pedestrian', 'Bicyclist')


@pytest.fixture
def trained(tmp_path, tiny_camvid):
    """Config of the tiny model, its checkpoint, and an exported CDCP
    spec of a gated copy (random gates)."""
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_seg_config(tiny_camvid, BACKBONE))
    gated_cfg = tmp_path / 'gated.py'
    gated = dict(BACKBONE, channel_cfg=dict(type='CDCP'))
    gated_cfg.write_text(tiny_seg_config(tiny_camvid, gated))
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(gated_cfg)).model)
    for m in model.modules():
        if isinstance(m, ChannelGate):
            m.logits.data = torch.randn_like(m.logits)
    gated_ckpt = tmp_path / 'gated.pth'
    torch.save(dict(state_dict=model.state_dict(), meta={}), gated_ckpt)
    export_checkpoint(str(gated_cfg), str(gated_ckpt), str(tmp_path / 'ex'))
    state = {k: v for k, v in model.state_dict().items() if '_gate' not in k}
    ckpt = tmp_path / 'tiny.pth'
    torch.save(dict(state_dict=state, meta={}), ckpt)
    return str(config), str(ckpt), str(tmp_path / 'ex' / 'prune_spec.json')


def test_sweep_columns_plot_and_resume(trained, tmp_path, monkeypatch):
    config, ckpt, spec = trained
    out = str(tmp_path / 'sweep')
    settings = [
        'baseline', 'ATME:r=1,prop_attn=false', f'ATME:r=1+spec={spec}'
    ]
    argv = [
        config, ckpt, '--out', out, '--settings', *settings, '--image-size',
        '48', '64', '--batch-sizes', '1', '2', '--repeats', '1', '--warmup',
        '0', '--no-progress'
    ]
    tool = load_tool('analysis/sweep')
    table = tool.main(argv)
    with open(osp.join(out, 'sweep.csv'), newline='') as f:
        rows = list(csv.DictReader(f))
    assert [r['setting'] for r in rows] == settings
    expected = {
        'score', 'score_name', 'gflops_backbone', 'gflops_model',
        'gflops_merge', 'params_M', 'load_avg', 'device', 'clock', 'threads',
        'repeats', 'image_size'
    }
    for part in ('backbone', 'model'):
        for b in (1, 2):
            expected |= {
                f'ms_{part}_b{b}', f'ref_ms_{part}_b{b}',
                f'speedup_{part}_b{b}', f'min_ms_{part}_b{b}',
                f'speedup_min_{part}_b{b}'
            }
    expected |= {f'IoU.{c}' for c in CLASSES}
    for row in rows:
        missing = {k for k in expected if row.get(k, '') == ''}
        assert not missing, (row['setting'], missing)
        assert row['score_name'] == 'mIoU'
        assert 0 <= float(row['score']) <= 100
    base, atme, pruned = rows
    assert float(base['speedup_backbone_b1']) == 1.0
    assert float(atme['gflops_merge']) > 0 == float(base['gflops_merge'])
    assert float(pruned['params_M']) < float(atme['params_M'])
    assert pruned['checkpoint'].endswith('pruned.pth')
    assert '`ATME:r=1,prop_attn=false`' in table
    png = osp.join(out, 'pareto.png')
    with open(png, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    with Image.open(png) as img:
        img.verify()

    # A rerun evaluates only the new setting.
    evaluated = []
    real = sweep_mod.evaluate_setting

    def spy(cfg, checkpoint, work_dir, name):
        evaluated.append(name)
        return real(cfg, checkpoint, work_dir, name)

    monkeypatch.setattr(sweep_mod, 'evaluate_setting', spy)
    tool.main(argv[:argv.index('--image-size')] + ['ToMe:keep_ratio=0.9'] +
              argv[argv.index('--image-size'):])
    assert evaluated == ['sweep_ToMe_keep_ratio=0.9']
    with open(osp.join(out, 'sweep.csv'), newline='') as f:
        assert len(list(csv.DictReader(f))) == len(settings) + 1
    # Rows timed with another clock or number of threads, or made from
    # another checkpoint, are not mixed in.
    with pytest.raises(ValueError, match="measured with {'clock'"):
        tool.main(argv + ['--clock', 'cpu'])
    with pytest.raises(ValueError, match="measured with {'threads'"):
        tool.main(argv + ['--threads', str(other_thread_count())])
    other = str(tmp_path / 'other.pth')
    shutil.copy(ckpt, other)
    with pytest.raises(ValueError, match="'sweep_checkpoint': '.*tiny.pth'"):
        tool.main([config, other] + argv[2:])


TIMING = [
    '--image-size', '48', '64', '--batch-sizes', '1', '--repeats', '2',
    '--warmup', '0', '--no-progress', '--clock', 'cpu'
]


def test_sweep_times_with_the_clock_and_threads_it_is_given(
        trained, tmp_path, tiny_camvid, monkeypatch):
    """--clock and --threads reach the clock the timer reads (not only the
    CSV's label), --threads the evaluation too; --cfg-options data_root
    reaches the test dataloader."""
    _, ckpt, _ = trained
    config = tmp_path / 'elsewhere.py'
    config.write_text(tiny_seg_config('/nonexistent/camvid', BACKBONE))
    threads, before = other_thread_count(), torch.get_num_threads()
    seen = spy_timer(monkeypatch)
    eval_threads = []
    real = sweep_mod.evaluate_setting

    def spy(*args):
        eval_threads.append(torch.get_num_threads())
        return real(*args)

    monkeypatch.setattr(sweep_mod, 'evaluate_setting', spy)
    tool = load_tool('analysis/sweep')
    out = str(tmp_path / 'sweep')
    tool.main([
        str(config), ckpt, '--out', out, '--settings', 'ATME:r=1', '--threads',
        str(threads), '--cfg-options', f'data_root={tiny_camvid}'
    ] + TIMING)
    # setting and reference x 2 parts x 2 repeats, two clock reads each
    assert seen['clock'] == [('cpu', threads)] * 16
    assert eval_threads == [threads]
    assert torch.get_num_threads() == before
    with open(osp.join(out, 'sweep.csv'), newline='') as f:
        row, = csv.DictReader(f)
    assert (row['clock'], row['threads']) == ('cpu', str(threads))
    assert f'torch {threads} threads' in row['device']
    assert float(row['score']) >= 0


def test_timing_only_sweep_times_without_weights(trained, tmp_path,
                                                 monkeypatch):
    """--timing-only: no checkpoint, no evaluation, a spec without its
    pruned.pth; timed as a full sweep times; the load average is written
    beside each row; a full rerun evaluates the timing-only rows."""
    config, ckpt, spec = trained
    bare = tmp_path / 'bare'  # a spec without its weights
    bare.mkdir()
    shutil.copy(spec, bare / 'prune_spec.json')
    settings = ['baseline', 'ATME:r=1', f'spec={bare}/prune_spec.json']
    tool = load_tool('analysis/sweep')
    out = str(tmp_path / 'timing')
    with pytest.raises(SystemExit):  # a full sweep needs the checkpoint
        tool.parse_args([config, '--out', out, '--settings', 'baseline'])
    with pytest.raises(ValueError, match='`ckpt` file'):
        tool.main([config, ckpt, '--out', out, '--settings', settings[2]])

    monkeypatch.setattr(sweep_mod, 'evaluate_setting',
                        lambda *a: pytest.fail('evaluated'))
    monkeypatch.setattr(os, 'getloadavg', lambda: (4.5, 0, 0))
    seen = spy_timer(monkeypatch)
    table = tool.main([config, '--timing-only', '--out', out, '--settings'] +
                      settings + TIMING)
    # (baseline alone + 2 x (setting, reference)) x 2 parts x 2 repeats x 2
    assert seen['clock'] == [('cpu', torch.get_num_threads())] * 40
    with open(osp.join(out, 'sweep.csv'), newline='') as f:
        rows = list(csv.DictReader(f))
    assert [r['setting'] for r in rows] == settings
    for row in rows:
        assert row.get('score', '') == '' and row['checkpoint'] == ''
        assert float(row['load_avg']) == 4.5
        for key in ('gflops_backbone', 'params_M', 'speedup_backbone_b1',
                    'speedup_min_model_b1', 'ref_ms_model_b1'):
            assert float(row[key]) > 0, (row['setting'], key)
    base, atme, pruned = rows
    assert float(base['speedup_model_b1']) == 1.0
    assert float(atme['gflops_backbone']) < float(base['gflops_backbone'])
    assert float(pruned['params_M']) < float(base['params_M'])
    assert '| `ATME:r=1` | – | – |' in table
    assert not osp.exists(osp.join(out, 'pareto.png'))

    # A full sweep with a checkpoint does not take timing-only rows as
    # done, and a timing-only rerun takes every row as done.
    monkeypatch.setattr(sweep_mod, 'evaluate_setting', lambda *a: 1 / 0)
    with pytest.raises(ValueError, match="'sweep_checkpoint': ''"):
        tool.main([config, ckpt, '--out', out, '--settings', 'baseline'] +
                  TIMING)
    out = str(tmp_path / 'timing_ckpt')
    tool.main([config, ckpt, '--timing-only', '--out', out, '--settings'] +
              settings[:1] + TIMING)
    with pytest.raises(ZeroDivisionError):
        tool.main([config, ckpt, '--out', out, '--settings'] + settings[:1] +
                  TIMING)


def test_plot_labels_keep_the_distinctive_path_parts():
    assert short_label('ATME:r=2+spec=work_dirs/ft/export/prune_spec.json'
                       ) == 'ATME:r=2+spec=ft/export'
    assert short_label('spec=a/b/c/s.json,ckpt=work_dirs/ctrl/iter_9.pth'
                       ) == 'spec=c/s.json,ckpt=ctrl/iter_9.pth'
    assert short_label('ToMe:keep_ratio=0.9') == 'ToMe:keep_ratio=0.9'


def test_parse_setting_grammar():
    s = parse_setting('ATME:r=16/8,layers=0-2,prop_attn=false')
    assert s.token_cfg == dict(
        type='ATME', r=[16, 8], layers=[0, 1, 2], prop_attn=False)
    assert s.family == 'ATME' and s.spec is None
    assert parse_setting('ToMe:keep_ratio=0.9').token_cfg == dict(
        type='ToMe', keep_ratio=0.9)
    assert parse_setting('baseline').family == 'baseline'


@pytest.mark.parametrize('text, match', [
    ('ATME:kep_ratio=0.9', 'kep_ratio'),
    ('Foo:r=8', 'Foo'),
    ('ATME:r=eight', 'r=eight'),
    ('ATME:prop_attn=maybe', 'prop_attn'),
    ('spec=/no/such/prune_spec.json', '`spec`'),
    ('ATME:r=8+ckpt=/no/such.pth', '`ckpt`'),
])
def test_bad_setting_names_the_key(text, match):
    with pytest.raises(ValueError, match=match):
        parse_setting(text)


def test_bad_setting_fails_before_any_work(tmp_path):
    tool = load_tool('analysis/sweep')
    with pytest.raises(ValueError, match='keep_ratoi'):
        tool.main([
            '/no/config.py', '/no/ckpt.pth', '--out',
            str(tmp_path / 'o'), '--settings', 'baseline',
            'ToMe:keep_ratoi=0.5'
        ])
    assert not osp.exists(tmp_path / 'o')


def test_bad_reducer_value_names_token_cfg(trained, tmp_path):
    config, ckpt, _ = trained
    tool = load_tool('analysis/sweep')
    with pytest.raises(ValueError, match='token_cfg'):
        tool.main([
            config, ckpt, '--out',
            str(tmp_path / 'o'), '--settings', 'ATME:keep_ratio=1.5',
            '--batch-sizes', '1', '--repeats', '1', '--no-progress'
        ])


def test_accuracy_only_sweep_then_timing_fills_the_same_rows(
        trained, tmp_path, monkeypatch):
    """--accuracy-only evaluates and counts FLOPs but never reads a clock;
    a timing-only sweep into the same folder adds the latencies and keeps
    each row's score and checkpoint."""
    config, ckpt, _ = trained
    tool = load_tool('analysis/sweep')
    out = str(tmp_path / 'acc')
    settings = ['baseline', 'ATME:r=1']
    with pytest.raises(SystemExit):
        tool.parse_args([config, ckpt, '--out', out, '--accuracy-only',
                         '--timing-only', '--settings', 'baseline'])
    seen = spy_timer(monkeypatch)
    tool.main([config, ckpt, '--accuracy-only', '--out', out, '--settings'] +
              settings + TIMING)
    assert seen['clock'] == []
    with open(osp.join(out, 'sweep.csv'), newline='') as f:
        first = list(csv.DictReader(f))
    for row in first:
        assert float(row['score']) >= 0 and row['checkpoint'] == ckpt
        assert float(row['gflops_backbone']) > 0
        assert row.get('speedup_backbone_b1', '') == ''
    assert not osp.exists(osp.join(out, 'pareto.png'))
    with open(osp.join(out, 'sweep.md')) as f:
        report = f.read()
    assert 'accuracy only, nothing timed' in report and 'repeats' not in report

    evaluate = sweep_mod.evaluate_setting
    monkeypatch.setattr(sweep_mod, 'evaluate_setting',
                        lambda *a: pytest.fail('evaluated again'))
    # the timing run may use other threads and another input than the
    # accuracy run (nothing was timed there); its FLOPs replace the row's
    assert TIMING[:3] == ['--image-size', '48', '64']
    timing = ['--image-size', '32', '48', '--threads', '1'] + TIMING[3:]
    tool.main([config, ckpt, '--timing-only', '--out', out, '--settings'] +
              settings + timing)
    assert seen['clock']
    with open(osp.join(out, 'sweep.csv'), newline='') as f:
        second = list(csv.DictReader(f))
    for before, after in zip(first, second):
        assert after['score'] == before['score']
        assert after['checkpoint'] == ckpt
        assert float(after['speedup_backbone_b1']) > 0
        assert after['image_size'] == '32x48'
        assert float(after['gflops_backbone']) < float(
            before['gflops_backbone'])
    # a timed row binds the next run to its timing
    with pytest.raises(ValueError, match='was measured with'):
        tool.main([config, ckpt, '--timing-only', '--out', out,
                   '--settings', 'ToMe:r=1'] + TIMING)
    # an accuracy run may still add a setting beside the timed rows (a score
    # does not depend on how other rows were timed); timing then fills it
    monkeypatch.setattr(sweep_mod, 'evaluate_setting', evaluate)
    tool.main([config, ckpt, '--accuracy-only', '--out', out, '--settings',
               'ToMe:r=1'] + TIMING)
    settings.append('ToMe:r=1')
    tool.main([config, ckpt, '--timing-only', '--out', out, '--settings'] +
              settings + timing)
    # both halves there: a full sweep has nothing left to do
    monkeypatch.setattr(sweep_mod, 'evaluate_setting',
                        lambda *a: pytest.fail('evaluated again'))
    monkeypatch.setattr(sweep_mod, 'time_setting',
                        lambda *a, **k: pytest.fail('timed again'))
    tool.main([config, ckpt, '--out', out, '--settings'] + settings + timing)


def test_pareto_tool_joins_sweeps_by_group(tmp_path, monkeypatch):
    """Rows of two sweeps are tagged with their groups, the second
    baseline is dropped, and every row reaches the plot."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'plot_pareto_tool', 'tools/analysis/plot_pareto.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    from mmtokenprune.analysis.sweep_store import write_rows

    def row(setting, family, score, speedup):
        return dict(setting=setting, family=family, score_name='mIoU',
                    score=score, gflops_backbone=1.0 / speedup,
                    speedup_backbone_b1=speedup)

    for name, rows in (('free', [row('baseline', 'baseline', 30, 1.0),
                                 row('ATME:r=2', 'ATME', 29, 1.5)]),
                       ('tuned', [row('baseline', 'baseline', 30, 1.0),
                                  row('dTPS:r=2+ckpt=a/b.pth', 'dTPS', 28,
                                      1.6)])):
        (tmp_path / name).mkdir()
        write_rows(rows, str(tmp_path / name / 'sweep.csv'))
    seen = {}
    monkeypatch.setattr(
        tool, 'plot_pareto',
        lambda rows, *a, **k: seen.update(rows=rows, args=a, kwargs=k))
    tool.main([f'{tmp_path}/free:training-free', f'{tmp_path}/tuned:ft',
               '--out', str(tmp_path / 'p.png')])
    assert [(r['setting'], r['group']) for r in seen['rows']] == [
        ('baseline', 'training-free'), ('ATME:r=2', 'training-free'),
        ('dTPS:r=2+ckpt=a/b.pth', 'ft')]
    assert seen['args'][1] == 1 and seen['kwargs'] == dict(annotate=True)
    tool.main([f'{tmp_path}/free', '--out', str(tmp_path / 'p.png'),
               '--batch', '6', '--no-labels'])
    assert seen['args'][1] == 6 and seen['kwargs'] == dict(annotate=False)
    monkeypatch.undo()
    tool.main([f'{tmp_path}/free', f'{tmp_path}/tuned', '--out',
               str(tmp_path / 'p.png'), '--no-labels'])
    assert (tmp_path / 'p.png').stat().st_size > 1000
    with pytest.raises(FileNotFoundError, match='no .*sweep.csv'):
        tool.main([f'{tmp_path}/missing', '--out', str(tmp_path / 'q.png')])


def test_timing_then_accuracy_keeps_how_the_row_was_timed(
        trained, tmp_path, monkeypatch):
    """The other order (timing first, as stage swin ran it): the accuracy
    run adds the score and leaves the row's FLOPs, input size, clock and
    threads as the timing measured them; a second timing run still
    resumes."""
    config, ckpt, _ = trained
    tool = load_tool('analysis/sweep')
    out = str(tmp_path / 'timed-first')
    settings = ['baseline', 'ATME:r=1']
    spy_timer(monkeypatch)
    timing = ['--image-size', '32', '48', '--threads', '1'] + TIMING[3:]
    tool.main([config, ckpt, '--timing-only', '--out', out, '--settings'] +
              settings + timing)
    with open(osp.join(out, 'sweep.csv'), newline='') as f:
        timed = list(csv.DictReader(f))
    # defaults: another input size and thread count than the timing's
    tool.main([config, ckpt, '--accuracy-only', '--out', out, '--settings'] +
              settings)
    with open(osp.join(out, 'sweep.csv'), newline='') as f:
        scored = list(csv.DictReader(f))
    for before, after in zip(timed, scored):
        assert float(after['score']) >= 0 and after['checkpoint'] == ckpt
        for key in ('image_size', 'clock'):
            assert after[key] == before[key], key
        for key in ('threads', 'repeats', 'gflops_backbone',
                    'speedup_backbone_b1'):
            assert float(after[key]) == float(before[key]), key
    monkeypatch.setattr(sweep_mod, 'time_setting',
                        lambda *a, **k: pytest.fail('timed again'))
    tool.main([config, ckpt, '--timing-only', '--out', out, '--settings'] +
              settings + timing)
