"""The frozen, unpruned teacher of distillation.

``model.teacher = dict(checkpoint=..., config=None)``: the teacher is the
student's own architecture with token reduction and channel pruning off
(``config=None``) or the ``model`` of another config file, loaded strictly
from ``checkpoint`` (usually the file the student starts from, its
``load_from``). It is built once, in eval mode, with every parameter
frozen, and is **not** a submodule of the student: it is not in the
student's ``state_dict`` (checkpoints stay the student's, loadable without
the teacher), not in its ``parameters()`` (the optimizer never sees it) and
``model.train()`` never switches it to training mode. The student moves it
with itself (``.to()``, ``.cuda()``: :meth:`HoldsTeacher._apply`).
"""
import copy
import os.path as osp
from typing import Dict, Optional

import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint

__all__ = ['TEACHER_KEYS', 'build_teacher', 'HoldsTeacher']

#: Keys of ``model.teacher``.
TEACHER_KEYS = ('checkpoint', 'config')
#: Keys of the student's model config that the teacher drops.
STUDENT_ONLY = ('teacher', 'distill', 'keep_ratio_loss')
#: Backbone keys that make it compress.
COMPRESSION = ('token_cfg', 'channel_cfg')


def _uncompressed(cfg: Dict) -> Dict:
    """A model config without the student's extras and compression."""
    cfg = copy.deepcopy(dict(cfg))
    for k in STUDENT_ONLY:
        cfg.pop(k, None)
    backbone = dict(cfg['backbone'])
    for k in COMPRESSION:
        backbone.pop(k, None)
    cfg['backbone'] = backbone
    return cfg


def build_teacher(student_kwargs: Dict, upstream: type, teacher: Dict,
                  key: str = 'model.teacher') -> nn.Module:
    """Build, load (strictly) and freeze the teacher.

    Args:
        student_kwargs (dict): the student's constructor arguments.
        upstream (type): the upstream model class the student extends
            (``EncoderDecoder``, ``ImageClassifier``), built for
            ``config=None``.
        teacher (dict): ``checkpoint`` (str) and ``config`` (str or None).
        key (str): name of the config key in errors.

    Returns:
        nn.Module: the teacher, in eval mode, ``requires_grad`` off.
    """
    path = teacher['checkpoint']
    if not osp.isfile(path):
        raise FileNotFoundError(f'`{key}.checkpoint`: no file {path!r}.')
    if teacher.get('config') is None:
        model = upstream(**_uncompressed(student_kwargs))
        origin = ("the student's config with `token_cfg` and `channel_cfg` "
                  'off')
    else:
        cfg = Config.fromfile(teacher['config'])
        scope = cfg.get('default_scope', None)
        with DefaultScope.overwrite_default_scope(scope):
            model = ROOT_MODELS.build(_uncompressed(cfg.model))
        origin = f"`model` of {teacher['config']!r}, compression off"
    try:
        load_checkpoint(model, path, map_location='cpu', strict=True,
                        logger='current')
    except RuntimeError as e:
        raise RuntimeError(
            f'`{key}.checkpoint` {path!r} does not load strictly into the '
            f'teacher ({origin}): {e}') from e
    model.requires_grad_(False)
    return model.eval()


class HoldsTeacher:
    """Mixin: a model that keeps a teacher outside its module tree."""

    _teacher_ref = ()

    def set_teacher(self, teacher: Optional[nn.Module]) -> None:
        # a tuple, so nn.Module does not register it as a submodule
        self._teacher_ref = () if teacher is None else (teacher, )

    @property
    def teacher(self) -> Optional[nn.Module]:
        """The frozen teacher, or None."""
        return self._teacher_ref[0] if self._teacher_ref else None

    def _apply(self, fn, *args, **kwargs):
        """Modifications to ``nn.Module``: moves and casts (``.to()``,
        ``.cuda()``, ``.half()``) apply to the teacher too."""
        out = super()._apply(fn, *args, **kwargs)
        if self.teacher is not None:
            self.teacher._apply(fn, *args, **kwargs)
        return out
