# dTPS (joint Token Pruning & Squeezing, Wei et al., CVPR 2023, arXiv
# 2304.10716) inside the 7x7 attention windows of every Swin-T block: a
# learned keep predictor (DynamicViT's PredictorLG, run on each window; its
# global half is the window's mean) keeps 32 of a window's 49 tokens (r=17,
# as ATME's and eTPS's Swin configs) before the block's attention and
# squeezes the other 17 into their most similar kept token of the same shift
# region (padding is pruned first); the block runs on the kept tokens and
# un-merges after itself, so shifts, padding, patch merging and UperNet see
# full maps. Pruning does not accumulate across blocks, so every block
# prunes. On a CPU the twelve predictors cost about what pruning saves (no
# speed-up measured, see docs/methods.md, TPS inside Swin windows): this
# config is for learning the selection; eTPS is the fast, training-free one.
# Faithful: the predictor, straight-through Gumbel-softmax with masked
# attention in training, top-k at inference, the squeeze and its weights.
# Ours: everything Swin, and the training decision keeps the inference
# count per window (the top Gumbel-perturbed keep probabilities) instead of
# one coin per token.
# Training runs, but it is NOT TPS's recipe (no distillation loss here yet);
# the predictors are new (random) on top of the Swin-T weights, so
# evaluating a baseline checkpoint with this config prunes at random.
_base_ = './swin-t_upernet_8xb2-160k_ade20k-512x512.py'

model = dict(backbone=dict(token_cfg=dict(type='dTPS', r=17, prop_attn=False)))
