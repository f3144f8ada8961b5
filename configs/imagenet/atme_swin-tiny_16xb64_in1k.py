# Swin-T on ImageNet-1k (mmpretrain's recipe) with ATME inside every 7x7
# window of every block (r=17 of 49 tokens per window; see
# configs/ade20k/atme_swin-t_upernet_8xb2-160k_ade20k-512x512.py). At 224
# the stage grids 56, 28, 14, 7 need no padding; stage 4 is one window.
_base_ = './swin-tiny_16xb64_in1k.py'

model = dict(backbone=dict(token_cfg=dict(type='ATME', r=17, prop_attn=True)))
