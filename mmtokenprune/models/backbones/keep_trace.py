"""What the training losses read from one ViT forward, returned with it.

Keep-ratio losses need the keep decision of every reducing layer, token
distillation the last layer's patch tokens and which of them are still
live. Nothing is stored on a module between forwards: the backbone's
:meth:`TracesKeep.forward_trace` returns these next to the usual outputs,
and the model's ``loss()`` passes them on.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

from torch import Tensor

from ...ops import unmerge_tokens

__all__ = ['KeepTrace', 'TracesKeep']


@dataclass(frozen=True)
class KeepTrace:
    """The losses' view of one forward.

    Attributes:
        layers (tuple[int]): the reducing layers that recorded a keep
            decision (training path of a pruning reducer), in order.
        policies (tuple[Tensor]): ``(B, N)`` keep decision after each of
            them, cumulative (a token dropped earlier stays 0); it carries
            the reducer's straight-through gradient where it has one.
        targets (tuple[float]): the ``token_cfg`` schedule's cumulative
            kept fraction after each of them, for this input's patch grid
            (the counts inference keeps).
        patch_tokens (Tensor): ``(B, H0 * W0, C)`` the last layer's patch
            tokens (after the final norm), un-merged to the patch grid.
        patch_keep (Tensor, optional): ``(B, H0 * W0)`` bool, positions
            whose own token is still kept at the end; None: all count.
    """
    layers: Tuple[int, ...]
    policies: Tuple[Tensor, ...]
    targets: Tuple[float, ...]
    patch_tokens: Tensor
    patch_keep: Optional[Tensor]


class TracesKeep:
    """Mixin for :class:`PrunedVisionTransformer`: a forward that also
    returns a :class:`KeepTrace` (uses its ``_encode``)."""

    def forward_trace(self, x: Tensor) -> Tuple[Tuple[Tensor, ...],
                                                KeepTrace]:
        """:meth:`forward`'s outputs, plus what the training losses read.

        Args:
            x (Tensor): ``(B, 3, H, W)`` images.

        Returns:
            tuple: the outputs of :meth:`forward` and a :class:`KeepTrace`.
        """
        self.check_loss_owner()
        outs, layers, policies, targets = [], [], [], []
        n0 = remaining = None
        for i, x, tokens, hw in self._encode(x):
            if i in self.out_indices:
                outs.append(self._format_output(self._unmerge(x, tokens), hw))
            if n0 is None:
                n0 = remaining = hw[0] * hw[1]
            reducer = self.layers[i].reducer
            if reducer is not None:
                remaining -= reducer.num_removed(remaining)
                if tokens.policy is not None:
                    layers.append(i)
                    policies.append(tokens.policy)
                    targets.append(remaining / n0)
        E = self.num_extra_tokens
        keep = None
        if tokens is None:
            patches = x[:, E:E + n0]
        else:
            patches = unmerge_tokens(x[:, E:E + tokens.num_tokens], tokens)
            if tokens.policy is not None:
                # a kept token is anchored at its own cell
                keep = tokens.policy.new_zeros(patches.shape[:2]).scatter(
                    1, tokens.anchor, (tokens.policy > 0.5).to(
                        tokens.policy.dtype)) > 0
        trace = KeepTrace(
            layers=tuple(layers),
            policies=tuple(policies),
            targets=tuple(targets),
            patch_tokens=patches,
            patch_keep=keep)
        return tuple(outs), trace
