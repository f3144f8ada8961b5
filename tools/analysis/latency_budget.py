"""Latency budgets: solve, build, measure, and say predicted vs measured.

For each budget (fractions of the table's predicted baseline backbone
latency, or milliseconds), the solver
(:func:`~mmtokenprune.budgets.latency_solver.solve_budget`) picks a
per-layer token schedule and channel widths from a latency table
(``tools/analysis/latency_table.py``); the models are built from the config
with those settings (``token_cfg`` with per-layer ``r``, ``channel_cfg``
with the widths as a prune spec; random weights) and timed side by side
with the baseline, interleaved, medians, through the benchmark's
:func:`~mmtokenprune.analysis.measure.measure`, with the table's batch,
dtype, clock and threads. The table printed (and written with ``--out``)
gives each budget, what the table predicted and what was measured.

Examples:
    # the issue's demonstration: DeiT-S UperNet 512x512, batch 1, CPU;
    # 0.8x, 0.6x and 0.45x of the baseline backbone, ATME + channel widths
    python tools/analysis/latency_table.py \\
        configs/ade20k/deit-s16_upernet_8xb2-80k_ade20k-512x512.py \\
        --out work_dirs/latency/deit-s_512_b1_cpu.json
    python tools/analysis/latency_budget.py \\
        --table work_dirs/latency/deit-s_512_b1_cpu.json \\
        --fractions 0.8 0.6 0.45 --repeats 15 \\
        --out work_dirs/latency/budget_atme.md

    # every reducer with widths, and widths alone, in one interleaved run
    python tools/analysis/latency_budget.py --table T.json \\
        --reducers ATME ToMe dTPS eTPS SPViT none

    # tokens only, with eTPS
    python tools/analysis/latency_budget.py --table T.json --reducers eTPS \\
        --no-channels
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
from typing import Dict, List, Optional

import mmtokenprune.compat.applied  # noqa: F401  (environment fixes first)
from mmtokenprune.analysis.benchmark import build_setting
from mmtokenprune.analysis.build import check_built
from mmtokenprune.analysis.latency import CLOCK_TEXT
from mmtokenprune.analysis.measure import measure
from mmtokenprune.budgets import LatencyTable, solve_budget
from mmtokenprune.utils.config import load_config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIG = osp.join(REPO, 'configs', 'ade20k',
                          'deit-s16_upernet_8xb2-80k_ade20k-512x512.py')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Solve latency budgets, build the models, measure them '
        'beside the baseline.')
    parser.add_argument('--table', required=True,
                        help='latency table JSON (tools/analysis/'
                        'latency_table.py) of this device')
    parser.add_argument('--config', default=DEFAULT_CONFIG,
                        help='the baseline config (reducers off)')
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        '--fractions', type=float, nargs='+', default=[0.8, 0.6, 0.45],
        help="budgets as fractions of the table's predicted baseline "
        'backbone latency')
    group.add_argument('--budgets-ms', type=float, nargs='+',
                       help='budgets in ms (the table\'s clock and batch)')
    parser.add_argument(
        '--reducers', nargs='+', default=['ATME'],
        help="token reducer types, each solved for every budget; 'none' "
        'for channels only')
    parser.add_argument('--no-channels', action='store_true',
                        help='reduce tokens only (full widths)')
    parser.add_argument('--layers', type=int, nargs='+',
                        help='layers that may reduce tokens (default: all '
                        'but the last)')
    parser.add_argument('--head-step', type=int, default=16)
    parser.add_argument('--ffn-step', type=int)
    parser.add_argument('--repeats', type=int, default=15)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--count-flops', action='store_true',
                        help='also count FLOPs by tracing (slow)')
    parser.add_argument('--out', help='write the markdown table here')
    parser.add_argument('--json', help='write every number as JSON here')
    return parser.parse_args(argv)


def _widths(layers) -> str:
    qk = [c.qk_dims for c in layers]
    v = [c.v_dims for c in layers]
    f = [c.ffn_dims for c in layers]
    full = (qk[0] == max(qk) and len(set(qk + v)) == 1 and len(set(f)) == 1)
    if full:
        return f'qk/v {qk[0]}, ffn {f[0]} (all layers)'
    return f'qk {qk}, v {v}, ffn {f}'


def run(args: argparse.Namespace, argv: Optional[List[str]] = None) -> Dict:
    table = LatencyTable.load(args.table)
    meta = table.meta
    base_pred = table.baseline_ms()
    if args.budgets_ms:
        budgets = [(f'{b:g} ms', b) for b in args.budgets_ms]
    else:
        budgets = [(f'{f:g}x', f * base_pred) for f in args.fractions]
    cfg = load_config(args.config)
    solutions = []
    for reducer in args.reducers:
        reducer = None if reducer.lower() == 'none' else reducer
        if reducer is None and args.no_channels:
            raise ValueError("--reducers none with --no-channels leaves "
                             'nothing to compress.')
        for label, budget in budgets:
            sol = solve_budget(
                table, budget, reducer=reducer,
                channels=not args.no_channels, layers=args.layers,
                head_step=args.head_step, ffn_step=args.ffn_step,
                batch=meta['batch'])
            name = f'{reducer or "widths"} {label}'
            solutions.append((name, sol))
            print(f'[solve] {name}: budget {budget:.1f} ms, predicted '
                  f'{sol.predicted_ms:.1f} ms, token_cfg {sol.token_cfg()}, '
                  f'{_widths(sol.layers)}', flush=True)
    settings = [build_setting('baseline', cfg)]
    bb = settings[0].model.backbone
    table.check_arch(bb.embed_dims // bb.arch_settings['num_heads'],
                     bb.arch_settings['feedforward_channels'],
                     bb.num_layers, tuple(bb.patch_resolution),
                     f'config {args.config}')
    for name, sol in solutions:
        options = {
            'model.backbone.token_cfg': sol.token_cfg(),
            'model.backbone.channel_cfg': sol.channel_cfg()
        }
        settings.append(build_setting(name, cfg, options))
        check_built(settings[-1].model.backbone, name,
                    [c.r for c in sol.layers],
                    [(c.qk_dims, c.v_dims, c.ffn_dims) for c in sol.layers],
                    sol.reducer)
    models = {s.name: s.model.eval() for s in settings}
    image_size = tuple(table.arch['img_size'])
    stats = measure(
        models,
        image_size=image_size,
        batch_sizes=[meta['batch']],
        parts=['backbone'],
        repeats=args.repeats,
        warmup=args.warmup,
        dtype=meta['dtype'],
        clock=meta['clock'],
        threads=meta['threads'],
        count=None if args.count_flops else [],
        log=lambda msg: print(msg, flush=True))
    key = f'ms_backbone_b{meta["batch"]}'
    base_ms = stats['baseline'][key]
    rows = [dict(
        name='baseline', budget_ms=None, predicted_ms=base_pred,
        measured_ms=base_ms, flops_ratio=1.0, token_cfg=None, widths='full',
        times=stats['baseline'][f'times_backbone_b{meta["batch"]}'])]
    for name, sol in solutions:
        s = stats[name]
        rows.append(dict(
            name=name, budget_ms=sol.budget_ms,
            predicted_ms=sol.predicted_ms, measured_ms=s[key],
            flops_ratio=sol.flops_ratio, token_cfg=sol.token_cfg(),
            widths=_widths(sol.layers),
            times=s[f'times_backbone_b{meta["batch"]}']))
    result = dict(
        table=args.table, table_meta=meta, table_checks=table.checks,
        config=args.config,
        reducers=args.reducers, channels=not args.no_channels,
        repeats=args.repeats, device=stats['baseline']['device'],
        load_avg=stats['baseline']['load_avg'], rows=rows,
        command=' '.join(['python', 'tools/analysis/latency_budget.py'] +
                         list(sys.argv[1:] if argv is None else argv)))
    text = format_markdown(result)
    print(text, flush=True)
    for path, body in ((args.out, text),
                       (args.json, json.dumps(result, indent=1))):
        if path:
            if osp.dirname(path):
                os.makedirs(osp.dirname(path), exist_ok=True)
            with open(path, 'w') as f:
                f.write(body)
    return result


def format_markdown(result: Dict) -> str:
    meta = result['table_meta']
    check = result.get('table_checks', {}).get('baseline', {})
    rows = result['rows']
    base = rows[0]['measured_ms']
    lines = [
        f'Latency budgets, backbone only, batch {meta["batch"]}, '
        f'{meta["dtype"]}, {CLOCK_TEXT[meta["clock"]]}, median of '
        f'{result["repeats"]} interleaved rounds. Device: '
        f'{result["device"]}; load average {result["load_avg"]:.2f} while '
        f'timing. Table: {result["table"]} (measured {meta["date"]}, load '
        f'{meta["load_avg"]["mean"]:.2f}; its baseline check: predicted '
        f'{check.get("predicted_ms", float("nan")):.1f} ms, measured '
        f'{check.get("measured_ms", float("nan")):.1f} ms, backbone / '
        f'its pieces in the same rounds '
        f'{check.get("composition", float("nan")):.3f}). Reducers: '
        f'{", ".join(result["reducers"])}; channel widths: '
        f'{"solved" if result["channels"] else "full"}.', '',
        '| setting | budget ms | predicted ms | measured ms | measured / '
        'budget | within 10% | measured / baseline | encoder FLOPs kept | '
        'token_cfg | widths |', '|---|---|---|---|---|---|---|---|---|---|'
    ]
    for r in rows:
        budget = '' if r['budget_ms'] is None else f'{r["budget_ms"]:.1f}'
        over = within = ''
        if r['budget_ms'] is not None:
            ratio = r['measured_ms'] / r['budget_ms']
            over = f'{ratio:.3f}'
            within = 'yes' if abs(ratio - 1) <= 0.1 else 'no'
        spread = statistics.pstdev(r['times']) / statistics.mean(r['times'])
        tc = r['token_cfg']
        tc = '' if tc is None else f'{tc["type"]} r={tc["r"]} at ' \
            f'{tc["layers"]}'
        lines.append(
            f'| {r["name"]} | {budget} | {r["predicted_ms"]:.1f} | '
            f'{r["measured_ms"]:.1f} (±{spread:.0%}) | {over} | {within} | '
            f'{r["measured_ms"] / base:.3f} | {r["flops_ratio"]:.3f} | '
            f'{tc} | {r["widths"]} |')
    if check.get('measured_ms'):
        lines += [
            '', f'Drift: the baseline measured {base:.1f} ms here and '
            f'{check["measured_ms"]:.1f} ms when the table was measured '
            f'(x{base / check["measured_ms"]:.3f}); measured / budget moves '
            'with it, measured / baseline does not.'
        ]
    lines += ['', f'Command: `{result["command"]}`', '']
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> Dict:
    return run(parse_args(argv), argv)


if __name__ == '__main__':
    main()
