# DeiT-S on ImageNet-1k (mmpretrain's recipe) with ATME token merging, the
# default schedule (75% kept after layers 0 and 3; see docs/methods.md).
_base_ = './deit-small_4xb256_in1k.py'

model = dict(
    backbone=dict(token_cfg=dict(type='ATME', keep_ratio=0.75, layers=[0, 3])))
