"""Draw the regions of merged tokens over real images, layer by layer.

Builds the config with a setting's token reducer (the sweep's grammar:
``ATME:keep_ratio=0.9``, ``ToMe:r=16``, ...; see
mmtokenprune/analysis/sweep.py), loads the checkpoint, runs each image
through the backbone and draws, for each chosen layer, the boundaries of
the image regions that one token stands for after that layer.

Examples:
    python tools/analysis/visualize_merge.py \\
        configs/camvid/deit-t16_fcn_1xb4-2k_camvid-256x256.py \\
        work_dirs/camvid_deit-t16_2k/iter_2000.pth \\
        ../shared/data/camvid/images/val/0016E5_07965.png \\
        --setting ATME:keep_ratio=0.75,layers=0/3 --layers 0 3 --out-dir vis/
"""
import argparse
import math
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from mmtokenprune.analysis.sweep_config import setting_config
from mmtokenprune.analysis.sweep_settings import parse_setting
from mmtokenprune.analysis.visualize import draw_merge_regions
from mmtokenprune.utils.config import build_model as build
from mmtokenprune.utils.config import load_config


def build_model(config: str, checkpoint: Optional[str],
                setting: str) -> nn.Module:
    """The config's model with ``setting``'s backbone, weights loaded."""
    from mmengine.runner import load_checkpoint

    parsed = parse_setting(setting)
    if parsed.token_cfg is None:
        raise ValueError(f'--setting {setting!r} reduces no tokens; name a '
                         'reducer, e.g. ATME:keep_ratio=0.9.')
    model = build(setting_config(load_config(config), parsed))
    checkpoint = parsed.checkpoint or checkpoint
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    return model.eval()


@torch.no_grad()
def merge_region_panels(model: nn.Module,
                        image: np.ndarray,
                        layers: Sequence[int],
                        fill: float = 0.0) -> Dict[str, np.ndarray]:
    """Merge regions after each of ``layers`` drawn over ``image``.

    Args:
        model (nn.Module): a segmentor/classifier whose ``backbone`` has
            ``token_maps`` and whose ``data_preprocessor`` normalises.
        image (np.ndarray): ``(H, W, 3)`` uint8 RGB.
        layers (sequence[int]): encoder layer indices (0-based).
        fill (float): mean-colour blend, as ``draw_merge_regions``.

    Returns:
        dict[str, np.ndarray]: ``'layer i (N tokens)'`` -> ``(H, W, 3)``
        uint8, the input's size.
    """
    H, W = image.shape[:2]
    bgr = torch.from_numpy(np.ascontiguousarray(image[..., ::-1]))
    data = model.data_preprocessor(
        dict(inputs=[bgr.permute(2, 0, 1)], data_samples=None), False)
    maps = model.backbone.token_maps(data['inputs'])
    num_layers = len(maps)
    panels = {}
    for i in layers:
        if not -num_layers <= i < num_layers:
            raise ValueError(f'--layers: {i} is not a layer index of this '
                             f'{num_layers}-layer backbone.')
        tokens = maps[i]
        if tokens is None:
            raise ValueError('the backbone reduces no tokens (token_cfg '
                             'is off).')
        H0, W0 = tokens.grid
        # Patches tile the input padded at the bottom/right to whole
        # patches: draw on that canvas, then crop back to the input.
        ph, pw = math.ceil(H / H0), math.ceil(W / W0)
        canvas = np.zeros((H0 * ph, W0 * pw, 3), np.uint8)
        canvas[:H, :W] = image
        drawn = draw_merge_regions(
            canvas, tokens.assign[0], (H0, W0), fill=fill)
        count = int(tokens.size.shape[1])
        panels[f'layer {i % num_layers} ({count} tokens)'] = drawn[:H, :W]
    return panels


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Draw merged-token regions over images.')
    parser.add_argument('config')
    parser.add_argument('checkpoint', help="trained weights ('' for none)")
    parser.add_argument('images', nargs='+', help='RGB image files')
    parser.add_argument(
        '--setting',
        default='ATME:keep_ratio=0.75,layers=0/3',
        help='token reducer, in the sweep grammar')
    parser.add_argument(
        '--layers',
        type=int,
        nargs='+',
        default=[0, 3],
        help='layers after which to draw (0-based; default: the merging '
        'layers of the default setting)')
    parser.add_argument(
        '--fill',
        type=float,
        default=0.0,
        help='blend of each region\'s mean colour, [0, 1]')
    parser.add_argument(
        '--dpi', type=int, default=110, help='resolution of the saved figure')
    parser.add_argument('--out-dir', required=True)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> List[str]:
    """Write one PNG per image; return their paths."""
    from PIL import Image
    args = parse_args(argv)
    model = build_model(args.config, args.checkpoint, args.setting)
    os.makedirs(args.out_dir, exist_ok=True)
    paths = []
    for path in args.images:
        image = np.asarray(Image.open(path).convert('RGB'))
        panels = merge_region_panels(model, image, args.layers, args.fill)
        name = osp.splitext(osp.basename(path))[0]
        out = osp.join(args.out_dir, f'{name}_merge.png')
        _save(
            image, panels, out, f'{name} ({image.shape[1]}x'
            f'{image.shape[0]} px): {args.setting}', args.dpi)
        paths.append(out)
        print(f'wrote {out}')
    return paths


def _save(image: np.ndarray,
          panels: Dict[str, np.ndarray],
          path: str,
          title: str,
          dpi: int = 110) -> None:
    """The photo and the drawn panels side by side (the panels are drawn
    already, so ``save_merge_figure``, which draws from maps, is not used)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    items = [('input', image)] + list(panels.items())
    fig, axes = plt.subplots(
        1, len(items), figsize=(3.6 * len(items), 3.4), squeeze=False)
    for ax, (name, panel) in zip(axes[0], items):
        ax.imshow(panel)
        ax.set_title(name, fontsize=9)
        ax.axis('off')
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


if __name__ == '__main__':
    main(sys.argv[1:])
