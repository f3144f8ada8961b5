# SPViT fine-tuned from the trained CamVid baseline on the unpruned
# control's 1k-iteration schedule (./deit-t16_fcn_1xb4-1k-ft_*), the
# selector new:
#   python tools/train.py THIS_CONFIG --cfg-options load_from=BASELINE.pth
# Schedule and dense-head option as ./spvit_deit-t16_fcn_1xb4-4k_*; set
# `model.backbone.token_cfg.dense` to compare 'last' with 'package'.
_base_ = './deit-t16_fcn_1xb4-1k-ft_camvid-256x256.py'

model = dict(
    backbone=dict(
        token_cfg=dict(
            type='SPViT',
            keep_ratio=[0.617, 0.598, 0.371],
            layers=[3, 6, 9],
            prop_attn=False)))
