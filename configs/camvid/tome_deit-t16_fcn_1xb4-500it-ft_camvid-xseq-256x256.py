# ToMe fine-tuned on the xseq split, at ATME's setting (keep 60 % at layers
# 0 and 3: equal GFLOPs).
_base_ = './deit-t16_fcn_1xb4-500it-ft_camvid-xseq-256x256.py'

model = dict(
    backbone=dict(token_cfg=dict(type='ToMe', keep_ratio=0.6, layers=[0, 3])))
