# Baseline: UperNet + DeiT-S on ADE20K 512x512, as mmseg's recipe, with the
# backbone swapped for PrunedVisionTransformer with every reducer off (it
# equals mmpretrain's VisionTransformer). The compressed variants below are
# deltas on this file, so both arms run the same code.
_base_ = 'mmseg::vit/vit_deit-s16_upernet_8xb2-80k_ade20k-512x512.py'

custom_imports = dict(
    imports=['mmtokenprune.models'], allow_failed_imports=False)

# mmpretrain's DeiT-S ImageNet weights (state_dict keys 'backbone.*').
deit_s = 'https://download.openmmlab.com/mmclassification/v0/deit/deit-small_pt-4xb256_in1k_20220218-9425b9bb.pth'  # noqa: E501

model = dict(
    # mmseg's EncoderDecoder would push `pretrained` into
    # `backbone.pretrained`, an argument mmpretrain backbones do not have.
    pretrained=None,
    backbone=dict(
        _delete_=True,  # mmseg ViT arguments -> mmpretrain ViT arguments
        type='mmtokenprune.PrunedVisionTransformer',
        arch='deit-small',
        img_size=(512, 512),
        patch_size=16,
        out_indices=(2, 5, 8, 11),
        out_type='featmap',  # merged tokens come back as H/16 x W/16 maps
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=deit_s,
                      prefix='backbone.')))
