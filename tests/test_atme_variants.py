"""ATME's variants reach the plan from ``token_cfg``, are checked by name,
and are refused where they do not apply (Swin windows)."""
import pytest
import torch

from mmtokenprune.models import (PrunedSwinTransformer,
                                 PrunedVisionTransformer)
from mmtokenprune.ops import matching

VIT = dict(
    arch=dict(
        embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64),
    img_size=64,
    out_indices=(3, ),
    out_type='featmap')


def _vit(**token_cfg):
    torch.manual_seed(0)
    return PrunedVisionTransformer(
        **VIT,
        token_cfg=dict(type='ATME', keep_ratio=0.5, layers=(0, 2),
                       **token_cfg)).eval()


@pytest.mark.parametrize('variant', [
    dict(roles='checkerboard'),
    dict(neighbourhood=8),
    dict(roles='checkerboard', neighbourhood=8),
    dict(roles='quincunx'),
])
def test_variant_reaches_the_plan(monkeypatch, variant):
    seen = []
    plan = matching.atme_plan

    def spy(*args, **kwargs):
        seen.append({k: kwargs[k] for k in ('roles', 'neighbourhood')})
        return plan(*args, **kwargs)

    monkeypatch.setattr(
        'mmtokenprune.models.reducers.matching.atme_plan', spy)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = _vit(**variant)(x)[0]
    expected = dict(dict(roles='axis', neighbourhood=4), **variant)
    assert seen == [expected, expected]  # both reducing layers
    assert out.shape == (2, 32, 4, 4)  # un-merged to the full grid


@pytest.mark.parametrize('metric,width', [('keys', 16), ('tokens', 32)])
def test_metric_option_picks_what_is_compared(monkeypatch, metric, width):
    """Keys averaged over heads (head width 16) or the patch tokens (the
    layer width, 32)."""
    widths = []
    plan = matching.atme_plan

    def spy(metric_, *args, **kwargs):
        widths.append(metric_.shape[-1])
        return plan(metric_, *args, **kwargs)

    monkeypatch.setattr(
        'mmtokenprune.models.reducers.matching.atme_plan', spy)
    with torch.no_grad():
        _vit(metric=metric)(torch.randn(1, 3, 64, 64))
    assert widths == [width, width]


@pytest.mark.parametrize('key,value', [('roles', 'random'),
                                       ('neighbourhood', 6),
                                       ('metric', 'values'),
                                       ('where', 'after_block')])
def test_bad_values_name_the_key_and_the_choices(key, value):
    with pytest.raises(ValueError, match=rf'token_cfg.{key}.*one of'):
        _vit(**{key: value})


def test_swin_windows_refuse_the_variants():
    torch.manual_seed(0)
    model = PrunedSwinTransformer(
        arch=dict(embed_dims=16, depths=(2, 2), num_heads=(1, 2)),
        window_size=4, img_size=64, out_indices=(1, ), pad_small_map=True,
        token_cfg=dict(type='ATME', r=2, roles='checkerboard'))
    with pytest.raises(ValueError, match="roles='axis'"):
        model(torch.randn(1, 3, 64, 64))


@pytest.mark.parametrize('where,length', [('after_attention', 1 + 16),
                                          ('before_block', 1 + 8)])
def test_where_sets_what_the_first_attention_sees(where, length):
    """Merging at layer 0 before the block shrinks that block's attention
    input (16 patches -> 8); between attention and MLP it does not."""
    model = _vit(metric='tokens', where=where)
    seen = []
    model.layers[0].attn.register_forward_hook(
        lambda m, args, out: seen.append(args[0].shape[1]))
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))[0]
    assert seen == [length]
    assert out.shape == (2, 32, 4, 4)


def test_before_block_refuses_keys():
    with pytest.raises(ValueError, match=r"token_cfg.metric.*'tokens'"):
        _vit(where='before_block')
