# The CIFAR-10 classifier with eTPS (joint Token Pruning & Squeezing, Wei et
# al., CVPR 2023, arXiv 2304.10716), TPS's default schedule: inside blocks
# 3, 6 and 9, after attention, the class token's attention (EViT) keeps 70%
# of the current patch tokens each time; every pruned token is squeezed
# into its most similar kept token. The 128 px input has only 8x8 = 64
# patch tokens, and the schedule still fits: 64 -> 45 -> 32 -> 23 (36% kept
# after block 9, TPS's 34.3% rounded up), so it is kept as it is.
# Parameter-free: a trained baseline checkpoint can be evaluated with it.
# Faithful: EViT's class-token score, the unidirectional squeeze and its
# weights, no proportional attention. Ours: the eTPS block was never
# released (only the squeeze op); its placement after attention follows the
# authors' reply in the TPS repository's issue #1; kept tokens stay in
# ascending order, similarity ties go to the first host, and the kept count
# is rounded up (the original rounds it down: 44/31/21); see
# docs/methods.md (TPS).
# Training runs, but without TPS's distillation loss (not set here:
# model.teacher and model.distill, as in the spvit-distill_* configs).
_base_ = './deit-t16_1xb64-3e_cifar10-128px.py'

model = dict(
    backbone=dict(
        token_cfg=dict(
            type='eTPS', keep_ratio=0.7, layers=[3, 6, 9], prop_attn=False)))
