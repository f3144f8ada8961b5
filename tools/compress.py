"""One command from a trained model to the compressed model that meets a
latency budget on this device.

Measures (or reuses) the device's latency table, lists the compressed
models it predicts within the budget (token reducer x layers x keep ratio,
with and without magnitude channel pruning, and the FLOPs solver's pick),
scores each on a few calibration images without training (KL divergence
to the uncompressed model's predictions), times the best few beside the
baseline, and writes the pick as a config delta, its pruned weights, a
fine-tune config with distillation and a report (see
``docs/user_guides/compress.md``). Killed, it resumes when run again with
the same options.

Examples:
    # 60 % of today's backbone latency, on this CPU
    python tools/compress.py CONFIG CHECKPOINT --latency 0.6 \\
        --out work_dirs/compress_0.6

    # the CamVid xseq model, calibration frames from its training
    # sequences, and every candidate scored on 0006R0 (the proxy's check)
    python tools/compress.py \\
        configs/camvid/deit-t16_fcn_1xb4-4k-balanced_camvid-xseq-256x256.py \\
        work_dirs/camvid_deit-t16_4k-bal-xseq/iter_4000.pth \\
        --latency 0.55 --calib-split train --evaluate all \\
        --out work_dirs/compress_xseq_0.55

    # the same through mim, from an installed wheel
    mim run mmtokenprune compress CONFIG CHECKPOINT --latency 0.6
"""
import argparse
import os
import os.path as osp
import sys
import time
from typing import List, Optional

from mmengine.config import DictAction
from mmengine.logging import MMLogger

import mmtokenprune.compat.applied  # noqa: F401  (environment fixes first)
from mmtokenprune.analysis.compress import (CompressError, check_options,
                                            run_compress)
from mmtokenprune.analysis.compress_proxy import SPLITS
from mmtokenprune.analysis.table_cache import DEFAULT_CACHE
from mmtokenprune.utils.checkpoint_file import check_checkpoint_file
from mmtokenprune.utils.config import load_config


def _evaluate(text: str) -> Optional[int]:
    if text == 'all':
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--evaluate takes a count or 'all'; got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError('--evaluate must be >= 0')
    return value


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description='Compress a trained model to a latency budget.')
    p.add_argument('config', help='the trained model\'s config')
    p.add_argument('checkpoint', help='its checkpoint')
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument(
        '--latency', type=float,
        help="the budget as a fraction of the baseline's measured backbone "
        'latency, in (0, 1)')
    budget.add_argument('--latency-ms', type=float,
                        help='the budget in ms (backbone, --batch, clock)')
    p.add_argument('--out', help='output folder (default: '
                   'work_dirs/compress/<config name>_<budget>)')
    p.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    p.add_argument('--calib', type=int, default=32,
                   help='calibration images (default 32)')
    p.add_argument('--calib-split', default='val', choices=SPLITS,
                   help='where they come from (default: val)')
    p.add_argument('--reducers', nargs='+', default=['ATME', 'ToMe'],
                   help='token reducers to consider (default: ATME ToMe)')
    p.add_argument(
        '--widths', type=float, nargs='+', default=[1.0, 0.85, 0.7],
        help='encoder FLOPs fractions magnitude channel pruning (CDCP '
        'widths) keeps; 1 is full widths (default: 1 0.85 0.7)')
    p.add_argument('--top', type=int, default=3,
                   help='candidates timed per round (default 3)')
    p.add_argument('--evaluate', type=_evaluate, default=0,
                   help="score the N best candidates by proxy (and every "
                   "timed one) on the validation set, or 'all' (default 0)")
    p.add_argument('--tolerance', type=float, default=0.05,
                   help='measured latency may exceed the budget by this '
                   'fraction (default 0.05)')
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--dtype', default='fp32', choices=('fp32', 'fp16',
                                                       'bf16'))
    p.add_argument('--clock', choices=('cpu', 'wall'),
                   help='timing clock (default: cpu time on CPUs, wall on '
                   'GPUs)')
    p.add_argument('--timing-threads', type=int,
                   help='torch threads while timing (default 1 on CPUs)')
    p.add_argument('--threads', type=int,
                   help='torch threads for scoring and evaluation')
    p.add_argument('--repeats', type=int, default=10)
    p.add_argument('--table-cache', default=DEFAULT_CACHE,
                   help=f'latency table cache (default {DEFAULT_CACHE})')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   default={}, metavar='KEY=VALUE',
                   help='config overrides (e.g. data_root=...)')
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None):
    args = parse_args(argv)
    try:
        check_options(args.latency, args.latency_ms, args.widths)
        check_checkpoint_file(args.checkpoint, 'the `checkpoint` argument')
    except (OSError, ValueError) as err:
        sys.exit(f'error: {err}')
    cfg = load_config(args.config, args.cfg_options,
                      key='the `config` argument')
    budget = (f'{args.latency:g}x' if args.latency is not None else
              f'{args.latency_ms:g}ms')
    out = args.out or osp.join(
        'work_dirs', 'compress',
        f'{osp.splitext(osp.basename(args.config))[0]}_{budget}')
    command = ' '.join(['python', 'tools/compress.py'] +
                       list(sys.argv[1:] if argv is None else argv))
    os.makedirs(out, exist_ok=True)
    logger = MMLogger.get_instance(
        f'mmtokenprune_compress_{time.time_ns()}',
        log_file=osp.join(out, 'compress.log'))
    try:
        run_compress(
            cfg, args.checkpoint, out, latency=args.latency,
            latency_ms=args.latency_ms, device=args.device, calib=args.calib,
            calib_split=args.calib_split, reducers=args.reducers,
            widths=args.widths, top=args.top, evaluate=args.evaluate,
            tolerance=args.tolerance, batch=args.batch, dtype=args.dtype,
            clock=args.clock, timing_threads=args.timing_threads,
            threads=args.threads, repeats=args.repeats,
            table_cache=args.table_cache, config_path=args.config,
            command=command, log=logger.info)
    except CompressError as err:
        sys.exit(f'error: {err}')


if __name__ == '__main__':
    main()
