# The CIFAR-10 classifier on a 600-iteration schedule (about 0.8 epoch at
# batch 64): what fits a working session on 2 shared CPU cores, to train a
# backbone for CamVid transfer (configs/camvid/transfer-*). Iteration-based
# loop; the model and data are the 3-epoch recipe's.
_base_ = './deit-t16_1xb64-3e_cifar10-128px.py'

max_iters = 600
warmup_iters = 60
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False,
         begin=warmup_iters, end=max_iters, T_max=max_iters - warmup_iters)
]
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=50, log_metric_by_epoch=False),
    checkpoint=dict(by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
