# dTPS (joint Token Pruning & Squeezing, Wei et al., CVPR 2023, arXiv
# 2304.10716) on the UperNet + DeiT-S baseline, TPS's default schedule: a
# learned keep predictor (DynamicViT's PredictorLG) before blocks 3, 6 and 9
# keeps 70% of the current tokens each time (1024 -> 717 -> 502 -> 352 at
# 512x512); every pruned token is squeezed into its most similar kept token,
# and un-merging gives UperNet the full H/16 x W/16 maps.
# Faithful: the predictor, straight-through Gumbel-softmax with masked
# attention in training, top-k at inference, the unidirectional squeeze and
# its weights, no proportional attention. Ours: kept tokens stay in
# ascending order, similarity ties go to the first host, and the kept count
# is rounded up (the original rounds it down: 716/501/351); see
# docs/methods.md (TPS).
# Training runs, but it is NOT TPS's recipe: the keep-ratio and
# distillation losses are not set here (model.keep_ratio_loss,
# model.teacher, model.distill: see the spvit-distill_* configs), so nothing
# pulls the
# predictor's training-time keep rate towards 0.7 (inference always keeps
# the fixed counts). The predictor is new (random) on top of the DeiT-S
# weights, so evaluating a baseline checkpoint with this config prunes at
# random; eTPS (parameter-free) is the training-free one.
_base_ = './deit-s16_upernet_8xb2-80k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        token_cfg=dict(
            type='dTPS', keep_ratio=0.7, layers=[3, 6, 9], prop_attn=False)))
