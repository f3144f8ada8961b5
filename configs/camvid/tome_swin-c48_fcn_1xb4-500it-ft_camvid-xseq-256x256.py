# ToMe fine-tuned on the xseq split inside Swin's 8x8 windows, at ATME's
# setting (r=24 of 64 tokens per window in every block: equal GFLOPs).
_base_ = './swin-c48_fcn_1xb4-500it-ft_camvid-xseq-256x256.py'

model = dict(backbone=dict(token_cfg=dict(type='ToMe', r=24, prop_attn=True)))
