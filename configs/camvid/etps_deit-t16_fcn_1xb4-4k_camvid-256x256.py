# The CamVid baseline with eTPS (joint Token Pruning & Squeezing, Wei et al.,
# CVPR 2023, arXiv 2304.10716), TPS's default schedule: inside blocks 3, 6
# and 9, after attention, the class token's attention (EViT) keeps 70% of
# the current tokens each time (256x256 crops: 256 -> 180 -> 126 -> 89;
# 480x360 test frames: 690 -> 483 -> 339 -> 238); every pruned token is
# squeezed into its most similar kept token and un-merged for the FCN head.
# Parameter-free: evaluate a trained baseline checkpoint with it,
# training-free:
#   python tools/test.py THIS_CONFIG work_dirs/<baseline>/best_mIoU_*.pth
# Faithful: EViT's class-token score, the unidirectional squeeze and its
# weights, no proportional attention. Ours: the eTPS block was never
# released (only the squeeze op); its placement after attention follows the
# authors' reply in the TPS repository's issue #1; kept tokens stay in
# ascending order, similarity ties go to the first host, and the kept count
# is rounded up (the original rounds it down); see docs/methods.md (TPS).
# Training runs, but without TPS's distillation loss (not set here:
# model.teacher and model.distill, as in the spvit-distill_* configs).
_base_ = './deit-t16_fcn_1xb4-4k_camvid-256x256.py'

model = dict(
    backbone=dict(
        token_cfg=dict(
            type='eTPS', keep_ratio=0.7, layers=[3, 6, 9], prop_attn=False)))
