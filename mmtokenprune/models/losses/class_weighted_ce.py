"""Class-weighted cross-entropy that works with ignored pixels.

mmseg 1.2.2's ``CrossEntropyLoss(class_weight=...)`` computes its mean's
denominator by indexing the class weights with every label, ignored ones
included, so any ignored pixel (CamVid's void, 255) raises ``IndexError:
index 255 is out of bounds``. This subclass returns PyTorch's weighted mean
instead, ``sum_i w[y_i] ce_i / sum_i w[y_i]`` over the pixels that are not
ignored, for the common case (softmax, ``'mean'``, no per-pixel weight) and
leaves every other case to mmseg.
"""
import torch.nn.functional as F
from mmseg.models.losses import CrossEntropyLoss
from torch import Tensor

from ...registry import MODELS

__all__ = ['ClassWeightedCrossEntropyLoss']


@MODELS.register_module()
class ClassWeightedCrossEntropyLoss(CrossEntropyLoss):
    """mmseg's ``CrossEntropyLoss`` with a ``class_weight`` that must be
    given, averaged as PyTorch's ``F.cross_entropy(weight=...)``.

    Args:
        class_weight (list[float] | str): weight of each class (or a file
            of them, as mmseg).
        **kwargs: the other arguments of mmseg's ``CrossEntropyLoss``.
    """

    def __init__(self, class_weight, **kwargs):
        if class_weight is None:
            raise ValueError(
                '`ClassWeightedCrossEntropyLoss.class_weight` is required '
                '(a list with one weight per class); without it use '
                "type='CrossEntropyLoss'.")
        kwargs.setdefault('avg_non_ignore', True)
        super().__init__(class_weight=class_weight, **kwargs)

    def forward(self,
                cls_score: Tensor,
                label: Tensor,
                weight=None,
                avg_factor=None,
                reduction_override=None,
                ignore_index: int = -100,
                **kwargs) -> Tensor:
        reduction = reduction_override or self.reduction
        if (self.use_sigmoid or self.use_mask or weight is not None
                or avg_factor is not None or reduction != 'mean'):
            return super().forward(cls_score, label, weight, avg_factor,
                                   reduction_override, ignore_index,
                                   **kwargs)
        class_weight = cls_score.new_tensor(self.class_weight)
        return self.loss_weight * F.cross_entropy(
            cls_score, label, weight=class_weight, ignore_index=ignore_index)
