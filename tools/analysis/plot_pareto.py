"""One Pareto plot from several sweeps: accuracy vs backbone latency and
vs GFLOPs, every method of every sweep.

Each sweep timed its settings against the unreduced model in the same run,
so relative latencies of different sweeps share their baseline (1.0).
Rows need a score and, for the latency panel, the speed-up at ``--batch``.

Example:
    python tools/analysis/plot_pareto.py \\
        work_dirs/sweep_xseq_bal_trainingfree:training-free \\
        work_dirs/sweep_xseq_reducers:fine-tuned \\
        --out docs/figures/camvid_xseq_pareto.png
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..'))

from mmtokenprune.analysis.sweep_report import plot_pareto  # noqa: E402
from mmtokenprune.analysis.sweep_store import read_rows  # noqa: E402


def load(sweeps):
    """Rows of ``DIR[:GROUP]`` sweeps (``DIR/sweep.csv``), each tagged with
    its group; a second sweep's baseline row is left out."""
    rows = []
    for item in sweeps:
        folder, _, group = item.partition(':')
        path = osp.join(folder, 'sweep.csv')
        if not osp.isfile(path):
            raise FileNotFoundError(f'{item}: no {path} (a sweep.py --out '
                                    'folder)')
        for row in read_rows(path).values():
            if row['setting'] == 'baseline' and rows:
                continue
            rows.append(dict(row, group=group or osp.basename(folder)))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('sweeps', nargs='+', help='DIR[:GROUP]')
    parser.add_argument('--out', required=True, help='figure (.png)')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--title', default='')
    parser.add_argument('--no-labels', action='store_true',
                        help='no setting name beside each marker')
    args = parser.parse_args(argv)
    rows = load(args.sweeps)
    plot_pareto(rows, args.out, args.batch, args.title,
                annotate=not args.no_labels)
    print(f'{len(rows)} settings -> {args.out}')


if __name__ == '__main__':
    main()
