"""The latency-budget solver on a synthetic table."""
import re

import pytest
from test_latency_table import synthetic_table, tiny_vit

from mmtokenprune.budgets import (LatencyTable, LayerChoice, encoder_flops,
                                 schedule_counts, solve_budget)


@pytest.fixture(scope='module')
def table():
    return LatencyTable.load(synthetic_table())


@pytest.mark.parametrize('reducer,channels', [('ATME', True),
                                              ('dTPS', True),
                                              ('SPViT', False),
                                              (None, True)])
def test_schedule_respects_budget_and_builds(table, reducer, channels):
    base = table.baseline_ms()
    for fraction in (0.8, 0.6):
        sol = solve_budget(table, fraction * base, reducer=reducer,
                           channels=channels, head_step=8)
        assert sol.predicted_ms <= fraction * base
        # the prediction is the table's own for what was chosen
        assert sol.predicted_ms == pytest.approx(
            table.predict(sol.layers, sol.reducer)['ms'])
        for c in sol.layers:
            assert (16 - c.qk_dims) % 8 == 0 and (16 - c.v_dims) % 8 == 0
            assert c.qk_dims >= 4 and c.ffn_dims >= 16
            if not channels:
                assert (c.qk_dims, c.v_dims, c.ffn_dims) == (16, 16, 64)
        if reducer is None:
            assert sol.token_cfg() is None
        # the config it gives builds a model with the same token counts
        spec = sol.prune_spec()
        model = tiny_vit(
            token_cfg=sol.token_cfg(),
            channel_cfg=None if spec is None else dict(spec=spec.to_dict()))
        counts = schedule_counts(64, 1, [c.r for c in sol.layers],
                                 sol.reducer)
        assert [(c['attn'], c['attn'], c['mlp']) for c in counts] == \
            model.token_counts()
        for layer, c in zip(model.layers, sol.layers):
            assert layer.attn.qk_dims == c.qk_dims
            assert layer.ffn.layers[0][0].out_features == c.ffn_dims


def test_merging_keeps_at_least_half_per_layer(table):
    sol = solve_budget(table, 0.45 * table.baseline_ms(), reducer='ToMe',
                       channels=False)
    assert all(k >= 0.5 for k in sol.keep_ratios)
    assert sol.layers[-1].r == 0  # the last layer does not reduce
    with pytest.raises(ValueError, match='min_keep=0.3'):
        solve_budget(table, 10., reducer='ToMe', min_keep=0.3)


def test_smaller_budget_never_costs_more(table):
    base = table.baseline_ms()
    full_flops = encoder_flops(table, [table.full_widths()] * 4, None)
    previous = None
    for fraction in (0.95, 0.85, 0.75, 0.65, 0.55, 0.45):
        sol = solve_budget(table, fraction * base, reducer='ATME')
        assert sol.flops_ratio == pytest.approx(
            encoder_flops(table, sol.layers, sol.reducer) / full_flops)
        if previous is not None:
            assert sol.predicted_ms <= previous.predicted_ms
            assert sol.flops_ratio <= previous.flops_ratio + 1e-9
        previous = sol
    # a budget above the baseline changes nothing
    sol = solve_budget(table, 2 * base)
    assert sol.steps == 0 and sol.token_cfg() is None and \
        sol.prune_spec() is None


def test_reducer_overhead_is_paid(table):
    """With a reducer that costs more than the tokens it saves, the solver
    prunes channels instead (latency-aware, not FLOPs-aware)."""
    costly = LatencyTable.load(synthetic_table(reducer_scale=100.))
    sol = solve_budget(costly, 0.8 * costly.baseline_ms(), reducer='ATME')
    assert sol.token_cfg() is None and sol.prune_spec() is not None
    cheap = solve_budget(table, 0.8 * table.baseline_ms(), reducer='ATME')
    assert cheap.token_cfg() is not None


def test_impossible_budget_names_budget_and_floor(table):
    # the most compressed model the constraints allow, by hand: ToMe halves
    # the tokens at layers 0-2 (64 -> 32 -> 16 -> 8), widths at the floor
    floor = table.predict([LayerChoice(32, 8, 8, 16),
                           LayerChoice(16, 8, 8, 16),
                           LayerChoice(8, 8, 8, 16),
                           LayerChoice(0, 8, 8, 16)], 'ToMe')['ms']
    with pytest.raises(ValueError) as err:
        solve_budget(table, 0.9 * floor, reducer='ToMe', head_step=8,
                     ffn_step=16)
    msg = str(err.value)
    assert f'{0.9 * floor:.2f} ms' in msg
    assert re.search(rf'smallest reachable latency {floor:.2f} ms', msg)
    sol = solve_budget(table, 1.001 * floor, reducer='ToMe', head_step=8,
                       ffn_step=16)
    assert sol.predicted_ms <= 1.001 * floor


def test_bad_requests(table):
    with pytest.raises(ValueError, match='batch 1; got batch=8'):
        solve_budget(table, 10., batch=8)
    with pytest.raises(ValueError, match="no reducer 'eTPS'"):
        solve_budget(table, 10., reducer='eTPS')
    with pytest.raises(ValueError, match='must be one of'):
        solve_budget(table, 10., reducer='Nope')


def test_widths_narrow_evenly(table):
    """Identical layers are narrowed alike: a move's cost grows as its knob
    empties, so no layer is emptied first."""
    sol = solve_budget(table, 0.75 * table.baseline_ms(), reducer=None,
                       head_step=8)
    for knob, step in (('qk_dims', 8), ('v_dims', 8), ('ffn_dims', 2)):
        values = [getattr(c, knob) for c in sol.layers]
        assert max(values) - min(values) <= step, (knob, values)


def test_floor_is_searched_not_assumed():
    """A reducer costing about what it saves: the fastest model merges in
    some layers, not all, so the smallest reachable latency is below both
    'merge the most everywhere' and 'merge nowhere' (narrowest widths)."""
    mid = LatencyTable.load(synthetic_table(reducer_scale=20.))
    narrow = mid.predict([LayerChoice(0, 8, 8, 16)] * 4, 'ToMe')['ms']
    most = mid.predict([LayerChoice(32, 8, 8, 16),
                        LayerChoice(16, 8, 8, 16),
                        LayerChoice(8, 8, 8, 16),
                        LayerChoice(0, 8, 8, 16)], 'ToMe')['ms']
    budget = min(narrow, most) - 0.1
    sol = solve_budget(mid, budget, reducer='ToMe', head_step=8,
                       ffn_step=16)
    assert sol.predicted_ms <= budget
    assert 0 < sum(1 for c in sol.layers if c.r) < 3
