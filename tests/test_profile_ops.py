"""tools/analysis/profile_ops.py: compute vs everything else, and what grew."""
import torch.nn as nn
from test_tools import load_tool


def test_report_splits_compute_from_the_rest_and_ranks_growth():
    tool = load_tool('analysis/profile_ops')
    ref = {'aten::addmm': 10., 'aten::index_select': 1., 'aten::copy_': 2.}
    other = {'aten::addmm': 6., 'aten::index_select': 4., 'aten::sort': 0.5,
             'aten::copy_': 2.}
    table = tool.report(['a', 'b'], [ref, other], top=2)
    assert '| a | 13.0 | 10.0 | 3.0 |' in table
    assert '| b | 12.5 | 6.0 | 6.5 |' in table
    grown = [line for line in table.splitlines() if line.startswith('| `')]
    assert grown == ['| `aten::index_select` | 1.00 | 4.00 |',
                     '| `aten::sort` | 0.00 | 0.50 |']


def test_profile_backbone_counts_the_operators_of_a_forward():
    tool = load_tool('analysis/profile_ops')
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    ops = tool.profile_backbone(model, (8, 8), batch=2, repeats=2, warmup=1)
    assert ops['aten::addmm'] > 0 and ops['aten::mkldnn_convolution'] > 0
