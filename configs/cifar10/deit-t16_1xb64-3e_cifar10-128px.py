# CPU-sized classification on real photos: a DeiT-T-shaped
# PrunedVisionTransformer trained from scratch on CIFAR-10. Images are
# upsampled 32 -> 128 px so the patch size (16) and every state_dict key
# match the CamVid segmentation backbone: the classifier's backbone
# transfers with `init_cfg=dict(type='Pretrained', prefix='backbone.')`
# (8x8 -> 16x16 position embeddings are resized on load).
#
# Data: extract the shared archive outside the repository first,
#   python tools/prepare_cifar10.py  # -> data/cifar10/{train,test}/<class>/
# or point `data_root` elsewhere with --cfg-options data_root=...
_base_ = [
    'mmpretrain::_base_/datasets/cifar10_bs16.py',
    'mmpretrain::_base_/default_runtime.py'
]

custom_imports = dict(
    imports=['mmtokenprune.models'], allow_failed_imports=False)

data_root = 'data/cifar10'
img_size = 128
embed_dims = 192

data_preprocessor = dict(num_classes=10, to_rgb=True)
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmtokenprune.PrunedVisionTransformer',
        arch='deit-tiny',
        img_size=img_size,
        patch_size=16,
        drop_path_rate=0.1),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=10,
        in_channels=embed_dims,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                  mode='original')))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomCrop', crop_size=32, padding=4),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='Resize', scale=(img_size, img_size)),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size)),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64,
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        data_prefix='train',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=128,
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        data_prefix='test',
        pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 3
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        custom_keys={
            '.cls_token': dict(decay_mult=0.),
            '.pos_embed': dict(decay_mult=0.)
        }),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1,
         end=max_epochs, convert_to_iter_based=True)
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=1, max_keep_ckpts=2, save_best='auto'))
