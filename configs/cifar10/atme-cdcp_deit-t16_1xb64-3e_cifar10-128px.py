# CIFAR-10 classifier with ATME and CDCP gates: fine-tune it from the
# baseline checkpoint (`--cfg-options load_from=...`), then export the
# smaller dense backbone with tools/export_pruned.py.
_base_ = [
    './deit-t16_1xb64-3e_cifar10-128px.py', '../_base_/compress/atme.py',
    '../_base_/compress/cdcp.py'
]

model = dict(
    type='mmtokenprune.PrunedImageClassifier',
    backbone=dict(
        token_cfg={{_base_.token_cfg}}, channel_cfg={{_base_.channel_cfg}}))
optim_wrapper = dict(paramwise_cfg={{_base_.gate_paramwise}})
