"""Accuracy against speed of one trained model over a grid of settings.

Evaluates the checkpoint under each setting (mIoU and per-class IoU, or
top-1), counts GFLOPs and times the backbone and whole model at batch 1
and 8 in turns with the unreduced model; writes ``OUT/sweep.csv``,
``OUT/sweep.md`` and ``OUT/pareto.png``. A rerun skips the settings already
in the CSV. ``--timing-only`` skips evaluation (the checkpoint is optional
and not read: latency depends on shapes, not weight values) and times the
settings exactly as a full sweep does; score columns stay empty and no
Pareto plot is drawn.

Setting strings (parts joined by ``+``; see
mmtokenprune/analysis/sweep_settings.py):
``baseline``, ``ATME:keep_ratio=0.9``, ``ToMe:r=8``,
``ATME:r=16,layers=0-10,prop_attn=false``,
``spec=DIR/prune_spec.json[,ckpt=DIR/pruned.pth]``,
``ATME:keep_ratio=0.9+spec=DIR/prune_spec.json``, ``ckpt=PATH``.

Examples:
    python tools/analysis/sweep.py \\
        configs/camvid/deit-t16_fcn_1xb4-2k_camvid-256x256.py \\
        work_dirs/camvid_deit-t16_2k/iter_2000.pth \\
        --out work_dirs/sweep_camvid \\
        --threads 1 --clock cpu --settings baseline \\
        ATME:keep_ratio=0.75,layers=0/3 ToMe:keep_ratio=0.75,layers=0/3

    # latency only, no checkpoint needed
    python tools/analysis/sweep.py \\
        configs/camvid/deit-t16_fcn_1xb4-2k_camvid-256x256.py --timing-only \\
        --out work_dirs/sweep_camvid_timing --threads 1 --clock cpu \\
        --settings baseline ATME:keep_ratio=0.75,layers=0/3
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import DictAction

import mmtokenprune.compat.applied  # noqa: F401  (environment fixes first)
from mmtokenprune.utils.config import load_config
from mmtokenprune.analysis.sweep import run_sweep
from mmtokenprune.analysis.sweep_report import format_markdown, plot_pareto
from mmtokenprune.analysis.sweep_settings import parse_setting


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Accuracy vs speed over settings of one checkpoint.')
    parser.add_argument(
        'config',
        help='config the checkpoint was trained '
        'with (its reducers/pruning are replaced)')
    parser.add_argument(
        'checkpoint',
        nargs='?',
        help='trained checkpoint (optional with --timing-only)')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument(
        '--settings',
        nargs='+',
        required=True,
        metavar='SETTING',
        help='setting strings; put `baseline` first for the Δ column')
    parser.add_argument(
        '--image-size',
        type=int,
        nargs=2,
        default=(360, 480),
        metavar=('H', 'W'),
        help='input of FLOPs and latency')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=(1, 8))
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument(
        '--clock',
        choices=('wall', 'cpu'),
        default='wall',
        help="'cpu': the process's CPU time instead of wall-clock; with "
        '--threads 1 on a CPU shared with other jobs it is the latency on a '
        'free core')
    parser.add_argument(
        '--threads',
        type=int,
        help='torch CPU threads (torch.set_num_threads) for evaluation and '
        'timing; default: torch\'s')
    parser.add_argument(
        '--timing-only',
        action='store_true',
        help='skip evaluation: build each setting with random weights (no '
        'checkpoint read) and count/time it as a full sweep does; score '
        'columns stay empty')
    parser.add_argument(
        '--accuracy-only',
        action='store_true',
        help='evaluate and count FLOPs, time nothing (latency columns stay '
        'empty; a later sweep into the same --out adds them)')
    parser.add_argument('--title', default='', help='plot/table title')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='config overrides, e.g. data_root=... (copied into every '
        'dataloader\'s dataset)')
    parser.add_argument('--no-progress', action='store_true')
    args = parser.parse_args(argv)
    if args.checkpoint is None and not args.timing_only:
        parser.error('checkpoint is required unless --timing-only is given')
    if args.timing_only and args.accuracy_only:
        parser.error('--timing-only and --accuracy-only exclude each other')
    return args


def main(argv: Optional[List[str]] = None) -> str:
    """Run the sweep; return the markdown table."""
    args = parse_args(argv)
    for text in args.settings:  # fail before any work
        parse_setting(text, check_checkpoints=not args.timing_only)
    cfg = load_config(args.config, args.cfg_options)
    md_path = osp.join(args.out, 'sweep.md')
    png_path = osp.join(args.out, 'pareto.png')

    def report(rows):
        with open(md_path, 'w') as f:
            f.write(format_markdown(rows, args.title))
        if not (args.timing_only or args.accuracy_only):
            plot_pareto(
                rows, png_path, batch=min(args.batch_sizes), title=args.title)

    rows = run_sweep(
        cfg,
        args.checkpoint,
        args.settings,
        args.out,
        image_size=tuple(args.image_size),
        batch_sizes=args.batch_sizes,
        repeats=args.repeats,
        warmup=args.warmup,
        clock=args.clock,
        threads=args.threads,
        timing_only=args.timing_only,
        accuracy_only=args.accuracy_only,
        on_row=report,
        progress=not args.no_progress)
    report(rows)
    table = format_markdown(rows, args.title)
    print(table)
    written = [osp.join(args.out, 'sweep.csv'), md_path]
    written += [] if args.timing_only or args.accuracy_only else [png_path]
    print(f'wrote {", ".join(written)}')
    return table


if __name__ == '__main__':
    main(sys.argv[1:])
