# mmseg's model-zoo UperNet + ViT-B with its multi-level neck (ADE20K,
# 512x512, 80k), loaded exactly: mmseg's own config with the backbone type
# swapped for the plugin's mmseg-flavoured ViT (same arguments, same
# checkpoint keys; reducers off it gives mmseg's logits).
# Zoo checkpoint (mmseg configs/vit/metafile.yaml):
# upernet_vit-b16_mln_512x512_80k_ade20k_20210624_130547-0403cee1.pth
# https://download.openmmlab.com/mmsegmentation/v0.5/vit/upernet_vit-b16_mln_512x512_80k_ade20k/upernet_vit-b16_mln_512x512_80k_ade20k_20210624_130547-0403cee1.pth  # noqa: E501
_base_ = 'mmseg::vit/vit_vit-b16_mln_upernet_8xb2-80k_ade20k-512x512.py'

custom_imports = dict(
    imports=['mmtokenprune.models'], allow_failed_imports=False)

# The ImageNet weights mmseg's recipe starts from (its `pretrained` names a
# local vit2mmseg conversion): timm's ViT-B/16 (JAX port), read as it is.
# Used by training only; test and sweep load the zoo file.
vit_b = 'https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-vitjx/jx_vit_base_p16_224-80ecf9dd.pth'  # noqa: E501

model = dict(
    pretrained=None,
    backbone=dict(
        type='mmtokenprune.PrunedMMSegVisionTransformer',
        init_cfg=dict(type='Pretrained', checkpoint=vit_b)))
