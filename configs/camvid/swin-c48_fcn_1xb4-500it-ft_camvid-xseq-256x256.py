# The unpruned control of the Swin xseq fine-tunes: 500 more iterations of
# the Swin xseq baseline at a fifth of its learning rate, the schedule of
# the DeiT-T control (deit-t16_fcn_1xb4-500it-ft_camvid-xseq-256x256.py).
# The ATME and ToMe fine-tunes are deltas on this file and start from the
# same checkpoint:
#   python tools/train.py <config> --work-dir <dir> --cfg-options \
#       load_from=work_dirs/camvid_swin-c48_4k-bal-xseq/iter_4000.pth
# (tools/reproduce_results.sh, stage `swin`; docs/results/swin_camvid.md).
_base_ = './swin-c48_fcn_1xb4-4k-balanced_camvid-xseq-256x256.py'

optim_wrapper = dict(optimizer=dict(lr=2e-4))
max_iters = 500
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0,
         end=50),
    dict(type='PolyLR', power=1.0, eta_min=0., by_epoch=False, begin=50,
         end=max_iters)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters, save_best=None))
