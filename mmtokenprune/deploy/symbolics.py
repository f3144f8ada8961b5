"""ONNX translations the TorchScript exporter lacks for the merge path.

The plans sort with ``stable=True`` (ties keep sequence order) and read
role bits of integer coordinates with ``&``; torch's exporter translates
neither (``aten::sort`` only without ``stable``, ``&`` only on bools). Both
have an exact ONNX counterpart: ``TopK`` over the whole axis breaks ties by
the lower index, which is a stable sort in either direction, and
``BitwiseAnd`` (opset 18).
"""
import torch
from torch.onnx import register_custom_op_symbolic
from torch.onnx import symbolic_helper as sh
from torch.onnx._internal.torchscript_exporter import _type_utils

__all__ = ['OPSET', 'register_symbolics']

#: The opset the exporter writes (``BitwiseAnd`` needs 18).
OPSET = 18

# ONNX TopK (onnxruntime CPU) takes these; narrower ints are cast to int32.
_TOPK_TYPES = ('Float', 'Double', 'Int', 'Long')


def _sort(g, self, *args):
    """``aten::sort`` (and its ``stable`` overload) as a full-axis TopK."""
    # sort(self, dim, descending) or sort.stable(self, stable, dim, desc.)
    dim, descending = args[-2], args[-1]
    dim = sh._get_const(dim, 'i', 'dim')
    descending = sh._get_const(descending, 'b', 'descending')
    if _type_utils.JitScalarType.from_value(self).scalar_name() \
            not in _TOPK_TYPES:
        int32 = _type_utils.JitScalarType.INT.onnx_type()
        self = g.op('Cast', self, to_i=int32)
    size = g.op('Shape', self)
    axis = g.op('Constant', value_t=torch.tensor([dim]))
    k = g.op('Gather', size, axis, axis_i=0)
    return g.op(
        'TopK',
        self,
        k,
        axis_i=dim,
        largest_i=int(descending),
        sorted_i=1,
        outputs=2)


def _argsort(g, self, *args):
    """``aten::argsort`` (and its ``stable`` overload): TopK's indices."""
    return _sort(g, self, *args)[1]


def _bitwise_and(g, self, other):
    """``&`` of integer tensors (the exporter's own handles bools only)."""
    if _type_utils.JitScalarType.from_value(self).scalar_name() == \
            'Bool':
        return g.op('And', self, other)
    other = g.op(
        'Cast', other,
        to_i=_type_utils.JitScalarType.from_value(self).onnx_type())
    return g.op('BitwiseAnd', self, other)


def register_symbolics(opset: int = OPSET) -> None:
    """Register the translations above for ``opset`` (idempotent)."""
    register_custom_op_symbolic('aten::sort', _sort, opset)
    register_custom_op_symbolic('aten::argsort', _argsort, opset)
    register_custom_op_symbolic('aten::__and_', _bitwise_and, opset)
    register_custom_op_symbolic('aten::bitwise_and', _bitwise_and, opset)
