# The CamVid baseline on a 2k-iteration schedule (half the 4k recipe): what
# fits a working session on 2 shared CPU cores; results in docs/results/camvid.md.
_base_ = './deit-t16_fcn_1xb4-4k_camvid-256x256.py'

max_iters = 2000
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=200),
    dict(type='PolyLR', power=1.0, eta_min=0., by_epoch=False, begin=200,
         end=max_iters)
]
train_cfg = dict(max_iters=max_iters, val_interval=500)
default_hooks = dict(checkpoint=dict(interval=500))
