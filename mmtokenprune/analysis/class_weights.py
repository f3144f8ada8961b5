"""Per-class loss weights from the label frequencies of a training set.

``tools/analysis/class_weights.py`` prints them for a config; the modes:

- ``median``: median frequency balancing (Eigen & Fergus 2015; used for
  CamVid by SegNet): ``w_c = median(f) / f_c``, where ``f_c`` is the pixel
  count of class ``c`` divided by the pixels of the images where ``c``
  appears;
- ``sqrt-median``: its square root, a milder balancing.
"""
from typing import List, Sequence

import numpy as np
from PIL import Image

__all__ = ['MODES', 'label_paths', 'class_frequencies', 'weights_from']

MODES = ('median', 'sqrt-median')


def label_paths(cfg) -> List[str]:
    """The label maps of the config's train set, in dataset order."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    import mmtokenprune.datasets  # noqa: F401  (registers CamVidDataset)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    inner = getattr(dataset, 'datasets', [dataset])
    paths = []
    for ds in inner:
        ds.full_init()
        paths += [ds.get_data_info(i)['seg_map_path'] for i in range(len(ds))]
    return paths


def class_frequencies(paths: Sequence[str], num_classes: int,
                      ignore_index: int = 255) -> np.ndarray:
    """``f_c``: pixels of class ``c`` over the pixels of the images that
    contain ``c`` (0 where a class never appears)."""
    pixels = np.zeros(num_classes, dtype=np.float64)
    image_pixels = np.zeros(num_classes, dtype=np.float64)
    for path in paths:
        label = np.asarray(Image.open(path))
        counts = np.bincount(
            label[label != ignore_index].ravel(), minlength=num_classes)
        if counts.size > num_classes:
            raise ValueError(f'{path}: label {counts.size - 1} is outside '
                             f'0..{num_classes - 1} (and not the ignore '
                             f'index {ignore_index}).')
        pixels += counts
        image_pixels += (counts > 0) * label.size
    return np.divide(
        pixels, image_pixels, out=np.zeros_like(pixels),
        where=image_pixels > 0)


def weights_from(freq: np.ndarray, mode: str) -> np.ndarray:
    """Class weights for ``mode`` (one of :data:`MODES`)."""
    if mode not in MODES:
        raise ValueError(f'--mode must be one of {MODES}, got {mode!r}.')
    present = freq > 0
    w = np.zeros_like(freq)
    w[present] = np.median(freq[present]) / freq[present]
    return np.sqrt(w) if mode == 'sqrt-median' else w
