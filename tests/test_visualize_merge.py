"""tools/analysis/visualize_merge.py: panels the input's size, PNG out."""
import importlib.util
import os.path as osp

import numpy as np
import pytest
from PIL import Image
from test_tools import tiny_seg_config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
BACKBONE = dict(
    type='mmtokenprune.PrunedVisionTransformer',
    arch=dict(
        embed_dims=32, num_layers=3, num_heads=2, feedforward_channels=64),
    img_size=64,
    patch_size=16,
    out_type='featmap',
    out_indices=(2, ),
    init_cfg=None)


def load_tool():
    path = osp.join(REPO, 'tools', 'analysis', 'visualize_merge.py')
    spec = importlib.util.spec_from_file_location('_tools_vis', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def tool():
    return load_tool()


@pytest.fixture
def config(tmp_path):
    path = tmp_path / 'tiny.py'
    path.write_text(tiny_seg_config(str(tmp_path), BACKBONE))
    return str(path)


@pytest.mark.parametrize('setting', [
    'ATME:r=3', 'ToMe:keep_ratio=0.8',
    'eTPS:keep_ratio=0.6,layers=1/2,prop_attn=0'
])
def test_panels_have_the_input_size(tool, config, setting):
    model = tool.build_model(config, None, setting)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)  # padded
    panels = tool.merge_region_panels(model, image, [0, 2])
    if setting == 'ATME:r=3':  # 4x5 grid, r=3 at layers 0 and 1
        assert list(panels) == ['layer 0 (17 tokens)', 'layer 2 (14 tokens)']
    assert len(panels) == 2
    for panel in panels.values():
        assert panel.shape == image.shape and panel.dtype == np.uint8
        drawn = (panel == (255, 255, 0)).all(-1)
        assert drawn.any()  # merged regions have boundaries
        # elsewhere the photo is untouched
        np.testing.assert_array_equal(panel[~drawn], image[~drawn])


def test_cli_writes_png(tool, config, tmp_path):
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, 32:] = 200
    path = tmp_path / 'frame.png'
    Image.fromarray(image).save(path)
    out = tool.main([
        config, '',
        str(path), '--setting', 'ATME:r=2', '--layers', '1', '--out-dir',
        str(tmp_path / 'vis')
    ])
    with Image.open(out[0]) as png:
        assert png.format == 'PNG'


def test_errors_name_the_option(tool, config):
    with pytest.raises(ValueError, match='reduces no tokens'):
        tool.build_model(config, None, 'baseline')
    model = tool.build_model(config, None, 'ATME:r=1')
    with pytest.raises(ValueError, match='--layers'):
        tool.merge_region_panels(model, np.zeros((32, 32, 3), np.uint8), [7])
