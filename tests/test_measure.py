"""mmtokenprune.analysis.measure: every option reaches the timer.

Spies stand in for the clock functions and the device synchronisation the
timer calls, and the models record what they run under; nothing is timed.
"""
import pytest
import torch
import torch.nn as nn

import mmtokenprune.analysis.latency as latency
import mmtokenprune.analysis.measure as measure_mod
from mmtokenprune.analysis.measure import measure


class Tiny(nn.Module):
    """A conv 'backbone' and a 'model' around it that log each forward:
    the part, the torch threads and the autocast dtype it ran under."""

    def __init__(self, calls: list, name: str):
        super().__init__()
        self.backbone = Probe(nn.Conv2d(3, 4, 3), calls, name, 'backbone')
        self.head = Probe(nn.Conv2d(4, 2, 1), calls, name, 'model')

    def forward(self, x):
        return self.head(self.backbone(x))


class Probe(nn.Module):

    def __init__(self, layer, calls, name, part):
        super().__init__()
        self.layer, self.calls, self.tag = layer, calls, (name, part)

    def forward(self, x):
        dtype = (
            torch.get_autocast_dtype('cpu')
            if torch.is_autocast_enabled('cpu') else None)
        self.calls.append((*self.tag, torch.get_num_threads(), dtype))
        return self.layer(x)


def other_thread_count() -> int:
    """A thread count that differs from torch's current one."""
    return 1 if torch.get_num_threads() != 1 else 2


def spy_timer(monkeypatch) -> dict:
    """Make the timer record ``(clock, torch threads)`` at each clock read
    (``seen['clock']``) and the device of each synchronisation
    (``seen['sync']``); shared with the tools' tests."""
    seen = dict(clock=[], sync=[])
    for name, real in list(latency.CLOCKS.items()):

        def clock(name=name, real=real):
            seen['clock'].append((name, torch.get_num_threads()))
            return real()

        monkeypatch.setitem(latency.CLOCKS, name, clock)
    real_sync = latency._sync
    monkeypatch.setattr(latency, '_sync', lambda d:
                        (seen['sync'].append(str(d)), real_sync(d)))
    return seen


@pytest.fixture
def timer_spy(monkeypatch):
    return spy_timer(monkeypatch)


def test_every_option_reaches_the_timer(timer_spy, monkeypatch):
    threads, before = other_thread_count(), torch.get_num_threads()
    monkeypatch.setattr(measure_mod.os, 'getloadavg', lambda: (4.5, 0, 0))
    calls = []
    models = {'a': Tiny(calls, 'a'), 'b': Tiny(calls, 'b')}
    stats = measure(
        models,
        image_size=(8, 8),
        batch_sizes=(1, 2),
        parts=('backbone', 'model'),
        repeats=3,
        warmup=2,
        device='cpu:0',
        dtype='bf16',
        clock='cpu',
        threads=threads)
    timed = 2 * 2 * 2 * 3  # batches x parts x models x repeats
    assert timer_spy['clock'] == [('cpu', threads)] * (2 * timed)
    assert set(timer_spy['sync']) == {'cpu:0'}
    assert torch.get_num_threads() == before  # restored
    # Each (batch, part) forward ran warmup + repeats times per model, in
    # turns, with the threads and the autocast dtype asked for.
    timed_calls = [c for c in calls if c[2:] == (threads, torch.bfloat16)]
    backbone = [c for c in timed_calls if c[1] == 'backbone']
    # models x batches x parts (the model runs the backbone too) x rounds
    assert len(backbone) == 2 * 2 * 2 * (2 + 3)
    assert [c[0] for c in timed_calls[:4]] == ['a', 'b', 'a', 'b']
    for name in models:
        s = stats[name]
        assert len(s['times_backbone_b2']) == 3
        assert s['ms_model_b1'] >= s['min_ms_model_b1'] >= 0
        assert s['load_avg'] == 4.5
        assert f'torch {threads} threads' in s['device']
        assert s['gflops_backbone'] > 0 and s['params_M'] > 0
    assert stats['a']['gflops_model'] > stats['a']['gflops_backbone']


def test_wall_clock_and_default_threads(timer_spy):
    measure({'a': Tiny([], 'a')},
            image_size=(8, 8),
            batch_sizes=(1, ),
            parts=('model', ),
            repeats=2,
            warmup=0)
    assert timer_spy['clock'] == [('wall', torch.get_num_threads())] * 4


@pytest.mark.parametrize('kwargs, match', [
    (dict(parts=('head', )), 'parts'),
    (dict(clock='gpu'), 'clock'),
    (dict(threads=0), 'threads'),
    (dict(dtype='fp16'), 'fp16'),
    (dict(dtype='int8'), 'dtype'),
])
def test_bad_option_fails_before_any_work(kwargs, match, monkeypatch):
    monkeypatch.setattr(measure_mod, 'count_flops',
                        lambda *a, **k: pytest.fail('counted FLOPs'))
    with pytest.raises(ValueError, match=match):
        measure({'a': Tiny([], 'a')}, image_size=(8, 8), **kwargs)


def test_only_the_models_asked_for_are_counted(timer_spy, monkeypatch):
    """A reference timed beside a setting (the sweep) is not counted again
    for every setting; both are still timed."""
    counted = []
    real = measure_mod.count_flops
    monkeypatch.setattr(measure_mod, 'count_flops',
                        lambda m, x: counted.append(m) or real(m, x))
    calls = []
    models = {'setting': Tiny(calls, 'setting'), 'ref': Tiny(calls, 'ref')}
    stats = measure(models, image_size=(8, 8), batch_sizes=(1, ),
                    repeats=1, warmup=0, count=('setting', ))
    assert counted == [models['setting']]
    assert 'gflops_model' in stats['setting']
    assert 'gflops_model' not in stats['ref']
    assert stats['ref']['ms_backbone_b1'] > 0


class Plain(nn.Module):
    """A compilable conv 'backbone' and 'model' (no logging inside)."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Conv2d(3, 4, 3)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.head(self.backbone(x))


def test_compile_reaches_the_timed_forwards(timer_spy, monkeypatch):
    """Every model's timed part is compiled once (fullgraph, static
    shapes, the backend asked for) and the timed calls go through it."""
    compiled, calls = [], []
    real = measure_mod.compile_module

    def spy(module, backend):
        compiled.append((module, backend))
        fn = real(module, backend)
        return lambda x: calls.append(module) or fn(x)

    monkeypatch.setattr(measure_mod, 'compile_module', spy)
    models = {'a': Plain(), 'b': Plain()}
    stats = measure(models, image_size=(8, 8), batch_sizes=(1, 2),
                    parts=('backbone', 'model'), repeats=2, warmup=1,
                    compile='eager')
    a, b = models['a'], models['b']
    assert compiled == [(a.backbone, 'eager'), (a, 'eager'),
                        (b.backbone, 'eager'), (b, 'eager')]
    # 2 batches x (1 warm-up + 2 timed) per part and model
    assert calls.count(models['a'].backbone) == 6
    assert calls.count(models['b']) == 6
    assert stats['a']['compiled'] == 'eager'


def test_dtypes_and_onnxruntime_are_rows_in_the_same_turns(
        timer_spy, monkeypatch):
    calls = []
    models = {'a': Tiny(calls, 'a').eval(), 'b': Tiny(calls, 'b').eval()}
    import mmtokenprune.deploy as deploy
    ort_calls = []
    real_call = deploy.OnnxForward.__call__
    monkeypatch.setattr(deploy.OnnxForward, '__call__',
                        lambda self: ort_calls.append(self) or real_call(self))
    stats = measure(models, image_size=(8, 8), batch_sizes=(1, ),
                    parts=('backbone', ), repeats=2, warmup=1,
                    dtype=('fp32', 'bf16'), runtime=('torch', 'onnxruntime'))
    assert list(stats) == ['a', 'b', 'a [bf16]', 'b [bf16]',
                           'a [onnxruntime]', 'b [onnxruntime]']
    # one timed round: a, b in fp32, then a, b under bf16 autocast
    timed = [(c[0], c[3]) for c in calls if c[1] == 'backbone']
    assert timed[-4:] == [('a', None), ('b', None), ('a', torch.bfloat16),
                          ('b', torch.bfloat16)]
    assert len(ort_calls) == 2 * (1 + 2)  # models x (warm-up + repeats)
    assert len(timer_spy['clock']) == 2 * 6 * 2  # reads x rows x repeats
    for name in ('a', 'b'):
        row = stats[f'{name} [onnxruntime]']
        assert (row['model'], row['runtime'], row['dtype']) == (
            name, 'onnxruntime', 'fp32')
        assert row['gflops_backbone'] == stats[name]['gflops_backbone']
        assert row['ms_backbone_b1'] > 0
        assert stats[f'{name} [bf16]']['dtype'] == 'bf16'


@pytest.mark.parametrize('kwargs, match', [
    (dict(runtime=('tvm', )), 'runtime'),
    (dict(dtype=('fp32', 'fp32')), 'dtype'),
    (dict(compile=True, warmup=0), 'warmup'),
])
def test_bad_variant_fails_before_any_work(kwargs, match, monkeypatch):
    monkeypatch.setattr(measure_mod, 'count_flops',
                        lambda *a, **k: pytest.fail('counted FLOPs'))
    with pytest.raises(ValueError, match=match):
        measure({'a': Tiny([], 'a')}, image_size=(8, 8), **kwargs)
