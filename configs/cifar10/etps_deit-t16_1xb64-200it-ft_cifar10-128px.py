# eTPS fine-tuned 200 iterations from the CIFAR-10 classifier, near ATME's
# GFLOPs: keep 40% of the current patch tokens at blocks 3, 6 and 9
# (64 -> 26 -> 11 -> 5), as the CamVid xseq fine-tune. Plain pruning (the
# squeeze's control): --cfg-options model.backbone.token_cfg.squeeze=False
_base_ = './deit-t16_1xb64-200it-ft_cifar10-128px.py'

model = dict(
    backbone=dict(
        token_cfg=dict(
            type='eTPS', keep_ratio=0.4, layers=[3, 6, 9], prop_attn=False)))
