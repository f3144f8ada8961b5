# Fine-tuning schedule for the CamVid baseline: 1k more iterations from a
# trained checkpoint at a fifth of the from-scratch learning rate.
#   python tools/train.py THIS_CONFIG --cfg-options load_from=BASELINE.pth
# Unpruned, it is the control of the compressed fine-tunes that inherit it
# (./atme-cdcp_deit-t16_fcn_1xb4-1k_camvid-256x256.py): both get the same
# extra training, so their mIoU difference is the compression's.
_base_ = './deit-t16_fcn_1xb4-4k_camvid-256x256.py'

optim_wrapper = dict(optimizer=dict(lr=2e-4))
max_iters = 1000
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0,
         end=50),
    dict(type='PolyLR', power=1.0, eta_min=0., by_epoch=False, begin=50,
         end=max_iters)
]
train_cfg = dict(max_iters=max_iters, val_interval=500)
default_hooks = dict(checkpoint=dict(interval=500))
