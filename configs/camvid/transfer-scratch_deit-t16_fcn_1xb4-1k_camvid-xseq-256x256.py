# The control of ./transfer-cifar10_deit-t16_fcn_1xb4-1k_camvid-xseq-*: the
# same spec-pruned model, recipe and schedule, backbone from scratch. Pass
# the same `model.backbone.channel_cfg.spec=DIR/prune_spec.json`.
_base_ = './transfer-cifar10_deit-t16_fcn_1xb4-1k_camvid-xseq-256x256.py'

model = dict(backbone=dict(init_cfg=None))
