"""``PrunedVisionTransformer``: mmpretrain's ViT/DeiT, compressing itself."""
import inspect
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.utils.checkpoint as cp
from mmengine.logging import print_log
from mmengine.model import ModuleList
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.models.utils import resize_pos_embed
from torch import Tensor

from ...ops import TokenMap, unmerge_tokens
from ...registry import MODELS
from ...utils.mmseg_keys import is_mmseg_vit
from ..cdcp import CDCPBackbone
from ..layers import PrunedTransformerEncoderLayer
from ..reducers import TokenCfg
from .keep_trace import TracesKeep

__all__ = ['PrunedVisionTransformer']


@MODELS.register_module()
class PrunedVisionTransformer(TracesKeep, CDCPBackbone, VisionTransformer):
    """Vision Transformer / DeiT that merges tokens and prunes channels.

    A subclass of mmpretrain's
    :class:`~mmpretrain.models.backbones.VisionTransformer` with the same
    arguments, parameter names and outputs, plus:

    - ``token_cfg``: a token reducer (any registered
      :class:`~mmtokenprune.models.reducers.TokenReducer`: ``'ATME'``,
      ``'ToMe'``, ``'dTPS'``, ``'eTPS'``, ``'SPViT'``) in the chosen
      layers. Features for ``out_indices`` are un-merged, so ``out_type='featmap'`` always gives the full
      ``(B, C, H/16, W/16)`` grid and ``'avg_featmap'`` the mean over it.
    - ``channel_cfg``: CDCP channel gates trained under a FLOPs budget, or a
      prune spec that builds the smaller dense model written by
      :meth:`export_pruned`.
    - :meth:`forward_trace`: the outputs plus the keep decisions and last
      patch tokens that training losses read (keep ratio, distillation).
    - ``with_cp``: activation checkpointing of each layer in training.

    With both off (``None``) the model equals upstream: same state_dict
    keys, strict loading, same outputs.

    Args:
        token_cfg (dict, optional): ``type`` ('ATME' | 'ToMe' | any
            registered reducer), one of ``r`` (int or per-layer list: tokens
            removed per reducing layer) and ``keep_ratio`` (float or list in
            (0, 1]: fraction kept per reducing layer), ``layers`` (reducing
            layer indices; defaults to all but the last), ``prop_attn``
            (proportional attention; defaults to True) and the reducer's own
            options. Defaults to None.
        channel_cfg (dict, optional): ``spec`` (JSON path or dict of a
            :class:`~mmtokenprune.ops.PruneSpec`: build the pruned widths)
            and/or ``type='CDCP'`` (add gates) with ``flops_target`` (kept
            fraction of encoder FLOPs the budget loss aims at; defaults to
            0.7), ``loss_weight`` (defaults to 2.0) and ``gate_init``
            (defaults to 3.0). Defaults to None.
        with_cp (bool): checkpoint each layer in training. Defaults to False.
        *args: upstream's positional arguments.
        **kwargs: upstream's arguments (``arch``, ``img_size``,
            ``out_indices``, ``out_type``...).

    Examples:
        >>> import torch
        >>> from mmtokenprune.models import PrunedVisionTransformer
        >>> model = PrunedVisionTransformer(
        ...     arch='deit-tiny', img_size=224, out_type='featmap',
        ...     token_cfg=dict(type='ATME', r=16))
        >>> model.eval()
        >>> model(torch.rand(1, 3, 224, 224))[0].shape
        torch.Size([1, 192, 14, 14])
    """

    def __init__(self,
                 *args,
                 token_cfg: Optional[Dict] = None,
                 channel_cfg: Optional[Dict] = None,
                 with_cp: bool = False,
                 **kwargs):
        super().__init__(*args, **kwargs)
        upstream = inspect.signature(VisionTransformer.__init__).bind(
            self, *args, **kwargs)
        upstream.apply_defaults()
        self.token_cfg = TokenCfg.parse(token_cfg, self.num_layers)
        self.with_cp = with_cp
        layer_args = self._layer_args(upstream.arguments)
        self.init_cdcp(channel_cfg,
                       [a['embed_dims'] // a['num_heads'] for a in layer_args],
                       [a['feedforward_channels'] for a in layer_args])
        self._replace_layers(layer_args)
        self.finish_cdcp()
        if self.frozen_stages > 0:
            self._freeze_stages()

    # ----------------------------------------------------------- building
    def _layer_args(self, args: Dict) -> List[Dict]:
        """Upstream's per-layer arguments, ``layer_cfgs`` applied (the same
        computation as upstream's ``__init__``, which hard-codes its layer
        class)."""
        layer_cfgs = args['layer_cfgs']
        if isinstance(layer_cfgs, dict):
            layer_cfgs = [layer_cfgs] * self.num_layers
        dpr = np.linspace(0, args['drop_path_rate'], self.num_layers)
        layer_args = []
        for i in range(self.num_layers):
            cfg = dict(
                embed_dims=self.embed_dims,
                num_heads=self.arch_settings['num_heads'],
                feedforward_channels=self.arch_settings[
                    'feedforward_channels'],
                layer_scale_init_value=args['layer_scale_init_value'],
                drop_rate=args['drop_rate'],
                drop_path_rate=float(dpr[i]),  # not numpy: compilable
                qkv_bias=args['qkv_bias'],
                norm_cfg=args['norm_cfg'])
            cfg.update(layer_cfgs[i])
            layer_args.append(cfg)
        return layer_args

    def _replace_layers(self, layer_args: List[Dict]) -> None:
        """Rebuild ``self.layers`` as :class:`PrunedTransformerEncoderLayer`
        from upstream's per-layer arguments plus widths, gates and
        reducers."""
        reducers = self.token_cfg.build_reducers(
            self.num_extra_tokens,
            [(a['embed_dims'], a['num_heads']) for a in layer_args])
        cls = self.token_cfg.reducer_class
        drops = [a.get('attn_drop_rate', 0.) for a in layer_args]
        if cls is not None and cls.prunes and any(drops):
            raise ValueError(
                f"`token_cfg.type='{self.token_cfg.type}'` masks pruned "
                'tokens in attention while training, without attention '
                f'dropout; set `layer_cfgs.attn_drop_rate` to 0 (got '
                f'{drops}).')
        layers = []
        for i, cfg in enumerate(layer_args):
            layers.append(
                PrunedTransformerEncoderLayer(
                    **cfg,
                    cdcp=self.block_cdcp(i),
                    reducer=reducers[i],
                    prop_attn=self.token_cfg.prop_attn,
                    num_extra_tokens=self.num_extra_tokens))
        self.layers = ModuleList(layers)
        if self.token_cfg.enabled or self.channel_cfg.enabled:
            print_log(
                f'{type(self).__name__}: {self.num_layers} encoder layers '
                f'replaced; {self.token_cfg.describe()}; '
                f'{self.channel_cfg.describe()}', logger='current')

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Modifications to upstream: refuses mmseg's ``VisionTransformer``
        keys. Their names differ (``attn.attn.in_proj_*``) and so does the
        architecture (no final norm, no patch-embedding bias); mmengine's
        runner loads non-strictly, so they would otherwise give a silently
        different model. :class:`PrunedMMSegVisionTransformer` loads
        them."""
        if is_mmseg_vit(k[len(prefix):] for k in state_dict
                        if k.startswith(prefix)):
            raise RuntimeError(
                f'{type(self).__name__} (prefix {prefix!r}) was given mmseg '
                "VisionTransformer keys ('layers.N.attn.attn.in_proj_weight' "
                "...); build it as type='mmtokenprune."
                "PrunedMMSegVisionTransformer', with the arguments of the "
                "mmseg config (configs/mmseg-zoo/).")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------ forward
    def forward(self, x: Tensor) -> Tuple:
        """Modifications to upstream: layers take and return the
        :class:`TokenMap` of this forward (None when no layer reduces
        tokens), run under checkpointing with ``with_cp``, and outputs are
        un-merged before :meth:`_format_output`."""
        self.check_loss_owner()
        outs = []
        for i, x, tokens, hw in self._encode(x):
            if i in self.out_indices:
                outs.append(self._format_output(self._unmerge(x, tokens), hw))
        return tuple(outs)

    @torch.no_grad()
    def token_maps(self, x: Tensor) -> List[Optional[TokenMap]]:
        """The :class:`TokenMap` after every layer, for inspection (e.g.
        drawing merge regions); None for all when nothing is reduced."""
        return [tokens for _, _, tokens, _ in self._encode(x)]

    def stem(self, x: Tensor) -> Tuple[Tensor, Tuple[int, int]]:
        """Upstream's forward up to the first layer: patch embedding, extra
        tokens, position embedding, pre-norm; returns the tokens and the
        patch grid."""
        B = x.shape[0]
        x, patch_resolution = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = x + self.position_embedding(patch_resolution)
        x = self.drop_after_pos(x)
        return self.pre_norm(x), patch_resolution

    def position_embedding(self, hw: Tuple[int, int]) -> Tensor:
        """``pos_embed`` for a ``hw`` patch grid: upstream's, interpolated
        whenever the grid differs from the one of ``img_size``."""
        return resize_pos_embed(
            self.pos_embed,
            self.patch_resolution,
            hw,
            mode=self.interpolate_mode,
            num_extra_tokens=self.num_extra_tokens)

    def _encode(self, x: Tensor) -> Iterator:
        """Yield ``(layer index, tokens, token map, patch grid)`` after each
        layer (after the final norm for the last one)."""
        B = x.shape[0]
        x, patch_resolution = self.stem(x)
        tokens = None
        if self.token_cfg.enabled:
            tokens = TokenMap.identity(B, patch_resolution, x.device)
        for i, layer in enumerate(self.layers):
            if self.with_cp and self.training and x.requires_grad:
                x, tokens = cp.checkpoint(
                    layer, x, tokens, use_reentrant=False)
            else:
                x, tokens = layer(x, tokens)
            if i == len(self.layers) - 1 and self.final_norm:
                x = self.ln1(x)
            yield i, x, tokens, patch_resolution

    def _unmerge(self, x: Tensor, tokens: Optional[TokenMap]) -> Tensor:
        """Back to ``E + H0 * W0`` tokens (extra tokens first; trailing
        extra tokens, SPViT's packages, are left out)."""
        if tokens is None or self.out_type == 'cls_token':
            return x
        E, N = self.num_extra_tokens, tokens.num_tokens
        return torch.cat(
            [x[:, :E], unmerge_tokens(x[:, E:E + N], tokens)], dim=1)

    # --------------------------------------------------------------- CDCP
    def cdcp_blocks(self):
        return [(f'layers.{i}.attn', layer.attn, f'layers.{i}.ffn', layer.ffn)
                for i, layer in enumerate(self.layers)]

    def token_counts(self, hw: Optional[Tuple[int, int]] = None):
        """Tokens (extra included) seen by each layer.

        Args:
            hw (tuple[int, int], optional): patch grid; defaults to the one
                of ``img_size``.

        Returns:
            list[tuple[int, int, int]]: ``(attention queries, keys per
            query, MLP tokens)`` per layer.
        """
        n = int(np.prod(hw or self.patch_resolution))
        extra = self.num_extra_tokens
        counts = []
        for layer in self.layers:
            reducer = layer.reducer
            before, before_extra = n, extra
            if reducer is not None:
                n -= reducer.num_removed(n)
                extra += reducer.tail_tokens
            if reducer is not None and reducer.where == 'before_block':
                before, before_extra = n, extra
            counts.append((before + before_extra, before + before_extra,
                           n + extra))
        return counts

    def spec_arch(self) -> Dict:
        return dict(
            embed_dims=self.embed_dims,
            num_layers=self.num_layers,
            num_heads=self.arch_settings['num_heads'],
            feedforward_channels=self.arch_settings['feedforward_channels'])
