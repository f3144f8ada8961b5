"""One reducer contract for ViT and Swin: adding a reducer is writing one
class and registering it; its options reach it and are checked by it."""
import pytest
import torch
from mmpretrain.models import SwinTransformer, VisionTransformer

from mmtokenprune.models import (PrunedSwinTransformer,
                                 PrunedVisionTransformer)
from mmtokenprune.models.reducers import TokenReducer
from mmtokenprune.ops import plan_from_scores
from mmtokenprune.registry import TOKEN_REDUCERS

VIT = dict(
    arch=dict(
        embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64),
    img_size=64,
    out_indices=(1, 3),
    out_type='featmap')
SWIN = dict(
    arch=dict(embed_dims=16, depths=(2, 2), num_heads=(1, 2)),
    window_size=4,
    img_size=64,
    out_indices=(0, 1),
    pad_small_map=True)


class L2Merge(TokenReducer):
    """Test-only: alternate split, score = -(L2 distance) ** power."""
    options = dict(power=2.0)

    def _scores(self, a, b):
        return -torch.cdist(a, b).pow(self.power)

    def plan(self, metric, tokens, r):
        B, N, _ = metric.shape
        idx = torch.arange(N).expand(B, N)
        return plan_from_scores(
            self._scores(metric[:, ::2], metric[:, 1::2]), idx[:, ::2],
            idx[:, 1::2], r)

    def window_roles(self, window_size, device=None):
        idx = torch.arange(window_size * window_size, device=device)
        return idx[::2], idx[1::2]

    def window_scores(self, metric, src_idx, dst_idx):
        return self._scores(metric[:, src_idx], metric[:, dst_idx])


@pytest.fixture
def l2merge():
    TOKEN_REDUCERS.register_module(module=L2Merge)
    yield 'L2Merge'
    TOKEN_REDUCERS._module_dict.pop('L2Merge')


def _vit(**kw):
    torch.manual_seed(0)
    return PrunedVisionTransformer(**VIT, **kw).eval()


def _swin(**kw):
    torch.manual_seed(0)
    return PrunedSwinTransformer(**SWIN, **kw).eval()


def test_a_new_reducer_runs_on_the_vit(l2merge, monkeypatch):
    model = _vit(token_cfg=dict(type=l2merge, r=3, power=1.0))
    ref = VisionTransformer(**VIT)
    ref.eval()  # upstream's train() returns None
    ref.load_state_dict(model.state_dict())
    reducers = [layer.reducer for layer in model.layers]
    assert all(isinstance(r, L2Merge) for r in reducers[:3])
    assert reducers[0].power == 1.0  # its own option reached it
    calls = []
    monkeypatch.setattr(L2Merge, '_scores',
                        lambda self, a, b: calls.append(a.shape) or -torch.
                        cdist(a, b))
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        maps = model.token_maps(x)
        outs, refs = model(x), ref(x)
    assert len(calls) == 6  # 3 layers, 2 forwards
    assert [m.num_tokens for m in maps] == [17, 14, 11, 11]
    for ours, theirs in zip(outs, refs):
        assert ours.shape == theirs.shape == (2, 32, 4, 5)
    assert not torch.allclose(outs[1], refs[1])  # it did merge


def test_a_new_reducer_runs_on_swin(l2merge, monkeypatch):
    model = _swin(token_cfg=dict(type=l2merge, r=4, power=1.0))
    ref = SwinTransformer(**SWIN)
    ref.eval()
    ref.load_state_dict(model.state_dict())
    blocks = [b for s in model.stages for b in s.blocks]
    assert [b.merge_r for b in blocks] == [4, 4, 4, 4]
    assert blocks[0].reducer.power == 1.0
    calls = []
    scores = L2Merge.window_scores
    monkeypatch.setattr(
        L2Merge, 'window_scores',
        lambda *a: calls.append(1) or scores(*a))
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        outs, refs = model(x), ref(x)
    assert len(calls) == 4
    for ours, theirs in zip(outs, refs):
        assert ours.shape == theirs.shape
    assert not torch.allclose(outs[0], refs[0])  # it did merge


@pytest.mark.parametrize('build', [_vit, _swin])
def test_unknown_options_are_named_by_the_reducer(build, l2merge):
    with pytest.raises(ValueError, match=r"unknown keys \['foo'\] for "
                       r"type='ATME'.*its own \['metric', 'neighbourhood', 'roles',"
                       r" 'where'\]"):
        build(token_cfg=dict(type='ATME', r=2, foo=1))
    with pytest.raises(ValueError, match=r"unknown keys \['powr'\] for "
                       r"type='L2Merge'.*its own \['power'\]"):
        build(token_cfg=dict(type=l2merge, r=2, powr=1))
