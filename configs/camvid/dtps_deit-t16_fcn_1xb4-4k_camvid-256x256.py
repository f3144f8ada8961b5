# The CamVid baseline with dTPS (joint Token Pruning & Squeezing, Wei et al.,
# CVPR 2023, arXiv 2304.10716), TPS's default schedule: a learned keep
# predictor (DynamicViT's PredictorLG) before blocks 3, 6 and 9 keeps 70% of
# the current tokens each time (256x256 crops: 256 -> 180 -> 126 -> 89;
# 480x360 test frames: 690 -> 483 -> 339 -> 238); every pruned token is
# squeezed into its most similar kept token and un-merged for the FCN head.
# Faithful: the predictor, straight-through Gumbel-softmax with masked
# attention in training, top-k at inference, the unidirectional squeeze and
# its weights, no proportional attention. Ours: kept tokens stay in
# ascending order, similarity ties go to the first host, and the kept count
# is rounded up (the original rounds it down); see docs/methods.md (TPS).
# Training runs (e.g. fine-tune from the baseline:
#   python tools/train.py THIS_CONFIG --cfg-options load_from=BASELINE.pth),
# but it is NOT TPS's recipe: the keep-ratio and distillation losses are
# not set here (model.keep_ratio_loss, model.teacher, model.distill: see the
# spvit-distill_* configs), so nothing pulls the predictor's training-time
# keep rate towards 0.7 (inference always keeps the fixed counts). Evaluating a
# baseline checkpoint with this config as it is prunes at random (the
# predictor is untrained); eTPS is the training-free one.
_base_ = './deit-t16_fcn_1xb4-4k_camvid-256x256.py'

model = dict(
    backbone=dict(
        token_cfg=dict(
            type='dTPS', keep_ratio=0.7, layers=[3, 6, 9], prop_attn=False)))
