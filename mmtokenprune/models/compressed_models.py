"""Segmentor and classifier whose training loss includes the backbone's.

A compressing backbone may have losses of its own (the CDCP FLOPs budget);
it returns them from ``compression_losses()``, and these two thin
subclasses add them to the task losses and say so to the backbone
(``loss_owner``): a gated backbone refuses to train under a model that
would drop its budget loss. Everything else is upstream's.
"""
from typing import Dict

from mmpretrain.models.classifiers import ImageClassifier
from mmseg.models.segmentors import EncoderDecoder

from ..registry import MODELS

__all__ = ['PrunedEncoderDecoder', 'PrunedImageClassifier']


class AddsBackboneLosses:
    """Mixin for a model with a ``backbone``: claims the backbone's
    compression losses at construction and adds them to ``loss()``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if hasattr(self.backbone, 'loss_owner'):
            self.backbone.loss_owner = type(self).__name__

    def loss(self, inputs, data_samples) -> Dict:
        losses = super().loss(inputs, data_samples)
        extra = getattr(self.backbone, 'compression_losses', dict)()
        clash = set(extra) & set(losses)
        if clash:
            raise KeyError(f'backbone losses {sorted(clash)} clash with the '
                           'task losses.')
        losses.update(extra)
        return losses


@MODELS.register_module()
class PrunedEncoderDecoder(AddsBackboneLosses, EncoderDecoder):
    """mmseg's ``EncoderDecoder`` plus the backbone's compression losses."""


@MODELS.register_module()
class PrunedImageClassifier(AddsBackboneLosses, ImageClassifier):
    """mmpretrain's ``ImageClassifier`` plus the backbone's compression
    losses."""
