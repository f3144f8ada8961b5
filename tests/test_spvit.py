"""SPViT (multi-head selector + package token) as a token reducer."""
import copy

import pytest
import torch
from test_tps import TINY  # the same tiny ViT as the TPS tests

from mmtokenprune.models import PrunedVisionTransformer
from mmtokenprune.models.reducers import SPViT
from mmtokenprune.ops import TokenMap, unmerge_tokens
from mmtokenprune.ops.schedule import Step


def build(**token_cfg):
    torch.manual_seed(0)
    model = PrunedVisionTransformer(
        **copy.deepcopy(TINY),
        token_cfg=dict(type='SPViT', keep_ratio=0.6, layers=[1, 2],
                       **token_cfg))
    model.init_weights()
    return model.eval()


def _reducer(**options):
    torch.manual_seed(0)
    return SPViT(
        Step(keep_ratio=0.5), 0, num_extra_tokens=1, embed_dims=16,
        num_heads=2, **options)


@pytest.mark.parametrize('dense', ['last', 'package'])
def test_inference_keeps_exact_counts_and_full_maps(dense):
    model = build(dense=dense)
    x = torch.randn(3, 3, 64, 80)  # 20 patches
    with torch.no_grad():
        maps = model.token_maps(x)
        outs = model(x)
    assert [m.num_tokens for m in maps] == [20, 12, 8, 8]
    # cls + patches + one package per pruning stage
    assert model.token_counts((4, 5)) == [(21, 21, 21), (14, 14, 14),
                                          (11, 11, 11), (11, 11, 11)]
    assert [tuple(o.shape) for o in outs] == [(3, 32, 4, 5)] * 3
    for m in maps:
        live = m.assign < m.num_tokens
        assert torch.all(m.size.sum(1) == live.sum(1))


@pytest.mark.parametrize('dense', ['last', 'package'])
def test_dropped_positions_show_their_feature_or_the_package(dense):
    reducer = _reducer(dense=dense).eval()
    x = torch.randn(2, 1 + 16 + 1, 16)  # cls, 16 patches, an old package
    tokens = TokenMap.identity(2, (4, 4))
    with torch.no_grad():
        out, tokens = reducer(x, tokens)
    assert out.shape == (2, 1 + 8 + 2, 16)
    torch.testing.assert_close(out[:, :1], x[:, :1])  # cls untouched
    torch.testing.assert_close(out[:, 9:10], x[:, 17:])  # old package too
    full = unmerge_tokens(out[:, 1:9], tokens)
    patches = x[:, 1:17]
    kept = tokens.assign < 8
    torch.testing.assert_close(full[kept], patches[kept])
    dropped = ~kept
    assert dropped.sum() == 16
    if dense == 'last':
        torch.testing.assert_close(full[dropped], patches[dropped])
    else:  # the package of training: the dropped tokens weighted by
        # their keep probability, scored with the old package in view
        _, scores = reducer.selector(x[:, 1:])
        package = torch.einsum('bn,bnc->bc',
                               dropped.float() * scores[:, :16, 0], patches)
        torch.testing.assert_close(out[:, 10], package)
        torch.testing.assert_close(full[dropped],
                                   package.repeat_interleave(8, 0))


def test_training_package_is_the_weighted_sum_of_the_dropped_tokens():
    reducer = _reducer().train()
    x = torch.randn(2, 1 + 16, 16)
    tokens = TokenMap.identity(2, (4, 4))
    out, after = reducer(x, tokens)
    assert out.shape == (2, 1 + 16 + 1, 16)  # nothing removed in training
    drop = 1. - after.policy
    assert drop.sum() > 0
    _, scores = reducer.selector(x[:, 1:], torch.ones(2, 16))
    expected = torch.einsum('bn,bnc->bc', drop * scores[..., 0], x[:, 1:])
    torch.testing.assert_close(out[:, -1], expected)
    # dropped tokens stand for no patch; their positions look aside
    assert torch.all(after.size[drop.bool()] == 0)
    assert torch.all(after.assign[drop.bool()] >= 16)


@pytest.mark.parametrize('training', [True, False])
def test_the_selector_sees_the_earlier_packages(training):
    # at a second stage the original scores x[:, 1:] (patches and earlier
    # packages) with the previous decision padded with ones
    reducer = _reducer().train(training)
    x = torch.randn(2, 1 + 16 + 1, 16)  # cls, 16 patches, an old package
    tokens = TokenMap.identity(2, (4, 4))
    prev = (torch.rand(2, 16) > 0.3).float()
    if training:
        tokens = TokenMap(tokens.assign, tokens.size, tokens.anchor,
                          tokens.grid, policy=prev)
    seen = []
    reducer.selector.register_forward_hook(
        lambda mod, args, out: seen.append((args, out)))
    with torch.no_grad():
        out, after = reducer(x, tokens)
    (inputs, policy), (_, scores) = seen[0]
    torch.testing.assert_close(inputs, x[:, 1:])
    if training:
        torch.testing.assert_close(
            policy, torch.cat([prev, torch.ones(2, 1)], dim=1))
        drop = prev - after.policy
    else:
        assert policy is None  # the kept tokens only: all count
        drop = (after.assign >= after.num_tokens).float()
    # the new package weighs the dropped patches by those scores
    torch.testing.assert_close(
        out[:, -1], torch.einsum('bn,bnc->bc', drop * scores[:, :16, 0],
                                 x[:, 1:17]))


def _noise(monkeypatch, keep):
    """Gumbel noise that makes the sample keep exactly ``keep`` (bool,
    ``(B, N)``; tokens past it, the packages, kept)."""

    def exponential(like):
        e = torch.ones_like(like)
        k = torch.ones(like.shape[:2], dtype=torch.bool)
        k[:, :keep.shape[1]] = keep
        e[..., 0] = torch.where(k, 1e-30, 1e30)  # noise +69 / -69
        e[..., 1] = torch.where(k, 1e30, 1e-30)
        return e

    monkeypatch.setattr('mmtokenprune.ops.gumbel._sample_exponential',
                        exponential)


def test_sample_keeps_what_was_sampled(monkeypatch):
    reducer = _reducer(sample=True).eval()
    x = torch.randn(1, 1 + 16, 16)
    with torch.no_grad():
        _, scores = reducer.selector(x[:, 1:])
    likeliest = scores[0, :, 0].argmax().item()
    keep = torch.zeros(1, 16, dtype=torch.bool)
    keep[0, [(likeliest + 1) % 16, (likeliest + 5) % 16]] = True
    _noise(monkeypatch, keep)
    with torch.no_grad():
        _, tokens = reducer(x, TokenMap.identity(1, (4, 4)))
    # the likeliest token was not sampled and is not forced back in
    assert tokens.anchor[0].tolist() == keep[0].nonzero()[:, 0].tolist()
    # an empty sample keeps the likeliest token alone
    _noise(monkeypatch, torch.zeros(1, 16, dtype=torch.bool))
    with torch.no_grad():
        _, tokens = reducer(x, TokenMap.identity(1, (4, 4)))
    assert tokens.anchor.tolist() == [[likeliest]]


def test_the_selector_learns_and_extra_tokens_are_kept_in_training():
    model = build()
    model.train()
    maps = model.token_maps(torch.randn(2, 3, 64, 64))
    assert maps[2].policy.shape == (2, 16)
    out = model(torch.randn(2, 3, 64, 64))
    sum(o.square().mean() for o in out).backward()
    grads = [p.grad for n, p in model.named_parameters() if '.selector.' in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match=r"token_cfg.dense.*\['last', "
                       r"'package'\].*'all'"):
        build(dense='all')
    model = build(sample=True)
    with pytest.raises(ValueError, match='sample=True.*batch size 1'):
        model(torch.randn(2, 3, 64, 64))
    with torch.no_grad():
        maps = model.token_maps(torch.randn(1, 3, 64, 64))
    assert maps[-1].num_tokens >= 1


def test_flops_are_counted_through_a_trace():
    """mmengine counts FLOPs by jit tracing: every op of the reducer must
    be traceable, and the selector's cost is counted."""
    from mmtokenprune.analysis import count_flops
    model = build()
    plain = PrunedVisionTransformer(**copy.deepcopy(TINY)).eval()
    x = torch.randn(1, 3, 64, 64)
    assert 0 < count_flops(model, x)['model'] < count_flops(plain, x)['model']
