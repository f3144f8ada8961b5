"""Cost of merge bookkeeping alone: plan + merge + un-merge, ATME vs ToMe.

Times, for one image of ``H x W`` patch tokens, what a merging layer adds
besides its attention and MLP: the plan (matching), the size-weighted merge
of the ``C``-channel tokens, the map update, and the final un-merge to the
full grid; and the plans alone. Every method runs the same steps with the
same ``r`` (from ``--keep-ratio``, applied ``--steps`` times, axis
alternating as in the backbone); ``atme-dense`` is the quadratic reference
ATME plan. Timings are interleaved (A B C A B C ...), medians, process CPU
time by default, with the load average before and after.

Examples:
    # DeiT-S at 512x512 (32x32 tokens) and 1024x1024 (64x64), one thread
    python tools/analysis/merge_overhead.py --grids 32 64 --threads 1

    # a quick smoke run
    python tools/analysis/merge_overhead.py --grids 8 --repeats 2 --inner 1
"""
import argparse
import os
import statistics
from typing import Callable, Dict, List, Optional

import torch

from mmtokenprune.analysis.latency import device_name, time_interleaved
from mmtokenprune.ops import TokenMap, merge_tokens, unmerge_tokens
from mmtokenprune.ops.matching import atme_plan, atme_plan_dense, tome_plan

PLANS = {
    'atme': lambda m, t, r, axis: atme_plan(m, t, r, axis),
    'tome': lambda m, t, r, axis: tome_plan(m, r),
    'atme-dense': lambda m, t, r, axis: atme_plan_dense(m, t, r, axis),
}


def bookkeeping(plan_fn: Callable, x: torch.Tensor, metrics: List,
                rs: List[int]) -> Callable[[], torch.Tensor]:
    """The work of ``len(rs)`` merging layers and the final un-merge."""
    side = int(round(x.shape[1]**0.5))

    def run():
        tokens = TokenMap.identity(x.shape[0], (side, side), x.device,
                                   x.dtype)
        y = x
        for i, (metric, r) in enumerate(zip(metrics, rs)):
            plan = plan_fn(metric, tokens, r, 1 if i % 2 == 0 else 0)
            y = merge_tokens(y, plan, tokens.size)
            tokens = tokens.apply(plan)
        return unmerge_tokens(y, tokens)

    return run


def plans_only(plan_fn: Callable, x: torch.Tensor, metrics: List,
               rs: List[int]) -> Callable[[], None]:
    """The plans of :func:`bookkeeping` alone, on maps built once."""
    side = int(round(x.shape[1]**0.5))
    tokens = TokenMap.identity(x.shape[0], (side, side), x.device, x.dtype)
    maps = []
    for i, (metric, r) in enumerate(zip(metrics, rs)):
        maps.append(tokens)
        tokens = tokens.apply(plan_fn(metric, tokens, r, 1 - i % 2))

    def run():
        for i, (metric, r, t) in enumerate(zip(metrics, rs, maps)):
            plan_fn(metric, t, r, 1 - i % 2)

    return run


def removed(num_tokens: int, keep_ratio: float, steps: int) -> List[int]:
    """``r`` of each step: ``keep_ratio`` of the tokens stay each time."""
    rs, n = [], num_tokens
    for _ in range(steps):
        r = min(n // 2, n - int(round(n * keep_ratio)))
        rs.append(r)
        n -= r
    return rs


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--grids', type=int, nargs='+', default=[32, 64],
                        help='token grid sides (32: 512x512 at patch 16)')
    parser.add_argument('--channels', type=int, default=384,
                        help='token channels C (DeiT-S: 384)')
    parser.add_argument('--metric-dims', type=int, default=64,
                        help='metric channels d (keys averaged over heads: '
                        'the head dim, 64 for DeiT-S)')
    parser.add_argument('--keep-ratio', type=float, default=0.75)
    parser.add_argument('--steps', type=int, default=2,
                        help='merging layers (the default schedule: 2)')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--methods', nargs='+', default=['atme', 'tome'],
                        choices=list(PLANS))
    parser.add_argument('--repeats', type=int, default=21)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--inner', type=int, default=10,
                        help='bookkeeping runs per timed sample')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--clock', choices=['cpu', 'wall'], default='cpu')
    args = parser.parse_args(argv)
    if not 0 < args.keep_ratio < 1:
        parser.error(f'--keep-ratio must be in (0, 1); got {args.keep_ratio}')
    if min(args.grids) < 2 or args.steps < 1 or args.inner < 1:
        parser.error('--grids >= 2, --steps >= 1 and --inner >= 1')
    return args


def main(argv: Optional[List[str]] = None) -> str:
    args = parse_args(argv)
    torch.manual_seed(0)
    lines = []
    load = os.getloadavg()
    for side in args.grids:
        n = side * side
        rs = removed(n, args.keep_ratio, args.steps)
        x = torch.randn(args.batch, n, args.channels)
        metrics, m = [], n
        for r in rs:
            metrics.append(torch.randn(args.batch, m, args.metric_dims))
            m -= r
        fns: Dict[str, Callable] = {}
        for name in args.methods:
            for part, make in (('all', bookkeeping), ('plan', plans_only)):
                once = make(PLANS[name], x, metrics, rs)
                fns[name, part] = (
                    lambda f: lambda: [f() for _ in range(args.inner)])(once)
        times = time_interleaved(
            fns, args.repeats, args.warmup, clock=args.clock,
            threads=args.threads)
        med = {k: statistics.median(v) / args.inner for k, v in times.items()}
        last = args.methods[-1]
        for name in args.methods:
            full, plan = med[name, 'all'], med[name, 'plan']
            lines.append(f'| {side}x{side} ({n}) | {rs} | {name} | '
                         f'{full:.3f} | {med[last, "all"] / full:.2f} | '
                         f'{plan:.3f} | {med[last, "plan"] / plan:.2f} |')
    with torch.no_grad():
        torch.set_num_threads(args.threads)
        machine = device_name('cpu')
    after = os.getloadavg()
    head = [
        f'Machine: {machine}; clock {args.clock}; batch {args.batch}, '
        f'C={args.channels}, d={args.metric_dims}; median of '
        f'{args.repeats} interleaved samples of {args.inner} runs; load '
        f'average (1/5/15 min) before {load[0]:.2f}/{load[1]:.2f}/'
        f'{load[2]:.2f}, after {after[0]:.2f}/{after[1]:.2f}/{after[2]:.2f}.',
        '', '| grid (tokens) | r per step | method | plan + merge + '
        f'un-merge ms | vs {args.methods[-1]} | plans alone ms | vs '
        f'{args.methods[-1]} |', '|---|---|---|---|---|---|---|'
    ]
    text = '\n'.join(head + lines)
    print(text)
    return text


if __name__ == '__main__':
    main()
