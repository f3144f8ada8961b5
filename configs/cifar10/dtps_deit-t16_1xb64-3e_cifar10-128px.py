# The CIFAR-10 classifier with dTPS (joint Token Pruning & Squeezing, Wei et
# al., CVPR 2023, arXiv 2304.10716), TPS's default schedule: a learned keep
# predictor (DynamicViT's PredictorLG) before blocks 3, 6 and 9 keeps 70% of
# the current patch tokens each time; every pruned token is squeezed into
# its most similar kept token. The 128 px input has only 8x8 = 64 patch
# tokens, and the schedule still fits: 64 -> 45 -> 32 -> 23 (36% kept after
# block 9, TPS's 34.3% rounded up), so it is kept as it is.
# Faithful: the predictor, straight-through Gumbel-softmax with masked
# attention in training, top-k at inference, the unidirectional squeeze and
# its weights, no proportional attention. Ours: kept tokens stay in
# ascending order, similarity ties go to the first host, and the kept count
# is rounded up (the original rounds it down: 44/31/21); see
# docs/methods.md (TPS).
# Training runs (e.g. fine-tune from the baseline with
# `--cfg-options load_from=...`), but it is NOT TPS's recipe: the
# keep-ratio and distillation losses are not set here (model.keep_ratio_loss,
# model.teacher, model.distill: see the spvit-distill_* configs), so nothing
# pulls the predictor's training-time keep rate towards 0.7 (inference
# always keeps the fixed counts).
_base_ = './deit-t16_1xb64-3e_cifar10-128px.py'

model = dict(
    backbone=dict(
        token_cfg=dict(
            type='dTPS', keep_ratio=0.7, layers=[3, 6, 9], prop_attn=False)))
