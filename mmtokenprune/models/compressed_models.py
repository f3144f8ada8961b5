"""Segmentor and classifier whose training loss includes the backbone's.

A compressing backbone may have losses of its own (the CDCP FLOPs budget);
it returns them from ``compression_losses()``, and these two thin
subclasses add them to the task losses and say so to the backbone
(``loss_owner``): a gated backbone refuses to train under a model that
would drop its budget loss.

They also take three optional keys for compressing training
(:mod:`mmtokenprune.models.extra_losses`): ``teacher`` (a frozen unpruned
teacher, kept out of the state_dict), ``distill`` (logits KL, feature MSE)
and ``keep_ratio_loss``. Without them, everything else is upstream's.
"""
import inspect
from typing import Dict, Optional

import torch
from mmpretrain.models.classifiers import ImageClassifier
from mmseg.models.segmentors import EncoderDecoder
from mmseg.utils import add_prefix

from ..registry import MODELS
from .extra_losses import ExtraLosses

__all__ = ['PrunedEncoderDecoder', 'PrunedImageClassifier']


class AddsBackboneLosses:
    """Mixin for a model with a ``backbone``: claims the backbone's
    compression losses at construction and adds them to ``loss()``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if hasattr(self.backbone, 'loss_owner'):
            self.backbone.loss_owner = type(self).__name__

    def loss(self, inputs, data_samples) -> Dict:
        return self.add_backbone_losses(super().loss(inputs, data_samples))

    def add_backbone_losses(self, losses: Dict) -> Dict:
        """``losses`` plus the backbone's ``compression_losses()``."""
        extra = getattr(self.backbone, 'compression_losses', dict)()
        clash = set(extra) & set(losses)
        if clash:
            raise KeyError(f'backbone losses {sorted(clash)} clash with the '
                           'task losses.')
        losses.update(extra)
        return losses


class CompressingModel(ExtraLosses, AddsBackboneLosses):
    """Both mixins, and the constructor that takes the three extra keys.

    Args:
        teacher (dict, optional): ``checkpoint`` and ``config``; see
            :mod:`mmtokenprune.models.teacher`. Defaults to None.
        distill (dict, optional): ``kl`` and/or ``feat`` loss arguments.
            Defaults to None.
        keep_ratio_loss (dict, optional): :class:`KeepRatioLoss`
            arguments. Defaults to None.
        *args, **kwargs: upstream's arguments.
    """

    #: The upstream model class (teacher of ``config=None``).
    upstream: type = None

    def __init__(self,
                 *args,
                 teacher: Optional[Dict] = None,
                 distill: Optional[Dict] = None,
                 keep_ratio_loss: Optional[Dict] = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        bound = inspect.signature(self.upstream.__init__).bind(
            self, *args, **kwargs).arguments
        bound.pop('self')
        bound.update(bound.pop('kwargs', {}))
        self.init_extra_losses(bound, self.upstream, teacher, distill,
                               keep_ratio_loss)


@MODELS.register_module()
class PrunedEncoderDecoder(CompressingModel, EncoderDecoder):
    """mmseg's ``EncoderDecoder`` plus the backbone's compression losses,
    distillation (``loss_distill_kl``: per-pixel KL of the decode-head
    logits; ``loss_distill_feat``: MSE of the un-merged backbone outputs)
    and the keep-ratio loss."""

    upstream = EncoderDecoder

    def loss(self, inputs, data_samples) -> Dict:
        """Modifications to upstream with extra losses: the decode head's
        logits are computed once and shared by its loss and ``kl``."""
        if not self.has_extra_losses:
            return super().loss(inputs, data_samples)
        outs, trace = self.backbone_outputs(self.backbone, inputs,
                                            self.needs_trace)
        x = self.neck(outs) if self.with_neck else outs
        logits = self.decode_head.forward(x)
        losses = add_prefix(
            self.decode_head.loss_by_feat(logits, data_samples), 'decode')
        if self.with_auxiliary_head:
            losses.update(self._auxiliary_head_forward_train(x, data_samples))
        if self.distill_losses:
            losses.update(self._distill(inputs, data_samples, outs, logits))
        if trace is not None:
            losses.update(self.keep_ratio_losses(trace))
        return self.add_backbone_losses(losses)

    def _distill(self, inputs, data_samples, outs, logits) -> Dict:
        teacher = self.checked_teacher()
        with torch.no_grad():
            t_outs = teacher.backbone(inputs)
            t_x = teacher.neck(t_outs) if teacher.with_neck else t_outs
            t_logits = teacher.decode_head.forward(t_x)
        losses = {}
        if 'kl' in self.distill_losses:
            if t_logits.shape[2:] != logits.shape[2:]:
                t_logits = torch.nn.functional.interpolate(
                    t_logits, logits.shape[2:], mode='bilinear',
                    align_corners=False)
            labels = torch.stack(
                [s.gt_sem_seg.data[0] for s in data_samples])
            losses['loss_distill_kl'] = self.distill_losses['kl'](
                logits, t_logits, labels)
        if 'feat' in self.distill_losses:
            if len(t_outs) != len(outs):
                raise ValueError(
                    '`model.distill.feat`: the teacher\'s backbone gives '
                    f'{len(t_outs)} outputs, the student\'s {len(outs)}.')
            feat = self.distill_losses['feat']
            losses['loss_distill_feat'] = sum(
                feat(s, t) for s, t in zip(outs, t_outs)) / len(outs)
        return losses


@MODELS.register_module()
class PrunedImageClassifier(CompressingModel, ImageClassifier):
    """mmpretrain's ``ImageClassifier`` plus the backbone's compression
    losses, distillation (``loss_distill_kl``: KL of the class scores;
    ``loss_distill_feat``: MSE of the last layer's un-merged patch tokens,
    the kept ones only where a keep decision exists) and the keep-ratio
    loss."""

    upstream = ImageClassifier
    feat_from_trace = True

    def loss(self, inputs, data_samples) -> Dict:
        """Modifications to upstream with extra losses: the class scores
        are computed once and shared by the head's loss and ``kl``."""
        if not self.has_extra_losses:
            return super().loss(inputs, data_samples)
        outs, trace = self.backbone_outputs(self.backbone, inputs,
                                            self.needs_trace)
        feats = self.neck(outs) if self.with_neck else outs
        scores = self.head(feats)
        losses = self.head._get_loss(scores, data_samples)
        if self.distill_losses:
            losses.update(self._distill(inputs, scores, trace))
        if trace is not None:
            losses.update(self.keep_ratio_losses(trace))
        return self.add_backbone_losses(losses)

    def _distill(self, inputs, scores, trace) -> Dict:
        teacher = self.checked_teacher()
        token = 'feat' in self.distill_losses
        if token and not hasattr(teacher.backbone, 'forward_trace'):
            raise ValueError(
                '`model.distill.feat` needs a teacher backbone with '
                '`forward_trace` (PrunedVisionTransformer); got '
                f'{type(teacher.backbone).__name__}.')
        with torch.no_grad():
            t_outs, t_trace = self.backbone_outputs(teacher.backbone,
                                                    inputs, token)
            t_feats = teacher.neck(t_outs) if teacher.with_neck else t_outs
            t_scores = teacher.head(t_feats)
        losses = {}
        if 'kl' in self.distill_losses:
            losses['loss_distill_kl'] = self.distill_losses['kl'](scores,
                                                                  t_scores)
        if token:
            losses['loss_distill_feat'] = self.distill_losses['feat'](
                trace.patch_tokens, t_trace.patch_tokens, trace.patch_keep)
        return losses
