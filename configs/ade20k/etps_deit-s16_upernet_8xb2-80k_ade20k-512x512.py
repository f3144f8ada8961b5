# eTPS (joint Token Pruning & Squeezing, Wei et al., CVPR 2023, arXiv
# 2304.10716) on the UperNet + DeiT-S baseline, TPS's default schedule:
# inside blocks 3, 6 and 9, after attention (as EViT; the authors' reply in
# the TPS repository's issue #1), the class token's attention keeps 70% of
# the current tokens (1024 -> 717 -> 502 -> 352 at 512x512); every pruned
# token is squeezed into its most similar kept token, and un-merging gives
# UperNet the full H/16 x W/16 maps. Parameter-free: a trained baseline
# checkpoint can be evaluated with it as it is.
# Faithful: EViT's class-token score, the unidirectional squeeze and its
# weights, no proportional attention. Ours: the eTPS block itself was never
# released (only the squeeze op), so its placement follows the issue reply;
# kept tokens stay in ascending order, similarity ties go to the first host,
# and the kept count is rounded up (the original rounds it down:
# 716/501/351); see docs/methods.md (TPS).
# Training runs, but it is NOT TPS's recipe: the distillation loss is not
# set here (model.teacher, model.distill: see the spvit-distill_* configs).
_base_ = './deit-s16_upernet_8xb2-80k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        token_cfg=dict(
            type='eTPS', keep_ratio=0.7, layers=[3, 6, 9], prop_attn=False)))
