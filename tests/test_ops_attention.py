"""fused_attention: any Q/K and V widths, same result as plain attention."""
import pytest
import torch

from mmtokenprune.ops import fused_attention


def reference(q, k, v, scale, bias):
    return ((q @ k.transpose(-2, -1)) * scale + bias).softmax(-1) @ v


@pytest.mark.parametrize('dqk, dv', [(8, 8), (5, 8), (8, 3)])
def test_matches_explicit_attention(dqk, dv):
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 10, dqk), torch.randn(2, 3, 10, dqk)
    v = torch.randn(2, 3, 10, dv)
    bias = torch.randn(2, 1, 1, 10)
    out = fused_attention(q, k, v, scale=0.3, attn_mask=bias)
    assert out.shape == (2, 3, 10, dv)
    torch.testing.assert_close(out, reference(q, k, v, 0.3, bias))
