"""Shared fixtures: a tiny synthetic dataset in the CamVid layout."""
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

CAMVID_NUM_CLASSES = 11


def make_camvid(root: str,
                splits=(('train', 4), ('val', 2)),
                size=(64, 48),
                seed: int = 0) -> str:
    """Write random RGB images and labels in the CamVid folder layout.

    Args:
        root (str): Folder to create ``images/<split>`` and
            ``labels/<split>`` in.
        splits (tuple): ``(split, number of images)`` pairs.
        size (tuple): Image (width, height).
        seed (int): Seed of the random content.

    Returns:
        str: ``root``.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    for split, count in splits:
        for kind in ('images', 'labels'):
            os.makedirs(osp.join(root, kind, split), exist_ok=True)
        for i in range(count):
            img = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            # Blocks of classes 0..10 plus some void (255) pixels.
            label = rng.integers(0, CAMVID_NUM_CLASSES,
                                 (height // 8, width // 8))
            label = np.kron(label, np.ones((8, 8), dtype=np.int64))
            label[rng.random(label.shape) < 0.05] = 255
            name = f'{split}_{i:03d}.png'
            Image.fromarray(img).save(osp.join(root, 'images', split, name))
            Image.fromarray(label.astype(np.uint8)).save(
                osp.join(root, 'labels', split, name))
    return root


@pytest.fixture
def tiny_camvid(tmp_path) -> str:
    """A 4-train/2-val CamVid-layout dataset of 64x48 images."""
    return make_camvid(str(tmp_path / 'camvid'))
