# ATME + CDCP on Swin-T: channel gates per block (Q/K shared, V, MLP) trained
# until the blocks keep 70% of their FLOPs (ChannelCfg defaults).
_base_ = './atme_swin-t_upernet_8xb2-160k_ade20k-512x512.py'

model = dict(
    type='mmtokenprune.PrunedEncoderDecoder',  # adds the budget loss
    backbone=dict(channel_cfg=dict(type='CDCP')))
# Gate logits get no weight decay (decay would push every gate shut).
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'.logits': dict(decay_mult=0.)}))
