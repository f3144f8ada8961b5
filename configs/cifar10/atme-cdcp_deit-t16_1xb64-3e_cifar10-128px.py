# CIFAR-10 classifier with ATME and CDCP gates: fine-tune it from the
# baseline checkpoint (`--cfg-options load_from=...`), then export the
# smaller dense backbone with tools/export_pruned.py.
_base_ = './deit-t16_1xb64-3e_cifar10-128px.py'

model = dict(
    type='mmtokenprune.PrunedImageClassifier',
    backbone=dict(
        token_cfg=dict(type='ATME', keep_ratio=0.75, layers=[0, 3]),
        channel_cfg=dict(type='CDCP')))
# Gate logits get no weight decay (decay would push every gate shut).
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'.logits': dict(decay_mult=0.)}))
