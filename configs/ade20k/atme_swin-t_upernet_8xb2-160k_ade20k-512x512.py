# ATME inside every 7x7 attention window of every Swin-T block: each block
# merges r=17 of a window's 49 tokens into touching neighbours before its
# attention and MLP and un-merges them after it (the largest r that every
# window of every input size allows: tokens never merge across shift
# regions or with padding). Pairing alternates W, H, W, ... over blocks;
# proportional attention weights a merged token by the patches it holds.
_base_ = './swin-t_upernet_8xb2-160k_ade20k-512x512.py'

model = dict(backbone=dict(token_cfg=dict(type='ATME', r=17, prop_attn=True)))
