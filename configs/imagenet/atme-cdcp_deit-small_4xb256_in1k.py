# ATME + CDCP on DeiT-S (ChannelCfg defaults: keep 70% of encoder FLOPs).
_base_ = './atme_deit-small_4xb256_in1k.py'

model = dict(
    type='mmtokenprune.PrunedImageClassifier',  # adds the budget loss
    backbone=dict(channel_cfg=dict(type='CDCP')))
# Gate logits get no weight decay (decay would push every gate shut).
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'.logits': dict(decay_mult=0.)}))
