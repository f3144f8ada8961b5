# ATME (our reading of CAIT): after the attention of layers 0..10, keep 90%
# of the tokens by merging each chosen token into a touching neighbour;
# pairing alternates W, H, W, ... Proportional attention weights a merged
# token by the patches it stands for.
token_cfg = dict(type='ATME', keep_ratio=0.9, prop_attn=True)
