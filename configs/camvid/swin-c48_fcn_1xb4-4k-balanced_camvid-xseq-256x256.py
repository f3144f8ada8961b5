# CPU-sized Swin baseline on CamVid's cross-sequence split: the recipe of the
# DeiT-T xseq baseline (FCN head, 256x256 crops, class-balanced
# cross-entropy, 4k iterations from scratch, train 0001TP + 0016E5, score
# 0006R0 with sliding 256x256 windows) with a small Swin as the backbone,
# PrunedSwinTransformer with merging off. "c48": embed_dims 48
# (half of Swin-T) and three stages (2, 2, 6 blocks), so the last stage is
# at H/16 with 192 channels, like DeiT-T/16. Windows of 8 tile the 256
# crops' 64, 32 and 16 token grids exactly (the 480x360 test images pad).
_base_ = './deit-t16_fcn_1xb4-4k-balanced_camvid-xseq-256x256.py'

embed_dims = 48
model = dict(
    backbone=dict(
        _delete_=True,  # ViT arguments -> Swin arguments
        type='mmtokenprune.PrunedSwinTransformer',
        arch=dict(
            embed_dims=embed_dims, depths=(2, 2, 6), num_heads=(2, 4, 8)),
        img_size=256,
        window_size=8,
        drop_path_rate=0.1,
        out_indices=(2, ),
        pad_small_map=True),
    decode_head=dict(in_channels=embed_dims * 4))
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'relative_position_bias_table': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.),
        }))
