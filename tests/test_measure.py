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
