"""A model to ONNX with fixed shapes, and onnxruntime to run and check it.

Token counts of every layer follow from the input shape and the schedule
(``r`` or ``keep_ratio`` per layer), so a model exported for one input
shape has fixed per-layer token counts: plans become index arithmetic in
the graph (sorts, gathers, scatters), nothing data-dependent in shape.
Export uses torch's TorchScript exporter (``dynamo=False``) with the
translations of :mod:`.symbolics`; the whole ``forward`` is traced at the
given shape, so export one file per input shape.
"""
import io
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from .symbolics import OPSET, register_symbolics

__all__ = [
    'ATOL', 'flat_outputs', 'export_onnx', 'onnx_session', 'OnnxForward',
    'check_onnx'
]

#: Largest absolute difference allowed between onnxruntime and PyTorch.
ATOL = 1e-4


def _require(name: str):
    try:
        return __import__(name)
    except ImportError as err:
        raise ImportError(
            f'{name} is needed to export/run ONNX models: pip install '
            f'{name} (tested versions in requirements.txt).') from err


def flat_outputs(out) -> List[Tensor]:
    """A forward's tensors in order (tuples and lists flattened)."""
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in flat_outputs(o)]
    raise TypeError(f'cannot export an output of type {type(out).__name__}'
                    '; return tensors (or tuples/lists of them).')


def export_onnx(module: nn.Module,
                x: Tensor,
                f: Union[str, io.BytesIO, None] = None,
                opset: int = OPSET) -> bytes:
    """Export ``module(x)`` to ONNX at ``x``'s shape.

    Args:
        module (nn.Module): in eval mode (a backbone, or a segmentor whose
            ``forward(x)`` returns its logits).
        x (Tensor): an input of the exported shape ``(B, 3, H, W)``.
        f (str | BytesIO, optional): where to write it too. Defaults to
            None.
        opset (int): ONNX opset. Defaults to :data:`OPSET`.

    Returns:
        bytes: the ONNX model; input ``input``, outputs ``out0, out1...``.
    """
    _require('onnx')
    if module.training:
        raise ValueError('export a model in eval mode (model.eval()).')
    register_symbolics(opset)
    with torch.no_grad():
        num_out = len(flat_outputs(module(x)))
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            module, (x, ),
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=['input'],
            output_names=[f'out{i}' for i in range(num_out)])
    data = buf.getvalue()
    if isinstance(f, str):
        with open(f, 'wb') as fh:
            fh.write(data)
    elif f is not None:
        f.write(data)
    return data


def onnx_session(model: Union[str, bytes], threads: Optional[int] = None):
    """An onnxruntime CPU session of ``model`` (a file or bytes).

    Args:
        model (str | bytes): the ONNX model.
        threads (int, optional): intra-op threads. Defaults to None:
            torch's current number, so both runtimes use the same.
    """
    ort = _require('onnxruntime')
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(
        model, sess_options=opts, providers=['CPUExecutionProvider'])


class OnnxForward:
    """``module(x)`` as an onnxruntime call: exported at ``x``'s shape,
    then each call runs the session on ``x`` (numpy, bound once).

    Args:
        module (nn.Module): the model to export (eval mode).
        x (Tensor): the input (CPU).
        threads (int, optional): see :func:`onnx_session`.
    """

    def __init__(self,
                 module: nn.Module,
                 x: Tensor,
                 threads: Optional[int] = None):
        if x.device.type != 'cpu':
            raise ValueError(f"runtime 'onnxruntime' runs on the CPU; got "
                             f'an input on {x.device}.')
        self.session = onnx_session(export_onnx(module, x), threads)
        self.feed = {'input': x.numpy()}

    def __call__(self) -> List[np.ndarray]:
        return self.session.run(None, self.feed)


def check_onnx(module: nn.Module,
               model: Union[str, bytes],
               inputs: Sequence[Tensor],
               atol: float = ATOL,
               threads: Optional[int] = None) -> Dict:
    """Run the ONNX model and ``module`` on each input and compare.

    Args:
        module (nn.Module): the PyTorch model (eval mode).
        model (str | bytes): its ONNX export.
        inputs (Sequence[Tensor]): inputs of the exported shape.
        atol (float): largest absolute difference allowed.
            Defaults to :data:`ATOL`.
        threads (int, optional): see :func:`onnx_session`.

    Returns:
        dict: ``max_abs_diff`` (over inputs and outputs; inf where a
        value is NaN or inf), ``ok``
        (``max_abs_diff <= atol``), ``atol``, ``outputs`` (the shapes).
    """
    session = onnx_session(model, threads)
    worst, shapes = 0., None
    for x in inputs:
        with torch.no_grad():
            ref = [t.float().numpy() for t in flat_outputs(module(x))]
        got = session.run(None, {'input': x.numpy()})
        if [r.shape for r in ref] != [g.shape for g in got]:
            raise AssertionError(
                f'ONNX outputs {[g.shape for g in got]} differ in shape '
                f'from PyTorch {[r.shape for r in ref]}.')
        shapes = [tuple(r.shape) for r in ref]
        for r, g in zip(ref, got):
            diff = np.abs(r - g)  # NaN anywhere (either side) fails
            worst = max(worst, float(diff.max()) if np.isfinite(diff).all()
                        else float('inf'))
    return dict(max_abs_diff=worst, ok=worst <= atol, atol=atol,
                outputs=shapes)
