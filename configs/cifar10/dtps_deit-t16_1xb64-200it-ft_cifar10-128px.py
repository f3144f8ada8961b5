# dTPS fine-tuned 200 iterations from the CIFAR-10 classifier, eTPS's
# schedule (./etps_deit-t16_1xb64-200it-ft_*), its predictors pulled to the
# keep ratio by the per-sample keep-ratio loss (DynamicViT's, weight 2).
# Plain pruning: --cfg-options model.backbone.token_cfg.squeeze=False
_base_ = './deit-t16_1xb64-200it-ft_cifar10-128px.py'

model = dict(
    type='mmtokenprune.PrunedImageClassifier',
    backbone=dict(
        token_cfg=dict(
            type='dTPS', keep_ratio=0.4, layers=[3, 6, 9], prop_attn=False)),
    keep_ratio_loss=dict(mode='per_sample', loss_weight=2.0))
