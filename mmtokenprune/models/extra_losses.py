"""Distillation and keep-ratio losses of a model, from its config.

Three optional keys of :class:`~mmtokenprune.models.PrunedEncoderDecoder`
and :class:`~mmtokenprune.models.PrunedImageClassifier`, checked at
construction (a bad key or value is named with what is allowed):

- ``teacher=dict(checkpoint=..., config=None)``: the frozen teacher
  (:mod:`mmtokenprune.models.teacher`); needed by ``distill``.
- ``distill=dict(kl=dict(...), feat=dict(...))``: either or both.
  ``kl``: :class:`~mmtokenprune.models.losses.DistillKLLoss` on the logits
  (classifier: class scores; segmentor: decode-head logits per pixel);
  ``feat``: :class:`~mmtokenprune.models.losses.FeatureMSELoss` (classifier:
  the last layer's un-merged patch tokens, only the kept ones where a keep
  decision exists; segmentor: the un-merged backbone outputs). Each dict
  holds the loss's arguments and optionally another registered ``type``.
  Loss keys ``loss_distill_kl`` and ``loss_distill_feat``.
- ``keep_ratio_loss=dict(mode=..., loss_weight=..., targets=None)``:
  :class:`~mmtokenprune.models.losses.KeepRatioLoss` on the keep decisions
  of a reducer that learns one (``learns_keep``: dTPS, SPViT) in a
  :class:`PrunedVisionTransformer`. Loss key ``loss_keep_ratio``.
"""
import inspect
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from ..registry import MODELS, TOKEN_REDUCERS
from .losses import DistillKLLoss, FeatureMSELoss, KeepRatioLoss
from .teacher import TEACHER_KEYS, HoldsTeacher, build_teacher

__all__ = ['ExtraLosses']

#: ``model.distill`` keys and their default loss classes.
DISTILL = dict(kl=DistillKLLoss, feat=FeatureMSELoss)


def _build_loss(cfg, default: type, key: str):
    """Build a loss from a dict of its arguments (``type`` optional),
    naming ``key`` and the allowed arguments on a bad one."""
    if not isinstance(cfg, dict):
        raise TypeError(f'`{key}` must be a dict of the loss arguments; got '
                        f'{cfg!r}.')
    cfg = dict(cfg)
    cls = default
    if 'type' in cfg:
        cls = MODELS.get(cfg.pop('type'))
        if cls is None:
            raise ValueError(f'`{key}.type` is not a registered loss.')
    allowed = [
        p for p in inspect.signature(cls.__init__).parameters
        if p != 'self'
    ]
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        raise ValueError(f'`{key}` has unknown keys {unknown}; allowed: '
                         f"{allowed} (and 'type').")
    try:
        return cls(**cfg)
    except ValueError as e:
        raise ValueError(f'`{key}`: {e}') from e


def learned_keep_reducers() -> List[str]:
    """Names of the registered reducers with a learned keep decision."""
    TOKEN_REDUCERS.import_from_location()
    return sorted(n for n, c in TOKEN_REDUCERS.module_dict.items()
                  if c.learns_keep)


class ExtraLosses(HoldsTeacher):
    """Mixin of the two models: parses the keys, builds the teacher and
    losses, and computes the losses from the student's and teacher's
    outputs. Task-specific ``loss()`` lives in the models."""

    #: Whether ``distill.feat`` reads the backbone's :class:`KeepTrace`
    #: (classifier: patch tokens) or its outputs (segmentor).
    feat_from_trace = False

    def init_extra_losses(self, student_kwargs: Dict, upstream: type,
                          teacher: Optional[Dict], distill: Optional[Dict],
                          keep_ratio_loss: Optional[Dict]) -> None:
        """Check the three keys; build the losses and the teacher."""
        self.distill_losses = torch.nn.ModuleDict()
        if distill is not None:
            if not isinstance(distill, dict) or not distill:
                raise ValueError('`model.distill` must be a non-empty dict '
                                 f'with keys from {list(DISTILL)}; got '
                                 f'{distill!r}.')
            unknown = sorted(set(distill) - set(DISTILL))
            if unknown:
                raise ValueError(f'`model.distill` has unknown keys '
                                 f'{unknown}; allowed: {list(DISTILL)}.')
            for name, cfg in distill.items():
                self.distill_losses[name] = _build_loss(
                    cfg, DISTILL[name], f'model.distill.{name}')
        self.keep_ratio_loss = None
        if keep_ratio_loss is not None:
            self.keep_ratio_loss = _build_loss(
                keep_ratio_loss, KeepRatioLoss, 'model.keep_ratio_loss')
        if self.keep_ratio_loss is not None or (
                self.feat_from_trace and 'feat' in self.distill_losses):
            self._check_traceable(keep_ratio_loss is not None)
        self.teacher_checkpoint = None
        if teacher is not None:
            if not isinstance(teacher, dict):
                raise TypeError('`model.teacher` must be a dict with keys '
                                f'{list(TEACHER_KEYS)}; got {teacher!r}.')
            unknown = sorted(set(teacher) - set(TEACHER_KEYS))
            if unknown:
                raise ValueError(f'`model.teacher` has unknown keys '
                                 f'{unknown}; allowed: {list(TEACHER_KEYS)}.')
            self.teacher_checkpoint = teacher.get('checkpoint')
        if self.teacher_checkpoint is not None:
            if not self.distill_losses:
                raise ValueError('`model.teacher` is set but `model.distill` '
                                 'is not: nothing would use the teacher.')
            self.set_teacher(
                build_teacher(student_kwargs, upstream, teacher))

    def _check_traceable(self, for_keep: bool) -> None:
        what = ('`model.keep_ratio_loss`' if for_keep else
                '`model.distill.feat` (token distillation)')
        if not hasattr(self.backbone, 'forward_trace'):
            raise ValueError(
                f'{what} needs a backbone that returns its keep decisions '
                'and tokens (PrunedVisionTransformer); got '
                f'{type(self.backbone).__name__}. (Swin windows prune a '
                'fixed count per window in training, so their kept '
                'fraction is fixed by the schedule.)')
        if not for_keep:
            return
        cls = self.backbone.token_cfg.reducer_class
        allowed = learned_keep_reducers()
        if cls is None or not cls.learns_keep:
            got = None if cls is None else self.backbone.token_cfg.type
            raise ValueError(
                '`model.keep_ratio_loss` needs a reducer that learns a '
                'training-time keep decision: `model.backbone.token_cfg.'
                f'type` in {allowed}; got {got!r} (merging reducers and '
                'eTPS keep a fixed count).')
        targets = self.keep_ratio_loss.targets
        steps = [s for s in self.backbone.token_cfg.schedule if s]
        if targets is not None and len(targets) != len(steps):
            raise ValueError(
                f'`model.keep_ratio_loss.targets` needs one fraction per '
                f'reducing layer ({len(steps)}); got {list(targets)}.')

    # ---------------------------------------------------------- forward
    @property
    def has_extra_losses(self) -> bool:
        return bool(self.distill_losses) or self.keep_ratio_loss is not None

    @property
    def needs_trace(self) -> bool:
        return self.keep_ratio_loss is not None or (
            self.feat_from_trace and 'feat' in self.distill_losses)

    def backbone_outputs(self, backbone, inputs: Tensor, trace: bool
                         ) -> Tuple[Tuple[Tensor, ...], Optional[object]]:
        """``backbone``'s outputs and, with ``trace``, its KeepTrace."""
        if trace:
            return backbone.forward_trace(inputs)
        return backbone(inputs), None

    def checked_teacher(self):
        """The teacher, or a clear error when it was not given."""
        if self.teacher is None:
            raise ValueError(
                '`model.distill` needs `model.teacher.checkpoint`: the '
                'unpruned checkpoint to distil from (usually the same file '
                'as `load_from`), e.g. `--cfg-options '
                'model.teacher.checkpoint=BASELINE.pth`.')
        return self.teacher

    def keep_ratio_losses(self, trace) -> Dict[str, Tensor]:
        if self.keep_ratio_loss is None:
            return {}
        if not trace.policies:
            raise RuntimeError(
                '`model.keep_ratio_loss`: the backbone recorded no keep '
                'decision (its reducers take the training path only in '
                'training mode).')
        return dict(loss_keep_ratio=self.keep_ratio_loss(
            trace.policies, trace.targets))
