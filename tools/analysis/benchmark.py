"""FLOPs and latency of several settings side by side, in one run.

Every setting is a config plus overrides, built with a random backbone
(``init_cfg=None``); a CDCP-gated backbone is measured as the smaller model
it exports to (gates from weight magnitudes, training-free). The first
setting is the reference: keep the baseline (reducers off, fused SDPA)
first. Timings are interleaved across settings (A B C A B C ...) and
reported as medians, with the load average of the machine beside each row
(``mmtokenprune.analysis.measure``, shared with the sweep and the demo).

Examples:
    # the three ADE20K DeiT-S UperNet configs, batch 1 and 8, on CPU
    python tools/analysis/benchmark.py --out results.md --csv results.csv

    # the same for UperNet + Swin-T (ATME inside each attention window)
    python tools/analysis/benchmark.py --preset swin-t

    # the three DeiT-S arms plus dTPS and eTPS (TPS's default schedule)
    python tools/analysis/benchmark.py --preset deit-s-all --parts backbone

    # compiled (torch.compile, inductor) baseline vs compiled reducers
    python tools/analysis/benchmark.py --preset deit-s-all --parts backbone \\
        --batch-sizes 1 --compile

    # PyTorch fp32, PyTorch bf16 autocast and onnxruntime rows, interleaved
    python tools/analysis/benchmark.py --parts backbone --batch-sizes 1 \\
        --dtype fp32 bf16 --runtime torch onnxruntime

    # baseline vs two ATME variants, backbone only, batch 1
    python tools/analysis/benchmark.py --parts backbone --batch-sizes 1 \\
        --setting baseline configs/ade20k/deit-s16_upernet_8xb2-80k_ade20k-512x512.py \\
        --setting atme-0.8 configs/ade20k/atme_deit-s16_upernet_8xb2-80k_ade20k-512x512.py \\
            model.backbone.token_cfg.keep_ratio=0.8 \\
        --setting atme-noprop configs/ade20k/atme_deit-s16_upernet_8xb2-80k_ade20k-512x512.py \\
            model.backbone.token_cfg.prop_attn=False
"""  # noqa: E501
import argparse
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config, DictAction

import mmtokenprune.compat.applied  # noqa: F401  (environment fixes first)
from mmtokenprune.analysis.benchmark import Setting, build_setting
from mmtokenprune.analysis.benchmark_report import (format_markdown,
                                                    runs_text, write_csv)
from mmtokenprune.analysis.latency import check_timing
from mmtokenprune.analysis.measure import RUNTIMES, measure

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ADE20K = osp.join(REPO, 'configs', 'ade20k')
DEFAULT_SETTINGS = (
    ('baseline', osp.join(ADE20K,
                          'deit-s16_upernet_8xb2-80k_ade20k-512x512.py')),
    ('ATME',
     osp.join(ADE20K, 'atme_deit-s16_upernet_8xb2-80k_ade20k-512x512.py')),
    ('ATME+CDCP',
     osp.join(ADE20K,
              'atme-cdcp_deit-s16_upernet_8xb2-80k_ade20k-512x512.py')),
)
# The same three arms with UperNet + Swin-T (merging inside 7x7 windows).
SWIN_T_SETTINGS = (
    ('Swin-T', osp.join(ADE20K,
                        'swin-t_upernet_8xb2-160k_ade20k-512x512.py')),
    ('Swin-T ATME',
     osp.join(ADE20K, 'atme_swin-t_upernet_8xb2-160k_ade20k-512x512.py')),
    ('Swin-T ATME+CDCP',
     osp.join(ADE20K,
              'atme-cdcp_swin-t_upernet_8xb2-160k_ade20k-512x512.py')),
)
# Every DeiT-S UperNet arm: the three above plus TPS at its default schedule
# (0.7 of the tokens kept at blocks 3, 6, 9). A preset of its own, so the
# default (the README's three-row table, and tools/demo.py) keeps meaning
# what it says.
DEIT_S_ALL_SETTINGS = DEFAULT_SETTINGS + (
    ('dTPS',
     osp.join(ADE20K, 'dtps_deit-s16_upernet_8xb2-80k_ade20k-512x512.py')),
    ('eTPS',
     osp.join(ADE20K, 'etps_deit-s16_upernet_8xb2-80k_ade20k-512x512.py')),
    ('SPViT',
     osp.join(ADE20K, 'spvit_deit-s16_upernet_8xb2-80k_ade20k-512x512.py')),
)
# Every Swin-T UperNet arm: the three above plus TPS and SPViT inside the
# windows, at the configs' schedules (issue 23: ATME and eTPS r=24, dTPS and
# SPViT r=30 per window, the ones that pay on a CPU; r=17 did not).
SWIN_T_ALL_SETTINGS = SWIN_T_SETTINGS + (
    ('Swin-T dTPS',
     osp.join(ADE20K, 'dtps_swin-t_upernet_8xb2-160k_ade20k-512x512.py')),
    ('Swin-T eTPS',
     osp.join(ADE20K, 'etps_swin-t_upernet_8xb2-160k_ade20k-512x512.py')),
    ('Swin-T SPViT',
     osp.join(ADE20K, 'spvit_swin-t_upernet_8xb2-160k_ade20k-512x512.py')),
)
PRESETS = {
    'deit-s': DEFAULT_SETTINGS,
    'deit-s-all': DEIT_S_ALL_SETTINGS,
    'swin-t': SWIN_T_SETTINGS,
    'swin-t-all': SWIN_T_ALL_SETTINGS
}


def parse_overrides(items: Sequence[str]) -> Dict:
    """``['a.b=1', 'c=[0,1]']`` -> ``{'a.b': 1, 'c': [0, 1]}`` (values
    parsed as mmengine's ``--cfg-options``)."""
    out = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep or not key:
            raise ValueError(f'override {item!r} is not KEY=VALUE.')
        out[key] = DictAction._parse_iterable(value)
    return out


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='FLOPs and latency of settings side by side.')
    parser.add_argument(
        '--setting',
        nargs='+',
        action='append',
        metavar='NAME CONFIG [KEY=VALUE ...]',
        help='a setting: row name, config file and optional overrides; '
        'repeat the flag for more. Default: baseline, ATME and ATME+CDCP '
        'of configs/ade20k (DeiT-S UperNet 512x512). The first is the '
        'reference of speed-up and FLOPs reduction.')
    parser.add_argument(
        '--preset',
        choices=sorted(PRESETS),
        default='deit-s',
        help='the settings run when no --setting is given: the DeiT-S or '
        'the Swin-T UperNet baseline, ATME and ATME+CDCP (configs/ade20k); '
        'deit-s-all adds dTPS, eTPS and SPViT, swin-t-all dTPS, eTPS and '
        'SPViT')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        metavar='KEY=VALUE',
        help='overrides applied to every setting')
    parser.add_argument(
        '--image-size',
        type=int,
        nargs=2,
        default=(512, 512),
        metavar=('H', 'W'))
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=(1, 8))
    parser.add_argument(
        '--parts',
        nargs='+',
        choices=('backbone', 'model'),
        default=('backbone', 'model'),
        help='what to time: the backbone alone, the whole model, or both')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--threads',
        type=int,
        help='torch CPU threads while timing (torch.set_num_threads); '
        "default: torch's own. On a CPU shared with other jobs, 1 thread "
        'avoids parallel small ops stalling on a descheduled thread')
    parser.add_argument(
        '--dtype',
        nargs='+',
        default=['fp32'],
        choices=('fp32', 'fp16', 'bf16'),
        help='fp16 needs CUDA; fp16/bf16 run under autocast. Several: one '
        'row per dtype and setting ("NAME [bf16]"), timed in the same turns; '
        'speed-ups are against the first setting in the first dtype')
    parser.add_argument(
        '--compile',
        nargs='?',
        const='inductor',
        metavar='BACKEND',
        help='time the PyTorch rows compiled: torch.compile(fullgraph=True, '
        'dynamic=False) with BACKEND (default inductor); compiling happens '
        'in the warm-up rounds (needs --warmup >= 1)')
    parser.add_argument(
        '--runtime',
        nargs='+',
        default=['torch'],
        choices=RUNTIMES,
        help='onnxruntime adds rows "NAME [onnxruntime]": each model '
        'exported to ONNX at each batch shape and run by onnxruntime (CPU, '
        'fp32, the same threads), timed in the same turns as PyTorch')
    parser.add_argument(
        '--clock',
        default='wall',
        choices=('wall', 'cpu'),
        help="'cpu': process CPU time instead of wall-clock; with "
        '--threads 1 on a CPU shared with other jobs it is the latency '
        'without their preemption')
    parser.add_argument('--out', help='write the markdown table here')
    parser.add_argument('--csv', help='write the numbers as CSV here')
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> List:
    """Build the settings named on the command line (or the defaults)."""
    common = parse_overrides(args.cfg_options)
    specs = args.setting or [list(s) for s in PRESETS[args.preset]]
    names = [spec[0] for spec in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f'--setting names must differ; given twice: '
                         f'{twice}.')
    settings, loaded = [], {}
    for spec in specs:
        if len(spec) < 2:
            raise ValueError(f'--setting needs NAME CONFIG [KEY=VALUE ...]; '
                             f'got {spec}.')
        name, path, overrides = spec[0], spec[1], spec[2:]
        options = dict(common, **parse_overrides(overrides))
        print(f'[build] {name}: {path} {options or ""}', flush=True)
        if path not in loaded:  # parse each file once (mmseg:: is slow)
            loaded[path] = Config.fromfile(path)
        settings.append(build_setting(name, loaded[path], options))
    return settings


def run(args: argparse.Namespace) -> Tuple[List[Setting], str]:
    """Build, count and time the settings of ``args``; write the outputs.

    Returns:
        tuple[list[Setting], str]: the measured settings and the markdown
        table (also printed).
    """
    for dtype in args.dtype:
        check_timing(args.device, dtype, args.clock, args.threads)
    if args.compile and args.warmup < 1:
        raise ValueError('--compile needs --warmup >= 1 (the first call '
                         'compiles).')
    settings = settings_from_args(args)
    image_size = tuple(args.image_size)
    models = {s.name: s.model for s in settings}
    stats = measure(
        models,
        image_size=image_size,
        batch_sizes=args.batch_sizes,
        parts=args.parts,
        repeats=args.repeats,
        warmup=args.warmup,
        device=args.device,
        dtype=args.dtype,
        clock=args.clock,
        threads=args.threads,
        log=lambda msg: print(msg, flush=True),
        compile=args.compile or False,
        runtime=args.runtime)
    by_name = {s.name: s for s in settings}
    rows = []  # one per timed row: the settings, then their other runs
    for row, st in stats.items():
        base = by_name[st['model']]
        if row == base.name:
            base.stats.update(st)
            rows.append(base)
        else:
            rows.append(Setting(name=row, model=base.model, stats=st))
    settings = rows
    table = format_markdown(settings,
                            runs_text(args.dtype, args.compile, args.runtime),
                            args.repeats, image_size, args.clock)
    print(table, flush=True)
    for path in (args.out, args.csv):
        if path and osp.dirname(path):
            os.makedirs(osp.dirname(path), exist_ok=True)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(table)
    if args.csv:
        write_csv(settings, args.csv)
    return settings, table


def main(argv: Optional[List[str]] = None) -> str:
    """Command-line entry: run the benchmark, return the markdown table."""
    return run(parse_args(argv))[1]


if __name__ == '__main__':
    main(sys.argv[1:])
