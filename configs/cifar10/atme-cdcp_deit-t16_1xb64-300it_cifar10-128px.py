# CDCP (+ATME) fine-tuning of the 600-iteration CIFAR-10 classifier for 300
# iterations, then export the smaller dense backbone for CamVid transfer:
#   python tools/init_cdcp_gates.py THIS_CONFIG CLASSIFIER.pth --out INIT.pth
#   python tools/train.py THIS_CONFIG --cfg-options load_from=INIT.pth
#   python tools/export_pruned.py THIS_CONFIG FINETUNED.pth --out-dir DIR
_base_ = './deit-t16_1xb64-600it_cifar10-128px.py'

model = dict(
    type='mmtokenprune.PrunedImageClassifier',
    backbone=dict(
        token_cfg=dict(type='ATME', keep_ratio=0.75, layers=[0, 3]),
        channel_cfg=dict(type='CDCP')))
# A fifth of the from-scratch rate; gate logits 5x that, no decay.
optim_wrapper = dict(
    optimizer=dict(lr=2e-4),
    paramwise_cfg=dict(
        custom_keys={'.logits': dict(lr_mult=5., decay_mult=0.)}))
max_iters = 300
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0,
         end=30),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=False, begin=30,
         end=max_iters, T_max=max_iters - 30)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
