# SPViT (latency-aware soft token pruning, Kong et al., ECCV 2022, arXiv
# 2112.13890), the original DeiT recipe: a multi-head token selector before
# blocks 3, 6 and 9 keeps 61.7%, 36.9% and 13.7% of the patch tokens in all
# (per stage 0.617, 0.598, 0.371 of the current ones); the dropped tokens of
# each stage become one package token appended to the sequence.
# Faithful: the selector (shared per-head convs, as the original), Gumbel
# decisions with masked attention and the weighted package in training, the
# mean package at inference. Ours: a fixed top-k at inference (the original
# samples a per-image count, B=1: `sample=True`), kept counts rounded up, and
# for dense heads a dropped position shows its own feature at drop time
# (`dense='last'`; or `'package'`); see docs/methods.md (SPViT).
# Training runs, but it is NOT SPViT's recipe: its keep-ratio and distillation
# losses and warm-up are not set here (model.keep_ratio_loss, model.teacher,
# model.distill, BackboneWarmupHook: see the spvit-distill_* configs).
# 128 px: 64 patch tokens -> 40 -> 24 -> 9.
_base_ = './deit-t16_1xb64-3e_cifar10-128px.py'

model = dict(
    backbone=dict(
        token_cfg=dict(
            type='SPViT',
            keep_ratio=[0.617, 0.598, 0.371],
            layers=[3, 6, 9],
            prop_attn=False)))
