"""tools/analysis/attention_lengths.py: both kernels compute the same
attention, and every requested length and shape is timed."""
import pytest
import torch
from test_tools import load_tool


def test_the_two_kernels_compute_the_same_attention():
    tool = load_tool('analysis/attention_lengths')
    q, k, v = (torch.randn(3, 2, 7, 5) for _ in range(3))
    mask = torch.randn(3, 2, 7, 7)
    torch.testing.assert_close(
        tool.explicit_attention(q, k, v, mask),
        tool.fused_attention(q, k, v, mask), rtol=1e-5, atol=1e-5)


def test_every_length_is_timed_at_the_requested_shape(monkeypatch):
    tool = load_tool('analysis/attention_lengths')
    seen = []

    def spy(q, k, v, mask):
        seen.append((tuple(q.shape), tuple(mask.shape)))
        return q
    monkeypatch.setitem(tool.KERNELS, 'sdpa', spy)
    rows = tool.main(['--lengths', '9', '4', '--windows', '3', '--heads',
                      '2', '--head-dims', '5', '--repeats', '2', '--calls',
                      '1'])
    assert [r['tokens'] for r in rows] == [9, 4]
    assert set(seen) == {((3, 2, 9, 5), (3, 2, 9, 9)),
                         ((3, 2, 4, 5), (3, 2, 4, 4))}
    assert len(seen) == 2 * (1 + 2)  # warm-up, then one call per repeat
    with pytest.raises(SystemExit):
        tool.main(['--lengths', '0'])
