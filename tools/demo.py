"""The main job on an embedded default: compress UperNet + DeiT-S, measure.

With no downloads, builds the ADE20K UperNet + DeiT-S (512x512) three ways
-- baseline, ATME token merging, ATME + CDCP channel pruning (gates set
from weight magnitudes, exported to the smaller dense model) -- prints
params, GFLOPs and measured latency (batch 1) side by side, and draws
ATME's merge regions over a photo that scikit-image ships (after each
merging layer, or after layers 2/5/8/11 when more than four merge). It
reuses ``tools/analysis/benchmark.py`` for everything measured (one
measuring path, ``mmtokenprune.analysis.measure``, so ``--threads``,
``--clock``, ``--device`` and ``--dtype`` reach the timer as there).

No weights exist offline, so the backbone is randomly initialised: FLOPs
and latency do not depend on the weights; the merge regions follow patch
similarity in random features, not learned semantics.

Outputs (``--out-dir``, default ``outputs/demo``): ``results.md``,
``results.csv``, ``merge_regions.png``, ``merge_regions_fill.png``.

Timing: on an idle CPU, wall-clock with torch's threads. When other
processes keep more than half the cores busy (sampled for a second before
timing), wall-clock ratios swing with their preemption, so the demo times
with process CPU time on one thread instead, and says which it used above
its table. ``--threads``/``--clock`` given on the command line win.

Examples:
    python tools/demo.py                 # about 2 minutes on 2 CPU cores
    python tools/demo.py --quick         # 128x128 input, 1 repeat
    python tools/demo.py --threads 1 --clock cpu  # this clock, busy or not
"""
import argparse
import importlib.util
import os
import os.path as osp
import sys
import time
from typing import List, Optional, Tuple

import numpy as np
import torch

import mmtokenprune.compat.applied  # noqa: F401  (environment fixes first)
from mmtokenprune.analysis import save_merge_figure
from mmtokenprune.analysis.latency import busy_cores

HERE = osp.dirname(osp.abspath(__file__))
LAYERS = (2, 5, 8, 11)
IMAGES = ('astronaut', 'chelsea', 'coffee')
TIMING_FLAGS = ('--threads', '--clock')


def load_benchmark_tool():
    """``tools/analysis/benchmark.py`` as a module (tools is no package)."""
    path = osp.join(HERE, 'analysis', 'benchmark.py')
    spec = importlib.util.spec_from_file_location('mmtokenprune_benchmark',
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The demo's own flags; every other argument (``--threads 1``,
    ``--setting NAME CONFIG ...``) goes to the benchmark tool."""
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        epilog='Other arguments are passed to tools/analysis/benchmark.py '
        '(e.g. --threads 1, --setting NAME CONFIG [KEY=VALUE ...]).')
    parser.add_argument('--out-dir', default='outputs/demo')
    parser.add_argument(
        '--quick',
        action='store_true',
        help='128x128 input, 1 repeat, no warm-up (a smoke run)')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument(
        '--image',
        choices=IMAGES,
        default='astronaut',
        help='scikit-image photo to draw merges on')
    args, args.bench_args = parser.parse_known_args(argv)
    return args


def photo(name: str, size) -> np.ndarray:
    """A scikit-image sample photo, centre-cropped and resized to size."""
    import skimage.data
    from skimage.transform import resize
    img = getattr(skimage.data, name)()
    h, w = img.shape[:2]
    s = min(h, w)
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    img = resize(img, size, order=1, anti_aliasing=True, preserve_range=True)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def to_input(image: np.ndarray, model) -> torch.Tensor:
    """Normalise an RGB photo with the segmentor's preprocessor mean/std."""
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None]
    pre = model.data_preprocessor
    return (x - pre.mean.view(1, 3, 1, 1)) / pre.std.view(1, 3, 1, 1)


def panel_layers(maps) -> List[int]:
    """The merging layers when there are at most four, else :data:`LAYERS`
    (identical panels after layers that merge nothing say nothing)."""
    counts = [m.num_tokens for m in maps]
    first = maps[0].grid[0] * maps[0].grid[1]
    merging = [
        i for i, n in enumerate(counts) if n != (counts[i - 1] if i else first)
    ]
    return merging if len(merging) <= 4 else [
        i for i in LAYERS if i < len(maps)
    ]


def draw_merges(setting, image: np.ndarray, out_dir: str) -> List[str]:
    """Merge regions of ``setting``'s backbone (see :func:`panel_layers`)."""
    backbone = setting.model.backbone
    maps = backbone.token_maps(to_input(image, setting.model))
    if maps[0] is None:
        raise ValueError(f'{setting.name} merges no tokens.')
    panels = {
        f'after layer {i}: {maps[i].num_tokens} tokens': maps[i].assign[0]
        for i in panel_layers(maps)
    }
    grid = maps[0].grid
    title = (f'{setting.name} merge regions (random-init backbone; '
             f'{grid[0]}x{grid[1]} patches)')
    return [
        save_merge_figure(image, panels, grid,
                          osp.join(out_dir, 'merge_regions.png'), title),
        save_merge_figure(
            image,
            panels,
            grid,
            osp.join(out_dir, 'merge_regions_fill.png'),
            title + ', mean colour per token',
            fill=0.7)
    ]


def pick_timing(bench_args: List[str], busy: float,
                cores: int) -> Tuple[List[str], str]:
    """The timing flags for the benchmark, and the sentence that says why.

    Args:
        bench_args (list[str]): the flags passed on to the benchmark; a
            ``--threads`` or ``--clock`` there is the user's choice.
        busy (float): cores other processes keep busy (:func:`busy_cores`).
        cores (int): the machine's cores.
    """
    asked = [a for a in bench_args if a.split('=')[0] in TIMING_FLAGS]
    if asked:
        return [], f'timing as asked ({" ".join(asked)})'
    load = f'other processes kept {busy:.1f} of {cores} cores busy'
    if busy > cores / 2:
        return ['--threads', '1', '--clock', 'cpu'], (
            f'{load}: timing with process CPU time on one thread, which '
            'their preemption does not inflate (wall-clock ratios would)')
    return [], f"{load}: timing wall-clock with torch's threads"


def _merges(setting) -> bool:
    token_cfg = getattr(setting.model.backbone, 'token_cfg', None)
    return token_cfg is not None and token_cfg.enabled


def main(argv: Optional[List[str]] = None) -> dict:
    """Run the demo; return the output paths."""
    args = parse_args(argv)
    start = time.perf_counter()
    os.makedirs(args.out_dir, exist_ok=True)
    bench = load_benchmark_tool()
    size = 128 if args.quick else 512
    print(
        '[demo] UperNet + DeiT-S (ADE20K config): baseline, ATME, '
        'ATME+CDCP. The backbone is RANDOMLY INITIALISED (no weights '
        'offline): FLOPs and latency do not depend on weights; accuracy '
        'is not measured here.',
        flush=True)
    timing, why = pick_timing(args.bench_args, busy_cores(),
                              os.cpu_count() or 1)
    print(f'[demo] {why}.', flush=True)
    table = osp.join(args.out_dir, 'results.md')
    bench_argv = [
        '--batch-sizes', '1', '--image-size',
        str(size),
        str(size), '--repeats', '1' if args.quick else str(args.repeats),
        '--warmup', '0' if args.quick else '1', '--out', table, '--csv',
        osp.join(args.out_dir, 'results.csv')
    ] + timing + args.bench_args  # later flags win
    settings, _ = bench.run(bench.parse_args(bench_argv))
    with open(table) as f:
        text = f.read()
    with open(table, 'w') as f:
        f.write(f'Timing: {why}.\n\n{text}')
    merging = next((s for s in settings if _merges(s)), None)
    if merging is None:
        raise ValueError('no setting merges tokens: nothing to draw.')
    pngs = draw_merges(merging, photo(args.image, (size, size)), args.out_dir)
    outputs = dict(
        table=table,
        csv=osp.join(args.out_dir, 'results.csv'),
        regions=pngs[0],
        regions_fill=pngs[1])
    print(
        f'[demo] done in {time.perf_counter() - start:.0f} s; wrote ' +
        ', '.join(outputs.values()),
        flush=True)
    return outputs


if __name__ == '__main__':
    main(sys.argv[1:])
