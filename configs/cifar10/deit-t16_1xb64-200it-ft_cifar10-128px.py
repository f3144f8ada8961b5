# The unpruned control of the CIFAR-10 reducer fine-tunes
# (./<reducer>_deit-t16_1xb64-200it-ft_*): the 600-iteration classifier
# trained 200 more iterations with the same schedule, reducers off, so every
# reducer is compared with a model that had the same extra training.
#   python tools/train.py THIS_CONFIG --cfg-options load_from=CLASSIFIER.pth
# A fifth of the from-scratch rate, 20 warm-up iterations, cosine to 200.
_base_ = './deit-t16_1xb64-600it_cifar10-128px.py'

optim_wrapper = dict(optimizer=dict(lr=2e-4))
max_iters = 200
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0,
         end=20),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=False, begin=20,
         end=max_iters, T_max=max_iters - 20)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters, save_best=None))
