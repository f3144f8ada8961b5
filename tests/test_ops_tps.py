"""TPS pure-torch core: squeeze, top-k selection, predictor, cls score."""
import math

import pytest
import torch

from mmtokenprune.ops import TokenMap, unmerge_tokens
from mmtokenprune.ops.predictors import PredictorLG
from mmtokenprune.ops.squeeze import (squeeze_plan, squeeze_tokens,
                                      squeeze_train, tps_squeeze)
from mmtokenprune.ops.topk import (cls_attention_score, num_keep_from_ratio,
                                   topk_split)

E = math.e

# Reserved r1 = (1, 0), r2 = (0, 1), r3 = (-1, 0); pruned p1 = (1, 0),
# p2 = (3, 4), p3 = (2, 0). Cosines: p1, p3 -> r1: 1; p2 -> r1: .6, r2: .8.
# Hosts: p1 -> r1, p2 -> r2, p3 -> r1; r3 gets nothing.
KEPT = [[1., 0.], [0., 1.], [-1., 0.]]
PRUNED = [[1., 0.], [3., 4.], [2., 0.]]


def _rows(x, idx):
    """``x[b, idx[b]]`` for every image ``b``."""
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def _hand_squeezed(t):
    """The fusion written out for temperature ``t``."""
    w1 = math.exp(1 / t)  # exp(c / T) of p1 and of p3 (c = 1)
    w2 = math.exp(.8 / t)  # exp(c / T) of p2 (c = .8)
    y1 = (E * 1 + w1 * 1 + w1 * 2) / (E + 2 * w1)
    return [[y1, 0.], [3 * w2 / (E + w2), (E + 4 * w2) / (E + w2)], [-1., 0.]]


@pytest.mark.parametrize('temperature, expected', [
    (1., [[4 / 3, 0.], [1.3504980, 2.3504980], [-1., 0.]]),
    (.5, [[1.4223188, 0.], [1.9369689, 2.9369689], [-1., 0.]]),
])
def test_squeeze_weights_hand_example(temperature, expected):
    torch.testing.assert_close(
        torch.tensor(_hand_squeezed(temperature)), torch.tensor(expected))
    y, host = squeeze_tokens(
        torch.tensor([KEPT]), torch.tensor([PRUNED]), temperature)
    assert host.tolist() == [[0, 1, 0]]
    torch.testing.assert_close(y, torch.tensor([expected]), atol=1e-5, rtol=0)


def test_squeeze_plan_points_pruned_positions_at_host():
    # N = 6 on a 2 x 3 grid; kept at 0, 2, 5 (r1, r2, r3), pruned at
    # 1, 3, 4 (p1, p2, p3).
    x = torch.tensor(
        [[KEPT[0], PRUNED[0], KEPT[1], PRUNED[1], PRUNED[2], KEPT[2]]])
    keep_idx, prune_idx = torch.tensor([[0, 2, 5]]), torch.tensor([[1, 3, 4]])
    y, plan = tps_squeeze(x, keep_idx, prune_idx)
    torch.testing.assert_close(
        y, torch.tensor([_hand_squeezed(1.)]), atol=1e-5, rtol=0)
    tokens = TokenMap.identity(1, (2, 3)).apply(plan)
    assert tokens.assign.tolist() == [[0, 0, 1, 1, 0, 2]]
    assert tokens.size.tolist() == [[3., 2., 1.]]
    assert tokens.anchor.tolist() == [[0, 2, 5]]
    full = unmerge_tokens(y, tokens)
    torch.testing.assert_close(full[0, 4], y[0, 0])  # p3 shows its host


@pytest.mark.parametrize('num_keep', [1, 5, 12])
def test_tps_squeeze_plan_in_a_batch(num_keep):
    g = torch.Generator().manual_seed(4)
    B, grid, C = 3, (3, 4), 6
    x = torch.randn(B, 12, C, generator=g)
    keep_idx, prune_idx = topk_split(torch.randn(B, 12, generator=g), num_keep)
    y, plan = tps_squeeze(x, keep_idx, prune_idx)
    tokens = TokenMap.identity(B, grid).apply(plan)
    assert y.shape == (B, num_keep, C)
    torch.testing.assert_close(tokens.size.sum(1), torch.full((B, ), 12.))
    unit = torch.nn.functional.normalize(x, dim=-1)
    for b in range(B):
        kept = keep_idx[b].tolist()
        assert tokens.assign[b, kept].tolist() == list(range(num_keep))
        for i in prune_idx[b].tolist():
            host = max(kept, key=lambda j: float(unit[b, i] @ unit[b, j]))
            assert tokens.assign[b, i] == kept.index(host)
    full = unmerge_tokens(y, tokens)
    torch.testing.assert_close(_rows(full, keep_idx), y)


def test_squeeze_plan_rejects_unsorted_keep_idx():
    with pytest.raises(ValueError, match='ascending'):
        squeeze_plan(
            torch.tensor([[2, 0]]), torch.tensor([[1]]), torch.tensor([[0]]))


def _random_split(B, N, num_keep, active, generator):
    """Per image: ``num_keep`` of the ``active`` tokens kept, rest pruned."""
    keep = torch.zeros(B, N)
    for b in range(B):
        idx = active[b].nonzero().flatten()
        pick = idx[torch.randperm(len(idx), generator=generator)[:num_keep]]
        keep[b, pick] = 1.
    return keep


@pytest.mark.parametrize('with_prev', [False, True])
@pytest.mark.parametrize('temperature', [1., .3])
def test_train_and_inference_agree_on_reserved_rows(with_prev, temperature):
    g = torch.Generator().manual_seed(0)
    B, N, C, num_keep = 3, 12, 5, 4
    x = torch.randn(B, N, C, generator=g)
    prev = torch.ones(B, N)
    if with_prev:  # two tokens per image were dropped at an earlier stage
        for b in range(B):
            prev[b, torch.randperm(N, generator=g)[:2]] = 0.
    keep = _random_split(B, N, num_keep, prev.bool(), g)
    prune = (1. - keep) * prev

    y_train = squeeze_train(x, keep, prune, temperature)
    active = prev.sum(1)[0].long().item()
    order = (keep * 2 + prev).argsort(dim=1, descending=True, stable=True)
    keep_idx = order[:, :num_keep].sort(dim=1).values
    prune_idx = order[:, num_keep:active].sort(dim=1).values
    # inference sees only the tokens still present (prev == 1)
    y_inf, _ = squeeze_tokens(
        _rows(x, keep_idx), _rows(x, prune_idx), temperature)

    torch.testing.assert_close(_rows(y_train, keep_idx), y_inf)
    # rows that are not reserved are left as they were
    torch.testing.assert_close(y_train[keep == 0], x[keep == 0])
    assert not torch.allclose(y_inf, _rows(x, keep_idx))


def test_reserved_token_without_match_is_unchanged_in_training():
    x = torch.tensor([[[1., 0.], [1., .1], [-1., 0.], [-1., .1]]])
    keep = torch.tensor([[1., 0., 1., 0.]])
    y = squeeze_train(x, keep)
    assert not torch.allclose(y[0, 0], x[0, 0])  # it hosts token 1
    keep = torch.tensor([[1., 0., 1., 1.]])  # now token 2 has no match
    y = squeeze_train(x, keep)
    torch.testing.assert_close(y[0, 2], x[0, 2])
    # nothing reserved: no host anywhere, no NaN
    y = squeeze_train(x, torch.zeros(1, 4))
    torch.testing.assert_close(y, x)


def test_training_token_never_hosts_itself():
    # token 0 is reserved and (softly) pruned at once: its host must be
    # token 1, not itself
    x = torch.tensor([[[1., 0.], [.6, .8]]])
    y = squeeze_train(x, torch.tensor([[1., 1.]]), torch.tensor([[1., 0.]]))
    w = math.exp(.6)
    torch.testing.assert_close(
        y[0, 1], (E * x[0, 1] + w * x[0, 0]) / (E + w), atol=1e-5, rtol=0)
    torch.testing.assert_close(y[0, 0], x[0, 0])


def test_squeeze_gradients_reach_inputs_and_policy():
    g = torch.Generator().manual_seed(1)
    kept = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    pruned = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    kept.requires_grad_()
    pruned.requires_grad_()
    y, _ = squeeze_tokens(kept, pruned)
    y.square().sum().backward()
    assert (pruned.grad.abs().sum(-1) > 0).all()
    assert (kept.grad.abs().sum(-1) > 0).all()
    # analytic gradients equal numeric ones (hosts are fixed nearby)
    assert torch.autograd.gradcheck(lambda a, b: squeeze_tokens(a, b)[0],
                                    (kept, pruned))

    x = torch.randn(2, 8, 4, generator=g, dtype=torch.float64)
    x.requires_grad_()
    keep = (torch.arange(8) % 3 == 0).double().expand(2, 8)
    prune = (1. - keep).requires_grad_()
    y = squeeze_train(x, keep, prune)
    y[:, keep[0] == 1].square().sum().backward()  # reserved rows only
    assert (x.grad[:, keep[0] == 0].abs().sum(-1) > 0).all()
    assert (prune.grad[:, keep[0] == 0] != 0).all()
    assert torch.autograd.gradcheck(lambda a, p: squeeze_train(a, keep, p),
                                    (x, prune))


@pytest.mark.parametrize('num_keep', [0, 3, 7])
def test_topk_split_exact_counts_ascending(num_keep):
    g = torch.Generator().manual_seed(2)
    scores = torch.randn(4, 7, generator=g)
    keep_idx, prune_idx = topk_split(scores, num_keep)
    assert keep_idx.shape == (4, num_keep)
    assert prune_idx.shape == (4, 7 - num_keep)
    for b in range(4):
        assert keep_idx[b].tolist() == sorted(keep_idx[b].tolist())
        assert prune_idx[b].tolist() == sorted(prune_idx[b].tolist())
        assert sorted(keep_idx[b].tolist() + prune_idx[b].tolist()) == \
            list(range(7))
        best = scores[b].topk(num_keep).indices.sort().values
        assert keep_idx[b].tolist() == best.tolist()


def test_topk_split_rejects_bad_count():
    with pytest.raises(ValueError, match='num_keep'):
        topk_split(torch.zeros(1, 4), 5)


@pytest.mark.parametrize('num_tokens, ratio, expected', [(196, .7, 137),
                                                         (196, .49, 96),
                                                         (196, .343, 67),
                                                         (100, .29, 29),
                                                         (7, 1, 7),
                                                         (4, .25, 1)])
def test_num_keep_from_ratio(num_tokens, ratio, expected):
    assert num_keep_from_ratio(num_tokens, ratio) == expected


@pytest.mark.parametrize('ratio', [0, -.5, 1.01, .004, True, '0.5'])
def test_num_keep_from_ratio_errors_name_the_key(ratio):
    with pytest.raises(ValueError, match=r'token_cfg\.keep_ratio'):
        num_keep_from_ratio(196, ratio)


@pytest.mark.parametrize('num_extra', [0, 1, 2])
def test_cls_attention_score_matches_full_attention(num_extra):
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(2, 2, 3, 9, 8, generator=g)
    scale = 8**-.5
    score = cls_attention_score(q, k, scale, num_extra)
    if num_extra:
        attn = ((q @ k.transpose(-2, -1)) * scale).softmax(-1)
        expected = attn[:, :, 0, num_extra:].mean(1)
    else:
        query = q.mean(2, keepdim=True)
        attn = ((query @ k.transpose(-2, -1)) * scale).softmax(-1)
        expected = attn[:, :, 0].mean(1)
    assert score.shape == (2, 9 - num_extra)
    torch.testing.assert_close(score, expected)


def test_predictor_lg_shapes_and_log_probs():
    torch.manual_seed(0)
    pred = PredictorLG(16)
    out = pred(torch.randn(2, 7, 16), torch.ones(2, 7))
    assert out.shape == (2, 7, 2)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(2, 7))


def test_predictor_lg_gradients_reach_all_parameters():
    torch.manual_seed(0)
    pred = PredictorLG(16)
    policy = torch.tensor([[1., 0., 1., 1., 0.]])
    pred(torch.randn(1, 5, 16), policy)[..., 0].sum().backward()
    for name, p in pred.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_predictor_lg_global_pool_ignores_masked_tokens():
    torch.manual_seed(0)
    pred = PredictorLG(16).eval()
    x = torch.randn(2, 6, 16)
    policy = torch.tensor([[1., 1., 0., 1., 1., 1.]] * 2)
    x2 = x.clone()
    x2[:, 2] = torch.randn(2, 16)
    others = [0, 1, 3, 4, 5]
    a, b = pred(x, policy), pred(x2, policy)
    torch.testing.assert_close(a[:, others], b[:, others])
    # the same change to a kept token moves every token's scores
    c = pred(x2, torch.ones(2, 6))
    assert not torch.allclose(
        pred(x, torch.ones(2, 6))[:, others], c[:, others])


def test_tps_and_spvit_ops_are_exported():
    from mmtokenprune import ops
    names = [
        'gumbel_softmax', 'sample_keep', 'policy_matrix', 'policy_bias',
        'policy_softmax', 'policy_attention', 'squeeze_tokens', 'squeeze_plan',
        'tps_squeeze', 'squeeze_train', 'PredictorLG', 'MultiheadPredictorLG',
        'package_token', 'num_keep_from_ratio', 'topk_split',
        'cls_attention_score'
    ]
    for name in names:
        assert name in ops.__all__ and hasattr(ops, name), name
