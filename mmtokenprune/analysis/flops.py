"""FLOPs of real forwards with ``mmengine.analysis``, attention and merging
included.

mmengine's :class:`~mmengine.analysis.FlopAnalyzer` traces a forward and
counts every op it has a handle for. Two gaps matter here:

- **Fused attention.** ``F.scaled_dot_product_attention`` has no handle,
  so a DeiT-S at 512x512 would show 22.1 instead of 31.8 GFLOPs. In a CPU
  trace (torch 2.14) it appears as the composite
  ``aten::scaled_dot_product_attention``, with or without a mask; the
  kernels it dispatches to (:data:`SDPA_OPS`) get the same handle in case
  a trace records those instead. :func:`sdpa_flop_jit` counts
  ``q @ k^T`` and ``attn @ v``: ``B * h * Nq * Nk * (d_qk + d_v)``, as
  mmengine counts the two ``matmul`` of an explicit attention (softmax and
  the mask add are not counted there either).
- **Merging.** ``gather``, ``scatter``/``scatter_add``, ``index_select``,
  ``topk``, ``sort`` and ``argsort`` are ignored or unsupported upstream, so
  token merging would look free. Here each counts one operation per
  element it moves or ranks (:data:`INDEX_OPS`): the output elements of
  ``gather``/``index_select``/``index``, the source (index) elements of
  ``scatter*``, the input elements of ``topk``/``sort``/``argsort`` (a
  lower bound for sorting, ``n log n`` compares in truth).

Elementwise arithmetic (``add``, ``mul``, ``where``, ``gelu``, softmax...)
stays uncounted, as in mmengine and fvcore, for every model alike.

Units follow mmengine/fvcore (and mmseg's ``get_flops``, the DeiT paper's
4.6 GFLOPs of DeiT-S at 224): one multiply-accumulate is one FLOP.
"""
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import get_shape

__all__ = [
    'SDPA_OPS', 'INDEX_OPS', 'sdpa_flop_jit', 'flop_handles', 'flop_analyzer',
    'count_flops', 'unsupported'
]

# Every name under which SDPA can show up in a jit trace: the composite op,
# and the kernels it dispatches to (CPU flash, CUDA flash/efficient/cuDNN,
# the math fallback). Their first three inputs are q, k, v.
SDPA_OPS = (
    'aten::scaled_dot_product_attention',
    'aten::_scaled_dot_product_flash_attention_for_cpu',
    'aten::_scaled_dot_product_flash_attention',
    'aten::_scaled_dot_product_efficient_attention',
    'aten::_scaled_dot_product_cudnn_attention',
    'aten::_scaled_dot_product_attention_math',
)

# op -> which tensor's elements are counted: ('output', i) or ('input', i).
INDEX_OPS = {
    'aten::gather': ('output', 0),
    'aten::index_select': ('output', 0),
    'aten::index': ('output', 0),
    'aten::scatter': ('input', 2),
    'aten::scatter_': ('input', 2),
    'aten::scatter_add': ('input', 2),
    'aten::scatter_add_': ('input', 2),
    'aten::scatter_reduce': ('input', 2),
    'aten::scatter_reduce_': ('input', 2),
    'aten::topk': ('input', 0),
    'aten::sort': ('input', 0),
    'aten::argsort': ('input', 0),
}

Handle = Callable[[List[Any], List[Any]], Any]


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """MACs of ``q @ k^T`` and ``attn @ v`` in one SDPA call.

    ``q``: ``(..., Nq, d_qk)``, ``k``: ``(..., Nk, d_qk)``, ``v``:
    ``(..., Nk, d_v)``; the leading dims (batch, heads) are q's.
    """
    q, k, v = (get_shape(t) for t in inputs[:3])
    if q is None or k is None or v is None:
        raise ValueError('SDPA FLOPs need complete shapes of q, k and v.')
    batch = math.prod(q[:-2])
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def _elements(which: str, index: int) -> Handle:

    def handle(inputs: List[Any], outputs: List[Any]) -> int:
        values = outputs if which == 'output' else inputs
        shape = get_shape(values[index])
        return 0 if shape is None else math.prod(shape)

    return handle


def flop_handles() -> Dict[str, Handle]:
    """The handles added to mmengine's: SDPA and the indexing/sorting ops."""
    handles = {name: sdpa_flop_jit for name in SDPA_OPS}
    handles.update({
        name: _elements(*where)
        for name, where in INDEX_OPS.items()
    })
    return handles


def flop_analyzer(model: nn.Module,
                  inputs: Union[torch.Tensor, Sequence[Any]]) -> FlopAnalyzer:
    """mmengine's ``FlopAnalyzer`` with :func:`flop_handles` and quiet
    warnings.

    Args:
        model (nn.Module): traced as ``model(*inputs)``; put it in eval
            mode first (dropout and drop-path off, as at inference).
        inputs (Tensor | sequence): a real input or the argument tuple.

    Returns:
        FlopAnalyzer: call ``.total()``, ``.total('backbone')``,
        ``.by_operator()``, ``.unsupported_ops()``...
    """
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs, )
    analyzer = FlopAnalyzer(model, tuple(inputs))
    analyzer.set_op_handle(**flop_handles())
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    return analyzer


@torch.no_grad()
def count_flops(
    model: nn.Module,
    inputs: Union[torch.Tensor, Sequence[Any]],
    modules: Sequence[str] = ('backbone', )
) -> Dict[str, float]:
    """GFLOPs (giga MACs) of one forward, whole and per submodule.

    Args:
        model (nn.Module): the model, in eval mode; for an mmseg segmentor
            ``model(x)`` is the ``mode='tensor'`` forward (backbone, neck,
            decode head), as in mmseg's ``get_flops``.
        inputs (Tensor | sequence): a real input, e.g. ``(1, 3, 512, 512)``.
        modules (sequence[str]): submodule names to report as well; names
            the model lacks are skipped.

    Returns:
        dict[str, float]: ``'model'`` and each present name of ``modules``
        -> GFLOPs, plus ``'merge'``: the part counted by
        :data:`INDEX_OPS` (the cost of token bookkeeping).
    """
    analyzer = flop_analyzer(model, inputs)
    present = dict(model.named_modules())
    out = {'model': analyzer.total() / 1e9}
    for name in modules:
        if name in present:
            out[name] = analyzer.total(name) / 1e9
    by_op = analyzer.by_operator()
    index_names = {name.split('::')[-1] for name in INDEX_OPS}
    out['merge'] = sum(v for k, v in by_op.items() if k in index_names) / 1e9
    return out


def unsupported(model: nn.Module,
                inputs: Union[torch.Tensor, Sequence[Any]],
                name: Optional[str] = None) -> Dict[str, int]:
    """Ops that were traced but not counted (for checking coverage)."""
    analyzer = flop_analyzer(model, inputs)
    analyzer.total()
    return dict(analyzer.unsupported_ops(name or ''))
