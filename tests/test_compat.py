"""mmtokenprune.compat: mmcv-lite fallbacks and weights_only loading."""
import importlib.util
import io
import os.path as osp
import pickle
import subprocess
import sys

import mmcv
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import HistoryBuffer

from mmtokenprune import compat
from mmtokenprune.compat import applied  # noqa: F401  (applies the fixes)
from mmtokenprune.compat import mmcv_ops as mmcv_fallback_ops

fallback_only = pytest.mark.skipif(
    compat.mmcv_ops_compiled(), reason='full mmcv: no fallback installed')


def _mmcv_point_sample_file():
    """Load mmcv's own (pure python) ``point_sample`` module by path."""
    path = osp.join(osp.dirname(mmcv.__file__), 'ops', 'point_sample.py')
    if not osp.isfile(path):
        return None
    spec = importlib.util.spec_from_file_location('_mmcv_point_sample', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mmseg_models_imports():
    import mmseg.models
    from mmseg.models.losses import FocalLoss
    from mmseg.models.utils import point_sample  # noqa: F401
    assert mmseg.models.EncoderDecoder is not None and FocalLoss


def test_active_path_is_logged_once_in_a_fresh_interpreter():
    code = ('import mmtokenprune.registry; from mmtokenprune.compat import '
            'apply_compat; apply_compat(); apply_compat(); import mmcv.ops; '
            'print("OPS", mmcv.ops.__name__)')
    proc = subprocess.run([sys.executable, '-c', code],
                          capture_output=True,
                          text=True,
                          timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert 'OPS mmcv.ops' in proc.stdout
    assert out.count('mmtokenprune: ') == 1, out[-3000:]
    expected = 'compiled mmcv.ops' if compat.mmcv_ops_compiled() else \
        'pure-torch fallbacks'
    assert expected in out


@fallback_only
def test_fallback_module_is_installed_once():
    import mmseg.models.decode_heads.cc_head as cc_head
    import mmseg.models.decode_heads.psa_head as psa_head
    ops = sys.modules['mmcv.ops']
    assert compat.uses_mmcv_ops_fallback() and mmcv.ops is ops
    compat.apply_compat()
    compat._install_mmcv_ops_fallback()
    assert sys.modules['mmcv.ops'] is ops
    assert ops.point_sample is mmcv_fallback_ops.point_sample
    # mmseg's guarded imports fall back to None, as they expect.
    assert psa_head.PSAMask is None and cc_head.CrissCrossAttention is None


@fallback_only
def test_missing_op_says_full_mmcv_is_needed():
    with pytest.raises(ModuleNotFoundError, match='needs full mmcv'):
        from mmcv.ops import nms  # noqa: F401
    with pytest.raises(ModuleNotFoundError, match='mmcv.ops.roi_align'):
        mmcv.ops.roi_align
    # Private and dunder probes (hasattr, IPython, inspect) stay quiet.
    assert not hasattr(mmcv.ops, '__path__')
    assert getattr(mmcv.ops, '_repr_html_', None) is None


@pytest.mark.parametrize('align_corners', [False, True])
def test_point_sample_matches_bilinear_reference(align_corners):
    torch.manual_seed(0)
    feat = torch.randn(2, 3, 5, 7)
    points = torch.rand(2, 11, 2)
    out = mmcv_fallback_ops.point_sample(feat, points, align_corners)
    assert out.shape == (2, 3, 11)
    torch.testing.assert_close(
        out, _bilinear(feat, points, align_corners), rtol=1e-5, atol=1e-5)
    grid = mmcv_fallback_ops.point_sample(feat, points.view(2, 1, 11, 2),
                                          align_corners)
    torch.testing.assert_close(grid, out.unsqueeze(2))


def test_point_sample_hits_pixel_centres_and_matches_mmcv():
    feat = torch.arange(12.).view(1, 1, 3, 4)
    rows, cols = torch.meshgrid(
        torch.arange(3.), torch.arange(4.), indexing='ij')
    centres = torch.stack([(cols + 0.5) / 4, (rows + 0.5) / 3], dim=-1)
    out = mmcv_fallback_ops.point_sample(feat, centres.view(1, -1, 2))
    torch.testing.assert_close(out, feat.view(1, 1, -1))
    reference = _mmcv_point_sample_file()
    if reference is not None:
        points = torch.rand(1, 9, 2)
        torch.testing.assert_close(
            mmcv_fallback_ops.point_sample(feat, points),
            reference.point_sample(feat, points))


def _bilinear(feat, points, align_corners):
    """Bilinear sampling with zero padding, written out per point."""
    n, c, h, w = feat.shape
    out = torch.zeros(n, c, points.shape[1])
    for b in range(n):
        for k, (px, py) in enumerate(points[b].tolist()):
            if align_corners:
                x, y = px * (w - 1), py * (h - 1)
            else:
                x, y = px * w - 0.5, py * h - 0.5
            x0, y0 = int(np.floor(x)), int(np.floor(y))
            for xi, yi in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1,
                                                                  y0 + 1)):
                if 0 <= xi < w and 0 <= yi < h:
                    weight = (1 - abs(x - xi)) * (1 - abs(y - yi))
                    out[b, :, k] += weight * feat[b, :, yi, xi]
    return out


def _focal_reference(pred, target, gamma, alpha, weight=None):
    """Element-wise sigmoid focal loss, (N, C), as mmcv's kernel defines."""
    prob = torch.sigmoid(pred.double())
    loss = torch.zeros_like(prob)
    for n, c in np.ndindex(*pred.shape):
        p = prob[n, c]
        if target[n] == c:
            loss[n, c] = -alpha * (1 - p)**gamma * torch.log(p)
        else:
            loss[n, c] = -(1 - alpha) * p**gamma * torch.log(1 - p)
        if weight is not None:
            loss[n, c] *= weight[target[n]]
    return loss.float()


@pytest.mark.parametrize('reduction', ['none', 'mean', 'sum'])
def test_sigmoid_focal_loss_matches_formula(reduction):
    torch.manual_seed(0)
    pred = torch.randn(6, 4) * 3
    target = torch.tensor([0, 1, 2, 3, 4, 1])  # 4 = no positive class
    ref = _focal_reference(pred, target, 2.0, 0.25)
    expected = {
        'none': ref,
        'mean': ref.sum() / 6,
        'sum': ref.sum()
    }[reduction]
    loss = mmcv_fallback_ops.sigmoid_focal_loss(pred, target, 2.0, 0.25, None,
                                                reduction)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_sigmoid_focal_loss_weight_and_gradient():
    torch.manual_seed(1)
    pred = torch.randn(5, 3, requires_grad=True)
    target = torch.tensor([0, 2, 1, 1, 0])
    weight = torch.tensor([0.5, 2.0, 1.5])
    loss = mmcv_fallback_ops.sigmoid_focal_loss(pred, target, 1.5, 0.4, weight,
                                                'none')
    torch.testing.assert_close(
        loss,
        _focal_reference(pred.detach(), target, 1.5, 0.4, weight),
        rtol=1e-5,
        atol=1e-6)
    loss.sum().backward()
    # mmcv's hand-written backward (sigmoid_focal_loss_cuda_kernel.cuh).
    p = torch.sigmoid(pred.detach())
    pos = F.one_hot(target, 3).float()
    grad_p = -0.4 * (1 - p)**1.5 * (1 - p - 1.5 * p * torch.log(p))
    grad_n = -0.6 * p**1.5 * (1.5 * (1 - p) * torch.log(1 - p) - p)
    expected = (pos * grad_p + (1 - pos) * grad_n) * weight[target, None]
    torch.testing.assert_close(pred.grad, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match='long target'):
        mmcv_fallback_ops.sigmoid_focal_loss(pred, target.float())


def test_mmseg_focal_loss_paths_agree():
    from mmseg.models.losses import focal_loss
    from mmseg.registry import MODELS
    torch.manual_seed(2)
    pred = torch.randn(2, 4, 3, 3)
    label = torch.randint(0, 4, (2, 3, 3))
    one_hot_map = F.one_hot(label, 4).permute(0, 3, 1, 2)
    # On CPU mmseg 1.2.2's FocalLoss only handles one-hot targets (its
    # class-index branch slices `[:, num_classes]`); it builds and runs.
    loss = MODELS.build(dict(type='FocalLoss', gamma=2.0, alpha=0.5))
    value = loss(pred, one_hot_map)
    assert value.ndim == 0 and torch.isfinite(value) and value > 0
    # mmseg's CUDA-path wrapper calls mmcv.ops.sigmoid_focal_loss; its
    # pure-python path must give the same numbers.
    flat = pred.permute(0, 2, 3, 1).reshape(-1, 4)
    target = label.view(-1)
    one_hot = F.one_hot(target, 4)
    wrapped = focal_loss.sigmoid_focal_loss(flat, target, one_hot, alpha=0.5)
    plain = focal_loss.py_sigmoid_focal_loss(flat, one_hot, alpha=0.5)
    torch.testing.assert_close(wrapped, plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(value, plain, rtol=1e-5, atol=1e-6)


def test_mmcv_version_range_is_checked(monkeypatch):
    for bad in ('2.2.0', '1.7.2'):
        monkeypatch.setattr(mmcv, '__version__', bad)
        with pytest.raises(ImportError) as err:
            compat._check_mmcv_version()
        assert f'mmcv=={bad} is installed' in str(err.value)
        assert 'mmcv>=2.0.0,<2.2.0' in str(err.value)
    monkeypatch.setattr(mmcv, '__version__', '2.1.0')
    compat._check_mmcv_version()


def _runner_like_checkpoint():
    buffer = HistoryBuffer()
    for value in (1.0, np.float64(2.5), 4):
        buffer.update(value)
    model = torch.nn.Linear(3, 2)
    return model, dict(
        meta=dict(
            iter=np.int64(7),
            loss=np.float64(0.5),
            flag=np.bool_(True),
            hist=np.arange(4, dtype=np.int64),
            ratio=np.ones((2, 2), dtype=np.float32)),
        state_dict=model.state_dict(),
        message_hub=dict(log_scalars={'train/loss': buffer}))


def test_runner_checkpoint_loads_with_default_weights_only(tmp_path):
    from mmengine.runner import load_checkpoint
    model, ckpt = _runner_like_checkpoint()
    path = str(tmp_path / 'ckpt.pth')
    torch.save(ckpt, path)
    loaded = torch.load(path)  # default weights_only=True on torch >= 2.6
    meta = loaded['meta']
    assert meta['iter'] == 7 and meta['loss'] == 0.5 and meta['flag']
    np.testing.assert_array_equal(meta['hist'], np.arange(4))
    assert meta['ratio'].dtype == np.float32
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer)
    assert buffer.mean() == pytest.approx(2.5) and buffer.current() == 4.0
    assert buffer.statistics('max') == 4.0

    fresh = torch.nn.Linear(3, 2)
    via_mmengine = load_checkpoint(fresh, path, map_location='cpu')
    assert via_mmengine['meta']['iter'] == 7
    torch.testing.assert_close(fresh.weight, model.weight)


class _UnsafeThing:
    """A class no allow-list knows about."""

    def __init__(self):
        self.payload = 1


class _GetattrAbuse:
    """Pickles to ``getattr(numpy.ndarray, 'tofile')``."""

    def __reduce__(self):
        return getattr, (np.ndarray, 'tofile')


@pytest.mark.parametrize('obj, match', [
    (_UnsafeThing(), 'Unsupported global'),
    (_GetattrAbuse(), 'getattr only for HistoryBuffer'),
])
def test_unsafe_globals_are_still_rejected(obj, match):
    buf = io.BytesIO()
    torch.save({'meta': {'x': obj}}, buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError, match=match):
        torch.load(buf)
    assert getattr not in torch.serialization.get_safe_globals()
