# mmseg's model-zoo UperNet + DeiT-S (ADE20K, 512x512, 80k), loaded exactly:
# mmseg's own config with the backbone type swapped for the plugin's
# mmseg-flavoured ViT (same arguments, same checkpoint keys; reducers off it
# gives mmseg's logits). Compress it without training:
#   python tools/analysis/sweep.py THIS_FILE ZOO_CKPT --image-size 512 512 \
#       --settings baseline ATME:keep_ratio=0.75,layers=0/3 ...
# Zoo checkpoint (mmseg configs/vit/metafile.yaml):
# upernet_deit-s16_512x512_80k_ade20k_20210624_095228-afc93ec2.pth
# https://download.openmmlab.com/mmsegmentation/v0.5/vit/upernet_deit-s16_512x512_80k_ade20k/upernet_deit-s16_512x512_80k_ade20k_20210624_095228-afc93ec2.pth  # noqa: E501
_base_ = 'mmseg::vit/vit_deit-s16_upernet_8xb2-80k_ade20k-512x512.py'

custom_imports = dict(
    imports=['mmtokenprune.models'], allow_failed_imports=False)

# The ImageNet weights mmseg's recipe starts from (its `pretrained` names a
# local vit2mmseg conversion of this file): the official DeiT-S checkpoint,
# read as it is. Used by training only; test and sweep load the zoo file.
deit_s = 'https://dl.fbaipublicfiles.com/deit/deit_small_patch16_224-cd65a155.pth'  # noqa: E501

model = dict(
    pretrained=None,
    backbone=dict(
        type='mmtokenprune.PrunedMMSegVisionTransformer',
        init_cfg=dict(type='Pretrained', checkpoint=deit_s)))
