"""Swin block that reduces tokens inside its windows and prunes channels."""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmpretrain.models.backbones.swin_transformer import SwinBlock
from torch import Tensor

from ...ops import TokenMap
from ...ops.window import (WindowGrid, layout_constant, partition_windows,
                           region_bias, reverse_windows, window_layout)
from ...ops.window_merge import ascending_positions, unmerge_rows
from ..cdcp import BlockCDCP, add_ffn_gate
from .window_attention import PrunedWindowMSA

__all__ = ['PrunedSwinBlock']


@layout_constant
def _traced_mlp_tokens(block: 'PrunedSwinBlock', hw_shape: Tuple[int, int],
                       r: int) -> int:
    return block.token_counts(hw_shape, r)[2]


def _mlp_tokens(block: 'PrunedSwinBlock', grid: WindowGrid, r: int) -> int:
    """The MLP tokens of one image, a layout constant: from the layout
    cache (:meth:`TokenReducer.window_layout_counts`, shared by every block
    of this layout, ``r`` and roles); while compiling, evaluated once when
    traced."""
    if r == 0:
        return grid.hw[0] * grid.hw[1]
    if torch.compiler.is_compiling():
        return _traced_mlp_tokens(block, grid.hw, r)
    return block.reducer.window_layout_counts(grid, r)[1]


class PrunedSwinBlock(SwinBlock):
    """mmpretrain's ``SwinBlock`` with in-window token merging and CDCP.

    Modifications to upstream:

    - ``attn.w_msa`` is a :class:`PrunedWindowMSA` (same parameter names),
      so Q/K/V widths can be pruned and gated; with ``gated=True`` a
      :class:`ChannelGate` follows the MLP activation (``ffn.layers.0.3``);
      the MLP width is ``cdcp.ffn_dims``.
    - With ``merge_r > 0`` the residual stream itself is cut into windows
      (zero padding, cyclic shift), the reducer removes ``merge_r`` tokens
      of every window (``reducer.window_reduce``: merging, or TPS's
      pruning and squeezing; see
      :class:`~mmtokenprune.models.reducers.TokenReducer`), attention and
      MLP run on ``ws * ws - merge_r`` tokens per window, and the tokens are
      un-merged and the windows reversed before returning, so the next
      block, the shift and patch merging see an intact grid. Reduced tokens
      take the relative-position bias and shift mask of their anchor cells
      (a token's cells share one shift region); with ``prop_attn`` the
      attention is biased by ``log(size)``; a map with a keep ``policy``
      (training path of pruning reducers) keeps every token and masks the
      pruned ones as keys. Padding stays zero at the attention input, as
      upstream, and the MLP skips padding tokens (as upstream, whose MLP
      runs on the unpadded map).
    - Windows are cut and reversed with one ``index_select`` each
      (:func:`~mmtokenprune.ops.window.window_index`) instead of upstream's
      pad, ``torch.roll`` and permute copies; same result, both paths. The
      index maps, labels, shift mask and layout counts come from the layout
      cache (:func:`~mmtokenprune.ops.window.window_layout`): computed once
      per input shape and window layout, shared by every block; the block
      keeps no state between calls.
    - Activation checkpointing (``with_cp``) uses ``use_reentrant=False``.

    With ``merge_r=0`` the forward computes upstream's.

    Args:
        embed_dims, num_heads, attn_cfgs, ffn_cfgs: as upstream.
        cdcp (BlockCDCP, optional): pruned widths (``ffn_dims`` replaces
            the MLP width) and gates; None: upstream's, no gates.
        merge_r (int): tokens merged per window. Defaults to 0.
        reducer (nn.Module, optional): the token reducer that plans the
            merges (:class:`~mmtokenprune.models.reducers.TokenReducer`);
            needed when ``merge_r > 0``.
        prop_attn (bool): proportional attention. Defaults to True.
        **kwargs: upstream's other arguments (``window_size``, ``shift``,
            ``ffn_ratio``, ``drop_path``, ``pad_small_map``, ``norm_cfg``,
            ``with_cp``, ``init_cfg``).
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 attn_cfgs: dict = dict(),
                 ffn_cfgs: dict = dict(),
                 cdcp: Optional[BlockCDCP] = None,
                 merge_r: int = 0,
                 reducer: Optional[nn.Module] = None,
                 prop_attn: bool = True,
                 **kwargs):
        if 'window_msa' in attn_cfgs:
            raise ValueError('PrunedSwinBlock builds its own window '
                             'attention; `attn_cfgs.window_msa` is not '
                             'supported.')
        attn_cfgs = dict(
            window_msa=PrunedWindowMSA,
            cdcp=cdcp,
            **attn_cfgs)
        if cdcp is not None and cdcp.ffn_dims is not None:
            ffn_cfgs = dict(ffn_cfgs, feedforward_channels=cdcp.ffn_dims)
        super().__init__(
            embed_dims,
            num_heads,
            attn_cfgs=attn_cfgs,
            ffn_cfgs=ffn_cfgs,
            **kwargs)
        if cdcp is not None and cdcp.gated:
            add_ffn_gate(self.ffn, cdcp.gate_init)
        if merge_r > 0 and reducer is None:
            raise ValueError('PrunedSwinBlock: merge_r > 0 needs a reducer.')
        self.merge_r = merge_r
        self.reducer = reducer
        self.prop_attn = prop_attn

    def window_grid(self, hw_shape: Tuple[int, int]) -> WindowGrid:
        """Windows of an ``H x W`` map, with upstream's shift rules."""
        ws, shift = self.attn.window_size, self.attn.shift_size
        if min(hw_shape) == ws:
            shift = shift if self.attn.pad_small_map else 0
        elif min(hw_shape) < ws and not self.attn.pad_small_map:
            raise ValueError(
                f'The input shape {tuple(hw_shape)} is smaller than the '
                f'window size ({ws}). Please set `pad_small_map=True`, or '
                'decrease the `window_size`.')
        return WindowGrid(tuple(hw_shape), ws, shift)

    def token_counts(self,
                     hw_shape: Tuple[int, int],
                     r: Optional[int] = None) -> Tuple[int, int, int]:
        """``(attention queries, keys per query, MLP tokens)`` of one image
        of ``hw_shape`` (merging ``r`` tokens per window, ``merge_r`` by
        default; padding is not an MLP token)."""
        r = self.merge_r if r is None else r
        grid = self.window_grid(hw_shape)
        n, mlp = grid.area, hw_shape[0] * hw_shape[1]
        if r > 0:
            mlp = grid.num_windows * (n - r)
            if grid.has_regions:
                r, mlp = self.reducer.window_layout_counts(grid, r)
            n -= r
        return grid.num_windows * n, n, mlp

    def forward(self, x: Tensor, hw_shape: Tuple[int, int]) -> Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(
                self._inner_forward, x, hw_shape, use_reentrant=False)
        return self._inner_forward(x, hw_shape)

    def _inner_forward(self, x: Tensor, hw_shape) -> Tensor:
        if self.merge_r > 0:
            return self.merged_forward(x, hw_shape, self.merge_r)
        layout = window_layout(self.window_grid(hw_shape), x.device)
        mask = None
        if layout.shift_mask is not None:
            mask = layout.shift_mask.to(x.dtype)
        out = self.attn.w_msa(
            partition_windows(self.norm1(x), layout), mask=mask)
        x = x + self.attn.drop(reverse_windows(out, layout))
        return self.ffn(self.norm2(x), identity=x)

    def merged_forward(self, x: Tensor, hw_shape, r: int) -> Tensor:
        """The block on windows of ``ws * ws - r`` merged tokens.

        Args:
            x (Tensor): ``(B, H * W, C)``.
            hw_shape (tuple[int, int]): ``(H, W)``.
            r (int): tokens merged per window (0 runs the windowed path
                without merging: upstream's result).

        Returns:
            Tensor: ``(B, H * W, C)``.
        """
        B, _, C = x.shape
        grid = self.window_grid(hw_shape)
        layout = window_layout(grid, x.device)
        xw = partition_windows(x, layout)  # (B * nW, N, C), residual
        BnW = xw.shape[0]
        labels = layout.labels
        xm, tokens = xw, TokenMap.identity(BnW, (grid.window_size, ) * 2,
                                           x.device, x.dtype)
        if r > 0:
            xm, tokens = self.reducer.window_reduce(
                xw, self.norm1(xw), r, labels, attn=self.attn.w_msa,
                layout=layout)

        hm = self.norm1(xm)
        n = xm.shape[1]
        extra = None  # (B * nW, 1, N', N'): shift mask and log(size)
        if labels is not None:
            nW = labels.shape[0]
            lab = labels.expand(B, -1, -1).gather(
                2, tokens.anchor.view(B, nW, n)).view(BnW, n)
            if grid.has_padding:  # zero padding at the input, as upstream
                # padding goes first, so every image keeps as many real
                # tokens, a layout constant (of the tokens the windows
                # kept: all of them in training with a keep policy)
                num_real = _mlp_tokens(self, grid, grid.area - n)
                pad = (lab % 2 == 1).view(B, -1)
                real = self._rows(ascending_positions(~pad, num_real), nW * n)
                hm = hm.view(-1, C).index_fill(
                    0,
                    self._rows(ascending_positions(pad, nW * n - num_real),
                               nW * n), 0.).view_as(hm)
            if grid.shift > 0:
                extra = region_bias(lab, x.dtype).unsqueeze(1)
        if self.prop_attn and r > 0:
            log_size = tokens.size.log().to(x.dtype)[:, None, None, :]
            extra = log_size if extra is None else extra + log_size
        bias = self.attn.w_msa.relative_bias(tokens.anchor).to(x.dtype)
        if extra is not None:  # a new tensor (a gather): add in place
            bias = bias.add_(extra)
        out = self.attn.w_msa(hm, attn_bias=bias, policy=tokens.policy)
        # drop paths act per image, so go through (B, nW * N', C)
        xm = xm + self.attn.drop(out.view(B, -1, C)).view_as(xm)
        if not grid.has_padding:
            xm = xm.view(B, -1, C)
            xm = self.ffn(self.norm2(xm), identity=xm).view(BnW, n, C)
            return self._unmerge(xm, tokens, layout)
        # the MLP skips padding (cropped anyway)
        xr = xm.view(-1, C).index_select(0, real).view(B, -1, C)
        xr = self.ffn(self.norm2(xr), identity=xr)
        if tokens.aside is None:
            # un-merge straight from the real tokens: no image cell maps
            # to a padding token (tokens never mix labels)
            to_real = torch.zeros(
                BnW * n, dtype=torch.long, device=x.device).index_copy_(
                    0, real, torch.arange(real.numel(), device=x.device))
            rows = to_real.index_select(
                0, unmerge_rows(tokens.assign, n, grid, layout.index).view(-1))
            return xr.view(-1, C).index_select(0, rows).view(B, -1, C)
        xm = xm.view(-1, C).index_copy(0, real, xr.view(-1, C))
        return self._unmerge(xm.view(BnW, n, C), tokens, layout)

    @staticmethod
    def _rows(index: Tensor, num: int) -> Tensor:
        """``(B * K, )`` rows of the flat ``(B * num, C)`` tokens for
        ``(B, K)`` positions among each image's ``num`` tokens."""
        offset = torch.arange(index.shape[0], device=index.device) * num
        return (index + offset.unsqueeze(1)).view(-1)

    @staticmethod
    def _unmerge(xm: Tensor, tokens: TokenMap, layout) -> Tensor:
        """``(B, H * W, C)`` from the windows' tokens (and those set
        aside)."""
        if tokens.aside is not None:  # skipped the block (SPViT's dropped)
            xm = torch.cat([xm, tokens.aside.to(xm.dtype)], dim=1)
        BnW, n, C = xm.shape
        rows = unmerge_rows(tokens.assign, n, layout.grid, layout.index)
        return xm.reshape(BnW * n, C).index_select(0, rows.view(-1)).view(
            rows.shape[0], -1, C)
