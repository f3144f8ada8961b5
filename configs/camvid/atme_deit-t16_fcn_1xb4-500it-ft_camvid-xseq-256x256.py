# ATME fine-tuned on the xseq split: keep 60 % of the tokens at layers 0 and
# 3 (0.725 of the baseline's backbone GFLOPs at 256x256, the level every
# reducer of the `reducers` stage is set to).
_base_ = './deit-t16_fcn_1xb4-500it-ft_camvid-xseq-256x256.py'

model = dict(
    backbone=dict(token_cfg=dict(type='ATME', keep_ratio=0.6, layers=[0, 3])))
