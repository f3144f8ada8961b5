"""CamVidDataset and configs/_base_/datasets/camvid.py on synthetic data."""
import os
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


def _rename_as_sequences(root: str, split: str, names) -> None:
    """Give the tiny dataset's frames CamVid names (``SEQ_frame.png``)."""
    for kind in ('images', 'labels'):
        folder = osp.join(root, kind, split)
        for old, new in zip(sorted(os.listdir(folder)), names):
            os.rename(osp.join(folder, old), osp.join(folder, new))


def test_sequences_keep_only_the_frames_of_those_sequences(tiny_camvid):
    names = ['0001TP_006690.png', '0006R0_f00930.png', '0006R0_f00960.png',
             '0016E5_00390.png']
    _rename_as_sequences(tiny_camvid, 'train', names)
    folder = dict(img_path='images/train', seg_map_path='labels/train')

    def frames(sequences):
        dataset = build(dict(type='CamVidDataset', data_root=tiny_camvid,
                             data_prefix=folder, sequences=sequences))
        return [osp.basename(dataset.get_data_info(i)['img_path'])
                for i in range(len(dataset))]

    assert frames(None) == names
    assert frames(['0006R0']) == names[1:3]
    assert frames(['0016E5', '0001TP']) == [names[0], names[3]]
    with pytest.raises(ValueError, match=r"sequences.*'0006R0'"):
        frames(['0005VD'])  # the error lists the sequences there are
    with pytest.raises(TypeError, match='sequences'):
        frames('0006R0')


def test_cross_sequence_config_shares_no_sequence(tiny_camvid):
    """Training and validation of the xseq config hold disjoint
    sequences; test equals val."""
    cfg = Config.fromfile(osp.join(
        REPO, 'configs', 'camvid',
        'deit-t16_fcn_1xb4-2k_camvid-xseq-256x256.py'))
    _rename_as_sequences(tiny_camvid, 'train', [
        '0001TP_0.png', '0006R0_0.png', '0006R0_1.png', '0016E5_0.png'])
    _rename_as_sequences(tiny_camvid, 'val', ['0016E5_1.png',
                                              '0016E5_2.png'])
    from mmtokenprune.utils.config import propagate_data_root
    propagate_data_root(cfg, tiny_camvid)

    def sequences(dataset):
        return sorted(
            osp.basename(dataset.get_data_info(i)['img_path']).split('_')[0]
            for i in range(len(dataset)))

    train = build(cfg.train_dataloader.dataset)
    val = build(cfg.val_dataloader.dataset)
    assert sequences(train) == ['0001TP'] + ['0016E5'] * 3
    assert sequences(val) == ['0006R0'] * 2
    assert cfg.test_dataloader == cfg.val_dataloader
