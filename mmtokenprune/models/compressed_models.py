"""Segmentor and classifier whose training loss includes the backbone's.

A compressing backbone may have losses of its own (the CDCP FLOPs budget);
it returns them from ``compression_losses()``, and these two thin
subclasses add them to the task losses. Everything else is upstream's.
"""
from typing import Dict

from mmpretrain.models.classifiers import ImageClassifier
from mmseg.models.segmentors import EncoderDecoder

from ..registry import MODELS

__all__ = ['PrunedEncoderDecoder', 'PrunedImageClassifier']


def _with_backbone_losses(losses: Dict, backbone) -> Dict:
    extra = getattr(backbone, 'compression_losses', dict)()
    clash = set(extra) & set(losses)
    if clash:
        raise KeyError(f'backbone losses {sorted(clash)} clash with the '
                       'task losses.')
    losses.update(extra)
    return losses


@MODELS.register_module()
class PrunedEncoderDecoder(EncoderDecoder):
    """mmseg's ``EncoderDecoder`` plus the backbone's compression losses."""

    def loss(self, inputs, data_samples) -> Dict:
        return _with_backbone_losses(
            super().loss(inputs, data_samples), self.backbone)


@MODELS.register_module()
class PrunedImageClassifier(ImageClassifier):
    """mmpretrain's ``ImageClassifier`` plus the backbone's compression
    losses."""

    def loss(self, inputs, data_samples) -> Dict:
        return _with_backbone_losses(
            super().loss(inputs, data_samples), self.backbone)
