# SPViT fine-tuned from the trained CIFAR-10 classifier with the training
# pieces of SPViT/DynamicViT (./spvit_deit-t16_1xb64-3e_* trains without
# them, from scratch):
# - distillation from the frozen unpruned classifier (the same config with
#   reducers off, the same checkpoint): KL of the class scores and MSE of
#   the last layer's patch tokens that are still kept (DynamicViT/TPS);
# - SPViT's batch-level keep-ratio loss, targets from the schedule
#   (cumulative 40, 24, 9 of the 8x8 = 64 patches at 128 px: 0.625, 0.375,
#   0.141);
# - SPViT's backbone warm-up freeze: for the first 100 iterations only the
#   selectors and the head learn, then the backbone at half the rate.
# A 600-iteration fine-tune at a fifth of the from-scratch rate; weights
# DynamicViT's (0.5 per distillation loss, 2 for the ratio); the warm-up
# length and the backbone's 0.5 are ours, untuned.
#   python tools/train.py THIS_CONFIG --cfg-options \
#       load_from=BASELINE.pth model.teacher.checkpoint=BASELINE.pth
_base_ = './spvit_deit-t16_1xb64-3e_cifar10-128px.py'

custom_imports = dict(
    imports=['mmtokenprune.models', 'mmtokenprune.engine'],
    allow_failed_imports=False)

model = dict(
    type='mmtokenprune.PrunedImageClassifier',
    teacher=dict(checkpoint=None),  # set it: the file of `load_from`
    distill=dict(
        kl=dict(temperature=1.0, loss_weight=0.5),
        feat=dict(loss_weight=0.5)),
    keep_ratio_loss=dict(mode='batch', loss_weight=2.0))

max_iters = 600
optim_wrapper = dict(optimizer=dict(lr=2e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0,
         end=50),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=False, begin=50,
         end=max_iters, T_max=max_iters - 50)
]
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=300)
default_hooks = dict(
    logger=dict(interval=50, log_metric_by_epoch=False),
    checkpoint=dict(by_epoch=False, interval=300))
log_processor = dict(by_epoch=False)
custom_hooks = [
    dict(type='mmtokenprune.BackboneWarmupHook', warmup=100, lr_mult=0.5)
]
