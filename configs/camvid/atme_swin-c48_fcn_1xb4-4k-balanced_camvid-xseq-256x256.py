# The CamVid Swin baseline with ATME in every 8x8 window of every block:
# r=16 of 64 tokens per window (ws=8 always allows up to 24). Evaluate a
# trained baseline checkpoint with it, training-free:
#   python tools/test.py configs/camvid/atme_swin-c48_fcn_1xb4-4k-balanced_camvid-xseq-256x256.py \
#       work_dirs/camvid_swin-c48_4k-bal-xseq/iter_4000.pth
# (29.11 mIoU against the baseline's 29.82 on 0006R0, at 0.93x its speed:
# docs/results/swin_camvid.md, section 13.2)
_base_ = './swin-c48_fcn_1xb4-4k-balanced_camvid-xseq-256x256.py'

model = dict(backbone=dict(token_cfg=dict(type='ATME', r=16, prop_attn=True)))
