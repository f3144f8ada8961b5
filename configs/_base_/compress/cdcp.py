# CDCP (our reading of CAIT): per-layer channel gates shared by all heads
# and by Q/K, trained until the encoder keeps `flops_target` of its FLOPs.
channel_cfg = dict(type='CDCP', flops_target=0.7, loss_weight=2.0)
# Gate logits: no weight decay (decay would push every gate shut).
gate_paramwise = dict(custom_keys={'.logits': dict(decay_mult=0.)})
