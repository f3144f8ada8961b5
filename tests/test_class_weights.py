"""Class-balanced cross-entropy with void pixels, and the tool that
computes its weights from a config's label maps."""
import numpy as np
import pytest
import torch
from PIL import Image

from mmtokenprune.models.losses import ClassWeightedCrossEntropyLoss
from mmtokenprune.analysis.class_weights import (class_frequencies,
                                                weights_from)


def test_weighted_mean_over_labelled_pixels_with_void():
    logits = torch.randn(2, 3, 4, 5, requires_grad=True)
    label = torch.randint(0, 3, (2, 4, 5))
    label[0, 0] = 255  # a void row
    w = [0.5, 2.0, 4.0]
    loss = ClassWeightedCrossEntropyLoss(class_weight=w, loss_weight=2.0)(
        logits, label, ignore_index=255)
    ce = torch.nn.functional.cross_entropy(
        logits, label.clamp(max=2), reduction='none')
    valid = label != 255
    wl = torch.tensor(w)[label.clamp(max=2)] * valid
    expected = 2.0 * (wl * ce).sum() / wl.sum()
    assert torch.allclose(loss, expected)
    loss.backward()
    assert logits.grad.abs().sum() > 0


def test_weights_are_required():
    with pytest.raises(ValueError, match='class_weight` is required'):
        ClassWeightedCrossEntropyLoss(class_weight=None)


def test_median_frequency_balancing(tmp_path):
    # class 0 fills image a; class 1 a quarter of image b; class 2 absent
    a = np.zeros((4, 4), np.uint8)
    b = np.full((4, 4), 255, np.uint8)
    b[:2, :2] = 1
    b[2:, :2] = 0
    paths = []
    for name, arr in (('a', a), ('b', b)):
        Image.fromarray(arr).save(tmp_path / f'{name}.png')
        paths.append(str(tmp_path / f'{name}.png'))
    freq = class_frequencies(paths, 3)
    # class 0: 20 pixels over 32 (both images); class 1: 4 over 16
    assert np.allclose(freq, [0.625, 0.25, 0.0])
    w = weights_from(freq, 'median')  # median of the present: 0.4375
    assert np.allclose(w, [0.7, 1.75, 0.0])
    assert np.allclose(weights_from(freq, 'sqrt-median'), np.sqrt(w))
    Image.fromarray(np.full((4, 4), 7, np.uint8)).save(tmp_path / 'c.png')
    with pytest.raises(ValueError, match='label 7 is outside 0..2'):
        class_frequencies([str(tmp_path / 'c.png')], 3)


def test_tool_mode_reaches_the_weights(tmp_path, monkeypatch, capsys):
    """``--mode`` is what the printed weights were computed with."""
    import importlib.util

    from mmengine.config import Config
    spec = importlib.util.spec_from_file_location(
        'class_weights_tool', 'tools/analysis/class_weights.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    label = np.zeros((4, 4), np.uint8)
    label[:1] = 1  # class 0: 12/16, class 1: 4/16
    Image.fromarray(label).save(tmp_path / 'a.png')
    monkeypatch.setattr(tool, 'label_paths',
                        lambda cfg: [str(tmp_path / 'a.png')])
    monkeypatch.setattr(
        tool, 'load_config', lambda *a, **k: Config(
            dict(model=dict(decode_head=dict(num_classes=2)))))
    printed = {}
    for mode in ('median', 'sqrt-median'):
        tool.main(['any.py', '--mode', mode])
        printed[mode] = capsys.readouterr().out.splitlines()[-1]
    # median of (0.75, 0.25) is 0.5: weights 2/3 and 2
    assert printed['median'] == 'class_weight=[0.667, 2.000]'
    assert printed['sqrt-median'] == 'class_weight=[0.816, 1.414]'
