"""Swin window attention with CDCP widths/gates and merged-window biases."""
from typing import Optional

import torch
from mmpretrain.models.utils import WindowMSA
from torch import Tensor

from ...ops import fused_attention, policy_bias, policy_softmax
from ..cdcp import BlockCDCP, GatedQKV

__all__ = ['PrunedWindowMSA']


class PrunedWindowMSA(GatedQKV, WindowMSA):
    """mmpretrain's ``WindowMSA`` that can be channel-pruned and merged.

    Modifications to upstream:

    - CDCP widths and gates (``cdcp``, see
      :class:`~mmtokenprune.models.cdcp.GatedQKV`); the relative-position
      bias table stays per head and is never pruned.
    - The attention runs in the fused SDPA kernel (upstream: explicit
      softmax; same result within float rounding), also with Q/K and V of
      different widths (:func:`~mmtokenprune.ops.fused_attention`).
    - ``forward`` takes ``attn_bias``, a complete additive bias for windows
      of merged tokens (see :meth:`relative_bias` with ``anchor``), instead
      of the full-window bias and shift ``mask``, and a keep ``policy``
      (the training path of pruning reducers: DynamicViT's masked softmax,
      eps 1e-6 in training as the originals).
    - :meth:`mean_query_attention`: the attention of each window's mean
      query, the keep score of eTPS inside windows.

    With default widths and no gate the parameters are upstream's.

    Args:
        embed_dims (int): Number of input channels.
        window_size (tuple[int]): The height and width of the window.
        num_heads (int): Number of attention heads.
        cdcp (BlockCDCP, optional): pruned widths and gates of this
            block; None: upstream's widths, no gates.
        **kwargs: upstream arguments (``qkv_bias``, ``qk_scale``,
            ``attn_drop``, ``proj_drop``, ``init_cfg``).
    """

    def __init__(self,
                 embed_dims: int,
                 window_size,
                 num_heads: int,
                 cdcp: Optional[BlockCDCP] = None,
                 **kwargs):
        super().__init__(embed_dims, window_size, num_heads, **kwargs)
        self.init_widths(embed_dims, embed_dims, cdcp)

    def relative_bias(self, anchor: Optional[Tensor] = None) -> Tensor:
        """The relative-position bias.

        Args:
            anchor (Tensor, optional): ``(B * nW, N')`` window cell of each
                (merged) token. The bias of a token pair is that of their
                anchor cells.

        Returns:
            Tensor: ``(heads, N, N)`` for full windows, else
            ``(B * nW, heads, N', N')``.
        """
        table = self.relative_position_bias_table  # (L, heads)
        index = self.relative_position_index  # (N, N)
        N = index.shape[0]
        full = table[index.view(-1)].t()  # (heads, N * N)
        if anchor is None:
            return full.view(-1, N, N)
        BnW, n = anchor.shape
        pair = (anchor.unsqueeze(2) * N + anchor.unsqueeze(1)).view(-1)
        out = full.contiguous().index_select(1, pair)
        return out.view(-1, BnW, n, n).transpose(0, 1)

    def mean_query_attention(self,
                             x: Tensor,
                             real: Optional[Tensor] = None) -> Tensor:
        """Each token's attention from the window's mean query.

        ``cls_attention_score(q, k, scale, num_extra_tokens=0)`` of this
        layer's own (gated) queries and keys: ``softmax_j(q_mean . k_j *
        scale)`` averaged over heads, without relative-position bias (the
        mean query has no cell). Computed without the keys: ``q_mean .
        k_j = (W_k^T q_mean) . x_j + const`` per head, and the constant
        cancels in the softmax, so a window costs two ``C x C`` products
        and ``heads * N * C`` multiply-adds instead of ``N * C * C`` for
        the keys.

        Args:
            x (Tensor): ``(B * nW, N, C)`` attention inputs of the windows.
            real (Tensor, optional): ``(B * nW, N)`` 0 at padding cells,
                1 elsewhere: the score is that of ``x`` with zero padding
                rows (upstream's attention input), without zeroing them.

        Returns:
            Tensor: ``(B * nW, N)``, rows sum to 1.
        """
        h, d = self.num_heads, self.qk_dims
        weight = self.qkv.weight[:2 * h * d].view(2, h, d, -1)
        bias = self.qkv.bias
        if real is None:
            mean = x.mean(dim=1)
        else:
            mean = (real.to(x.dtype).unsqueeze(1) @ x)[:, 0] / x.shape[1]
        q = mean @ weight[0].flatten(0, 1).t()  # (B * nW, h * d)
        if bias is not None:
            q = q + bias[:h * d]
        q = q.view(-1, h, d)
        if self.qk_gate is not None:  # q and k share the gate
            mask = self.qk_gate.mask().to(q.dtype)
            q = q * mask * mask
        u = torch.einsum('bhd,hdc->bhc', q, weight[1])  # W_k^T q per head
        logits = torch.einsum('bhc,bnc->bhn', u, x) * self.scale
        if real is not None:  # a zero row's logit is the dropped constant
            logits = logits.masked_fill((real == 0).unsqueeze(1), 0.)
        return logits.softmax(dim=-1).mean(dim=1)

    def forward(self,
                x: Tensor,
                mask: Optional[Tensor] = None,
                attn_bias: Optional[Tensor] = None,
                policy: Optional[Tensor] = None) -> Tensor:
        """Attention inside each window.

        Args:
            x (Tensor): ``(B * nW, N, C)`` window tokens.
            mask (Tensor, optional): upstream's shift mask ``(nW, N, N)``
                (values in ``(-inf, 0]``), for full windows.
            attn_bias (Tensor, optional): ``(B * nW, heads, N, N)``, the
                whole additive bias (relative position, shift mask, token
                sizes); replaces the full-window bias and ``mask``.
            policy (Tensor, optional): ``(B * nW, N)`` keep policy; keys
                with 0 get no attention (except from themselves). A policy
                that needs a gradient, or training (eps 1e-6), takes the
                explicit softmax (attention dropout applied after it).

        Returns:
            Tensor: ``(B * nW, N, C)``.
        """
        BnW, N, _ = x.shape
        h, dv = self.num_heads, self.v_dims
        q, k, v = self.gated_qkv(x)
        if attn_bias is None:
            attn_bias = self.relative_bias().unsqueeze(0).to(q.dtype)
            if mask is not None:  # windows of one image are consecutive
                nW = mask.shape[0]
                attn_bias = attn_bias + mask.unsqueeze(1).to(q.dtype)
                if BnW != nW:  # (B * nW, ...): 5-D SDPA is slow on CPU
                    attn_bias = attn_bias.repeat(BnW // nW, 1, 1, 1)
        eps = 1e-6 if self.training else 0.
        if policy is not None and (eps > 0 or policy.requires_grad
                                   and torch.is_grad_enabled()):
            logits = (q @ k.transpose(-2, -1)) * self.scale + attn_bias
            out = self.attn_drop(policy_softmax(logits, policy, eps)) @ v
        else:
            if policy is not None:  # softmax(s + log P): the eps=0 form
                attn_bias = attn_bias + policy_bias(policy, q.dtype)
            p = self.attn_drop.p if self.training else 0.
            out = fused_attention(
                q, k, v, self.scale, attn_mask=attn_bias, dropout_p=p)
        out = out.reshape(BnW, h, N, dv).transpose(1, 2)
        out = self.proj(out.reshape(BnW, N, h * dv))
        return self.proj_drop(out)
