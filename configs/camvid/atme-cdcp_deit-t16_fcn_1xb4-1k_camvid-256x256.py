# ATME + CDCP fine-tuned from the trained CamVid baseline for 1k iterations.
#   python tools/init_cdcp_gates.py THIS_CONFIG BASELINE.pth --out INIT.pth
#   python tools/train.py THIS_CONFIG --cfg-options load_from=INIT.pth
#   python tools/export_pruned.py THIS_CONFIG FINETUNED.pth --out-dir DIR
# The first step sets the gates from weight magnitudes at `flops_target`
# (logits +-3); fine-tuning then trains weights and gates together under
# the budget loss. load_from=BASELINE.pth works too (all gates open). The
# schedule is the unpruned control's (./deit-t16_fcn_1xb4-1k-ft_*).
# ATME: the default schedule; CDCP: the ChannelCfg defaults (keep 70% of
# encoder FLOPs, budget loss weight 2).
_base_ = './deit-t16_fcn_1xb4-1k-ft_camvid-256x256.py'

model = dict(
    type='mmtokenprune.PrunedEncoderDecoder',  # adds the budget loss
    backbone=dict(
        token_cfg=dict(type='ATME', keep_ratio=0.75, layers=[0, 3]),
        channel_cfg=dict(type='CDCP')))
# Gate logits get 5x the fine-tuning rate (no decay), so they can still
# move by a few units in 1k steps.
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={'.logits': dict(lr_mult=5., decay_mult=0.)}))
# Per-block kept widths and the FLOPs fraction in the log and in
# vis_data/scalars.json (tools/analysis/plot_cdcp_widths.py draws them).
custom_imports = dict(
    imports=['mmtokenprune.models', 'mmtokenprune.datasets',
             'mmtokenprune.engine'],
    allow_failed_imports=False)
custom_hooks = [dict(type='mmtokenprune.CDCPWidthsHook', interval=50)]
