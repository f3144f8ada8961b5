# mmseg's model-zoo Segmenter ViT-S with the mask-transformer head (ADE20K,
# 512x512, 160k; sliding-window test), loaded exactly: mmseg's own config
# with the backbone type swapped for the plugin's mmseg-flavoured ViT (same
# arguments, same checkpoint keys; reducers off it gives mmseg's logits).
# The head reads the last layer's map, un-merged to the full H/16 x W/16
# grid whatever the reducer.
# Zoo checkpoint (mmseg configs/segmenter/metafile.yaml):
# segmenter_vit-s_mask_8x1_512x512_160k_ade20k_20220105_151706-511bb103.pth
# https://download.openmmlab.com/mmsegmentation/v0.5/segmenter/segmenter_vit-s_mask_8x1_512x512_160k_ade20k/segmenter_vit-s_mask_8x1_512x512_160k_ade20k_20220105_151706-511bb103.pth  # noqa: E501
_base_ = 'mmseg::segmenter/segmenter_vit-s_mask_8xb1-160k_ade20k-512x512.py'

custom_imports = dict(
    imports=['mmtokenprune.models'], allow_failed_imports=False)

# The ImageNet weights of mmseg's recipe (already in mmseg's keys, 384px:
# `pos_embed` is interpolated to 512 as mmseg does). Used by training only.
vit_s = 'https://download.openmmlab.com/mmsegmentation/v0.5/pretrain/segmenter/vit_small_p16_384_20220308-410f6037.pth'  # noqa: E501

model = dict(
    pretrained=None,
    backbone=dict(
        type='mmtokenprune.PrunedMMSegVisionTransformer',
        init_cfg=dict(type='Pretrained', checkpoint=vit_s)))
