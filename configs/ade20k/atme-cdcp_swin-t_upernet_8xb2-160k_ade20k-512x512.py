_base_ = [
    './atme_swin-t_upernet_8xb2-160k_ade20k-512x512.py',
    '../_base_/compress/cdcp.py'
]

model = dict(
    # EncoderDecoder + the backbone's CDCP budget loss.
    type='mmtokenprune.PrunedEncoderDecoder',
    backbone=dict(channel_cfg={{_base_.channel_cfg}}))
optim_wrapper = dict(paramwise_cfg={{_base_.gate_paramwise}})
