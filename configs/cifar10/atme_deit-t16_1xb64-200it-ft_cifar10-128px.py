# ATME fine-tuned 200 iterations from the CIFAR-10 classifier, the setting of
# the CamVid xseq fine-tunes (keep 60% at blocks 0 and 3: 64 -> 38 -> 23
# patch tokens). Control: ./deit-t16_1xb64-200it-ft_cifar10-128px.py
#   python tools/train.py THIS_CONFIG --cfg-options load_from=CLASSIFIER.pth
_base_ = './deit-t16_1xb64-200it-ft_cifar10-128px.py'

model = dict(
    backbone=dict(token_cfg=dict(type='ATME', keep_ratio=0.6, layers=[0, 3])))
