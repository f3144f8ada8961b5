"""Distillation: the losses' values, the frozen teacher, both models."""
import copy
import math

import pytest
import torch
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmpretrain.structures import DataSample
from mmseg.structures import SegDataSample

from mmtokenprune.models import PrunedEncoderDecoder, PrunedImageClassifier
from mmtokenprune.models.losses import DistillKLLoss, FeatureMSELoss

BACKBONE = dict(
    type='mmtokenprune.PrunedVisionTransformer',
    arch=dict(
        embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64),
    img_size=64)
SPVIT = dict(type='SPViT', keep_ratio=0.6, layers=[1, 2], prop_attn=False)
CLS_HEAD = dict(type='VisionTransformerClsHead', num_classes=5,
                in_channels=32)
SEG = dict(
    backbone=dict(BACKBONE, out_type='featmap', out_indices=(1, 3)),
    decode_head=dict(
        type='FCNHead', in_channels=32, in_index=-1, channels=8,
        num_convs=1, concat_input=False, num_classes=3, dropout_ratio=0.,
        norm_cfg=dict(type='BN', requires_grad=True), align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))


# ------------------------------------------------------------ the losses
def test_kl_hand_computed():
    # teacher p = softmax([ln 3, 0]) = [3/4, 1/4], student q = [1/2, 1/2]
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.130812; sample 2 agrees (KL 0);
    # mean over the batch of 2 = 0.065406
    student = torch.tensor([[0., 0.], [1., 2.]], requires_grad=True)
    teacher = torch.tensor([[math.log(3.), 0.], [1., 2.]],
                           requires_grad=True)
    loss = DistillKLLoss()(student, teacher)
    assert loss.item() == pytest.approx(0.065406, abs=1e-6)
    # T = 2: p = [3^.5, 1] / (3^.5 + 1) = [.633975, .366025],
    # KL = .633975 ln(1.267949) + .366025 ln(.732051) = .036338; x T^2 = 4;
    # x loss_weight 0.5, mean over 2 -> 0.036338
    loss = DistillKLLoss(temperature=2., loss_weight=.5)(student, teacher)
    assert loss.item() == pytest.approx(0.036338, abs=1e-5)
    loss.backward()
    assert student.grad[0].abs().sum() > 0
    assert teacher.grad is None  # the teacher side is detached
    assert torch.allclose(student.grad[1], torch.zeros(2))


def test_kl_per_pixel_ignores_labelled_pixels():
    # (B=2, K=2, 1, 2) logits; pixel (0, 0, 0) is the only disagreement
    student = torch.zeros(2, 2, 1, 2)
    teacher = torch.zeros(2, 2, 1, 2)
    teacher[0, 0, 0, 0] = math.log(3.)
    loss = DistillKLLoss()(student, teacher)
    assert loss.item() == pytest.approx(0.130812 / 4, abs=1e-6)
    # labels at twice the logits' resolution, nearest-resized: ignoring
    # pixel (1, 0, 1) leaves 3 counted pixels
    labels = torch.zeros(2, 2, 4, dtype=torch.long)
    labels[1, :, 2:] = 255
    loss = DistillKLLoss(ignore_index=255)(student, teacher, labels)
    assert loss.item() == pytest.approx(0.130812 / 3, abs=1e-6)
    labels[0, :, :2] = 255  # now the disagreeing pixel is ignored too
    loss = DistillKLLoss(ignore_index=255)(student, teacher, labels)
    assert loss.item() == 0.
    # without ignore_index the labels change nothing
    loss = DistillKLLoss()(student, teacher, labels)
    assert loss.item() == pytest.approx(0.130812 / 4, abs=1e-6)


def test_feature_mse_hand_computed():
    student = torch.tensor([[[1., 1.], [2., 0.]], [[3., 3.], [5., 5.]]])
    teacher = torch.zeros(2, 2, 2)
    # all: (1 + 1 + 4 + 0 + 9 + 9 + 25 + 25) / 8 = 9.25
    assert FeatureMSELoss()(student, teacher).item() == pytest.approx(9.25)
    mask = torch.tensor([[True, True], [True, False]])
    # kept tokens only: (2 + 4 + 18) / 6 = 4
    loss = FeatureMSELoss(loss_weight=.5)(student, teacher, mask)
    assert loss.item() == pytest.approx(2.)
    # feature maps (B, C, H, W): plain mean
    assert FeatureMSELoss()(torch.ones(2, 3, 2, 2),
                            torch.zeros(2, 3, 2, 2)).item() == 1.


@pytest.mark.parametrize('cls, kwargs, match', [
    (DistillKLLoss, dict(temperature=0.), 'temperature'),
    (DistillKLLoss, dict(loss_weight=-1.), 'loss_weight'),
    (FeatureMSELoss, dict(loss_weight=-1.), 'loss_weight'),
])
def test_loss_arguments_are_checked(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


# ----------------------------------------------------------- the models
def _classifier(tmp_path, token_cfg=SPVIT, **kw):
    """A tiny classifier student of a checkpoint of its unpruned self."""
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    base = PrunedImageClassifier(backbone=BACKBONE, head=CLS_HEAD)
    path = str(tmp_path / 'teacher.pth')
    torch.save({'state_dict': base.state_dict()}, path)
    kw.setdefault('distill', dict(kl=dict(temperature=2.), feat=dict()))
    model = PrunedImageClassifier(
        backbone=dict(BACKBONE, token_cfg=token_cfg), head=CLS_HEAD,
        teacher=dict(checkpoint=path), **kw)
    model.load_state_dict(base.state_dict(), strict=False)
    return model, base, path


def _cls_samples():
    return [DataSample().set_gt_label(1), DataSample().set_gt_label(3)]


def test_teacher_is_frozen_and_not_saved(tmp_path):
    model, base, _ = _classifier(tmp_path)
    teacher = model.teacher
    assert teacher is not None and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    # strictly loaded: equal to the checkpoint
    for k, v in base.state_dict().items():
        torch.testing.assert_close(teacher.state_dict()[k], v)
    # no teacher key in the student's state_dict or parameters
    assert set(model.state_dict()) == set(
        PrunedImageClassifier(
            backbone=dict(BACKBONE, token_cfg=SPVIT),
            head=CLS_HEAD).state_dict())
    own = {id(p) for p in model.parameters()}
    assert not own & {id(p) for p in teacher.parameters()}
    before = copy.deepcopy(teacher.state_dict())
    model.train()
    assert not teacher.training  # model.train() does not reach it
    optim = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = model.loss(torch.randn(2, 3, 64, 64), _cls_samples())
    sum(losses.values()).backward()
    optim.step()
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert all(p.grad is None for p in teacher.parameters())
    # moves and casts reach it
    model.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in teacher.parameters())


def test_classifier_distillation_is_zero_for_the_teacher_itself(tmp_path):
    # reducers off and the same weights: student == teacher
    model, _, _ = _classifier(tmp_path, token_cfg=None)
    model.train()
    losses = model.loss(torch.randn(2, 3, 64, 64), _cls_samples())
    assert losses['loss_distill_kl'].item() == pytest.approx(0., abs=1e-6)
    assert losses['loss_distill_feat'].item() == pytest.approx(0., abs=1e-9)
    assert 'loss_keep_ratio' not in losses


def test_classifier_distillation_values_and_gradients(tmp_path):
    model, _, _ = _classifier(tmp_path)
    model.train()
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(1)
    losses = model.loss(x, _cls_samples())
    # the same forward by hand (same Gumbel draws)
    torch.manual_seed(1)
    outs, trace = model.backbone.forward_trace(x)
    scores = model.head(outs)
    with torch.no_grad():
        t_outs, t_trace = model.teacher.backbone.forward_trace(x)
        t_scores = model.teacher.head(t_outs)
    kl = DistillKLLoss(temperature=2.)(scores, t_scores)
    torch.testing.assert_close(losses['loss_distill_kl'], kl)
    keep = trace.patch_keep
    assert keep.shape == (2, 16) and 0 < keep.sum() < 32  # some pruned
    feat = FeatureMSELoss()(trace.patch_tokens, t_trace.patch_tokens, keep)
    torch.testing.assert_close(losses['loss_distill_feat'], feat)
    # the mask counts: on all tokens the value differs
    assert not torch.isclose(
        feat, FeatureMSELoss()(trace.patch_tokens, t_trace.patch_tokens))
    for name in ('loss_distill_kl', 'loss_distill_feat'):
        model.zero_grad()
        losses = model.loss(x, _cls_samples())
        losses[name].backward()
        grad = model.backbone.layers[0].attn.qkv.weight.grad
        assert grad is not None and grad.abs().sum() > 0, name


def _seg_samples(void_left=False):
    samples = []
    for i in range(2):
        label = torch.randint(0, 3, (1, 64, 64))
        if void_left and i == 0:
            label[..., :32] = 255
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=label)
        s.set_metainfo(dict(img_shape=(64, 64), pad_shape=(64, 64)))
        samples.append(s)
    return samples


def _segmentor(tmp_path, token_cfg=SPVIT, **kw):
    init_default_scope('mmseg')
    torch.manual_seed(0)
    base = PrunedEncoderDecoder(**SEG)
    path = str(tmp_path / 'seg_teacher.pth')
    torch.save({'state_dict': base.state_dict()}, path)
    seg = copy.deepcopy(SEG)
    seg['backbone']['token_cfg'] = token_cfg
    model = PrunedEncoderDecoder(
        **seg, teacher=dict(checkpoint=path), **kw)
    model.load_state_dict(base.state_dict(), strict=False)
    return model


def test_segmentor_distillation(tmp_path):
    distill = dict(kl=dict(ignore_index=255), feat=dict(loss_weight=2.))
    model = _segmentor(tmp_path, token_cfg=None, distill=distill)
    assert not model.teacher.training
    model.train()
    x = torch.randn(2, 3, 64, 64)
    losses = model.loss(x, _seg_samples())
    assert set(losses) >= {'decode.loss_ce', 'decode.acc_seg',
                           'loss_distill_kl', 'loss_distill_feat'}
    # the teacher's BN is in eval mode, the student's in training mode:
    # outputs differ after the BN of the head, not in the backbone
    assert losses['loss_distill_feat'].item() == pytest.approx(0., abs=1e-9)

    model = _segmentor(tmp_path, distill=distill)
    model.train()
    samples = _seg_samples(void_left=True)
    torch.manual_seed(2)
    losses = model.loss(x, samples)
    torch.manual_seed(2)
    outs = model.backbone(x)
    logits = model.decode_head.forward(outs)
    with torch.no_grad():
        t_outs = model.teacher.backbone(x)
        t_logits = model.teacher.decode_head.forward(t_outs)
    labels = torch.stack([s.gt_sem_seg.data[0] for s in samples])
    kl = DistillKLLoss(ignore_index=255)(logits, t_logits, labels)
    torch.testing.assert_close(losses['loss_distill_kl'], kl)
    assert not torch.isclose(kl, DistillKLLoss()(logits, t_logits))
    feat = sum(FeatureMSELoss(2.)(s, t) for s, t in zip(outs, t_outs)) / 2
    torch.testing.assert_close(losses['loss_distill_feat'], feat)
    for name in ('loss_distill_kl', 'loss_distill_feat'):
        model.zero_grad()
        model.loss(x, _seg_samples())[name].backward()
        grad = model.backbone.layers[0].attn.qkv.weight.grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_teacher_checkpoint_loads_strictly(tmp_path):
    init_default_scope('mmpretrain')
    base = PrunedImageClassifier(backbone=BACKBONE, head=CLS_HEAD)
    state = base.state_dict()
    state.pop('head.layers.head.weight')
    path = str(tmp_path / 'partial.pth')
    torch.save({'state_dict': state}, path)
    with pytest.raises(RuntimeError,
                       match=r'(?s)model\.teacher\.checkpoint.*head\.layers'):
        PrunedImageClassifier(
            backbone=BACKBONE, head=CLS_HEAD, teacher=dict(checkpoint=path),
            distill=dict(kl=dict()))
    with pytest.raises(FileNotFoundError, match=r'model\.teacher\.checkpo'):
        PrunedImageClassifier(
            backbone=BACKBONE, head=CLS_HEAD,
            teacher=dict(checkpoint=str(tmp_path / 'nowhere.pth')),
            distill=dict(kl=dict()))


@pytest.mark.parametrize('kw, match', [
    (dict(distill=dict(logits=dict())),
     r"`model\.distill` has unknown keys \['logits'\]; allowed: "
     r"\['kl', 'feat'\]"),
    (dict(distill=dict(kl=dict(temprature=2.))),
     r"`model\.distill\.kl` has unknown keys \['temprature'\]; allowed: "
     r"\['temperature', 'loss_weight', 'ignore_index'\]"),
    (dict(distill=dict(kl=dict(temperature=-1.))),
     r'`model\.distill\.kl`.*temperature'),
    (dict(distill=dict(kl=dict()), teacher=dict(ckpt='x')),
     r"`model\.teacher` has unknown keys \['ckpt'\]; allowed: "
     r"\['checkpoint', 'config'\]"),
])
def test_bad_keys_are_named(kw, match):
    init_default_scope('mmpretrain')
    with pytest.raises(ValueError, match=match):
        PrunedImageClassifier(backbone=BACKBONE, head=CLS_HEAD, **kw)


def test_distillation_without_a_teacher_checkpoint_says_so():
    init_default_scope('mmpretrain')
    model = PrunedImageClassifier(
        backbone=BACKBONE, head=CLS_HEAD, distill=dict(kl=dict()))
    model.train()
    with pytest.raises(ValueError, match=r'model\.teacher\.checkpoint'):
        model.loss(torch.randn(2, 3, 64, 64), _cls_samples())


def test_teacher_from_another_config(tmp_path):
    # a wider teacher than the student, from its own config file, whose
    # own compression keys are dropped
    init_default_scope('mmpretrain')
    wide = dict(BACKBONE, arch=dict(embed_dims=48, num_layers=2,
                                    num_heads=2, feedforward_channels=96))
    head = dict(CLS_HEAD, in_channels=48)
    config = tmp_path / 'teacher_cfg.py'
    config.write_text(
        "default_scope = 'mmpretrain'\n"
        f"model = dict(type='mmtokenprune.PrunedImageClassifier', "
        f"backbone=dict({wide!r}, token_cfg=dict(type='ToMe', r=2)), "
        f"head={head!r}, distill=dict(kl=dict()))\n")
    teacher = PrunedImageClassifier(backbone=wide, head=head)
    path = str(tmp_path / 'wide.pth')
    torch.save({'state_dict': teacher.state_dict()}, path)
    model = PrunedImageClassifier(
        backbone=dict(BACKBONE, token_cfg=SPVIT), head=CLS_HEAD,
        teacher=dict(checkpoint=path, config=str(config)),
        distill=dict(kl=dict()))
    assert model.teacher.backbone.embed_dims == 48
    assert not model.teacher.backbone.token_cfg.enabled
    assert not model.teacher.distill_losses  # the student's keys dropped
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.teacher(x, mode='tensor'),
                                   teacher.eval()(x, mode='tensor'))
    model.train()
    losses = model.loss(x, _cls_samples())
    assert losses['loss_distill_kl'] > 0
