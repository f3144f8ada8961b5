"""TPS (dTPS, eTPS) as token reducers of PrunedVisionTransformer."""
import copy

import pytest
import torch

from mmtokenprune.models import PrunedVisionTransformer
from mmtokenprune.models.reducers import DTPS, ETPS
from mmtokenprune.ops import TokenMap, topk_split, unmerge_tokens
from mmtokenprune.ops.schedule import Step

TINY = dict(
    arch=dict(
        embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64),
    img_size=64,
    out_indices=(1, 2, 3),
    out_type='featmap')


def build(token_cfg, **kw):
    torch.manual_seed(0)
    cfg = copy.deepcopy(TINY)
    cfg.update(kw)
    model = PrunedVisionTransformer(**cfg, token_cfg=token_cfg)
    model.init_weights()
    return model.eval()


def _topk_train_keep(self, patches, prev, attn):
    """dTPS's training decision made deterministic: the inference top-k
    (same scores, same count) inside the previous keep mask."""
    scores = self.predictor(patches, prev)[..., 0].masked_fill(
        prev == 0, -float('inf'))
    live = int(prev[0].sum())
    keep_idx, _ = topk_split(scores, live - self.num_removed(live))
    return prev.new_zeros(prev.shape).scatter_(1, keep_idx, 1.)


@pytest.mark.parametrize('type_', ['dTPS', 'eTPS'])
def test_inference_keeps_exact_counts_and_valid_maps(type_):
    model = build(dict(type=type_, keep_ratio=0.7, layers=[1, 2]))
    x = torch.randn(3, 3, 64, 80)  # 20 patches
    with torch.no_grad():
        maps = model.token_maps(x)
        outs = model(x)
    assert [m.num_tokens for m in maps] == [20, 14, 10, 10]
    for m in maps:
        assert m.assign.shape == (3, 20)
        assert int(m.assign.max()) < m.num_tokens
        assert torch.all(m.size.sum(1) == 20)
        # every reserved token still stands for its own patch
        own = m.assign.gather(1, m.anchor)
        assert torch.equal(own, torch.arange(m.num_tokens).expand(3, -1))
    assert [tuple(o.shape) for o in outs] == [(3, 32, 4, 5)] * 3
    assert model.token_counts((4, 5))[1:3] == (
        [(15, 15, 15), (11, 11, 11)] if type_ == 'dTPS' else
        [(21, 21, 15), (15, 15, 11)])


@pytest.mark.parametrize('type_', ['dTPS', 'eTPS'])
def test_training_and_inference_paths_agree_for_a_fixed_decision(
        type_, monkeypatch):
    """Masked attention over all N tokens (training) computes what the
    gathered top-k tokens compute (inference), un-merged maps included."""
    monkeypatch.setattr(DTPS, 'train_keep', _topk_train_keep)
    model = build(dict(type=type_, keep_ratio=0.6, layers=[0, 2]))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        model.train()
        trained = model(x)
        model.eval()
        inferred = model(x)
    for a, b in zip(trained, inferred):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_training_path_masks_pruned_keys_and_keeps_all_tokens():
    model = build(dict(type='dTPS', keep_ratio=0.5, layers=[1]))
    model.train()
    maps = model.token_maps(torch.randn(2, 3, 64, 64))
    after = maps[1]
    assert after.num_tokens == 16 and after.policy is not None
    pruned = after.policy == 0
    assert pruned.any()
    # pruned tokens stand for no patch, and no position points at them
    assert torch.all(after.size[pruned] == 0)
    assert not pruned.gather(1, after.assign).any()


def test_the_predictor_learns_through_the_training_path():
    model = build(dict(type='dTPS', keep_ratio=0.7, layers=[1]))
    model.train()
    out = model(torch.randn(2, 3, 64, 64))
    sum(o.square().mean() for o in out).backward()
    grads = [p.grad for n, p in model.named_parameters() if '.reducer.' in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize('cls', [DTPS, ETPS])
def test_unmerge_after_squeezing_duplicates_is_identity(cls, monkeypatch):
    """Every odd token copies its even neighbour and the odd ones are
    pruned: each squeezes into its identical twin, and un-merging gives
    the input back; the class token is untouched."""
    reducer = cls(Step(r=8), 0, num_extra_tokens=1, embed_dims=8).eval()
    patches = torch.randn(2, 8, 8).repeat_interleave(2, dim=1)  # 16
    x = torch.cat([torch.randn(2, 1, 8), patches], dim=1)
    score = torch.tensor([1., 0.]).repeat(8).expand(2, -1)
    monkeypatch.setattr(cls, 'keep_scores', lambda *a: score)
    tokens = TokenMap.identity(2, (4, 4))
    out, tokens = reducer(x, tokens, torch.randn(2, 1, 17, 4),
                          torch.randn(2, 1, 17, 4), 0.5)
    assert out.shape == (2, 9, 8)
    torch.testing.assert_close(out[:, :1], x[:, :1])
    torch.testing.assert_close(unmerge_tokens(out[:, 1:], tokens), patches)


@pytest.mark.parametrize('token_cfg, match', [
    (dict(type='dTPS', r=16, layers=[1]), r'at most 15 can be pruned'),
    (dict(type='eTPS', keep_ratio=0., layers=[1]), r'keep_ratio.*\(0, 1\]'),
    (dict(type='eTPS', keep_ratio=0.5, prop_attn=True),
     r'token_cfg.prop_attn.*eTPS'),
    (dict(type='dTPS', keep_ratio=0.5, tau=1., temprature=2.),
     r"unknown keys \['temprature'\].*\['squeeze', 'tau', 'temperature'\]"),
])
def test_bad_settings_are_named(token_cfg, match):
    with pytest.raises(ValueError, match=match):
        model = build(token_cfg)
        model(torch.randn(1, 3, 64, 64))


def test_attention_dropout_is_refused_by_name():
    # TPS on Swin: tests/test_tps_swin.py (SPViT is the one Swin refuses)
    with pytest.raises(ValueError, match='attn_drop_rate'):
        build(
            dict(type='dTPS', keep_ratio=0.5),
            layer_cfgs=dict(attn_drop_rate=0.1))
