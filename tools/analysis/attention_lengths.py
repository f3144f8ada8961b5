"""Attention time against the number of tokens per window.

Token reducers shorten the sequences attention sees; whether that pays
depends on the attention kernel, not only on the FLOPs. This times
``F.scaled_dot_product_attention`` (what every backbone here calls) and the
same attention written as matrix products and a softmax, with an additive
mask as the window blocks pass one, over a range of sequence lengths:
``windows`` sequences of ``heads`` heads of ``head_dims`` channels (the
defaults are stage 0 of the CamVid swin-c48 at 256x256: 64 windows of 8x8,
2 heads of 24). Process CPU time, medians over interleaved repeats.

Example (one thread, the lengths ATME leaves in an 8x8 window)::

    python tools/analysis/attention_lengths.py --lengths 64 56 48 40 \\
        --threads 1
"""
import argparse
import statistics
import time
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F


def explicit_attention(q, k, v, mask):
    """softmax(q k^T / sqrt(d) + mask) v as matrix products."""
    attn = (q * q.shape[-1]**-0.5) @ k.transpose(-2, -1) + mask
    return attn.softmax(dim=-1) @ v


def fused_attention(q, k, v, mask):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


KERNELS: Dict[str, Callable] = {
    'sdpa': fused_attention,
    'explicit': explicit_attention,
}


def time_lengths(lengths: List[int], windows: int, heads: int,
                 head_dims: int, repeats: int,
                 calls: int) -> List[Dict[str, float]]:
    """Median ms per call of every kernel at every length; the kernels and
    lengths take turns within each repeat."""
    inputs = {
        n: [torch.randn(windows, heads, n, head_dims) for _ in range(3)] +
        [torch.randn(windows, heads, n, n)]
        for n in lengths
    }
    times = {(n, k): [] for n in lengths for k in KERNELS}
    with torch.no_grad():
        for n in lengths:  # warm-up
            for fn in KERNELS.values():
                fn(*inputs[n])
        for _ in range(repeats):
            for n in lengths:
                for name, fn in KERNELS.items():
                    start = time.process_time()
                    for _ in range(calls):
                        fn(*inputs[n])
                    times[n, name].append(
                        (time.process_time() - start) / calls * 1e3)
    rows = []
    for n in lengths:
        row = {'tokens': n}
        for name in KERNELS:
            row[name] = statistics.median(times[n, name])
        rows.append(row)
    return rows


def markdown(rows: List[Dict[str, float]]) -> str:
    lines = [
        '| tokens | sdpa ms | explicit ms | sdpa / explicit |',
        '|---:|---:|---:|---:|',
    ]
    for r in rows:
        lines.append(f"| {r['tokens']} | {r['sdpa']:.3f} | "
                     f"{r['explicit']:.3f} | "
                     f"{r['sdpa'] / r['explicit']:.2f} |")
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--lengths', type=int, nargs='+',
                        default=[64, 56, 48, 40, 32])
    parser.add_argument('--windows', type=int, default=64)
    parser.add_argument('--heads', type=int, default=2)
    parser.add_argument('--head-dims', type=int, default=24)
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--calls', type=int, default=20,
                        help='calls per timed turn')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads; default: torch\'s')
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.lengths):
        parser.error('--lengths: token counts must be positive')
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows = time_lengths(args.lengths, args.windows, args.heads,
                        args.head_dims, args.repeats, args.calls)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} thread(s); '
          f'{args.windows} windows x {args.heads} heads x {args.head_dims} '
          'channels, additive mask; median ms per call, process CPU time')
    print(markdown(rows))
    return rows


if __name__ == '__main__':
    main()
