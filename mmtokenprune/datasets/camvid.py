"""CamVid with the 11 SegNet classes (labels 0..10, 255 = void)."""
from typing import List

import mmengine.fileio as fileio
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

__all__ = ['CamVidDataset']


@DATASETS.register_module()
class CamVidDataset(BaseSegDataset):
    """CamVid road scenes, 11 classes, in the version prepared for SegNet.

    `Segmentation and Recognition Using Structure from Motion Point Clouds
    <https://doi.org/10.1007/978-3-540-88682-2_5>`_ (Brostow et al.), with
    the 11-class merge of `SegNet <https://arxiv.org/abs/1511.00561>`_.

    Layout under ``data_root``: ``images/{train,val}/NAME.png`` (RGB) and
    ``labels/{train,val}/NAME.png`` (one channel, same name). Label values
    0..10 are classes and 255 is void, which mmseg ignores by default
    (``ignore_index=255``), so ``reduce_zero_label`` stays False.

    Args:
        img_suffix (str): Suffix of images. Defaults to '.png'.
        seg_map_suffix (str): Suffix of label maps. Defaults to '.png'.
        reduce_zero_label (bool): Whether to map label 0 to 255. Defaults
            to False (0 is the class ``Sky``).
        **kwargs: Other arguments of :class:`mmseg.datasets.BaseSegDataset`.

    Examples:
        >>> from mmseg.registry import DATASETS
        >>> dataset = DATASETS.build(dict(
        ...     type='CamVidDataset', data_root='../shared/data/camvid',
        ...     data_prefix=dict(img_path='images/val',
        ...                      seg_map_path='labels/val')))
        >>> len(dataset.metainfo['classes'])
        11
    """
    METAINFO = dict(
        classes=('Sky', 'Building', 'Pole', 'Road', 'Pavement', 'Tree',
                 'SignSymbol', 'Fence', 'Car', 'Pedestrian', 'Bicyclist'),
        palette=[[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128],
                 [60, 40, 222], [128, 128, 0], [192, 128, 128], [64, 64, 128],
                 [64, 0, 128], [64, 64, 0], [0, 128, 192]])

    def __init__(self,
                 img_suffix: str = '.png',
                 seg_map_suffix: str = '.png',
                 reduce_zero_label: bool = False,
                 **kwargs) -> None:
        super().__init__(
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=reduce_zero_label,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        """Load image/label pairs; fail clearly if the folder is wrong.

        Returns:
            list[dict]: One dict per image, as ``BaseSegDataset`` builds.

        Raises:
            FileNotFoundError: If ``data_root``/``data_prefix.img_path``
                does not exist or holds no ``img_suffix`` files.
        """
        img_dir = self.data_prefix.get('img_path', '')
        if not self.ann_file and not fileio.exists(
                img_dir, backend_args=self.backend_args):
            raise FileNotFoundError(
                f'CamVidDataset: image folder {img_dir!r} does not exist; '
                'check `data_root` (relative paths start at the current '
                'directory) and `data_prefix.img_path`, e.g. '
                '`--cfg-options data_root=/path/to/camvid`.')
        data_list = super().load_data_list()
        if not data_list:
            raise FileNotFoundError(
                f'CamVidDataset: no {self.img_suffix!r} images in '
                f'{img_dir!r}; check `data_root` and `data_prefix.img_path`.')
        return data_list
