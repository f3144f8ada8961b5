"""CamVidDataset and configs/_base_/datasets/camvid.py on synthetic data."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmtokenprune.datasets  # noqa: F401  (registers CamVidDataset)
from mmtokenprune.datasets import CamVidDataset

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CAMVID_CONFIG = osp.join(REPO, 'configs', '_base_', 'datasets', 'camvid.py')


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')


def build(cfg):
    from mmseg.registry import DATASETS
    return DATASETS.build(cfg)


def test_dataset_builds_and_packs(tiny_camvid):
    dataset = build(
        dict(
            type='CamVidDataset',
            data_root=tiny_camvid,
            data_prefix=dict(
                img_path='images/train', seg_map_path='labels/train'),
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations'),
                dict(type='PackSegInputs')
            ]))
    assert isinstance(dataset, CamVidDataset) and len(dataset) == 4
    assert len(dataset.metainfo['classes']) == 11
    assert dataset.metainfo['classes'][0] == 'Sky'
    assert dataset.metainfo['palette'][3] == [128, 64, 128]  # Road
    assert dataset.reduce_zero_label is False
    sample = dataset[0]
    assert sample['inputs'].shape == (3, 48, 64)
    labels = sample['data_samples'].gt_sem_seg.data
    assert labels.shape == (1, 48, 64)
    values = set(torch.unique(labels).tolist())
    assert 255 in values and values <= set(range(11)) | {255}


def test_base_config_pipelines(tiny_camvid):
    cfg = Config.fromfile(CAMVID_CONFIG)
    assert cfg.data_root == '../shared/data/camvid'
    assert cfg.custom_imports.imports == ['mmtokenprune.datasets']
    for split, loader in (('train', cfg.train_dataloader),
                          ('val', cfg.val_dataloader)):
        dataset_cfg = loader.dataset
        assert dataset_cfg.data_prefix.img_path == f'images/{split}'
        dataset_cfg.data_root = tiny_camvid
        sample = build(dataset_cfg)[0]
        labels = sample['data_samples'].gt_sem_seg.data
        if split == 'train':  # resize to ~480x360 x [0.5, 2], crop 256
            height, width = sample['inputs'].shape[1:]
            assert labels.shape == (1, height, width)
            assert 180 <= height <= 256 and 240 <= width <= 256
        else:  # resized to 480x360; labels stay at full resolution
            assert sample['inputs'].shape == (3, 360, 480)
            assert labels.shape == (1, 48, 64)
    assert cfg.val_evaluator == dict(type='IoUMetric', iou_metrics=['mIoU'])


def test_missing_folder_names_the_config_key(tmp_path):
    with pytest.raises(FileNotFoundError, match='data_root'):
        build(
            dict(
                type='CamVidDataset',
                data_root=str(tmp_path / 'nowhere'),
                data_prefix=dict(
                    img_path='images/val', seg_map_path='labels/val')))
