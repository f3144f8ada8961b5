"""CamVid with the 11 SegNet classes (labels 0..10, 255 = void)."""
import os.path as osp
from typing import List, Optional, Sequence

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
        sequences (Sequence[str], optional): keep only frames of these
            video sequences (the file-name prefix before ``_``, e.g.
            ``'0006R0'``); None keeps every frame. Frames of one sequence
            are highly correlated, so a validation that shares no scene
            with training holds out whole sequences. Defaults to None.
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
                 sequences: Optional[Sequence[str]] = None,
                 **kwargs) -> None:
        if isinstance(sequences, str):
            raise TypeError('CamVidDataset: `sequences` must be a list of '
                            f'sequence names, not the string {sequences!r}.')
        self.sequences = None if sequences is None else tuple(sequences)
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
            ValueError: If ``sequences`` names a sequence with no frame in
                the folder (the error lists the sequences there).
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
        if self.sequences is not None:
            data_list = self._select_sequences(data_list, img_dir)
        return data_list

    def _select_sequences(self, data_list: List[dict],
                          img_dir: str) -> List[dict]:
        """The frames of ``self.sequences``, in their folder order."""
        def sequence(info):
            return osp.basename(info['img_path']).split('_')[0]

        present = sorted({sequence(info) for info in data_list})
        missing = [s for s in self.sequences if s not in present]
        if missing or not self.sequences:
            raise ValueError(
                f'CamVidDataset: `sequences` {list(self.sequences)} must be '
                f'a non-empty list of sequences in {img_dir!r}: '
                f'{present}.')
        wanted = set(self.sequences)
        return [info for info in data_list if sequence(info) in wanted]
