# The CamVid baseline with ATME (default schedule of _base_/compress/atme.py).
# Evaluate a trained baseline checkpoint with it, training-free:
#   python tools/test.py THIS_CONFIG work_dirs/<baseline>/best_mIoU_*.pth
_base_ = [
    './deit-t16_fcn_1xb4-4k_camvid-256x256.py', '../_base_/compress/atme.py'
]

model = dict(backbone=dict(token_cfg={{_base_.token_cfg}}))
