"""Start CDCP fine-tuning from a trained unpruned checkpoint: gates from
weight magnitudes.

Builds the gated config, loads the unpruned checkpoint (every key but the
gate logits must match), sets the gates and saves a checkpoint to fine-tune
from (``--cfg-options load_from=OUT``). Two modes:

- ``--mode magnitude`` (default): gates closed from weight magnitudes at
  the config's ``channel_cfg.flops_target``
  (:func:`~mmtokenprune.models.cdcp.init_gates_by_magnitude`); small
  ``--margin`` logits leave the gates trainable;
- ``--mode open``: every gate open, logits in ``[--low, --high]`` ranked by
  the same importance
  (:func:`~mmtokenprune.models.cdcp.init_gates_open_by_magnitude`): the
  start of learned gates, which the budget loss then closes in training.

Examples:
    python tools/init_cdcp_gates.py \\
        configs/camvid/atme-cdcp_deit-t16_fcn_1xb4-1k_camvid-256x256.py \\
        work_dirs/camvid_deit-t16_2k/best_mIoU_iter_2000.pth \\
        --out work_dirs/camvid_atme-cdcp/init_gates.pth
    L=configs/camvid/atme-cdcp-learned_deit-t16_fcn_1xb4-1k_camvid-256x256.py
    python tools/init_cdcp_gates.py $L \\
        work_dirs/camvid_deit-t16_2k/iter_2000.pth --mode open \\
        --out work_dirs/camvid_atme-cdcp-learned/init_gates.pth
"""
import argparse
import os
import os.path as osp

import torch
from mmengine.runner import load_checkpoint

import mmtokenprune.compat.applied  # noqa: F401  (environment fixes first)
from mmtokenprune.utils.config import build_model, load_config
from mmtokenprune.models.cdcp import (  # noqa: I100
    init_gates_by_magnitude, init_gates_open_by_magnitude)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='gated config (channel_cfg CDCP)')
    parser.add_argument('checkpoint', help='trained unpruned checkpoint')
    parser.add_argument('--out', required=True, help='checkpoint to write')
    parser.add_argument(
        '--flops-target',
        type=float,
        help='defaults to channel_cfg.flops_target')
    parser.add_argument(
        '--margin',
        type=float,
        default=3.0,
        help='|logit| of the set gates (mode magnitude). Defaults to 3.')
    parser.add_argument(
        '--mode',
        choices=('magnitude', 'open'),
        default='magnitude',
        help='close gates from magnitudes at the FLOPs target, or open '
        'them all ranked by magnitude. Defaults to magnitude.')
    parser.add_argument(
        '--low',
        type=float,
        default=1.0,
        help='logit of the least important channel (mode open). '
        'Defaults to 1.')
    parser.add_argument(
        '--high',
        type=float,
        default=3.0,
        help='logit of the most important channel (mode open). '
        'Defaults to 3.')
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    channel_cfg = cfg.model.backbone.get('channel_cfg') or {}
    if channel_cfg.get('type') != 'CDCP':
        raise ValueError(f'{args.config}: model.backbone.channel_cfg.type '
                         "must be 'CDCP' (a gated backbone).")
    target = args.flops_target or channel_cfg.get('flops_target', 0.7)
    model = build_model(cfg)
    state = torch.load(args.checkpoint, map_location='cpu')
    state = state.get('state_dict', state)
    expected = set(model.state_dict())
    missing = sorted(k for k in expected - set(state)
                     if not k.endswith('.logits'))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise KeyError(f'{args.checkpoint} does not fit {args.config} '
                       f'beyond the gates: missing {missing[:5]}, '
                       f'unexpected {unexpected[:5]}.')
    load_checkpoint(model, args.checkpoint, map_location='cpu', strict=False)
    if args.mode == 'open':
        info = init_gates_open_by_magnitude(model.backbone, args.low,
                                            args.high)
        setting = dict(low=args.low, high=args.high)
    else:
        info = init_gates_by_magnitude(model.backbone, target, args.margin)
        setting = dict(margin=args.margin)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    meta = dict(
        source=args.checkpoint,
        mode=args.mode,
        flops_target=target,
        **setting,
        **info)
    torch.save(dict(state_dict=model.state_dict(), meta=meta), args.out)
    print(f'encoder FLOPs kept (gates, at img_size): '
          f'{info["flops_ratio"]:.3f} (target {target}); channels kept per '
          f'gate (qk, v, ffn per layer): {info["kept"]}')
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
