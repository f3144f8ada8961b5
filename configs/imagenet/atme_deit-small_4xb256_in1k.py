# DeiT-S on ImageNet-1k (mmpretrain's recipe) with ATME token merging.
_base_ = [
    'mmpretrain::deit/deit-small_4xb256_in1k.py', '../_base_/compress/atme.py'
]

custom_imports = dict(
    imports=['mmtokenprune.models'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        type='mmtokenprune.PrunedVisionTransformer',
        token_cfg={{_base_.token_cfg}}))
