# ATME fine-tuned on the xseq split inside Swin's 8x8 windows: every block
# merges r=24 of each window's 64 tokens (0.63 of the baseline's backbone
# GFLOPs at 256x256; 24 is the most every ws=8 window allows ATME).
_base_ = './swin-c48_fcn_1xb4-500it-ft_camvid-xseq-256x256.py'

model = dict(backbone=dict(token_cfg=dict(type='ATME', r=24, prop_attn=True)))
