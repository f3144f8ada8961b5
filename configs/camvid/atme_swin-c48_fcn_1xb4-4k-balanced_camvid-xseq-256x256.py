# The CamVid Swin baseline with ATME in every 8x8 window of every block:
# r=16 of 64 tokens per window (ws=8 always allows up to 24). Evaluate a
# trained baseline checkpoint with it, training-free:
#   python tools/test.py THIS_CONFIG work_dirs/<baseline>/best_mIoU_*.pth
_base_ = './swin-c48_fcn_1xb4-4k-balanced_camvid-xseq-256x256.py'

model = dict(backbone=dict(token_cfg=dict(type='ATME', r=16, prop_attn=True)))
