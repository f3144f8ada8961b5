# eTPS fine-tuned on the xseq split: dTPS's schedule (layers 3, 6, 9, keep
# 40 %), EViT's attention score (no parameters, a fixed count: no keep-ratio
# loss). Plain pruning (EViT without fusion), its control:
# --cfg-options model.backbone.token_cfg.squeeze=False.
_base_ = './deit-t16_fcn_1xb4-500it-ft_camvid-xseq-256x256.py'

model = dict(
    backbone=dict(
        token_cfg=dict(
            type='eTPS', keep_ratio=0.4, layers=[3, 6, 9], prop_attn=False)))
