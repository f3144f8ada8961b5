"""tools/analysis/latency_table.py and latency_budget.py end to end on a
tiny segmentor (structure only: timings of a tiny model on a shared CPU say
nothing)."""
import json

from test_latency_table import synthetic_table
from test_tools import PLAIN_BACKBONE, load_tool, tiny_seg_config

from mmtokenprune.budgets import LatencyTable

# the architecture of test_latency_table's synthetic table
BACKBONE = dict(
    PLAIN_BACKBONE,
    arch=dict(embed_dims=32, num_layers=4, num_heads=2,
              feedforward_channels=64),
    patch_size=8,
    out_indices=(1, 3))


def test_table_then_budgets(tmp_path):
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_seg_config('/nonexistent', BACKBONE))
    out = tmp_path / 'table.json'
    table = load_tool('analysis/latency_table').main([
        str(config), '--out', str(out), '--repeats', '1', '--warmup', '0',
        '--token-points', '3', '--reducers', 'ToMe', '--check-repeats', '1'
    ])
    data = json.loads(out.read_text())
    assert data['meta']['command'].startswith(
        'python tools/analysis/latency_table.py')
    assert data['arch']['patch_grid'] == [8, 8]
    assert list(data['reducers']) == ['ToMe']
    assert LatencyTable.load(str(out)).baseline_ms() == \
        table.baseline_ms()

    synthetic = tmp_path / 'synthetic.json'
    synthetic.write_text(json.dumps(synthetic_table()))
    md, js = tmp_path / 'budgets.md', tmp_path / 'budgets.json'
    result = load_tool('analysis/latency_budget').main([
        '--table', str(synthetic), '--config', str(config), '--fractions',
        '0.8', '0.6', '--reducers', 'ToMe', 'none', '--head-step', '8',
        '--repeats', '1', '--warmup', '0', '--out', str(md), '--json',
        str(js)
    ])
    rows = result['rows']
    assert [r['name'] for r in rows] == [
        'baseline', 'ToMe 0.8x', 'ToMe 0.6x', 'widths 0.8x', 'widths 0.6x'
    ]
    base = LatencyTable.load(synthetic_table()).baseline_ms()
    for r, fraction in zip(rows[1:], (0.8, 0.6, 0.8, 0.6)):
        assert r['budget_ms'] == fraction * base
        assert r['predicted_ms'] <= r['budget_ms']
        assert r['measured_ms'] > 0
    assert rows[1]['token_cfg']['type'] == 'ToMe'
    assert rows[3]['token_cfg'] is None and rows[3]['widths'] != 'full'
    text = md.read_text()
    assert '| setting | budget ms | predicted ms | measured ms |' in text
    assert text.count('\n| ') == 1 + len(rows)  # header and rows
    assert json.loads(js.read_text())['rows'][2]['name'] == 'ToMe 0.6x'
