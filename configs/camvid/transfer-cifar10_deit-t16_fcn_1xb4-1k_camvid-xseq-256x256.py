# The CIFAR-10 -> CamVid transfer on the cross-sequence protocol: the
# balanced xseq recipe (./deit-t16_fcn_1xb4-4k-balanced_camvid-xseq-*) for
# 1k iterations, its backbone the ATME+CDCP-learned CIFAR-10 export, a
# smaller dense ViT. Give the export on the command line (a config naming
# a spec file needs that file to be read):
#   python tools/train.py THIS_CONFIG --cfg-options \
#       model.backbone.channel_cfg.spec=DIR/prune_spec.json \
#       model.backbone.init_cfg.checkpoint=DIR/pruned.pth
# DIR: tools/export_pruned.py's output for
# configs/cifar10/atme-cdcp-learned_deit-t16_1xb64-200it-ft_cifar10-128px.py.
# The same model from scratch:
# ./transfer-scratch_deit-t16_fcn_1xb4-1k_camvid-xseq-256x256.py
_base_ = './deit-t16_fcn_1xb4-4k-balanced_camvid-xseq-256x256.py'

export_dir = 'work_dirs/cifar10-ft_atme-cdcp/export'  # reproduce: cifar10-reducers
model = dict(
    backbone=dict(
        # 8x8 -> 16x16 position embeddings are resized on load
        init_cfg=dict(
            type='Pretrained',
            checkpoint=f'{export_dir}/pruned.pth',
            prefix='backbone.')))
max_iters = 1000
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=100),
    dict(type='PolyLR', power=1.0, eta_min=0., by_epoch=False, begin=100,
         end=max_iters)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
