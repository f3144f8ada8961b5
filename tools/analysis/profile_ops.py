"""Where a backbone's time goes: operators by self CPU time, side by side.

Profiles the backbone of each setting (built as the benchmark builds it,
random weights) with ``torch.profiler`` and splits the self CPU time into
*compute* (matrix products, attention, convolution, GELU, layer norm: what
FLOPs count) and *everything else* (indexing, copies, masks, sorting: what
FLOPs do not see), then lists the operators whose time grew most against
the first setting. A speed-up below the FLOPs reduction shows up as
"everything else" not shrinking, or growing.

Example (Swin-T with and without ATME, batch 1, one thread)::

    python tools/analysis/profile_ops.py \\
        --setting Swin-T configs/ade20k/swin-t_upernet_8xb2-160k_ade20k-512x512.py \\
        --setting ATME configs/ade20k/atme_swin-t_upernet_8xb2-160k_ade20k-512x512.py
"""  # noqa: E501
import argparse
import os
import sys
from typing import Dict, List, Optional

import torch
from torch.profiler import ProfilerActivity, profile

import mmtokenprune.compat.applied  # noqa: F401  (environment fixes first)
from mmtokenprune.analysis.benchmark import build_setting

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmark import parse_overrides  # noqa: E402

#: Operators FLOPs account for; the rest is data movement and bookkeeping.
COMPUTE = ('aten::addmm', 'aten::mm', 'aten::bmm', 'aten::baddbmm',
           'aten::_scaled_dot_product_flash_attention_for_cpu',
           'aten::mkldnn_convolution', 'aten::gelu',
           'aten::native_layer_norm')


def profile_backbone(backbone: torch.nn.Module, image_size, batch: int,
                     repeats: int, warmup: int) -> Dict[str, float]:
    """Self CPU ms per forward of every operator of ``backbone``."""
    x = torch.randn(batch, 3, *image_size)
    with torch.no_grad():
        for _ in range(warmup):
            backbone(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(repeats):
                backbone(x)
    return {
        e.key: e.self_cpu_time_total / repeats / 1000
        for e in prof.key_averages()
    }


def report(names: List[str], ops: List[Dict[str, float]], top: int) -> str:
    """A markdown table of compute vs the rest, then the operators that
    grew most against the first setting."""
    def split(o):
        compute = sum(v for k, v in o.items() if k in COMPUTE)
        return compute, sum(o.values()) - compute

    lines = ['| setting | total ms | compute ms | everything else ms |',
             '|---|---:|---:|---:|']
    for name, o in zip(names, ops):
        compute, rest = split(o)
        lines.append(f'| {name} | {compute + rest:.1f} | {compute:.1f} | '
                     f'{rest:.1f} |')
    ref = ops[0]
    for name, o in zip(names[1:], ops[1:]):
        lines += ['', f'Operators that grew most, {names[0]} -> {name} '
                  '(self CPU ms per forward):', '',
                  f'| operator | {names[0]} | {name} |', '|---|---:|---:|']
        grown = sorted(o, key=lambda k: ref.get(k, 0.) - o[k])[:top]
        lines += [f'| `{k}` | {ref.get(k, 0.):.2f} | {o[k]:.2f} |'
                  for k in grown]
    return '\n'.join(lines)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Operator self CPU time of backbones, side by side.')
    parser.add_argument(
        '--setting', nargs='+', action='append', required=True,
        metavar='NAME CONFIG [KEY=VALUE ...]',
        help='row name, config file and overrides; the first is the '
        'reference')
    parser.add_argument('--image-size', type=int, nargs=2,
                        default=(512, 512), metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--top', type=int, default=10)
    args = parser.parse_args(argv)
    for s in args.setting:
        if len(s) < 2:
            parser.error(f'--setting {s}: needs NAME CONFIG [KEY=VALUE ...]')
    return args


def main(argv: Optional[List[str]] = None) -> str:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    names, ops = [], []
    for name, config, *overrides in args.setting:
        setting = build_setting(name, config, parse_overrides(overrides))
        names.append(name)
        ops.append(profile_backbone(setting.model.backbone,
                                    tuple(args.image_size), args.batch,
                                    args.repeats, args.warmup))
    table = report(names, ops, args.top)
    print(f'torch.profiler self CPU time, backbone, batch {args.batch}, '
          f'{args.image_size[0]}x{args.image_size[1]}, '
          f'{args.threads} thread(s), mean of {args.repeats} forwards; '
          f'load average {os.getloadavg()[0]:.1f}\n')
    print(table)
    return table


if __name__ == '__main__':
    main(sys.argv[1:])
