"""Check that a zoo checkpoint gives mmseg's logits through the plugin's
mirror config (reducers off): keys mapped and the largest difference.

mmseg's model is the same config with mmseg's own ``VisionTransformer``
as backbone; both load the checkpoint as ``load_from`` does. Without a
checkpoint, random weights stand in for the zoo's.

Examples:
    python tools/analysis/compare_mmseg.py \\
        configs/mmseg-zoo/vit_deit-s16_upernet_8xb2-80k_ade20k-512x512.py \\
        upernet_deit-s16_512x512_80k_ade20k_20210624_095228-afc93ec2.pth \\
        --size 512 512 --slide-size 512 683
"""
import argparse
import json

import mmtokenprune.compat.applied  # noqa: F401  (environment fixes first)
from mmtokenprune.analysis.mmseg_parity import compare_with_mmseg
from mmtokenprune.utils.config import load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='a configs/mmseg-zoo config')
    parser.add_argument('checkpoint', nargs='?',
                        help='zoo checkpoint (default: random weights)')
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'),
                        help="whole-image input (default: the backbone's "
                        'img_size)')
    parser.add_argument('--slide-size', type=int, nargs=2,
                        metavar=('H', 'W'),
                        help='also a sliding-window input of this size '
                        "(windows of the backbone's img_size, 2/3 stride)")
    parser.add_argument('--threads', type=int, help='torch CPU threads')
    parser.add_argument('--out', help='also write the result as JSON')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, key='the `config` argument')
    crop = tuple(cfg.model.backbone.img_size)
    cases = [(*(args.size or crop), dict(mode='whole'))]
    if args.slide_size:
        stride = tuple(c * 2 // 3 for c in crop)
        cases.append((*args.slide_size,
                      dict(mode='slide', crop_size=crop, stride=stride)))
    result = compare_with_mmseg(cfg, args.checkpoint, cases)
    print(f"backbone keys {result['backbone_keys']}, renamed from mmseg's "
          f"names {result['renamed']}")
    for case in result['cases']:
        print(f"{case['size'][0]}x{case['size'][1]} {case['mode']}: max "
              f"|diff| {case['max_abs']:.3g} on a scale of "
              f"{case['scale']:.3g} (relative {case['rel']:.2g})")
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(config=args.config, **result), f, indent=2)
            f.write('\n')
    return result


if __name__ == '__main__':
    main()
