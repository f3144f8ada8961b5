"""Distillation from a frozen teacher: logits KL and feature MSE.

Both are thin registered modules over a few torch lines; the models that
use them (:class:`~mmtokenprune.models.PrunedImageClassifier`,
:class:`~mmtokenprune.models.PrunedEncoderDecoder`) run the teacher and
pass its outputs in. The teacher side is always detached.

- :class:`DistillKLLoss`: ``T^2 * KL(softmax(t / T) || softmax(s / T))``,
  summed over classes and averaged over samples (classification) or over
  the counted pixels (segmentation), as DynamicViT's ``batchmean`` KL
  (``T = 1`` there; DeiT's soft distillation divides by the number of
  logits instead).
- :class:`FeatureMSELoss`: mean squared difference over channels and the
  selected positions (DynamicViT/TPS's token distillation restricted to the
  kept tokens), or over all of a feature map.
"""
from typing import Optional

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ...registry import MODELS

__all__ = ['DistillKLLoss', 'FeatureMSELoss']


def _check_weight(name: str, loss_weight: float) -> float:
    if not loss_weight >= 0:
        raise ValueError(f'`{name}.loss_weight` must be >= 0; got '
                         f'{loss_weight!r}.')
    return float(loss_weight)


@MODELS.register_module()
class DistillKLLoss(nn.Module):
    """KL divergence from the teacher's softened logits to the student's.

    Args:
        temperature (float): ``T`` > 0; both logits are divided by it and
            the loss is multiplied by ``T^2`` (Hinton et al.). Defaults to 1.
        loss_weight (float): Defaults to 1.
        ignore_index (int, optional): with ``labels``, positions whose label
            (nearest-resized to the logits' grid) equals it are not counted
            (segmentation: void and padding pixels). Defaults to None.
    """

    def __init__(self,
                 temperature: float = 1.0,
                 loss_weight: float = 1.0,
                 ignore_index: Optional[int] = None):
        super().__init__()
        if not temperature > 0:
            raise ValueError('`DistillKLLoss.temperature` must be > 0; got '
                             f'{temperature!r}.')
        self.temperature = float(temperature)
        self.loss_weight = _check_weight('DistillKLLoss', loss_weight)
        self.ignore_index = ignore_index

    def forward(self,
                student: Tensor,
                teacher: Tensor,
                labels: Optional[Tensor] = None) -> Tensor:
        """The loss.

        Args:
            student (Tensor): ``(B, K)`` or ``(B, K, H, W)`` logits.
            teacher (Tensor): the teacher's, same shape (detached here).
            labels (Tensor, optional): ``(B, H', W')`` integer labels, used
                with ``ignore_index`` only.

        Returns:
            Tensor: scalar.
        """
        if student.shape != teacher.shape:
            raise ValueError('DistillKLLoss: student and teacher logits '
                             f'differ in shape: {tuple(student.shape)} vs '
                             f'{tuple(teacher.shape)}.')
        T = self.temperature
        log_s = F.log_softmax(student / T, dim=1)
        log_t = F.log_softmax(teacher.detach().float() / T, dim=1)
        kl = (log_t.exp() * (log_t - log_s)).sum(1)  # (B, ...)
        if self.ignore_index is not None and labels is not None:
            if labels.shape[1:] != kl.shape[1:]:
                labels = F.interpolate(
                    labels[:, None].float(), size=kl.shape[1:],
                    mode='nearest')[:, 0]
            kl = kl[labels.long() != self.ignore_index]
            if kl.numel() == 0:
                return student.sum() * 0.
        return self.loss_weight * T * T * kl.mean()


@MODELS.register_module()
class FeatureMSELoss(nn.Module):
    """Mean squared error between student and teacher features.

    Args:
        loss_weight (float): Defaults to 1.
    """

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = _check_weight('FeatureMSELoss', loss_weight)

    def forward(self,
                student: Tensor,
                teacher: Tensor,
                mask: Optional[Tensor] = None) -> Tensor:
        """The loss.

        Args:
            student (Tensor): ``(B, N, C)`` tokens or ``(B, C, H, W)``
                feature maps.
            teacher (Tensor): the teacher's, same shape (detached here).
            mask (Tensor, optional): ``(B, N)`` bool, the token positions
                counted (tokens only); None: all.

        Returns:
            Tensor: scalar, the mean over the counted positions and
            channels.
        """
        if student.shape != teacher.shape:
            raise ValueError('FeatureMSELoss: student and teacher features '
                             f'differ in shape: {tuple(student.shape)} vs '
                             f'{tuple(teacher.shape)}.')
        teacher = teacher.detach().to(student.dtype)
        if mask is not None:
            student, teacher = student[mask], teacher[mask]
            if student.numel() == 0:
                return student.sum() * 0.
        return self.loss_weight * F.mse_loss(student, teacher)
