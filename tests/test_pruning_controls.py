"""The controls of TPS's squeeze and SPViT's package token: the same
reducer with ``squeeze=False`` / ``package=False`` prunes plainly (same
keep decisions, nothing fused, no package), so "TPS ahead of plain pruning"
compares one switch."""
import copy

import pytest
import torch

from mmtokenprune.models import (PrunedSwinTransformer,
                                 PrunedVisionTransformer)
from mmtokenprune.models.reducers import DTPS, ETPS, SPViT
from mmtokenprune.ops import TokenMap
from mmtokenprune.ops.schedule import Step

TINY = dict(
    arch=dict(
        embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64),
    img_size=64,
    out_indices=(3, ),
    out_type='featmap')


def _x(B=2, N=16, C=16):
    torch.manual_seed(1)
    return torch.randn(B, N, C)


def _attn(x, E=1):
    """Queries/keys of one head over cls + patches."""
    full = torch.cat([x.mean(1, keepdim=True), x], 1).unsqueeze(1)
    return full, full, x.shape[-1]**-0.5


@pytest.mark.parametrize('cls', [DTPS, ETPS])
def test_no_squeeze_keeps_the_same_tokens_unfused(cls):
    x = _x()
    tokens = TokenMap.identity(2, (4, 4))
    out = {}
    for squeeze in (True, False):
        torch.manual_seed(0)
        reducer = cls(Step(r=6), 0, num_extra_tokens=1, embed_dims=16,
                      squeeze=squeeze).eval()
        out[squeeze] = reducer.reduce(x, tokens, _attn(x))[:2]
    (y_sq, map_sq), (y_plain, map_plain) = out[True], out[False]
    # same decision and the same hosts for dense heads ...
    assert torch.equal(map_sq.assign, map_plain.assign)
    kept = map_plain.anchor  # one kept token per region's anchor cell
    # ... but plain pruning returns the kept tokens untouched
    assert torch.equal(y_plain, x.gather(1, kept.unsqueeze(-1).expand(
        -1, -1, 16)))
    assert not torch.allclose(y_sq, y_plain)


def test_no_squeeze_training_path_leaves_rows_unchanged():
    x = _x().requires_grad_()
    torch.manual_seed(0)
    reducer = DTPS(Step(r=6), 0, embed_dims=16, squeeze=False).train()
    y, tokens, _ = reducer.reduce(x, TokenMap.identity(2, (4, 4)),
                                  (None, None, None))
    assert torch.equal(y, x)
    assert bool((tokens.policy == 0).any())  # some were pruned
    pruned = tokens.policy == 0  # pruned positions point at a kept host
    assert bool((tokens.policy.gather(1, tokens.assign)[pruned] == 1).all())


def _spvit_vit(**options):
    torch.manual_seed(0)
    return PrunedVisionTransformer(
        **copy.deepcopy(TINY),
        token_cfg=dict(type='SPViT', keep_ratio=0.6, layers=[1, 2],
                       **options)).eval()


def test_no_package_appends_nothing():
    with_pkg, without = _spvit_vit(), _spvit_vit(package=False)
    assert with_pkg.token_counts((4, 5))[-1][0] == 11  # cls + 8 + 2 pkgs
    assert without.token_counts((4, 5))[-1][0] == 9
    x = torch.randn(2, 3, 64, 80)
    without.load_state_dict(with_pkg.state_dict())
    with torch.no_grad():
        a, b = with_pkg(x)[0], without(x)[0]
    assert a.shape == b.shape == (2, 32, 4, 5)
    assert not torch.allclose(a, b)  # the package was attended to
    without.train()
    without(x)[0].sum().backward()  # the training path runs too


def test_bad_combinations_are_named():
    with pytest.raises(ValueError, match="dense='package'.*package=True"):
        SPViT(Step(keep_ratio=0.5), 0, embed_dims=16, num_heads=2,
              dense='package', package=False)
    swin = PrunedSwinTransformer(
        arch=dict(embed_dims=16, depths=(2, 2), num_heads=(1, 2)),
        window_size=4, img_size=64, out_indices=(1, ), pad_small_map=True,
        token_cfg=dict(type='eTPS', r=4, squeeze=False))
    with pytest.raises(ValueError, match='squeeze=False.*sequences'):
        swin(torch.randn(1, 3, 64, 64))
