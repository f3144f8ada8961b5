"""Evaluate a checkpoint on an mmseg or mmpretrain config's test set.

Examples:
    python tools/test.py CONFIG CKPT [--out metrics.json]
"""
import json
import os.path as osp

from mmengine.utils import mkdir_or_exist

import mmtokenprune.compat.applied  # noqa: F401  (environment fixes first)
from mmtokenprune.utils.checkpoint_file import check_checkpoint_file
from mmtokenprune.utils.launch import (base_parser, build_runner,
                                       config_from_args, finish_distributed)


def main(argv=None):
    """Parse ``argv``, test, and return the metrics dict."""
    parser = base_parser('Test a checkpoint with mmengine Runner')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out', help='also write the returned metrics to this JSON file')
    args = parser.parse_args(argv)
    try:
        check_checkpoint_file(args.checkpoint, 'the `checkpoint` argument')
    except (OSError, ValueError) as err:
        parser.error(str(err))
    try:
        cfg = config_from_args(args)
    except (FileNotFoundError, SyntaxError) as err:  # they name the file
        parser.error(str(err))
    cfg.load_from = args.checkpoint
    metrics = build_runner(cfg).test()
    finish_distributed()
    if args.out:
        mkdir_or_exist(osp.dirname(osp.abspath(args.out)))
        with open(args.out, 'w') as f:
            json.dump(metrics, f, indent=2, default=float)
            f.write('\n')
    return metrics


if __name__ == '__main__':
    main()
