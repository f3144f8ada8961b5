"""``PrunedSwinTransformer``: mmpretrain's Swin that compresses itself."""
import inspect
from copy import deepcopy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from mmpretrain.models.backbones import SwinTransformer
from torch import Tensor

from ...ops import PruneSpec
from ...ops.window_merge import METHODS
from ...registry import MODELS
from ..cdcp import (attention_flops, compression_losses, export_blocks,
                    ffn_flops, soft_width)
from ..layers.swin_block import PrunedSwinBlock
from .compress_cfg import ChannelCfg, TokenCfg

__all__ = ['PrunedSwinTransformer']


@MODELS.register_module()
class PrunedSwinTransformer(SwinTransformer):
    """Swin Transformer that merges tokens inside windows and prunes
    channels.

    A subclass of mmpretrain's
    :class:`~mmpretrain.models.backbones.SwinTransformer` with the same
    arguments, parameter names and outputs, plus:

    - ``token_cfg``: every chosen block merges a fixed ``r`` tokens inside
      each attention window before its attention and MLP and un-merges them
      after (:class:`~mmtokenprune.models.layers.swin_block.PrunedSwinBlock`),
      so shifted windows, padding and patch merging see an intact grid and
      all stage outputs keep their shapes.
    - ``channel_cfg``: CDCP gates (one Q/K gate and one V gate per block,
      shared by all heads; one MLP gate) trained under a FLOPs budget, or a
      prune spec that builds the smaller dense model written by
      :meth:`export_pruned`. The relative-position bias stays per head.

    With both off (``None``) the model equals upstream: same state_dict
    keys, strict loading, same outputs.

    Blocks are numbered across stages in order, as in
    :meth:`get_layer_depth` (Swin-T: 0-1 stage 0, 2-3 stage 1, 4-9
    stage 2, 10-11 stage 3).

    Args:
        token_cfg (dict, optional): ``type`` ('ATME' | 'ToMe'), one of ``r``
            (int, or a list with one entry per block in ``layers``: tokens
            merged per window) and ``keep_ratio`` (float or list in (0, 1]:
            fraction of each window's ``ws * ws`` tokens kept), ``layers``
            (merging blocks; defaults to every block) and ``prop_attn``
            (defaults to True). ATME pairs along W in the even merging
            blocks and along H in the odd ones. Tokens never merge across
            shift regions or with padding; where that leaves some window
            of an input fewer than ``r`` mergeable pairs, every window of
            that block merges as many as the poorest can (for ``ws=7``
            ATME always allows 17, ToMe 24; see
            :func:`~mmtokenprune.ops.window_merge.max_window_r`). Defaults to
            None.
        channel_cfg (dict, optional): ``spec`` (JSON path or dict of a
            :class:`~mmtokenprune.ops.PruneSpec`) and/or ``type='CDCP'``
            with ``flops_target``, ``loss_weight`` and ``gate_init``, as
            for :class:`PrunedVisionTransformer`. Defaults to None.
        *args, **kwargs: upstream's arguments (``arch``, ``img_size``,
            ``window_size``, ``out_indices``, ``pad_small_map``,
            ``with_cp``...).

    Examples:
        >>> import torch
        >>> from mmtokenprune.models import PrunedSwinTransformer
        >>> model = PrunedSwinTransformer(
        ...     arch='tiny', out_indices=(0, 1, 2, 3), pad_small_map=True,
        ...     token_cfg=dict(type='ATME', r=12, layers=[4, 5, 6, 7, 8, 9]))
        >>> model.eval()
        >>> [o.shape[1:] for o in model(torch.rand(1, 3, 224, 224))]
        [(96, 56, 56), (192, 28, 28), (384, 14, 14), (768, 7, 7)]
    """

    def __init__(self,
                 *args,
                 token_cfg: Optional[Dict] = None,
                 channel_cfg: Optional[Dict] = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        upstream = inspect.signature(SwinTransformer.__init__).bind(
            self, *args, **kwargs)
        upstream.apply_defaults()
        self.num_blocks = sum(self.depths)
        self.token_cfg = self._parse_token_cfg(token_cfg)
        self.channel_cfg = ChannelCfg.parse(channel_cfg)
        self.prune_spec = None
        block_args = self._upstream_block_args(upstream.arguments)
        self.unpruned_widths = self._unpruned_widths(block_args)
        if self.channel_cfg.spec is not None:
            self.prune_spec = PruneSpec.load(self.channel_cfg.spec)
            self.prune_spec.validate(*self.unpruned_widths)
        self._replace_blocks(block_args)
        # tokens per block at img_size, for the budget loss of every step
        self.img_token_counts = tuple(
            self.token_counts()) if self.channel_cfg.gated else None

    # ----------------------------------------------------------- building
    def _parse_token_cfg(self, cfg: Optional[Dict]) -> TokenCfg:
        if cfg is not None and isinstance(cfg, dict) and 'layers' not in cfg:
            cfg = dict(cfg, layers=list(range(self.num_blocks)))
        parsed = TokenCfg.parse(cfg, self.num_blocks)
        if parsed.enabled and parsed.type not in METHODS:
            raise ValueError(f'`token_cfg.type`: Swin merges inside windows '
                             f'with one of {list(METHODS)}; got '
                             f'{parsed.type!r}.')
        return parsed

    def _upstream_block_args(self, args: Dict) -> List[Dict]:
        """Each block's ``SwinBlock`` arguments, computed as upstream's
        ``SwinTransformer`` and ``SwinBlockSequence`` do."""
        stage_cfgs = args['stage_cfgs']
        dpr = [
            x.item()
            for x in torch.linspace(0, args['drop_path_rate'], self.num_blocks)
        ]
        blocks = []
        for i, (depth, stage) in enumerate(zip(self.depths, self.stages)):
            stage_cfg = stage_cfgs[i] if isinstance(
                stage_cfgs, Sequence) else deepcopy(stage_cfgs)
            cfg = dict(
                window_size=args['window_size'],
                drop_paths=dpr[:depth],
                with_cp=args['with_cp'],
                pad_small_map=args['pad_small_map'],
                **stage_cfg)
            dpr = dpr[depth:]
            drop_paths = cfg['drop_paths']
            if not isinstance(drop_paths, Sequence):
                drop_paths = [drop_paths] * depth
            block_cfgs = cfg.get('block_cfgs', dict())
            if not isinstance(block_cfgs, Sequence):
                block_cfgs = [deepcopy(block_cfgs) for _ in range(depth)]
            for j in range(depth):
                blocks.append({
                    'embed_dims': stage.embed_dims,
                    'num_heads': self.num_heads[i],
                    'window_size': cfg['window_size'],
                    'shift': j % 2 == 1,
                    'drop_path': drop_paths[j],
                    'with_cp': cfg['with_cp'],
                    'pad_small_map': cfg['pad_small_map'],
                    **block_cfgs[j]
                })
        return blocks

    @staticmethod
    def _unpruned_widths(block_args: List[Dict]):
        """Per-block channels per head and MLP widths before pruning."""
        head, ffn = [], []
        for a in block_args:
            head.append(a['embed_dims'] // a['num_heads'])
            ffn.append(
                a.get('ffn_cfgs',
                      {}).get('feedforward_channels',
                              int(a['embed_dims'] * a.get('ffn_ratio', 4.))))
        return tuple(head), tuple(ffn)

    def _merge_r(self, index: int, args: Dict) -> int:
        """Tokens merged per window by block ``index`` (checked)."""
        step = self.token_cfg.schedule[index]
        if step is None:
            return 0
        ws = args['window_size']
        area = ws * ws
        where = f'block {index} (window {ws}x{ws} = {area} tokens)'
        if step.r is not None and step.r >= area:
            raise ValueError(f'`token_cfg.r`: r={step.r} at {where} must be '
                             'smaller than the window area (and at most '
                             f'half of it, {area // 2}).')
        return step.num_removed(area, key=f'token_cfg (Swin {where})')

    def _replace_blocks(self, block_args: List[Dict]) -> None:
        """Replace every ``stages[i].blocks[j]`` by a
        :class:`PrunedSwinBlock` built from upstream's arguments plus
        widths, gates and the merge schedule."""
        index, merging = 0, 0
        for stage in self.stages:
            for j in range(len(stage.blocks)):
                args = dict(block_args[index])
                r = self._merge_r(index, args)
                if self.prune_spec is not None:
                    dims = self.prune_spec.layers[index]
                    args.update(
                        qk_dims=dims.qk_dims,
                        v_dims=dims.v_dims,
                        ffn_dims=dims.ffn_dims)
                stage.blocks[j] = PrunedSwinBlock(
                    **args,
                    gated=self.channel_cfg.gated,
                    gate_init=self.channel_cfg.gate_init,
                    merge_r=r,
                    merge_type=self.token_cfg.type,
                    merge_axis=1 if merging % 2 == 0 else 0,
                    prop_attn=self.token_cfg.prop_attn)
                merging += r > 0
                index += 1
        if self.token_cfg.enabled or self.channel_cfg.enabled:
            rs = [b.merge_r for s in self.stages for b in s.blocks]
            print_log(
                f'{type(self).__name__}: {index} Swin blocks replaced; '
                f'{self.token_cfg.describe()}, r per window {rs}; '
                f'{self.channel_cfg.describe()}',
                logger='current')

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args,
                              **kwargs):
        """Modifications to upstream: its key conversions of old (version
        < 3) checkpoints run for this subclass too (upstream applies them
        only when the class is exactly ``SwinTransformer``)."""
        version = local_metadata.get('version', None)
        if version is None or version < 2:
            last = len(self.stages) - 1
            for k in list(state_dict):
                if k.startswith(prefix + 'norm.'):
                    new = prefix + f'norm{last}.' + k[len(prefix + 'norm.'):]
                    state_dict[new] = state_dict.pop(k)
        if version is None or version < 3:
            for k in list(state_dict):
                if k.startswith(prefix) and 'attn_mask' in k:
                    del state_dict[k]
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      *args, **kwargs)

    def train(self, mode: bool = True) -> 'PrunedSwinTransformer':
        """Modifications to upstream: returns ``self`` (upstream returns
        None), so ``model.eval()`` chains like any ``nn.Module``."""
        super().train(mode)
        return self

    # --------------------------------------------------------------- CDCP
    def blocks(self) -> List[PrunedSwinBlock]:
        """All blocks, in order."""
        return [b for s in self.stages for b in s.blocks]

    def token_counts(self, hw: Optional[Tuple[int, int]] = None):
        """Tokens seen by each block's attention and MLP.

        Args:
            hw (tuple[int, int], optional): patch grid of the first stage;
                defaults to the one of ``img_size``.

        Returns:
            list[tuple[int, int, int]]: ``(attention queries, keys per
            query, mlp tokens)`` per block.
        """
        H, W = hw or self.patch_resolution
        counts = []
        for stage in self.stages:
            counts += [block.token_counts((H, W)) for block in stage.blocks]
            if stage.downsample is not None:
                H, W = (H + 1) // 2, (W + 1) // 2
        return counts

    def flops_ratio(self, hw: Optional[Tuple[int, int]] = None) -> Tensor:
        """Kept fraction of block FLOPs at ``img_size`` (or ``hw``), with
        the gates' soft widths (differentiable) against this model's
        widths. Merging is counted, so the ratio is relative to this
        model's token schedule."""
        kept = full = 0.
        counts = self.img_token_counts
        if hw is not None or counts is None:
            counts = self.token_counts(hw)
        for block, (n_q, n_k, n_mlp) in zip(self.blocks(), counts):
            attn, C = block.attn.w_msa, block.attn.w_msa.embed_dims
            h, ffn = attn.num_heads, block.ffn.feedforward_channels
            kept = kept + attention_flops(
                n_q,
                C,
                h,
                soft_width(attn.qk_gate, attn.qk_dims),
                soft_width(attn.v_gate, attn.v_dims),
                keys=n_k)
            kept = kept + ffn_flops(n_mlp, C, soft_width(block.ffn_gate, ffn))
            full += attention_flops(
                n_q, C, h, attn.qk_dims, attn.v_dims, keys=n_k)
            full += ffn_flops(n_mlp, C, ffn)
        return kept / full

    def compression_losses(self) -> Dict[str, Tensor]:
        """The CDCP budget loss (empty without gates)."""
        return compression_losses(self.flops_ratio, self.channel_cfg)

    def export_pruned(self) -> Tuple[PruneSpec, Dict[str, Tensor]]:
        """Slice the gated channels away.

        Returns:
            tuple[PruneSpec, dict]: the spec of the smaller model (``arch``
            holds per-stage lists, ``layers`` one entry per block in order)
            and its state_dict (this module's keys, gates removed). A model
            built with ``channel_cfg=dict(spec=spec)`` loads it with
            ``strict=True`` and computes what this model computes in eval.
        """
        blocks = []
        for i, stage in enumerate(self.stages):
            for j, block in enumerate(stage.blocks):
                key = f'stages.{i}.blocks.{j}'
                blocks.append((f'{key}.attn.w_msa', block.attn.w_msa,
                               f'{key}.ffn', block.ffn))
        dims, state = export_blocks(self, blocks)
        arch = dict(
            embed_dims=[s.embed_dims for s in self.stages],
            depths=list(self.depths),
            num_heads=list(self.num_heads),
            feedforward_channels=[
                self.unpruned_widths[1][sum(self.depths[:i])]
                for i in range(len(self.depths))
            ])
        return PruneSpec(arch=arch, layers=tuple(dims)), state
