# ATME + CDCP with gates learned during the 1k-iteration fine-tune (the
# magnitude recipe ./atme-cdcp_*.py sets the widths before training and its
# gates never move; see docs/methods.md "CDCP", "Learned gates").
#   python tools/init_cdcp_gates.py THIS_CONFIG BASELINE.pth --mode open \
#       --out INIT.pth
#   python tools/train.py THIS_CONFIG --cfg-options load_from=INIT.pth
#   python tools/export_pruned.py THIS_CONFIG FINETUNED.pth --out-dir DIR
# The first step opens every gate (the model starts as the baseline), with
# logits 1..3 ranked by weight magnitude; training then closes gates until
# the exported (hard) widths keep `flops_target` of the encoder FLOPs:
# - budget='hard': the loss sees the widths the model computes with (the
#   soft sum(sigmoid) would count a closed gate at logit -1 as 0.27 open);
# - penalty='two-sided': |fraction - target|, a pull that does not fade near
#   the target (the squared excess's gradient goes to 0 there), and that
#   reopens channels when the gates have closed more than the budget (the
#   one-sided 'linear' landed 0.03-0.04 below the target on CamVid, see
#   docs/results/cdcp_gates.md): both recipes then compare at the same FLOPs;
# - loss_weight=5: per channel, the budget's gradient is then a few times the
#   spread of the task gradient over batches (probed on the baseline), so
#   ordinary channels close while channels with a consistent task gradient
#   stay (AdamW divides each logit's step by its own gradient's size, so
#   the weight sets this ratio, not the speed);
# - gates get 150x the fine-tuning rate (3e-2, no decay) and no momentum
#   (betas (0, 0.999)): a logit moves up to ~3e-2 per step, so gates at
#   logits 1..3 reach the budget within ~100-150 iterations and the rest of
#   the schedule trades channels at the budget; without momentum a gate's
#   step follows the budget's sign at once (AdamW's m would carry it ~10
#   steps past every crossing of the target).
_base_ = './atme-cdcp_deit-t16_fcn_1xb4-1k_camvid-256x256.py'

model = dict(
    backbone=dict(
        channel_cfg=dict(
            type='CDCP', budget='hard', penalty='two-sided',
            loss_weight=5.)))
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            '.logits': dict(lr_mult=150., decay_mult=0., betas=(0., 0.999))
        }))
