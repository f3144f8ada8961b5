"""CDCP for a whole backbone, written once for ViT and Swin.

:class:`CDCPBackbone` is mixed into :class:`PrunedVisionTransformer` and
:class:`PrunedSwinTransformer`. It parses ``channel_cfg``, loads and checks a
prune spec, hands each block its pruned widths, computes the differentiable
kept fraction of FLOPs and the budget loss, and exports the smaller dense
model. The architecture supplies three things: :meth:`cdcp_blocks` (the
attention and MLP of every block, with their state_dict names),
:meth:`token_counts` (tokens each block sees) and :meth:`spec_arch` (the
unpruned architecture recorded in a spec).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from ...budgets import attention_flops, ffn_flops
from ...ops import PruneSpec
from ...registry import MODELS
from .budget import budget_loss, soft_width
from .channel_cfg import BlockCDCP, ChannelCfg
from .export import export_blocks
from .gated_layers import ffn_gate

__all__ = ['CDCPBackbone', 'LOSS_OWNERS']

#: Models that add a backbone's ``compression_losses()`` to the task losses.
LOSS_OWNERS = ('mmtokenprune.PrunedEncoderDecoder (mmseg)',
               'mmtokenprune.PrunedImageClassifier (mmpretrain)')


class CDCPBackbone:
    """Mixin: CDCP channel pruning of a backbone's blocks.

    The class using it calls :meth:`init_cdcp` in ``__init__`` before it
    builds its blocks (with :meth:`block_widths`), and
    :meth:`finish_cdcp` after.
    """

    # ------------------------------------------------------- architecture
    def cdcp_blocks(self) -> List[Tuple[str, nn.Module, str, nn.Module]]:
        """``(attention name, attention, MLP name, MLP)`` of every block in
        order, names as in this module's state_dict."""
        raise NotImplementedError

    def token_counts(self, hw: Optional[Tuple[int, int]] = None
                     ) -> List[Tuple[int, int, int]]:
        """``(attention queries, keys per query, MLP tokens)`` per block for
        one image of patch grid ``hw`` (defaults to ``img_size``'s)."""
        raise NotImplementedError

    def spec_arch(self) -> Dict:
        """The unpruned architecture, recorded in an exported spec."""
        raise NotImplementedError

    # ----------------------------------------------------------- building
    def init_cdcp(self, channel_cfg: Optional[Dict],
                  head_dims: Sequence[int], ffn_dims: Sequence[int]) -> None:
        """Parse ``channel_cfg`` and load its spec, checked against the
        unpruned per-block widths (channels per head, MLP hidden)."""
        self.channel_cfg = ChannelCfg.parse(channel_cfg)
        self.unpruned_widths = (tuple(head_dims), tuple(ffn_dims))
        self.prune_spec = None
        if self.channel_cfg.spec is not None:
            self.prune_spec = PruneSpec.load(self.channel_cfg.spec)
            self.prune_spec.validate(*self.unpruned_widths)
        #: Set by the model that adds :meth:`compression_losses` to its
        #: losses; a gated backbone refuses to train without one.
        self.loss_owner: Optional[str] = None

    def block_cdcp(self, index: int) -> BlockCDCP:
        """The widths of block ``index`` (from the spec; unpruned without
        one) and its gate settings."""
        dims = dict()
        if self.prune_spec is not None:
            layer = self.prune_spec.layers[index]
            dims = dict(
                qk_dims=layer.qk_dims,
                v_dims=layer.v_dims,
                ffn_dims=layer.ffn_dims)
        return BlockCDCP(
            **dims,
            gated=self.channel_cfg.gated,
            gate_init=self.channel_cfg.gate_init)

    def finish_cdcp(self) -> None:
        """Fix the token counts at ``img_size`` for the budget loss; load
        the latency table of ``channel_cfg.latency`` and check that it
        describes this backbone.

        The loss is ``LatencyBudgetLoss`` taken from the registry, as mm
        heads build their losses: the models' losses read this package's
        gates, so this package does not import them back."""
        self.img_token_counts = tuple(
            self.token_counts()) if self.channel_cfg.gated else None
        self.latency_loss = None
        if self.channel_cfg.latency is not None:
            try:
                loss = MODELS.get('LatencyBudgetLoss')(
                    **self.channel_cfg.latency)
                loss.latency_ms(self)
            except (ValueError, KeyError, AttributeError, TypeError,
                    OSError) as e:
                table = self.channel_cfg.latency['table']
                name = repr(table) if isinstance(table, str) else 'given'
                raise ValueError(
                    f'`channel_cfg.latency`: the table {name} cannot budget '
                    f'this {type(self).__name__}: {e}') from e
            self.latency_loss = loss

    def train(self, mode: bool = True):
        """Modifications to upstream: returns ``self`` (upstream returns
        None), so ``model.eval()`` chains like any ``nn.Module``."""
        super().train(mode)
        return self

    # ------------------------------------------------------------- budget
    def flops_ratio(self, hw: Optional[Tuple[int, int]] = None,
                    hard: bool = False) -> Tensor:
        """Kept fraction of block FLOPs at ``img_size`` (or ``hw``), with
        the gates' soft widths (differentiable) against this model's
        widths. Token reduction is counted, so the ratio is relative to
        this model's token schedule.

        Args:
            hard (bool): count the hard masks' widths (what the model
                computes and exports), with the soft widths' gradient
                (straight-through). Defaults to False.
        """
        counts = self.img_token_counts
        if hw is not None or counts is None:
            counts = self.token_counts(hw)
        kept = full = 0.
        for (_, attn, _, ffn), (n_q, n_k, n_mlp) in zip(
                self.cdcp_blocks(), counts):
            C, h = attn.embed_dims, attn.num_heads
            hidden = ffn.layers[0][0].out_features
            kept = kept + attention_flops(
                n_q, C, h, soft_width(attn.qk_gate, attn.qk_dims, hard),
                soft_width(attn.v_gate, attn.v_dims, hard), keys=n_k)
            kept = kept + ffn_flops(n_mlp, C,
                                    soft_width(ffn_gate(ffn), hidden, hard))
            full += attention_flops(
                n_q, C, h, attn.qk_dims, attn.v_dims, keys=n_k)
            full += ffn_flops(n_mlp, C, hidden)
        return kept / full

    def compression_losses(self) -> Dict[str, Tensor]:
        """The CDCP budget loss (empty without gates), on the soft or hard
        FLOPs fraction as ``channel_cfg.budget`` says, and the latency
        budget loss of ``channel_cfg.latency`` if set."""
        cfg = self.channel_cfg
        if not cfg.gated:
            return {}
        ratio = self.flops_ratio(hard=cfg.budget == 'hard')
        loss = budget_loss(ratio, cfg.flops_target, cfg.penalty)
        losses = dict(loss_cdcp_budget=cfg.loss_weight * loss)
        if self.latency_loss is not None:
            losses['loss_latency_budget'] = self.latency_loss(self)
        return losses

    def check_loss_owner(self) -> None:
        """Refuse to train gates whose budget loss nobody adds.

        Raises:
            RuntimeError: in a training forward of a gated backbone that no
                model has claimed (see ``loss_owner``).
        """
        if (self.channel_cfg.gated and self.loss_owner is None
                and self.training and torch.is_grad_enabled()):
            raise RuntimeError(
                f"{type(self).__name__} has `channel_cfg.type='CDCP'` gates, "
                'but no model adds their FLOPs budget loss, so training '
                'would never prune. Set `model.type` to one of '
                f'{list(LOSS_OWNERS)}, or add `backbone.compression_losses()`'
                ' to your losses and set `backbone.loss_owner`.')

    def kept_widths(self) -> List[Tuple[int, int, int]]:
        """Hard kept channels ``(qk, v, ffn)`` per block: the widths
        :meth:`export_pruned` would write now (this model's widths where a
        block has no gate)."""
        widths = []
        for _, attn, _, ffn in self.cdcp_blocks():
            gates = (attn.qk_gate, attn.v_gate, ffn_gate(ffn))
            full = (attn.qk_dims, attn.v_dims,
                    ffn.layers[0][0].out_features)
            widths.append(
                tuple(n if g is None else len(g.kept_indices())
                      for g, n in zip(gates, full)))
        return widths

    # ------------------------------------------------------------- export
    def export_pruned(self) -> Tuple[PruneSpec, Dict[str, Tensor]]:
        """Slice the gated channels away.

        Returns:
            tuple[PruneSpec, dict]: the spec of the smaller model and its
            state_dict (this module's keys, gates removed). A model built
            with ``channel_cfg=dict(spec=spec)`` loads it with
            ``strict=True`` and computes what this model computes in eval.
        """
        dims, state = export_blocks(self, self.cdcp_blocks())
        return PruneSpec(arch=self.spec_arch(), layers=tuple(dims)), state
