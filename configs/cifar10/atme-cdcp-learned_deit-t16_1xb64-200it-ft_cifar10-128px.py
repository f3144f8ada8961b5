# ATME + CDCP with gates learned in the 200-iteration fine-tune, the CamVid
# recipe (configs/camvid/atme-cdcp-learned_*: hard budget, two-sided
# penalty, weight 5, gates at 150x the rate without momentum):
#   python tools/init_cdcp_gates.py THIS_CONFIG CLASSIFIER.pth --mode open \
#       --out INIT.pth
#   python tools/train.py THIS_CONFIG --cfg-options load_from=INIT.pth
#   python tools/export_pruned.py THIS_CONFIG FINETUNED.pth --out-dir DIR
# DIR's backbone is what configs/camvid/transfer-cifar10_*-xseq-* start from.
_base_ = './atme_deit-t16_1xb64-200it-ft_cifar10-128px.py'

custom_imports = dict(
    imports=['mmtokenprune.models', 'mmtokenprune.engine'],
    allow_failed_imports=False)
model = dict(
    type='mmtokenprune.PrunedImageClassifier',  # adds the budget loss
    backbone=dict(
        channel_cfg=dict(
            type='CDCP', budget='hard', penalty='two-sided',
            loss_weight=5.)))
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            '.logits': dict(lr_mult=150., decay_mult=0., betas=(0., 0.999))
        }))
custom_hooks = [dict(type='mmtokenprune.CDCPWidthsHook', interval=50)]
