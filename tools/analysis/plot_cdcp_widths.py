"""Plot CDCP's per-layer kept widths over training iterations.

Reads the ``cdcp/...`` scalars that ``mmtokenprune.CDCPWidthsHook`` put into
a run's ``vis_data/scalars.json`` (mmengine's ``LocalVisBackend``) and
draws, per run (one row each), the kept Q/K, V and MLP channels of every
layer against the iteration, and the kept fraction of encoder FLOPs (hard:
what an export keeps; soft: ``sum(sigmoid(logits))``). Prints each run's
last record as a table (widths per layer, FLOPs fraction, and the run's
last validation mIoU if scalars.json has one).

Examples:
    python tools/analysis/plot_cdcp_widths.py \\
        work_dirs/camvid_atme-cdcp-learned_300it \\
        work_dirs/camvid_atme-cdcp-mag_300it \\
        --labels learned magnitude --out docs/figures/cdcp_widths.png
"""
import argparse
import glob
import json
import os
import os.path as osp
import re
from typing import Dict, List

KINDS = ('qk', 'v', 'ffn')
_KEY = re.compile(r'^cdcp/l(\d+)_(qk|v|ffn)$')


def find_scalars(path: str) -> str:
    """``path`` itself if it is a file, else the newest
    ``*/vis_data/scalars.json`` under the work dir ``path``."""
    if osp.isfile(path):
        return path
    found = sorted(glob.glob(osp.join(path, '*', 'vis_data', 'scalars.json')))
    if not found:
        raise FileNotFoundError(
            f'{path}: no scalars.json (a file, or a work dir with '
            '<timestamp>/vis_data/scalars.json).')
    return found[-1]


def read_widths(path: str) -> Dict:
    """The CDCP scalars of one run.

    Returns:
        dict: ``iters`` (list of int), ``widths`` (``{kind: {layer:
        [width per iter]}}``), ``flops_ratio`` and ``flops_ratio_soft``
        (lists), from the records that have them.

    Raises:
        ValueError: if the file holds no ``cdcp/`` scalars (train with
            ``custom_hooks=[dict(type='mmtokenprune.CDCPWidthsHook')]``).
    """
    out = dict(
        iters=[],
        widths={k: {}
                for k in KINDS},
        flops_ratio=[],
        flops_ratio_soft=[],
        mIoU=None)
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            if 'mIoU' in record:
                out['mIoU'] = (int(record['step']), record['mIoU'])
            if 'cdcp/flops_ratio' not in record:
                continue
            out['iters'].append(int(record['step']))
            out['flops_ratio'].append(record['cdcp/flops_ratio'])
            out['flops_ratio_soft'].append(record.get('cdcp/flops_ratio_soft'))
            for key, value in record.items():
                match = _KEY.match(key)
                if match:
                    layer, kind = int(match.group(1)), match.group(2)
                    out['widths'][kind].setdefault(layer, []).append(value)
    if not out['iters']:
        raise ValueError(
            f'{path} has no cdcp/ scalars; train with custom_hooks='
            "[dict(type='mmtokenprune.CDCPWidthsHook')].")
    return out


def summary(runs: List[Dict], labels: List[str]) -> str:
    """A markdown table of each run's last widths (qk/v/ffn per layer)."""
    layers = sorted(runs[0]['widths']['qk'])
    head = ['run', 'iter', 'FLOPs kept (hard)', 'last val mIoU'] + [
        f'L{i} qk/v/ffn' for i in layers
    ]
    rows = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for run, label in zip(runs, labels):
        w = run['widths']
        miou = run['mIoU']
        cells = [
            label,
            str(run['iters'][-1]), f"{run['flops_ratio'][-1]:.4f}",
            '-' if miou is None else f'{miou[1]:.2f} (iter {miou[0]})'
        ] + [
            '/'.join(f'{w[k][i][-1]:.0f}' for k in KINDS)
            for i in sorted(w['qk'])
        ]
        rows.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(rows)


def plot(runs: List[Dict], labels: List[str], out: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(
        len(runs), 4, figsize=(16, 3.4 * len(runs)), squeeze=False)
    cmap = plt.get_cmap('viridis')
    for row, (run, label) in zip(axes, zip(runs, labels)):
        for ax, kind in zip(row, KINDS):
            layers = sorted(run['widths'][kind])
            for layer in layers:
                ax.plot(
                    run['iters'],
                    run['widths'][kind][layer],
                    color=cmap(layer / max(len(layers) - 1, 1)),
                    label=f'layer {layer}')
            ax.set_title(f'{label}: {kind} kept channels')
            ax.set_xlabel('iteration')
        row[0].legend(fontsize=6, ncol=2)
        ax = row[3]
        ax.plot(run['iters'], run['flops_ratio'], label='hard (exported)')
        if None not in run['flops_ratio_soft']:
            ax.plot(run['iters'], run['flops_ratio_soft'], '--',
                    label='soft')
        ax.set_title(f'{label}: kept encoder FLOPs fraction')
        ax.set_xlabel('iteration')
        ax.legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'runs', nargs='+', help='scalars.json files or work dirs')
    parser.add_argument('--labels', nargs='+', help='one per run')
    parser.add_argument('--out', required=True, help='PNG to write')
    args = parser.parse_args(argv)
    labels = args.labels or [osp.basename(osp.normpath(r)) for r in args.runs]
    if len(labels) != len(args.runs):
        raise ValueError(f'--labels: {len(labels)} given for '
                         f'{len(args.runs)} runs.')
    runs = [read_widths(find_scalars(r)) for r in args.runs]
    plot(runs, labels, args.out)
    print(summary(runs, labels))
    print(f'wrote {args.out}')
    return runs


if __name__ == '__main__':
    main()
