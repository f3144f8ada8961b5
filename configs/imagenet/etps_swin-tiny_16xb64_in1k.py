# Swin-T on ImageNet-1k (mmpretrain's recipe) with eTPS inside every 7x7
# window of every block (r=17 of 49 tokens per window, squeezed into kept
# tokens of the same window; see
# configs/ade20k/etps_swin-t_upernet_8xb2-160k_ade20k-512x512.py for what is
# TPS's and what is ours). At 224 the stage grids 56, 28, 14, 7 need no
# padding; stage 4 is one window.
_base_ = './swin-tiny_16xb64_in1k.py'

model = dict(backbone=dict(token_cfg=dict(type='eTPS', r=17, prop_attn=False)))
