# ATME + CDCP fine-tuned from the trained CamVid baseline for 1k iterations.
#   python tools/init_cdcp_gates.py THIS_CONFIG BASELINE.pth --out INIT.pth
#   python tools/train.py THIS_CONFIG --cfg-options load_from=INIT.pth
#   python tools/export_pruned.py THIS_CONFIG FINETUNED.pth --out-dir DIR
# The first step sets the gates from weight magnitudes at `flops_target`
# (logits +-3); fine-tuning then trains weights and gates together under
# the budget loss. load_from=BASELINE.pth works too (all gates open).
_base_ = [
    './deit-t16_fcn_1xb4-4k_camvid-256x256.py', '../_base_/compress/atme.py',
    '../_base_/compress/cdcp.py'
]

model = dict(
    type='mmtokenprune.PrunedEncoderDecoder',  # adds the budget loss
    backbone=dict(
        token_cfg={{_base_.token_cfg}}, channel_cfg={{_base_.channel_cfg}}))
# Fine-tuning: a fifth of the from-scratch learning rate; gate logits get
# 5x that (no decay), so they can still move by a few units in 1k steps.
optim_wrapper = dict(
    optimizer=dict(lr=2e-4),
    paramwise_cfg=dict(
        custom_keys={'.logits': dict(lr_mult=5., decay_mult=0.)}))
max_iters = 1000
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0,
         end=50),
    dict(type='PolyLR', power=1.0, eta_min=0., by_epoch=False, begin=50,
         end=max_iters)
]
train_cfg = dict(max_iters=max_iters, val_interval=500)
default_hooks = dict(checkpoint=dict(interval=500))
