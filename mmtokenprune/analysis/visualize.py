"""Draw token-merge regions over an image.

A reducer's :class:`~mmtokenprune.ops.TokenMap` says which current token
stands for each original patch (``assign``). Upsampled to pixels (nearest),
that is a label image; its region boundaries, drawn over the photo, show
which patches were merged. Pure numpy; matplotlib only for the figure.
"""
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch

__all__ = [
    'label_image', 'boundary_mask', 'draw_merge_regions', 'save_merge_figure'
]

ArrayLike = Union[np.ndarray, torch.Tensor]


def label_image(assign: ArrayLike, grid: Tuple[int, int],
                size: Tuple[int, int]) -> np.ndarray:
    """``assign`` on the ``grid`` upsampled (nearest) to ``size = (H, W)``.

    Pixel ``(y, x)`` takes the label of patch
    ``(y * H0 // H, x * W0 // W)``.
    """
    if isinstance(assign, torch.Tensor):
        assign = assign.detach().cpu().numpy()
    assign = np.asarray(assign).reshape(-1)
    H0, W0 = grid
    if assign.size != H0 * W0:
        raise ValueError(f'assign has {assign.size} entries but the grid '
                         f'{H0}x{W0} has {H0 * W0} (pass one image, not a '
                         'batch).')
    H, W = size
    rows = np.arange(H) * H0 // H
    cols = np.arange(W) * W0 // W
    return assign.reshape(H0, W0)[rows[:, None], cols[None, :]]


def boundary_mask(labels: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another label (lines 2 pixels wide)."""
    edge = np.zeros(labels.shape, dtype=bool)
    horizontal = labels[:, 1:] != labels[:, :-1]
    vertical = labels[1:, :] != labels[:-1, :]
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    return edge


def draw_merge_regions(image: np.ndarray,
                       assign: ArrayLike,
                       grid: Tuple[int, int],
                       color: Sequence[int] = (255, 255, 0),
                       fill: float = 0.0) -> np.ndarray:
    """Token regions of one image: boundaries (and optionally mean colours).

    Args:
        image (np.ndarray): ``(H, W, 3)`` uint8 RGB.
        assign (Tensor | np.ndarray): ``(H0 * W0, )`` index of the token
            standing for each patch (one row of ``TokenMap.assign``).
        grid (tuple[int, int]): the patch grid ``(H0, W0)``.
        color (sequence[int]): RGB of the boundary lines.
            Defaults to (255, 255, 0).
        fill (float): blend of each region's mean colour over the photo, in
            [0, 1]; 0 keeps the photo, 1 shows what the merged tokens
            "see". Defaults to 0.

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8; a pixel is ``color`` exactly when
        a 4-neighbour belongs to another token, the (blended) photo
        elsewhere.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError('image must be an (H, W, 3) uint8 array; got '
                         f'{image.shape} {image.dtype}.')
    if not 0 <= fill <= 1:
        raise ValueError(f'fill must be in [0, 1]; got {fill}.')
    labels = label_image(assign, grid, image.shape[:2])
    out = image.astype(np.float64)
    if fill > 0:
        _, inverse = np.unique(labels, return_inverse=True)
        inverse = inverse.reshape(-1)
        count = np.bincount(inverse)[:, None]
        means = np.stack([
            np.bincount(inverse, weights=out[..., c].reshape(-1))
            for c in range(3)
        ], 1) / count
        out = (1 - fill) * out + fill * means[inverse].reshape(out.shape)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    out[boundary_mask(labels)] = np.asarray(color, dtype=np.uint8)
    return out


def save_merge_figure(image: np.ndarray,
                      maps: Dict[str, ArrayLike],
                      grid: Tuple[int, int],
                      path: str,
                      title: Optional[str] = None,
                      fill: float = 0.0) -> str:
    """Save the photo and one panel per map (e.g. per layer) as a PNG.

    Args:
        image (np.ndarray): ``(H, W, 3)`` uint8 RGB.
        maps (dict[str, Tensor]): panel title -> ``assign`` of one image.
        grid (tuple[int, int]): the patch grid.
        path (str): the PNG to write.
        title (str, optional): figure title.
        fill (float): as :func:`draw_merge_regions`. Defaults to 0.

    Returns:
        str: ``path``.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    panels = [('input', image)
              ] + [(name, draw_merge_regions(image, assign, grid, fill=fill))
                   for name, assign in maps.items()]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
    for ax, (name, panel) in zip(axes[0], panels):
        ax.imshow(panel)
        ax.set_title(name, fontsize=9)
        ax.axis('off')
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
