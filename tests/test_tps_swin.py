"""dTPS and eTPS inside Swin windows (TPSReducer.window_reduce,
mmtokenprune.ops.window_prune, PrunedWindowMSA's policy and mean query)."""
import functools

import pytest
import torch
from mmpretrain.models.backbones import SwinTransformer
from test_swin import TINY, _ffn_tokens
from test_swin_window import GRIDS

import mmtokenprune.ops.gumbel as gumbel
from mmtokenprune.models import PrunedSwinTransformer
from mmtokenprune.models.reducers import DTPS, ETPS, TPSReducer
from mmtokenprune.ops import (TokenMap, cls_attention_score, policy_softmax,
                              topk_split, unmerge_tokens)
from mmtokenprune.ops.schedule import Step
from mmtokenprune.ops.window import (WindowGrid, window_labels,
                                     window_partition)
from mmtokenprune.ops.window_prune import (max_window_prune,
                                           window_keep_split,
                                           window_prune_capacity,
                                           window_prune_counts)

C = 16


def _model(type_, **kw):
    torch.manual_seed(0)
    token_cfg = dict(type=type_, keep_ratio=0.7, prop_attn=False, **kw)
    return PrunedSwinTransformer(**TINY, token_cfg=token_cfg).eval()


def _reducer(cls, r):
    torch.manual_seed(0)
    return cls(Step(r=r), 0, embed_dims=C).eval()


@functools.lru_cache()
def _attention():
    """A window attention of width ``C`` (eTPS scores with it)."""
    return _model('eTPS').blocks()[0].attn.w_msa


def _reduce(reducer, x, r, labels):
    """``window_reduce`` with a block's metric (a plain LayerNorm here)."""
    metric = torch.nn.functional.layer_norm(x, (x.shape[-1], ))
    return reducer.window_reduce(x, metric, r, labels, _attention())


def _windows(grid, B=2, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(B, grid.hw[0] * grid.hw[1], C)
    return window_partition(x, grid)  # padding rows are zero


@pytest.fixture
def no_gumbel_noise(monkeypatch):
    """Gumbel noise of 0: the training decision is the inference one."""
    monkeypatch.setattr(gumbel, '_sample_exponential', torch.ones_like)


@pytest.mark.parametrize('train', [False, True])
@pytest.mark.parametrize('cls', [DTPS, ETPS])
@pytest.mark.parametrize('hw,ws,shift', GRIDS)
def test_exact_counts_per_window_padding_first(cls, hw, ws, shift, train):
    grid = WindowGrid(hw, ws, shift)
    labels = window_labels(grid) if grid.has_regions else None
    N, r = ws * ws, ws * ws - 1  # as many as a window can prune
    x = _windows(grid)
    reducer = _reducer(cls, r).train(train)
    out, tokens = _reduce(reducer, x, r, labels)
    r_eff = r
    if labels is not None:  # the layout, not r, limits these windows
        r_eff = window_prune_capacity(labels)
        assert r_eff < r
        assert window_prune_counts(labels, r)[0] == r_eff
    live = tokens.size > 0  # training keeps all N, pruned ones size 0
    assert out.shape == (2 * grid.num_windows, N if train else N - r_eff, C)
    assert torch.all(live.sum(1) == N - r_eff)  # the same in every window
    assert torch.all(tokens.size.sum(1) == N)
    if train:
        assert torch.equal(tokens.policy > 0, live)
    if labels is None:
        return
    full = labels.repeat(2, 1)
    pad = full % 2 == 1
    kept_pad = pad.gather(1, tokens.anchor) & live
    groups = [len(set(row[p].tolist())) for row, p in zip(full, pad)]
    # padding goes first: each padding group keeps one cell, unless r ran
    # out first; and every image keeps as many real tokens as predicted
    expected = torch.maximum(
        torch.tensor(groups), pad.sum(1) - r_eff)
    assert torch.equal(kept_pad.sum(1), expected)
    real_left = (live & ~pad.gather(1, tokens.anchor)).sum()
    assert int(real_left) == 2 * window_prune_counts(labels, r)[1]


@pytest.mark.parametrize('train', [False, True])
@pytest.mark.parametrize('cls', [DTPS, ETPS])
@pytest.mark.parametrize('hw,ws,shift', GRIDS)
def test_pruned_tokens_stay_in_their_window_and_label(cls, hw, ws, shift,
                                                     train):
    grid = WindowGrid(hw, ws, shift)
    labels = window_labels(grid)
    B, N = 2, ws * ws
    r = min(N // 2, max_window_prune(ws, shift))
    reducer = _reducer(cls, r).train(train)
    out, tokens = _reduce(reducer, _windows(grid, B), r, labels)
    full = labels.repeat(B, 1)
    # every position points at a token of its own window (row) whose
    # anchor cell has its label (shift region and padding state)
    assert tokens.assign.max() < out.shape[1]
    assert torch.equal(full.gather(1, tokens.anchor).gather(1, tokens.assign),
                       full)
    # a kept token stands for its own cell
    own = tokens.assign.gather(1, tokens.anchor)
    live = tokens.size > 0
    assert torch.equal(own[live], torch.arange(out.shape[1]).expand(
        B * grid.num_windows, -1)[live])


@pytest.mark.parametrize('cls', [DTPS, ETPS])
def test_unmerge_after_squeezing_duplicates_is_identity(cls, monkeypatch):
    """Odd cells copy their even neighbour and the odd ones are pruned:
    each is squeezed into its twin and un-merging gives the input back."""
    x = torch.randn(6, 8, C).repeat_interleave(2, dim=1)  # ws=4, 16 cells
    score = torch.tensor([1., 0.]).repeat(8).expand(6, -1)
    monkeypatch.setattr(cls, 'window_keep_scores',
                        lambda *a: (score, None))
    out, tokens = _reduce(_reducer(cls, 8), x, 8, None)
    assert out.shape == (6, 8, C)
    torch.testing.assert_close(unmerge_tokens(out, tokens), x)


@pytest.mark.parametrize('cls', [DTPS, ETPS])
@pytest.mark.parametrize('hw,ws,shift', GRIDS[1:4])
def test_unmerge_of_label_groups_of_copies_is_identity(cls, hw, ws, shift):
    """Every cell of a label group holds one feature (padding: zeros): a
    squeeze that never crosses a label changes nothing, whatever it
    prunes; crossing one would mix two features."""
    grid = WindowGrid(hw, ws, shift)
    labels = window_labels(grid)
    full = labels.repeat(2, 1)
    x = torch.randn(full.shape[0], int(labels.max()) + 1, C)
    x = x.gather(1, full.unsqueeze(-1).expand(-1, -1, C))
    x = x * (full % 2 == 0).unsqueeze(-1)
    r = max_window_prune(ws, shift)
    for train in (False, True):
        reducer = _reducer(cls, r).train(train)
        out, tokens = _reduce(reducer, x, r, labels)
        torch.testing.assert_close(unmerge_tokens(out, tokens), x)


@pytest.mark.parametrize('cls', [DTPS, ETPS])
def test_window_path_equals_the_sequence_squeeze(cls, monkeypatch):
    """On intact windows and for a fixed decision, the window path is the
    ViT's TPS step on each window as a sequence (inference and training:
    squeezed tokens, map, policy)."""
    x = torch.randn(6, 16, C)
    score = torch.randn(6, 16)
    monkeypatch.setattr(cls, 'window_keep_scores', lambda *a: (score, None))
    monkeypatch.setattr(cls, 'keep_scores', lambda *a: score)
    top = topk_split(score, 11)[0]
    keep = torch.zeros(6, 16).scatter_(1, top, 1.)
    monkeypatch.setattr(cls, 'train_keep', lambda *a: keep)
    for train in (False, True):
        reducer = _reducer(cls, 5).train(train)
        out, tokens = _reduce(reducer, x, 5, None)
        ref, ref_tokens = reducer(x, TokenMap.identity(6, (4, 4)),
                                  torch.randn(6, 1, 16, 4),
                                  torch.randn(6, 1, 16, 4), 0.5)
        torch.testing.assert_close(out, ref)
        for name in ('assign', 'size', 'anchor', 'policy'):
            torch.testing.assert_close(
                getattr(tokens, name), getattr(ref_tokens, name))


def test_keep_split_keeps_a_host_per_label_and_prunes_padding_first():
    labels = torch.tensor([[0, 0, 1, 1, 2, 2, 3, 4]])  # 5 groups, 8 cells
    scores = torch.tensor([[5., 4., 9., 8., 0., 1., 2., 3.]])
    assert window_prune_capacity(labels) == 3
    keep, prune = window_keep_split(scores, 6, labels)  # capped at 3
    # padding cell 3 goes first although it outscores the real ones; the
    # best of every group stays (2 of padding, 5 of label 2, 6 and 7)
    assert prune.tolist() == [[1, 3, 4]]
    assert keep.tolist() == [[0, 2, 5, 6, 7]]
    assert window_prune_counts(labels, 6) == (3, 3)


def test_capacity_of_every_layout():
    # ws=7: 8 label groups are impossible, 7 occur (4 regions, 3 padded)
    assert max_window_prune(7, 3) == 49 - 7
    assert max_window_prune(7, 0) == 49 - 2
    assert max_window_prune(4, 2) == 16 - 7
    model = PrunedSwinTransformer(
        **TINY, token_cfg=dict(type='eTPS', r=15, prop_attn=False))
    assert [b.merge_r for b in model.blocks()] == [15] * 8
    counts = model.token_counts((10, 10))  # padded, shifted: capped
    assert counts[0][1] == 16 - window_prune_capacity(
        window_labels(WindowGrid((10, 10), 4, 0)))
    assert counts[1][1] == 16 - window_prune_capacity(
        window_labels(WindowGrid((10, 10), 4, 2)))


@pytest.mark.parametrize('type_', ['dTPS', 'eTPS'])
@pytest.mark.parametrize('hw', [(64, 64), (57, 41)])
def test_token_counts_match_forward(type_, hw):
    model = _model(type_)
    counts = model.token_counts((-(-hw[0] // 4), -(-hw[1] // 4)))
    assert [2 * c[2] for c in counts] == _ffn_tokens(
        model, torch.randn(2, 3, *hw))
    assert counts[0] == (16 * 12, 12, 16 * 12) or hw != (64, 64)


def test_mean_query_attention_is_the_mean_query_cls_score():
    """eTPS's window score equals ``cls_attention_score(num_extra_tokens=0)``
    of the block's own gated queries and keys."""
    model = PrunedSwinTransformer(**TINY, channel_cfg=dict(type='CDCP'))
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if name.endswith('.logits'):
            p.data.copy_(torch.randn_like(p))  # close some Q/K channels
    model.eval()
    for block in model.blocks()[1:6:2]:
        attn = block.attn.w_msa
        x = torch.randn(6, 16, attn.embed_dims)
        q, k, _ = attn.gated_qkv(x)
        torch.testing.assert_close(
            attn.mean_query_attention(x),
            cls_attention_score(q, k, attn.scale, 0))
        # padding rows count as zeros (the attention's input), whatever
        # they hold
        real = (torch.rand(6, 16) > 0.3).float()
        q, k, _ = attn.gated_qkv(x * real.unsqueeze(-1))
        torch.testing.assert_close(
            attn.mean_query_attention(x, real),
            cls_attention_score(q, k, attn.scale, 0))


def test_window_attention_policy_is_the_masked_softmax():
    """A policy that needs a gradient takes the explicit masked softmax,
    relative-position bias and shift mask included, and passes the
    gradient to the policy; a hard policy at eval takes the fused kernel
    and gives the same output."""
    attn = _model('eTPS').blocks()[1].attn.w_msa.train()
    x = torch.randn(4, 16, C)
    bias = torch.randn(4, 1, 16, 16)
    hard = (torch.rand(4, 16) > 0.4).float()
    policy = hard.clone().requires_grad_()
    out = attn(x, attn_bias=bias, policy=policy)
    q, k, v = attn.gated_qkv(x)
    weights = policy_softmax((q @ k.transpose(-2, -1)) * attn.scale + bias,
                             hard, 1e-6)
    ref = attn.proj((weights @ v).transpose(1, 2).reshape(4, 16, C))
    torch.testing.assert_close(out, ref)
    out.square().sum().backward()
    assert policy.grad is not None and policy.grad[hard == 1].abs().min() > 0
    with torch.no_grad():
        torch.testing.assert_close(
            attn.eval()(x, attn_bias=bias, policy=hard), out, atol=1e-5,
            rtol=1e-4)


def test_the_predictor_learns_through_the_masked_window_path():
    model = _model('dTPS').train()
    outs = model(torch.randn(2, 3, 45, 61))
    sum(o.square().mean() for o in outs).backward()
    grads = {
        n: p.grad
        for n, p in model.named_parameters() if '.reducer.' in n
    }
    assert len(grads) == 8 * 10  # 8 blocks: predictor LN + 4 Linear
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values())


@pytest.mark.parametrize('detach', [False, True])
def test_the_decision_reaches_attention_and_squeeze(detach, monkeypatch):
    """dTPS's straight-through keep values reach the window attention (the
    policy it gets has a gradient) and the squeeze weights (with the
    attention's policy detached the predictor still learns)."""
    block = _model('dTPS').train().blocks()[1]  # shifted
    seen = {}
    forward = type(block.attn.w_msa).forward

    def spy(self, x, mask=None, attn_bias=None, policy=None):
        policy = policy.detach()  # the attention's share, on its own
        if not detach:
            policy.requires_grad_()
        seen['policy'] = policy
        return forward(self, x, mask, attn_bias, policy)

    monkeypatch.setattr(type(block.attn.w_msa), 'forward', spy)
    block(torch.randn(2, 10 * 12, C), (10, 12)).square().sum().backward()
    if not detach:
        grad = seen['policy'].grad
        assert grad is not None and grad.abs().sum() > 0
    last = block.reducer.predictor.out_conv[4].weight.grad
    assert last is not None and last.abs().sum() > 0


@pytest.mark.parametrize('type_', ['dTPS', 'eTPS'])
def test_training_and_inference_agree_for_a_fixed_decision(
        type_, no_gumbel_noise):
    """Masked window attention over all tokens (training) computes what the
    gathered kept tokens compute (inference), un-merged maps included."""
    model = _model(type_)
    x = torch.randn(2, 3, 45, 61)
    with torch.no_grad():
        trained = model.train()(x)
        inferred = model.eval()(x)
    for a, b in zip(trained, inferred):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('type_', ['dTPS', 'eTPS'])
def test_swin_with_tps_keeps_every_stage_shape(type_):
    torch.manual_seed(0)
    ref = SwinTransformer(**TINY)
    ref.eval()  # upstream's train() returns None
    model = _model(type_)
    assert_full_stage_outputs(model, ref)


def assert_full_stage_outputs(model, ref):
    """``model`` (reducing inside windows, ``ref``'s weights) gives every
    stage output of upstream ``ref`` its shape, in eval and train, and
    its first output differs (tokens were reduced)."""
    model.load_state_dict(ref.state_dict(), strict=False)
    x = torch.randn(2, 3, 61, 45)
    with torch.no_grad():
        outs, refs = model(x), ref(x)
    for out, expected in zip(outs, refs):
        assert out.shape == expected.shape
        assert torch.isfinite(out).all()
    assert not torch.allclose(outs[0], refs[0])
    model.train()
    for out, expected in zip(model(x), refs):
        assert out.shape == expected.shape


def test_etps_needs_the_attention():
    reducer = _reducer(ETPS, 2)
    x = torch.randn(2, 16, C)
    with pytest.raises(ValueError, match='attn'):
        reducer.window_reduce(x, x, 2)
    assert issubclass(DTPS, TPSReducer) and DTPS.supports_windows
    # SPViT runs in windows too: tests/test_spvit_swin.py
    with pytest.raises(ValueError, match=r'token_cfg.r.*r=16.*at most 15'):
        PrunedSwinTransformer(
            **TINY, token_cfg=dict(type='dTPS', r=16, prop_attn=False))


def test_checkpointing_replays_the_gumbel_decision():
    """``with_cp`` recomputes a block in backward: its Gumbel noise must be
    the forward's (the RNG state is restored), or the gradients would
    belong to another decision."""
    grads = []
    for with_cp in (False, True):
        torch.manual_seed(0)
        model = PrunedSwinTransformer(
            **TINY,
            with_cp=with_cp,
            token_cfg=dict(type='dTPS', r=4, prop_attn=False)).train()
        x = torch.randn(2, 3, 45, 61, requires_grad=True)
        torch.manual_seed(1)
        sum(o.square().mean() for o in model(x)).backward()
        grads.append([p.grad for p in model.parameters()] + [x.grad])
    for a, b in zip(*grads):  # the gradients are small: relative check
        torch.testing.assert_close(
            a, b, rtol=1e-4, atol=1e-4 * a.abs().max().item())
