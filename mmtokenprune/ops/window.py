"""Swin's windows as index maps: padding, cyclic shift, regions.

Swin pads the token map to whole windows, shifts it cyclically in every
second block and cuts it into ``ws x ws`` windows, ``(B * nW, ws * ws,
C)``. Here that permutation is one ``index_select`` each way
(:func:`window_partition`, :func:`window_reverse`) and every window cell
gets a *label*, ``2 * shift_region + is_padding``
(:func:`window_labels`), from which upstream's shift mask follows
(:func:`region_bias`) and which tells in-window merging
(:mod:`.window_merge`) which cells may become one token.

Everything that follows from the layout alone (labels, roles, how many
tokens a window can lose, which windows mix labels) is the same for every
input of one shape. :func:`window_layout` computes the tensors of one
layout (the index maps, labels, shift mask, padding rows) once per
``(grid, device)`` and every block of that layout shares them: a cache
keyed on the layout (Python values), not state kept in modules; the cached
tensors are constants that nothing writes to. Functions that reduce such
tensors to Python numbers are marked :func:`layout_constant`, so
``torch.compile`` evaluates them once while tracing and the graph has fixed
shapes (no ``nonzero`` or ``int(tensor)`` on them at run time); while
compiling, the layout is traced instead of taken from the cache.
"""
import functools
import math
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

__all__ = [
    'WindowGrid', 'window_index', 'window_partition', 'window_reverse',
    'window_labels', 'padding_labels', 'region_bias', 'REGION_MASK',
    'layout_constant', 'layout_tensors', 'add_rows', 'WindowLayout',
    'window_layout', 'layout_cache', 'partition_windows', 'reverse_windows'
]

# Upstream's additive mask between shift regions (mmpretrain ShiftWindowMSA).
REGION_MASK = -100.0


def layout_constant(fn: Callable) -> Callable:
    """Mark ``fn`` as a function of the window layout only, for
    ``torch.compile`` (``torch.compiler.assume_constant_result``).

    Dynamo then calls ``fn`` on the real values of its arguments while
    tracing and puts its result into the graph as a constant, instead of
    tracing data-dependent ops such as ``nonzero`` or ``int(tensor)``. In
    eager mode and under ``torch.jit.trace`` (ONNX export) ``fn`` simply
    runs. Sound only when:

    - ``fn`` returns Python numbers (or tuples of them);
    - its tensor arguments are layout constants (labels, roles), made
      without in-place ops (dynamo recomputes them from the graph's nodes
      and does not replay mutations), never features.
    """
    return torch.compiler.assume_constant_result(fn)


@layout_constant
def _layout_values(fn: Callable, *args) -> Tuple[Tuple[int, ...], ...]:
    return tuple(tuple(t.tolist()) for t in fn(*args))


def layout_tensors(fn: Callable,
                   *args,
                   device: Optional[torch.device] = None
                   ) -> Tuple[Tensor, ...]:
    """``fn(*args)``, a tuple of 1-D integer layout constants (e.g. a
    window's roles), with sizes ``torch.compile`` knows: ``fn`` runs
    eagerly while tracing (a boolean mask inside it would give
    data-dependent sizes there), its values enter the graph as constants.
    The ``args`` must be Python values (window size, axis).

    Returns:
        tuple[Tensor, ...]: long tensors on ``device``.
    """
    return tuple(
        torch.tensor(v, dtype=torch.long, device=device)
        for v in _layout_values(fn, *args))


def add_rows(out: Tensor,
             rows: Tensor,
             src: Tensor,
             inplace: bool = False) -> Tensor:
    """``out.index_add(0, rows, src)``: add the rows of ``src`` (``(K,
    C)``) to rows ``rows`` (``(K, )``, repeats add up) of ``out``
    (``index_add_`` with ``inplace``).

    ONNX export takes the equal ``scatter_add`` with an expanded index:
    the exporter translates ``index_add`` to a scatter that keeps only one
    of repeated rows (it warns so, and refuses only when it sees the
    repeats in a constant index), so merged windows exported wrong values.
    """
    if torch.onnx.is_in_onnx_export():
        index = rows.unsqueeze(1).expand(-1, out.shape[1])
        if inplace:
            return out.scatter_add_(0, index, src)
        return out.scatter_add(0, index, src)
    if inplace:
        return out.index_add_(0, rows, src)
    return out.index_add(0, rows, src)


@dataclass(frozen=True)
class WindowGrid:
    """How an ``H x W`` map is padded, shifted and cut into windows.

    Attributes:
        hw (tuple[int, int]): the unpadded map ``(H, W)``.
        window_size (int): window side ``ws``.
        shift (int): cyclic shift (0 for regular windows).
    """
    hw: Tuple[int, int]
    window_size: int
    shift: int = 0

    @property
    def padded(self) -> Tuple[int, int]:
        ws = self.window_size
        return tuple(int(math.ceil(s / ws)) * ws for s in self.hw)

    @property
    def num_windows(self) -> int:
        Hp, Wp = self.padded
        return (Hp // self.window_size) * (Wp // self.window_size)

    @property
    def area(self) -> int:
        return self.window_size**2

    @property
    def has_padding(self) -> bool:
        return self.padded != tuple(self.hw)

    @property
    def has_regions(self) -> bool:
        """Whether some window holds padding or several shift regions."""
        return self.shift > 0 or self.has_padding


def _partition(x: Tensor, ws: int) -> Tensor:
    B, Hp, Wp, C = x.shape
    x = x.view(B, Hp // ws, ws, Wp // ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, C)


def window_index(
        grid: WindowGrid,
        device: Optional[torch.device] = None) -> Tuple[Tensor, Tensor]:
    """Where each window cell comes from and where each map cell goes.

    Padding, the cyclic shift and the cut into windows are one permutation
    (plus zero rows), so :func:`window_partition` and
    :func:`window_reverse` are one ``index_select`` each (upstream pads,
    rolls and permutes: several copies of the map; ``torch.roll`` is slow
    on CPU).

    Returns:
        tuple[Tensor, Tensor]: ``src`` ``(nW * ws * ws, )``, the flat map
        position of every window cell (``H * W`` for padding),
        and ``dst`` ``(H * W, )``, the window-order position of every map
        cell.
    """
    ws, (H, W), (Hp, Wp) = grid.window_size, grid.hw, grid.padded
    rows = torch.arange(Hp, device=device)[:, None]
    cols = torch.arange(Wp, device=device)[None, :]
    src = torch.where((rows < H) & (cols < W), rows * W + cols, H * W)
    if grid.shift > 0:
        src = torch.roll(src, shifts=(-grid.shift, -grid.shift), dims=(0, 1))
    src = _partition(src[None, :, :, None], ws).flatten()
    # the inverse permutation of the real cells: sorted by map position,
    # padding (H * W) last; a fixed size (no boolean indexing)
    dst = src.argsort(stable=True)[:H * W]
    return src, dst


def window_partition(x: Tensor,
                     grid: WindowGrid,
                     index: Optional[Tuple[Tensor, Tensor]] = None) -> Tensor:
    """Pad (zeros), shift and cut ``(B, H * W, C)`` into windows.

    Args:
        x (Tensor): ``(B, H * W, C)``.
        grid (WindowGrid): the windows.
        index (tuple[Tensor, Tensor], optional): :func:`window_index` of
            ``grid``, if already computed.

    Returns:
        Tensor: ``(B * nW, ws * ws, C)``, windows of one image together,
        in row-major window order (as upstream's ``window_partition``).
    """
    src, _ = index if index is not None else window_index(grid, x.device)
    L = x.shape[1]
    if not grid.has_padding:
        return x.index_select(1, src).view(-1, grid.area, x.shape[-1])
    # gather row 0 for padding, then zero those rows (no padded copy of x)
    out = x.index_select(1, src.clamp(max=L - 1))
    out.masked_fill_((src == L).view(1, -1, 1), 0.)
    return out.view(-1, grid.area, x.shape[-1])


def window_reverse(windows: Tensor,
                   grid: WindowGrid,
                   index: Optional[Tuple[Tensor, Tensor]] = None) -> Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, ws * ws, C)`` to
    ``(B, H * W, C)`` (shift undone, padding cropped)."""
    _, dst = index if index is not None else window_index(grid, windows.device)
    C = windows.shape[-1]
    x = windows.reshape(-1, grid.num_windows * grid.area, C)
    return x.index_select(1, dst)


def padding_labels(pad: Tensor, ws: int, shift: int) -> Tensor:
    """:func:`window_labels` of ``P`` layouts at once, from their ``(P, Hp,
    Wp)`` padding masks (before the shift): ``(P * nW, ws * ws)``."""
    P, Hp, Wp = pad.shape
    region = torch.zeros(Hp, Wp, dtype=torch.long, device=pad.device)
    if shift > 0:
        pad = torch.roll(pad, shifts=(-shift, -shift), dims=(1, 2))
        # bands of upstream's slices (0, -ws), (-ws, -shift), (-shift, None)
        rows = torch.arange(Hp, device=pad.device)
        cols = torch.arange(Wp, device=pad.device)
        band_h = (rows >= Hp - ws).long() + (rows >= Hp - shift).long()
        band_w = (cols >= Wp - ws).long() + (cols >= Wp - shift).long()
        region = band_h[:, None] * 3 + band_w[None, :]
    labels = 2 * region + pad.long()
    return _partition(labels.unsqueeze(-1), ws)[..., 0]


def window_labels(grid: WindowGrid,
                  device: Optional[torch.device] = None) -> Tensor:
    """Label of every window cell: ``2 * shift_region + is_padding``.

    Shift regions are numbered as in upstream's ``get_attn_mask`` (0..8 on
    the padded, shifted map); padding is marked before the shift, i.e.
    where the zeros really are.

    Returns:
        Tensor: ``(nW, ws * ws)`` long.
    """
    (H, W), (Hp, Wp) = grid.hw, grid.padded
    rows = torch.arange(Hp, device=device)
    cols = torch.arange(Wp, device=device)
    pad = (rows[:, None] >= H) | (cols[None, :] >= W)
    return padding_labels(pad[None], grid.window_size, grid.shift)


def region_bias(labels: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Upstream's shift mask between tokens of the given labels.

    Args:
        labels (Tensor): ``(..., N)`` labels of :func:`window_labels` (of
            the tokens' anchor cells).

    Returns:
        Tensor: ``(..., N, N)``, ``-100`` between different shift regions
        (padding does not matter, as upstream), else 0.
    """
    region = labels // 2
    differ = region.unsqueeze(-1) != region.unsqueeze(-2)
    return differ.to(dtype) * REGION_MASK


# ----------------------------------------------------------------- layouts
def layout_cache(fn: Callable) -> Callable:
    """Cache ``fn``, a pure function of hashable Python values (a
    :class:`WindowGrid`, ints, a ``torch.device``) that returns layout
    tensors, so every block of one layout shares one result.

    - The cache is keyed on the arguments only (no module, no tensor), so
      nothing is stored on modules and no result depends on an earlier
      forward; the tensors it returns are constants that callers must not
      write to.
    - They are made outside inference mode and without autograd, so a
      layout first built under ``torch.inference_mode()`` serves a
      training forward too.
    - While ``torch.compile`` traces, ``fn`` is traced instead (its ops
      act on constants, so the graph keeps fixed shapes).

    The wrapper has ``cache_clear``, ``cache_info`` and ``uncached`` (the
    plain ``fn``).
    """

    @functools.lru_cache(maxsize=128)
    def cached(*args):
        with torch.inference_mode(False), torch.no_grad():
            return fn(*args)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if torch.compiler.is_compiling():
            return fn(*args, **kwargs)
        return cached(*args, **kwargs)

    call.cache_clear = cached.cache_clear
    call.cache_info = cached.cache_info
    call.uncached = fn
    return call


class WindowLayout(NamedTuple):
    """The tensors of one window layout, shared by all its blocks.

    Fields (a named tuple; each documented in prose here, not as an
    attribute list, which Sphinx would describe twice):

    - ``grid`` (:class:`WindowGrid`): the windows;
    - ``index`` (tuple[Tensor, Tensor]): :func:`window_index` of ``grid``;
    - ``rows`` (Tensor): ``(nW * ws * ws, )`` the map row each window cell
      reads (padding cells read row 0 and are zeroed after);
    - ``pad_rows`` (Tensor or None): ``(P, )`` the window cells that are
      padding; None without padding;
    - ``labels`` (Tensor or None): ``(nW, ws * ws)`` :func:`window_labels`;
      None when no window holds padding or several shift regions;
    - ``shift_mask`` (Tensor or None): ``(nW, ws * ws, ws * ws)`` float32
      :func:`region_bias` of the labels, upstream's shift mask; None
      without shift.
    """
    grid: WindowGrid
    index: Tuple[Tensor, Tensor]
    rows: Tensor
    pad_rows: Optional[Tensor]
    labels: Optional[Tensor]
    shift_mask: Optional[Tensor]


def _padding_cells(H: int, W: int, ws: int, shift: int) -> Tuple[Tensor]:
    src, _ = window_index(WindowGrid((H, W), ws, shift))
    return ((src == H * W).nonzero().squeeze(1), )


@layout_cache
def window_layout(grid: WindowGrid,
                  device: Optional[torch.device] = None) -> WindowLayout:
    """The :class:`WindowLayout` of ``grid`` on ``device``, computed once
    per ``(grid, device)`` (see :func:`layout_cache`).

    Args:
        grid (WindowGrid): the windows.
        device (torch.device, optional): where the tensors live.
    """
    H, W = grid.hw
    src, dst = window_index(grid, device)
    pad_rows = None
    if grid.has_padding:
        pad_rows, = layout_tensors(
            _padding_cells, H, W, grid.window_size, grid.shift,
            device=device)
    labels = window_labels(grid, device) if grid.has_regions else None
    shift_mask = region_bias(labels) if grid.shift > 0 else None
    return WindowLayout(grid, (src, dst), src.clamp(max=H * W - 1), pad_rows,
                        labels, shift_mask)


def partition_windows(x: Tensor, layout: WindowLayout) -> Tensor:
    """:func:`window_partition` with a :class:`WindowLayout`: one
    ``index_select``, then the padding rows (only those) set to zero.

    Args:
        x (Tensor): ``(B, H * W, C)``.

    Returns:
        Tensor: ``(B * nW, ws * ws, C)``.
    """
    out = x.index_select(1, layout.rows)
    if layout.pad_rows is not None:
        if torch.onnx.is_in_onnx_export():  # as window_partition
            pad = layout.index[0] == x.shape[1]
            out = out.masked_fill(pad.view(1, -1, 1), 0.)
        else:
            out.index_fill_(1, layout.pad_rows, 0.)
    return out.view(-1, layout.grid.area, x.shape[-1])


def reverse_windows(windows: Tensor, layout: WindowLayout) -> Tensor:
    """:func:`window_reverse` with a :class:`WindowLayout`."""
    return window_reverse(windows, layout.grid, layout.index)
