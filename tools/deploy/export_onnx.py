"""Export a (compressed) model to ONNX at a fixed shape and check it.

The backbone (default) or the whole model's inference forward (``--part
model``: the segmentor's logits, ``model(x)``) is exported with fixed
per-layer token counts (the input shape fixes them), then run with
onnxruntime on random inputs and compared with PyTorch; the check passes
when the largest absolute difference is at most ``--atol`` (1e-4). A CDCP
model is exported as the smaller dense one: from ``--spec`` (with the
``pruned.pth`` of ``tools/export_pruned.py`` as CKPT), or sliced here
from a gated checkpoint.

Examples:
    python tools/deploy/export_onnx.py \\
        configs/camvid/deit-t16_fcn_1xb4-2k_camvid-256x256.py \\
        work_dirs/camvid_deit-t16_2k/iter_2000.pth --shape 256 256 \\
        --cfg-options model.backbone.token_cfg="dict(type='ATME',r=8)"

    python tools/deploy/export_onnx.py CONFIG DIR/pruned.pth \\
        --spec DIR/prune_spec.json --part model --out model.onnx

Exit status 1 when the check fails.
"""
import argparse
import os
import os.path as osp
import sys
import time

import torch
from mmengine.config import DictAction

import mmtokenprune.compat.applied  # noqa: F401  (environment fixes first)
from mmtokenprune.deploy import (ATOL, build_deploy_model, check_onnx,
                                 export_onnx)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='the config file')
    parser.add_argument(
        'checkpoint',
        metavar='CKPT',
        help="the weights (with --spec: the spec's pruned.pth)")
    parser.add_argument(
        '--spec', help='an exported CDCP prune spec (prune_spec.json)')
    parser.add_argument(
        '--part',
        choices=('backbone', 'model'),
        default='backbone',
        help='the backbone alone, or the whole model (logits)')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        default=(512, 512),
        metavar=('H', 'W'),
        help='input height and width (fixed in the export)')
    parser.add_argument('--batch', type=int, default=1, help='fixed batch')
    parser.add_argument(
        '--out', help='the ONNX file (default: <config>_<part>_HxW.onnx)')
    parser.add_argument('--atol', type=float, default=ATOL)
    parser.add_argument(
        '--checks', type=int, default=2, help='random inputs compared')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        default={},
        metavar='KEY=VALUE')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Export and check; returns :func:`~mmtokenprune.deploy.check_onnx`'s
    report plus ``out`` (the file)."""
    args = parse_args(argv)
    if args.batch < 1 or args.checks < 1 or min(args.shape) < 1:
        raise SystemExit('--batch, --checks and --shape must be positive.')
    model, built = build_deploy_model(args.config, args.checkpoint,
                                      args.spec, args.cfg_options)
    module = model.backbone if args.part == 'backbone' else model
    H, W = args.shape
    out = args.out or (f'{osp.splitext(osp.basename(args.config))[0]}_'
                       f'{args.part}_{H}x{W}.onnx')
    if osp.dirname(out):
        os.makedirs(osp.dirname(out), exist_ok=True)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, H, W)
    start = time.perf_counter()
    export_onnx(module, x, out)
    seconds = time.perf_counter() - start
    inputs = [x] + [torch.randn_like(x) for _ in range(args.checks - 1)]
    report = check_onnx(module, out, inputs, atol=args.atol)
    report['out'] = out
    print(f'model: {built}; part: {args.part}; input {args.batch}x3x{H}x'
          f'{W}; exported in {seconds:.1f} s to {out} '
          f'({osp.getsize(out) / 2**20:.1f} MiB)')
    print(f'onnxruntime vs PyTorch on {len(inputs)} random inputs: max '
          f'|diff| {report["max_abs_diff"]:.2e} (atol {args.atol:g}) -> '
          f'{"OK" if report["ok"] else "FAILED"}; outputs '
          f'{report["outputs"]}')
    if not report['ok']:
        sys.exit(1)
    return report


if __name__ == '__main__':
    main()
