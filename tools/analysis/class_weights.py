"""Per-class loss weights from the label frequencies of a config's train set.

Counts the labelled pixels of each class in every label map of the
config's ``train_dataloader`` dataset (wrappers such as ``ConcatDataset``
included; the ignore index is skipped) and prints the weights for
``mmtokenprune.ClassWeightedCrossEntropyLoss(class_weight=...)``; modes:
see :mod:`mmtokenprune.analysis.class_weights`.

Example:
    python tools/analysis/class_weights.py \\
        configs/camvid/deit-t16_fcn_1xb4-2k_camvid-xseq-256x256.py
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..'))

from mmtokenprune.analysis.class_weights import (  # noqa: E402
    MODES, class_frequencies, label_paths, weights_from)
from mmtokenprune.utils.config import load_config  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--mode', default='median', choices=MODES)
    parser.add_argument('--ignore-index', type=int, default=255)
    args = parser.parse_args(argv)
    cfg = load_config(args.config, key='the `config` argument')
    classes = cfg.model.decode_head.num_classes
    paths = label_paths(cfg)
    freq = class_frequencies(paths, classes, args.ignore_index)
    weights = weights_from(freq, args.mode)
    print(f'{len(paths)} label maps, {classes} classes, mode {args.mode}')
    print('| class | frequency | weight |\n|---:|---:|---:|')
    for c, (f, w) in enumerate(zip(freq, weights)):
        print(f'| {c} | {f:.4f} | {w:.3f} |')
    print('class_weight=[' + ', '.join(f'{w:.3f}' for w in weights) + ']')


if __name__ == '__main__':
    main()
