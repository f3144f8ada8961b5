# DeiT-S on ImageNet-1k (mmpretrain's recipe) with dTPS (joint Token Pruning
# & Squeezing, Wei et al., CVPR 2023, arXiv 2304.10716), TPS's default
# schedule: a learned keep predictor (DynamicViT's PredictorLG) before
# blocks 3, 6 and 9 keeps 70% of the current patch tokens each time
# (196 -> 138 -> 97 -> 68); every pruned token is squeezed into its most
# similar kept token.
# Faithful: the predictor, straight-through Gumbel-softmax with masked
# attention in training, top-k at inference, the unidirectional squeeze and
# its weights, no proportional attention. Ours: kept tokens stay in
# ascending order, similarity ties go to the first host, and the kept count
# is rounded up (the original rounds it down: 137/96/67); see
# docs/methods.md (TPS).
# Training runs, but it is NOT TPS's recipe: TPS fine-tunes DeiT-S weights
# for 30 epochs with a keep-ratio loss and distillation from the unpruned
# DeiT-S; those losses are not set here (model.keep_ratio_loss,
# model.teacher, model.distill; nothing pulls the predictor's training-time
# keep rate towards 0.7), and this is mmpretrain's 300-epoch
# DeiT-S schedule.
_base_ = './deit-small_4xb256_in1k.py'

model = dict(
    backbone=dict(
        token_cfg=dict(
            type='dTPS', keep_ratio=0.7, layers=[3, 6, 9], prop_attn=False)))
