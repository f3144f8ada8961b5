"""Export a CDCP-gated model as a smaller dense model: spec + state_dict.

Examples:
    python tools/export_pruned.py CONFIG CHECKPOINT --out-dir DIR

writes ``DIR/prune_spec.json`` (per-layer widths) and ``DIR/pruned.pth``
(``{'state_dict': ..., 'meta': ...}``: the whole model's weights with the
backbone sliced and the gates removed; plain tensors, loads under torch's
``weights_only``). Build the smaller model with
``backbone.channel_cfg=dict(spec='DIR/prune_spec.json')`` and load the
weights with ``load_from`` or a ``Pretrained`` ``init_cfg``
(``prefix='backbone.'`` for the backbone alone).
"""
import argparse
import os.path as osp

import mmtokenprune.compat.applied  # noqa: F401  (environment fixes first)
from mmtokenprune.models.cdcp import export_checkpoint
from mmtokenprune.utils.checkpoint_file import check_checkpoint_file


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config of the gated model')
    parser.add_argument('checkpoint', help='checkpoint of the gated model')
    parser.add_argument('--out-dir', required=True, help='output folder')
    args = parser.parse_args(argv)
    try:
        check_checkpoint_file(args.checkpoint, 'the `checkpoint` argument')
    except (OSError, ValueError) as err:
        parser.error(str(err))
    spec, path = export_checkpoint(args.config, args.checkpoint, args.out_dir)
    widths = ', '.join(f'{d.qk_dims}/{d.v_dims}/{d.ffn_dims}'
                       for d in spec.layers)
    print(f'qk/v/ffn widths per layer: {widths}')
    print(f'wrote {osp.join(args.out_dir, "prune_spec.json")} and {path}')


if __name__ == '__main__':
    main()
