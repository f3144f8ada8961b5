# CPU-sized real-data baseline: a DeiT-T-shaped PrunedVisionTransformer
# (reducers off) with a light FCN head, trained from scratch on CamVid
# (11 classes) with 256x256 crops; about 0.45 s/iteration on 2 CPU cores.
# Compressed variants are deltas on this file.
_base_ = [
    '../_base_/datasets/camvid.py', 'mmseg::_base_/default_runtime.py'
]

custom_imports = dict(
    imports=['mmtokenprune.models', 'mmtokenprune.datasets'],
    allow_failed_imports=False)

crop_size = (256, 256)
embed_dims = 192  # deit-tiny; the head's in_channels follow it
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=crop_size)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='mmtokenprune.PrunedVisionTransformer',
        arch='deit-tiny',
        img_size=crop_size,
        patch_size=16,
        out_indices=(11, ),
        out_type='featmap',
        drop_path_rate=0.1),
    decode_head=dict(
        type='FCNHead',
        in_channels=embed_dims,
        in_index=-1,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=11,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

max_iters = 4000
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999),
                   weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.),
            'ln': dict(decay_mult=0.),
        }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=200),
    dict(type='PolyLR', power=1.0, eta_min=0., by_epoch=False, begin=200,
         end=max_iters)
]
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=1000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(
        type='CheckpointHook',
        by_epoch=False,
        interval=1000,
        max_keep_ckpts=2,
        save_best='mIoU'))
