# ToMe fine-tuned 200 iterations from the CIFAR-10 classifier, at ATME's
# setting (./atme_deit-t16_1xb64-200it-ft_cifar10-128px.py).
_base_ = './deit-t16_1xb64-200it-ft_cifar10-128px.py'

model = dict(
    backbone=dict(token_cfg=dict(type='ToMe', keep_ratio=0.6, layers=[0, 3])))
