# ATME (the xseq setting) + CDCP with learned gates on the xseq split: the
# gates start open (tools/init_cdcp_gates.py --mode open), a two-sided hard
# budget pulls the exported widths to 70 % of the encoder FLOPs, the gates
# train at 150x the learning rate (docs/results/cdcp_gates.md section 6).
_base_ = './atme_deit-t16_fcn_1xb4-500it-ft_camvid-xseq-256x256.py'

custom_imports = dict(
    imports=['mmtokenprune.models', 'mmtokenprune.datasets',
             'mmtokenprune.engine'],
    allow_failed_imports=False)
model = dict(
    type='mmtokenprune.PrunedEncoderDecoder',  # adds the budget loss
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
