"""The benchmark's --compile, --runtime onnxruntime and several --dtype
values, end to end on a tiny UperNet: each reaches the rows it names."""
import csv

import mmtokenprune.analysis.measure as measure_mod
from test_analysis import _tiny_config, _tiny_settings
from test_measure import spy_timer
from test_tools import load_tool


def test_benchmark_rows_for_compile_dtypes_and_onnxruntime(
        tmp_path, monkeypatch):
    compiled = []
    real = measure_mod.compile_module
    monkeypatch.setattr(
        measure_mod, 'compile_module',
        lambda m, backend: compiled.append(backend) or real(m, backend))
    seen = spy_timer(monkeypatch)
    tool = load_tool('analysis/benchmark')
    out_csv = tmp_path / 'r.csv'
    table = tool.main(
        _tiny_settings(_tiny_config(tmp_path), cdcp=False) + [
            '--image-size', '64', '64', '--batch-sizes', '1', '--parts',
            'backbone', '--repeats', '1', '--warmup', '1', '--compile',
            'eager', '--dtype', 'fp32', 'bf16', '--runtime', 'torch',
            'onnxruntime', '--csv', str(out_csv)
        ])
    assert compiled == ['eager', 'eager']  # both settings' backbones
    rows = list(csv.DictReader(open(out_csv)))
    assert [r['setting'] for r in rows] == [
        'base', 'atme', 'base [bf16]', 'atme [bf16]', 'base [onnxruntime]',
        'atme [onnxruntime]'
    ]
    assert len(seen['clock']) == 2 * 6  # one timed round of six rows
    for r in rows:
        assert float(r['backbone ms b1']) > 0
    # speed-ups are against the first row: the base itself is 1
    assert float(rows[0]['backbone speed-up b1']) == 1
    assert rows[1]['FLOPs reduction'] == rows[5]['FLOPs reduction']
    assert 'torch.compile(eager, fullgraph, static shapes)' in table
    assert '[bf16] rows: bf16 autocast' in table
    assert '[onnxruntime] rows: onnxruntime 1.32.0 CPU' in table
