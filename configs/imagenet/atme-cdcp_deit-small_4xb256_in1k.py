_base_ = [
    './atme_deit-small_4xb256_in1k.py', '../_base_/compress/cdcp.py'
]

model = dict(
    # ImageClassifier + the backbone's CDCP budget loss.
    type='mmtokenprune.PrunedImageClassifier',
    backbone=dict(channel_cfg={{_base_.channel_cfg}}))
optim_wrapper = dict(paramwise_cfg={{_base_.gate_paramwise}})
