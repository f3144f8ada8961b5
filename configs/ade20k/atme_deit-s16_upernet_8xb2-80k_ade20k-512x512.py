_base_ = [
    './deit-s16_upernet_8xb2-80k_ade20k-512x512.py', '../_base_/compress/atme.py'
]

model = dict(backbone=dict(token_cfg={{_base_.token_cfg}}))
