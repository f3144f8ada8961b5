# SPViT fine-tuned 200 iterations from the CIFAR-10 classifier near ATME's
# GFLOPs: keep 42% of the current patch tokens at blocks 3, 6 and 9, plus
# the package token; SPViT's batch-level keep-ratio loss (weight 2).
# Plain pruning: --cfg-options model.backbone.token_cfg.package=False
_base_ = './deit-t16_1xb64-200it-ft_cifar10-128px.py'

model = dict(
    type='mmtokenprune.PrunedImageClassifier',
    backbone=dict(
        token_cfg=dict(
            type='SPViT', keep_ratio=0.42, layers=[3, 6, 9],
            prop_attn=False)),
    keep_ratio_loss=dict(mode='batch', loss_weight=2.0))
