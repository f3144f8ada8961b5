# ATME (our reading of CAIT), the project's default schedule for DeiT: after
# the attention of layers 0 and 3, keep 75% of the tokens by merging each
# chosen token into a touching neighbour (W, then H); proportional attention
# is on by default. Why this schedule: docs/methods.md.
_base_ = './deit-s16_upernet_8xb2-80k_ade20k-512x512.py'

model = dict(
    backbone=dict(token_cfg=dict(type='ATME', keep_ratio=0.75, layers=[0, 3])))
