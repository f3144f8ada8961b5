# The CamVid baseline with ATME (the default schedule: 75% kept after layers
# 0 and 3). Evaluate a trained baseline checkpoint with it, training-free:
#   python tools/test.py THIS_CONFIG work_dirs/<baseline>/best_mIoU_*.pth
_base_ = './deit-t16_fcn_1xb4-4k_camvid-256x256.py'

model = dict(
    backbone=dict(token_cfg=dict(type='ATME', keep_ratio=0.75, layers=[0, 3])))
