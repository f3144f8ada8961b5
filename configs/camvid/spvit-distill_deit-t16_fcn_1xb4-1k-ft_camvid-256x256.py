# SPViT fine-tuned from the trained CamVid baseline with the training pieces
# of SPViT/DynamicViT (./spvit_deit-t16_fcn_1xb4-1k-ft_* had none of them):
# - distillation from the frozen unpruned baseline (the same config with
#   reducers off, the same checkpoint): per-pixel KL of the decode-head
#   logits (void and padding pixels ignored). The feature MSE (`feat`) is
#   off: with `feat=dict(loss_weight=0.5)`, 3 iterations of the command
#   below (`train_cfg.max_iters=3`, 2 shared CPU cores) logged it at
#   26.5-30.1 against a cross-entropy of 0.44-0.79, probably because with
#   dense='last' a dropped position shows its un-normalised feature from
#   the layer that dropped it, compared with the teacher's final
#   normalised one. Add `feat=dict(loss_weight=...)` to try it;
# - SPViT's batch-level keep-ratio loss, targets from the schedule
#   (cumulative 158, 95, 36 of the 16x16 = 256 patches at 256 px: 0.617,
#   0.371, 0.141);
# - SPViT's backbone warm-up freeze: for the first 100 iterations only the
#   selectors and the head learn, then the backbone at half the rate.
# Weights: DynamicViT's (0.5 for distillation, 2 for the ratio); the
# warm-up length and the backbone's 0.5 are ours, untuned.
#   python tools/train.py THIS_CONFIG --cfg-options \
#       load_from=BASELINE.pth model.teacher.checkpoint=BASELINE.pth
_base_ = './spvit_deit-t16_fcn_1xb4-1k-ft_camvid-256x256.py'

custom_imports = dict(
    imports=['mmtokenprune.models', 'mmtokenprune.datasets',
             'mmtokenprune.engine'],
    allow_failed_imports=False)

model = dict(
    type='mmtokenprune.PrunedEncoderDecoder',
    teacher=dict(checkpoint=None),  # set it: the file of `load_from`
    distill=dict(
        kl=dict(temperature=1.0, loss_weight=0.5, ignore_index=255)),
    keep_ratio_loss=dict(mode='batch', loss_weight=2.0))
custom_hooks = [
    dict(type='mmtokenprune.BackboneWarmupHook', warmup=100, lr_mult=0.5)
]
