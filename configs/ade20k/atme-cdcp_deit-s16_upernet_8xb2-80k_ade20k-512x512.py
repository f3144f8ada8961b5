_base_ = [
    './atme_deit-s16_upernet_8xb2-80k_ade20k-512x512.py',
    '../_base_/compress/cdcp.py'
]

model = dict(
    # EncoderDecoder + the backbone's CDCP budget loss.
    type='mmtokenprune.PrunedEncoderDecoder',
    backbone=dict(channel_cfg={{_base_.channel_cfg}}))
optim_wrapper = dict(paramwise_cfg={{_base_.gate_paramwise}})
