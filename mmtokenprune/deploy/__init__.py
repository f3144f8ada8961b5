"""Deployment: a compressed model to ONNX with fixed per-layer token
counts, run and checked with onnxruntime (``tools/deploy/export_onnx.py``,
the benchmark's ``--runtime onnxruntime``); and the model built for
deployment from a config, a checkpoint and an optional CDCP spec."""
from .build import build_deploy_model
from .onnx_export import (ATOL, OnnxForward, check_onnx, export_onnx,
                          flat_outputs, onnx_session)
from .symbolics import OPSET, register_symbolics

__all__ = [
    'build_deploy_model', 'ATOL', 'OnnxForward', 'check_onnx',
    'export_onnx', 'flat_outputs', 'onnx_session', 'OPSET',
    'register_symbolics'
]
