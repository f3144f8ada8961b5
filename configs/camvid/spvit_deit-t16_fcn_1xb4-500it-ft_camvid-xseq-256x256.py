# SPViT fine-tuned on the xseq split: selectors at layers 3, 6 and 9 keeping
# 42 % each time (0.726 of the backbone GFLOPs with the package tokens,
# ATME's level), SPViT's batch keep-ratio loss. Plain pruning with the same
# selector, its control: --cfg-options model.backbone.token_cfg.package=False.
_base_ = './deit-t16_fcn_1xb4-500it-ft_camvid-xseq-256x256.py'

model = dict(
    type='mmtokenprune.PrunedEncoderDecoder',
    backbone=dict(
        token_cfg=dict(
            type='SPViT', keep_ratio=0.42, layers=[3, 6, 9],
            prop_attn=False)),
    keep_ratio_loss=dict(mode='batch', loss_weight=2.0))
