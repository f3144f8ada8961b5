"""PrunedSwinTransformer: upstream equivalence, in-window merging, CDCP."""
import copy
from collections import OrderedDict

import pytest
import torch
from mmpretrain.models.backbones import SwinTransformer

from mmtokenprune.models import PrunedSwinTransformer
from mmtokenprune.ops import PruneSpec
from mmtokenprune.ops.window import (WindowGrid, window_partition,
                                     window_reverse)

# Four stages so every stage output is checked; window 4, shifts in every
# second block; 64x64 images give 16, 8, 4 and 2 (padded) token grids.
TINY = dict(
    arch=dict(embed_dims=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4)),
    window_size=4,
    img_size=64,
    out_indices=(0, 1, 2, 3),
    pad_small_map=True,
    drop_path_rate=0.)
ATME = dict(type='ATME', r=4)


def _pair(token_cfg=None, channel_cfg=None, **kw):
    torch.manual_seed(0)
    ref = SwinTransformer(**{**TINY, **kw})
    for name, p in ref.named_parameters():  # upstream inits the bias to 0
        if name.endswith('relative_position_bias_table'):
            p.data.normal_(std=0.5)
    model = PrunedSwinTransformer(
        **{
            **TINY,
            **kw
        }, token_cfg=token_cfg, channel_cfg=channel_cfg)
    missing, unexpected = model.load_state_dict(ref.state_dict(), False)
    gates = [k for k in missing if k.endswith('.logits')]
    predictors = [k for k in missing if '.reducer.' in k]  # dTPS
    assert unexpected == [] and len(gates) + len(predictors) == len(missing)
    assert bool(gates) == bool(channel_cfg)
    ref.eval()
    return ref, model.eval()


@pytest.mark.parametrize('hw', [(64, 64), (61, 45), (37, 50)])
@pytest.mark.parametrize('pad_small_map', [True, False])
def test_off_equals_upstream(hw, pad_small_map):
    if not pad_small_map:
        hw = (128 + hw[0] - 64, 128 + hw[1] - 64)  # keep stage 3 >= window
    ref, model = _pair(pad_small_map=pad_small_map)
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        outs, refs = model(x), ref(x)
    assert len(outs) == 4
    for out, expected in zip(outs, refs):
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_same_state_dict_keys_as_upstream_for_archs():
    for arch in ('tiny', 'base'):  # 'small' is 'tiny' with 18 blocks
        kw = dict(arch=arch, out_indices=(0, 1, 2, 3))
        keys = set(SwinTransformer(**kw).state_dict())
        assert set(PrunedSwinTransformer(**kw).state_dict()) == keys


def test_old_checkpoint_keys_are_converted():
    ref, model = _pair()
    state = ref.state_dict()
    state['stages.0.blocks.1.attn.attn_mask'] = torch.zeros(1)
    old = PrunedSwinTransformer(**{**TINY, 'out_indices': (3, )})
    state = OrderedDict(
        (k, v) for k, v in state.items() if not k.startswith('norm'))
    state['norm.weight'] = torch.full((128, ), 2.)
    state['norm.bias'] = torch.zeros(128)
    state._metadata = OrderedDict({'': {'version': 1}})
    old.load_state_dict(state, strict=True)  # 'norm.' -> 'norm3.'
    assert torch.all(old.norm3.weight == 2.)


def test_merge_path_at_r0_equals_the_plain_window_path():
    _, model = _pair()
    for block in model.blocks()[:4]:  # shift and no shift, 2 widths
        C = block.attn.w_msa.embed_dims
        x = torch.randn(2, 11 * 6, C)
        with torch.no_grad():
            torch.testing.assert_close(
                block.merged_forward(x, (11, 6), 0),
                block(x, (11, 6)),
                atol=1e-5,
                rtol=1e-5)


@pytest.mark.parametrize('method', ['ATME', 'ToMe'])
@pytest.mark.parametrize('index,hw', [(0, (16, 16)), (1, (16, 16)),
                                      (1, (10, 8))])
def test_merging_duplicates_is_exact(method, index, hw):
    """With zero relative-position bias, a window whose merged cells hold
    identical tokens gives exactly the unmerged block's output: checks
    proportional attention, the shift mask at anchors, padding, un-merge.
    """
    _, model = _pair(token_cfg=dict(type=method, r=2, layers=[index]))
    block = model.blocks()[index]
    block.attn.w_msa.relative_position_bias_table.data.zero_()
    grid = block.window_grid(hw)
    # in every window, cell 1 copies cell 0 and cell 3 copies cell 2 (one
    # shift region each); windows whose first row is padding (10 rows pad
    # to 12, shifted by 2) merge two pairs of identical padding instead
    x = torch.randn(2, hw[0] * hw[1], 16)
    w = window_partition(x, grid)
    w[:, 1] = w[:, 0]
    w[:, 3] = w[:, 2]
    x = window_reverse(w, grid)
    with torch.no_grad():
        merged = block(x, hw)
        full = block.merged_forward(x, hw, 0)
    torch.testing.assert_close(merged, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('token_cfg,hw',
                         [(ATME, (375, 500)),
                          (dict(type='ToMe', r=7), (187, 250))])
def test_merging_keeps_shapes_on_odd_inputs(token_cfg, hw):
    ref, model = _pair(token_cfg=token_cfg)
    x = torch.randn(1, 3, *hw)  # 375x500: grids 94x125 ... 12x16
    with torch.no_grad():
        outs, refs = model(x), ref(x)
    for out, expected in zip(outs, refs):
        assert out.shape == expected.shape
        assert torch.isfinite(out).all()
    # merging changes the features, but not beyond recognition
    cos = torch.nn.functional.cosine_similarity(
        outs[0].flatten(), refs[0].flatten(), dim=0)
    assert 0.5 < cos < 1 - 1e-6


@pytest.mark.parametrize('token_cfg', [
    dict(type='ToMe', r=6),
    dict(type='eTPS', r=6, prop_attn=False),
    dict(type='dTPS', r=6, prop_attn=False)
])
def test_batch_items_are_independent(token_cfg):
    _, model = _pair(token_cfg=token_cfg)
    x = torch.randn(3, 3, 45, 61)
    with torch.no_grad():
        batch = model(x)
        single = [model(x[i:i + 1]) for i in range(3)]
    for s, out in enumerate(batch):
        torch.testing.assert_close(
            out, torch.cat([o[s] for o in single]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('with_cp', [False, True])
def test_gradients_flow_and_checkpointing_matches(with_cp):
    _, model = _pair(
        token_cfg=ATME, channel_cfg=dict(type='CDCP'), with_cp=with_cp)
    _, plain = _pair(token_cfg=ATME, channel_cfg=dict(type='CDCP'))
    model.loss_owner = plain.loss_owner = 'this test'  # adds the budget
    model.train()
    plain.train()
    x = torch.randn(2, 3, 45, 61)
    outs = model(x)
    torch.testing.assert_close(outs[0], plain(x)[0])
    (sum(o.mean() for o in outs) +
     model.compression_losses()['loss_cdcp_budget']).backward()
    missing = [
        n for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.any())
    ]
    assert missing == []


def _close_some_gates(model):
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if name.endswith('.logits'):
            p.data.copy_(torch.randn_like(p))


@pytest.mark.parametrize('token_cfg', [None, ATME])
def test_cdcp_gated_equals_exported(token_cfg, tmp_path):
    _, gated = _pair(token_cfg=token_cfg, channel_cfg=dict(type='CDCP'))
    _close_some_gates(gated)
    spec, state = gated.export_pruned()
    assert any(d.qk_dims < 8 or d.ffn_dims < 64 for d in spec.layers)
    assert spec.arch['num_heads'] == [1, 2, 2, 4]
    path = str(tmp_path / 'spec.json')
    spec.dump(path)
    small = PrunedSwinTransformer(
        **TINY, token_cfg=token_cfg, channel_cfg=dict(spec=path))
    small.load_state_dict(state, strict=True)
    small.eval()
    n_small = sum(p.numel() for p in small.parameters())
    assert n_small < sum(p.numel() for p in gated.parameters())
    x = torch.randn(2, 3, 45, 61)
    with torch.no_grad():
        for a, b in zip(gated(x), small(x)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def _ffn_tokens(model, x):
    seen = []
    hooks = [
        b.ffn.register_forward_hook(
            lambda m, args, out: seen.append(args[0].shape[:2].numel()))
        for b in model.blocks()
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize('hw', [(64, 64), (57, 41)])
def test_token_counts_match_forward_and_r_is_capped(hw):
    # ATME with ws=4 can always merge 4; r=5 fits only windows without
    # narrow padding strips or shift regions, elsewhere 4 are merged
    _, model = _pair(token_cfg=dict(type='ATME', r=5))
    counts = model.token_counts((-(-hw[0] // 4), -(-hw[1] // 4)))
    mlp_tokens = _ffn_tokens(model, torch.randn(2, 3, *hw))  # batch of 2
    assert [2 * c[2] for c in counts] == mlp_tokens
    assert {c[1] for c in counts} <= {16 - 5, 16 - 4}
    if hw == (64, 64):
        assert counts[0][1] == 11  # no padding, no shift: r=5 as asked


def test_flops_ratio_counts_gates_and_merging():
    _, model = _pair(channel_cfg=dict(type='CDCP'))
    # soft widths: every open gate counts sigmoid(gate_init=3) of a channel
    assert float(model.flops_ratio().detach()) == pytest.approx(
        torch.tensor(3.).sigmoid().item(), abs=1e-4)
    _close_some_gates(model)
    assert float(model.flops_ratio().detach()) < 0.9
    _, merged = _pair(token_cfg=dict(type='ATME', r=4))
    counts = merged.token_counts()
    assert counts[0] == (16 * 12, 12, 16 * 12)  # 16 windows of 16 - 4


def test_errors_name_the_config_key():
    with pytest.raises(ValueError, match=r'r=16 .*16 tokens.*window area'):
        PrunedSwinTransformer(**TINY, token_cfg=dict(type='ToMe', r=16))
    with pytest.raises(ValueError, match='at most half'):
        PrunedSwinTransformer(**TINY, token_cfg=dict(type='ATME', r=9))
    with pytest.raises(ValueError, match='token_cfg.type'):
        PrunedSwinTransformer(**TINY, token_cfg=dict(type='Nope', r=2))
    with pytest.raises(ValueError, match='token_cfg.layers'):
        PrunedSwinTransformer(
            **TINY, token_cfg=dict(type='ATME', r=2, layers=[8]))
    _, gated = _pair(channel_cfg=dict(type='CDCP'))
    spec, _ = gated.export_pruned()
    data = spec.to_dict()
    data['layers'] = data['layers'][:-1]
    with pytest.raises(ValueError, match='channel_cfg.spec.*7 layers'):
        PrunedSwinTransformer(**TINY, channel_cfg=dict(spec=data))
    data = copy.deepcopy(spec.to_dict())
    data['layers'][6]['qk_dims'] = 33  # stage 3: 128 / 4 = 32 per head
    with pytest.raises(ValueError, match=r'layers\[6\].qk_dims=33.*32'):
        PrunedSwinTransformer(**TINY, channel_cfg=dict(spec=data))


def test_spec_round_trips_through_json(tmp_path):
    _, gated = _pair(channel_cfg=dict(type='CDCP'))
    _close_some_gates(gated)
    spec, _ = gated.export_pruned()
    spec.dump(str(tmp_path / 's.json'))
    assert PruneSpec.load(str(tmp_path / 's.json')) == spec


def test_window_grid_follows_upstream_shift_rules():
    _, model = _pair(pad_small_map=False)
    block = model.blocks()[1]
    assert block.window_grid((4, 9)) == WindowGrid((4, 9), 4, 0)
    assert block.window_grid((5, 9)).shift == 2
    with pytest.raises(ValueError, match='pad_small_map'):
        block.window_grid((3, 9))


def test_magnitude_gates_reach_the_budget_and_export():
    from mmtokenprune.models.cdcp import init_gates_by_magnitude
    _, gated = _pair(token_cfg=ATME, channel_cfg=dict(type='CDCP'))
    info = init_gates_by_magnitude(gated, 0.7)
    assert info['flops_ratio'] == pytest.approx(0.7, abs=0.08)
    spec, state = gated.export_pruned()
    small = PrunedSwinTransformer(
        **TINY, token_cfg=ATME, channel_cfg=dict(spec=spec.to_dict()))
    small.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        torch.testing.assert_close(
            small.eval()(x)[3], gated(x)[3], atol=1e-5, rtol=1e-5)
