"""``PrunedSwinTransformer``: mmpretrain's Swin that compresses itself."""
import inspect
from copy import deepcopy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from mmpretrain.models.backbones import SwinTransformer
from torch import Tensor

from ...registry import MODELS, TOKEN_REDUCERS
from ..cdcp import CDCPBackbone
from ..layers.swin_block import PrunedSwinBlock
from ..reducers import TokenCfg, reducer_types

__all__ = ['PrunedSwinTransformer']


@MODELS.register_module()
class PrunedSwinTransformer(CDCPBackbone, SwinTransformer):
    """Swin Transformer that merges tokens inside windows and prunes
    channels.

    A subclass of mmpretrain's
    :class:`~mmpretrain.models.backbones.SwinTransformer` with the same
    arguments, parameter names and outputs, plus:

    - ``token_cfg``: every chosen block removes a fixed ``r`` tokens inside
      each attention window before its attention and MLP (merging: ATME,
      ToMe; pruning and squeezing: dTPS, eTPS) and un-merges them after
      (:class:`~mmtokenprune.models.layers.swin_block.PrunedSwinBlock`),
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
        token_cfg (dict, optional): ``type`` ('ATME' | 'ToMe' | 'dTPS' |
            'eTPS' | 'SPViT' | any registered reducer; its own options go
            here too), one of ``r`` (int, or a list with one entry per block in
            ``layers``: tokens removed per window) and ``keep_ratio``
            (float or list in (0, 1]: fraction of each window's ``ws * ws``
            tokens kept), ``layers``
            (reducing blocks; defaults to every block) and ``prop_attn``
            (defaults to True). ATME pairs along W in the even merging
            blocks and along H in the odd ones. Tokens never merge across
            shift regions or with padding; where that leaves some window
            of an input fewer than ``r`` mergeable pairs, every window of
            that block merges as many as the poorest can (for ``ws=7``
            ATME always allows 17, ToMe 24, TPS 42: each shift region and
            padding state of a window keeps a host; see
            :meth:`TokenReducer.max_window_r`). TPS prunes padding first
            and needs ``prop_attn=False``. Defaults to None.
        channel_cfg (dict, optional): ``spec`` (JSON path or dict of a
            :class:`~mmtokenprune.ops.PruneSpec`) and/or ``type='CDCP'``
            with ``flops_target``, ``loss_weight`` and ``gate_init``, as
            for :class:`PrunedVisionTransformer`. Defaults to None.
        *args: upstream's positional arguments.
        **kwargs: upstream's arguments (``arch``, ``img_size``,
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
        self.token_cfg = TokenCfg.parse(
            token_cfg, self.num_blocks, default_layers=range(self.num_blocks))
        reducer = self.token_cfg.reducer_class
        if reducer is not None and not reducer.supports_windows:
            usable = [
                n for n in reducer_types()
                if TOKEN_REDUCERS.get(n).supports_windows
            ]
            raise ValueError(
                f"`token_cfg.type='{self.token_cfg.type}'` does not plan "
                f'inside Swin windows (yet); window reducers: {usable}.')
        block_args = self._upstream_block_args(upstream.arguments)
        self.init_cdcp(channel_cfg, *self._unpruned_widths(block_args))
        self._replace_blocks(block_args)
        self.finish_cdcp()

    # ----------------------------------------------------------- building

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

    def _replace_blocks(self, block_args: List[Dict]) -> None:
        """Replace every ``stages[i].blocks[j]`` by a
        :class:`PrunedSwinBlock` built from upstream's arguments plus
        widths, gates and the merge schedule."""
        reducers = self.token_cfg.build_reducers(
            dims=[(a['embed_dims'], a['num_heads']) for a in block_args])
        index = 0
        for stage in self.stages:
            for j in range(len(stage.blocks)):
                args = block_args[index]
                reducer = reducers[index]
                r = 0 if reducer is None else reducer.window_r(
                    args['window_size'], f'block {index}')
                stage.blocks[j] = PrunedSwinBlock(
                    **args,
                    cdcp=self.block_cdcp(index),
                    merge_r=r,
                    reducer=reducer,
                    prop_attn=self.token_cfg.prop_attn)
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

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Upstream's forward, after :meth:`check_loss_owner`."""
        self.check_loss_owner()
        return super().forward(x)

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

    def cdcp_blocks(self):
        return [(f'stages.{i}.blocks.{j}.attn.w_msa', block.attn.w_msa,
                 f'stages.{i}.blocks.{j}.ffn', block.ffn)
                for i, stage in enumerate(self.stages)
                for j, block in enumerate(stage.blocks)]

    def spec_arch(self) -> Dict:
        """Per-stage lists; ``layers`` of the spec has one entry per
        block in order."""
        return dict(
            embed_dims=[s.embed_dims for s in self.stages],
            depths=list(self.depths),
            num_heads=list(self.num_heads),
            feedforward_channels=[
                self.unpruned_widths[1][sum(self.depths[:i])]
                for i in range(len(self.depths))
            ])
