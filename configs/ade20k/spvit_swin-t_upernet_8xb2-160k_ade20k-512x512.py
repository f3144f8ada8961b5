# SPViT (multi-head token selector, Kong et al., ECCV 2022, arXiv
# 2112.13890) inside the 7x7 attention windows of every Swin-T block: before
# each block, SPViT's selector (MultiheadPredictorLG, the block's heads:
# 3/6/12/24 of 32 channels) scores each window's tokens and every window
# keeps its top 32 of 49 (r=17, as ATME's and eTPS's Swin configs), with
# TPS's window rules (padding dropped first, every shift region keeps a
# token). Dropped tokens skip the block: after it they take back their own
# input feature (dense='last'), so shifts, padding, patch merging and
# UperNet see full maps. Every block starts from intact windows.
# Faithful: the selector (shared heads, senet head weights), the Gumbel
# decisions in training, no proportional attention. Ours: everything Swin
# (per-window counts, the same fixed count in training as at inference:
# the top Gumbel-perturbed keep probabilities, straight-through), and no
# package token in windows (docs/methods.md, "SPViT inside Swin windows").
# The selectors are new parameters: train (fine-tune) before evaluating.
_base_ = './swin-t_upernet_8xb2-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(token_cfg=dict(type='SPViT', r=17, prop_attn=False)))
