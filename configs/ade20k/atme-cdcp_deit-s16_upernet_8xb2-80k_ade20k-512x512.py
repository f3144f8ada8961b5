# ATME + CDCP (our reading of CAIT): channel gates shared by all heads and by
# Q/K, trained until the encoder keeps 70% of its FLOPs (ChannelCfg defaults:
# flops_target=0.7, loss_weight=2.0).
_base_ = './atme_deit-s16_upernet_8xb2-80k_ade20k-512x512.py'

model = dict(
    type='mmtokenprune.PrunedEncoderDecoder',  # adds the budget loss
    backbone=dict(channel_cfg=dict(type='CDCP')))
# Gate logits get no weight decay (decay would push every gate shut).
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'.logits': dict(decay_mult=0.)}))
