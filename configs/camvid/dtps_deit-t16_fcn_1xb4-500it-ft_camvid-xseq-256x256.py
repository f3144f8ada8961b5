# dTPS fine-tuned on the xseq split: prune at layers 3, 6 and 9 (TPS's
# placement), keeping 40 % each time (0.720 of the backbone GFLOPs, ATME's
# level), with DynamicViT/TPS's per-image keep-ratio loss. Plain pruning,
# its control: --cfg-options model.backbone.token_cfg.squeeze=False.
_base_ = './deit-t16_fcn_1xb4-500it-ft_camvid-xseq-256x256.py'

model = dict(
    type='mmtokenprune.PrunedEncoderDecoder',
    backbone=dict(
        token_cfg=dict(
            type='dTPS', keep_ratio=0.4, layers=[3, 6, 9], prop_attn=False)),
    keep_ratio_loss=dict(mode='per_sample', loss_weight=2.0))
