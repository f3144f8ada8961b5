# The CPU-sized Swin of the CamVid configs, as values a config puts in place
# of a DeiT-T config's backbone (`{{_base_.swin_c48_backbone}}`: its
# `_delete_` drops the ViT arguments). "c48": embed_dims 48 (half of
# Swin-T) and three stages (2, 2, 6 blocks), so the last stage is at H/16
# with 192 channels, like DeiT-T/16. Windows of 8 tile the 256 crops' 64,
# 32 and 16 token grids exactly (the 480x360 test images pad).
swin_c48_backbone = dict(
    _delete_=True,
    type='mmtokenprune.PrunedSwinTransformer',
    arch=dict(embed_dims=48, depths=(2, 2, 6), num_heads=(2, 4, 8)),
    img_size=256,
    window_size=8,
    drop_path_rate=0.1,
    out_indices=(2, ),
    pad_small_map=True)
swin_c48_channels = 48 * 4  # of the stage the decode head reads
# no weight decay on the relative-position tables and norms (mmseg's Swin)
swin_c48_paramwise = dict(
    custom_keys={
        'relative_position_bias_table': dict(decay_mult=0.),
        'norm': dict(decay_mult=0.),
    })
