# Baseline: Swin-T on ImageNet-1k (mmpretrain's recipe) with the backbone
# swapped for PrunedSwinTransformer with merging and pruning off (it equals
# mmpretrain's SwinTransformer). The compressed Swin-T variants in this
# folder are deltas on this file.
_base_ = 'mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py'

custom_imports = dict(
    imports=['mmtokenprune.models'], allow_failed_imports=False)

model = dict(backbone=dict(type='mmtokenprune.PrunedSwinTransformer'))
