"""Mean and spread over seeds of the fine-tunes a sweep scored.

Settings whose checkpoints differ only by a ``_seedK`` folder suffix are one
recipe (:mod:`mmtokenprune.analysis.seeds`). Prints a markdown table:

    python tools/analysis/seed_table.py work_dirs/sweep_rerank_finetuned \\
        --control camvid_xseq-ft_control/
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..'))

from mmtokenprune.analysis.seeds import summarise_seeds  # noqa: E402
from mmtokenprune.analysis.sweep_store import read_rows  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('sweep', help='a sweep.py --out folder')
    parser.add_argument('--control', default='',
                        help='substring naming the control recipe')
    args = parser.parse_args(argv)
    path = osp.join(args.sweep, 'sweep.csv')
    if not osp.isfile(path):
        parser.error(f'{args.sweep}: no {path} (a sweep.py --out folder)')
    table = summarise_seeds(read_rows(path).values(), control=args.control)
    seeds = sorted({k for row in table for k in row['seeds']})
    print('| recipe | ' + ' | '.join(f'seed {k}' for k in seeds) +
          ' | mean | spread | std | Δ mean vs control |')
    print('|---|' + '---:|' * (len(seeds) + 4))
    for row in table:
        cells = [f"{row['seeds'][k]:.2f}" if k in row['seeds'] else '–'
                 for k in seeds]
        delta = '–' if row['delta'] is None else f"{row['delta']:+.2f}"
        print(f"| `{row['recipe']}` | " + ' | '.join(cells) +
              f" | {row['mean']:.2f} | {row['spread']:.2f} | "
              f"{row['std']:.2f} | {delta} |")


if __name__ == '__main__':
    main()
