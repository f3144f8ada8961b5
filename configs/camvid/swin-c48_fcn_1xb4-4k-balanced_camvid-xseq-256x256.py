# CPU-sized Swin baseline on CamVid's cross-sequence split: the recipe of the
# DeiT-T xseq baseline (FCN head, 256x256 crops, class-balanced
# cross-entropy, 4k iterations from scratch, train 0001TP + 0016E5, score
# 0006R0 with sliding 256x256 windows) with the small Swin of
# configs/_base_/models/swin-c48.py as the backbone, merging off.
_base_ = [
    './deit-t16_fcn_1xb4-4k-balanced_camvid-xseq-256x256.py',
    '../_base_/models/swin-c48.py'
]

model = dict(
    backbone={{_base_.swin_c48_backbone}},
    decode_head=dict(in_channels={{_base_.swin_c48_channels}}))
optim_wrapper = dict(paramwise_cfg={{_base_.swin_c48_paramwise}})
