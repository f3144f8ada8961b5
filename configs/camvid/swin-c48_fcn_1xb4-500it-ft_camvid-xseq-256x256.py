# The unpruned control of the Swin xseq fine-tunes: the DeiT-T control's
# schedule (500 more iterations at a fifth of the baseline's learning rate)
# with the Swin backbone of the Swin xseq baseline. The ATME and ToMe
# fine-tunes are deltas on this file and start from the same checkpoint:
#   python tools/train.py <config> --work-dir <dir> --cfg-options \
#       load_from=work_dirs/camvid_swin-c48_4k-bal-xseq/iter_4000.pth
# (tools/reproduce_results.sh, stage `swin`; docs/results/swin_camvid.md).
_base_ = [
    './deit-t16_fcn_1xb4-500it-ft_camvid-xseq-256x256.py',
    '../_base_/models/swin-c48.py'
]

model = dict(
    backbone={{_base_.swin_c48_backbone}},
    decode_head=dict(in_channels={{_base_.swin_c48_channels}}))
optim_wrapper = dict(paramwise_cfg={{_base_.swin_c48_paramwise}})
