# Baseline: DeiT-S on ImageNet-1k (mmpretrain's recipe) with the backbone
# swapped for PrunedVisionTransformer with every reducer off (it equals
# mmpretrain's VisionTransformer). The compressed variants in this folder
# are deltas on this file, so both arms run the same code.
_base_ = 'mmpretrain::deit/deit-small_4xb256_in1k.py'

custom_imports = dict(
    imports=['mmtokenprune.models'], allow_failed_imports=False)

model = dict(backbone=dict(type='mmtokenprune.PrunedVisionTransformer'))
