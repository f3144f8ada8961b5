"""Measure a ViT's latency table on this device and write it as JSON.

Per-block latency over token counts x widths (Q/K and V per head, MLP
hidden), each reducer's own cost over tokens x removed fraction, and the
parts outside the blocks, for the backbone of a config (random weights),
with the device, threads, dtype, batch, clock, torch version, date and load
average written in the file (see
``mmtokenprune.budgets.latency_table``). The solver
(``tools/analysis/latency_budget.py``) and the latency budget loss read it.

Examples:
    # DeiT-S at 512x512, batch 1, one thread, process CPU time (~2 min on
    # a quiet 2-core VM)
    python tools/analysis/latency_table.py \\
        configs/ade20k/deit-s16_upernet_8xb2-80k_ade20k-512x512.py \\
        --out work_dirs/latency/deit-s_512_b1_cpu.json
"""
import argparse
import os
import os.path as osp
import sys
import time
from typing import List, Optional

from mmengine.config import DictAction

import mmtokenprune.compat.applied  # noqa: F401  (environment fixes first)
from mmtokenprune.analysis.latency import check_timing
from mmtokenprune.analysis.latency_table_build import (default_grids,
                                                       measure_table)
from mmtokenprune.utils.config import build_model, load_config


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Measure a ViT latency table on this device.')
    parser.add_argument('config', help='a config with a ViT backbone')
    parser.add_argument('--out', required=True, help='JSON file to write')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, default={},
        metavar='KEY=VALUE',
        help='config overrides (e.g. model.backbone.img_size=...)')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument(
        '--token-points', type=int, default=16,
        help='evenly spaced token counts from N/4 to N (plus N/4..N/64 '
        'halving)')
    parser.add_argument(
        '--reducers', nargs='*',
        help='reducer types to measure (default: every registered one)')
    parser.add_argument('--check-repeats', type=int, default=5,
                        help='rounds of the whole-backbone check (0: skip)')
    parser.add_argument(
        '--no-smooth', action='store_true',
        help='keep the raw medians (default: each series fitted along the '
        'token axis with a + bN + cN^2, raw medians kept as ms_raw)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--dtype', default='fp32',
                        choices=('fp32', 'fp16', 'bf16'))
    parser.add_argument(
        '--threads', type=int, default=1,
        help='torch CPU threads while timing (default 1: on a shared CPU '
        'it avoids stalls on descheduled threads)')
    parser.add_argument(
        '--clock', default='cpu', choices=('wall', 'cpu'),
        help="'cpu' (default): process CPU time, with 1 thread the latency "
        "without other jobs' preemption; 'wall' on a quiet machine or GPU")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None):
    args = parse_args(argv)
    check_timing(args.device, args.dtype, args.clock, args.threads)
    cfg = load_config(args.config, args.cfg_options)
    backbone = build_model(cfg).backbone.eval()
    head_dims = backbone.embed_dims // backbone.arch_settings['num_heads']
    grids = default_grids(
        int(backbone.patch_resolution[0] * backbone.patch_resolution[1]),
        backbone.num_extra_tokens, head_dims,
        backbone.arch_settings['feedforward_channels'], args.token_points)
    start = time.perf_counter()
    table = measure_table(
        backbone,
        batch=args.batch,
        grids=grids,
        reducers=args.reducers,
        repeats=args.repeats,
        warmup=args.warmup,
        device=args.device,
        dtype=args.dtype,
        clock=args.clock,
        threads=args.threads,
        check_repeats=args.check_repeats,
        smooth=not args.no_smooth,
        log=lambda msg: print(msg, flush=True))
    table.meta.update(
        config=osp.relpath(args.config), cfg_options=args.cfg_options,
        command=' '.join(['python', 'tools/analysis/latency_table.py'] +
                         list(argv if argv is not None else sys.argv[1:])),
        measure_s=round(time.perf_counter() - start, 1))
    if osp.dirname(args.out):
        os.makedirs(osp.dirname(args.out), exist_ok=True)
    table.dump(args.out)
    lin = table.checks['linearity']
    print(f'[table] {args.out}: {table.meta["device"]}, batch '
          f'{args.batch}, {args.dtype}, clock {args.clock}, load '
          f'{table.meta["load_avg"]["mean"]:.2f}; linear-in-widths fit off '
          f'by at most {lin["attention_max_rel_residual"]:.1%} (attention) '
          f'/ {lin["mlp_max_rel_residual"]:.1%} (MLP); '
          f'{table.meta["measure_s"]:.0f} s', flush=True)
    return table


if __name__ == '__main__':
    main()
