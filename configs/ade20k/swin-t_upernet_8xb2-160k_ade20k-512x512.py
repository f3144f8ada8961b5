# Baseline: UperNet + Swin-T on ADE20K 512x512, as mmseg's recipe, with the
# backbone swapped for mmpretrain's Swin-T as PrunedSwinTransformer with
# merging and pruning off (it equals mmpretrain's SwinTransformer). The
# compressed variants below are deltas on this file, so both arms run the
# same code.
_base_ = 'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'  # noqa: E501

custom_imports = dict(
    imports=['mmtokenprune.models'], allow_failed_imports=False)

# The official Swin-T ImageNet-1k weights that mmseg's recipe starts from,
# in mmpretrain's key format (state_dict keys 'backbone.*').
swin_t = 'https://download.openmmlab.com/mmclassification/v0/swin-transformer/convert/swin_tiny_patch4_window7_224-160bb0a5.pth'  # noqa: E501

model = dict(
    backbone=dict(
        _delete_=True,  # mmseg Swin arguments -> mmpretrain Swin arguments
        type='mmtokenprune.PrunedSwinTransformer',
        arch='tiny',
        img_size=512,
        window_size=7,
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        # pad maps to whole windows and keep the shifts, as mmseg's Swin
        pad_small_map=True,
        init_cfg=dict(
            type='Pretrained', checkpoint=swin_t, prefix='backbone.')))
