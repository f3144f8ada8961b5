"""SPViT pure-torch core: multi-head token selector and package token."""
import pytest
import torch
from torch import nn

from mmtokenprune.ops.package import package_token
from mmtokenprune.ops.predictors import MultiheadPredictorLG


def _reference_scores(pred, x, policy):
    """T and S written out head by head, as the original's loop does."""
    H = pred.num_heads
    d = x.shape[-1] // H
    head_mean = nn.AdaptiveAvgPool2d((x.shape[1], H))(x)  # the original's
    a = pred.senet(head_mean)
    t_sum, s_sum = 0, 0
    p = policy.unsqueeze(-1)
    for h in range(H):
        f = pred.in_conv[h](x[:, :, d * h:d * (h + 1)])
        glob = (f[..., d // 2:] * p).sum(
            1, keepdim=True) / p.sum(
                1, keepdim=True)
        f = torch.cat([f[..., :d // 2], glob.expand(-1, x.shape[1], -1)], -1)
        t = pred.out_conv[h](f)
        t_sum = t_sum + a[..., h:h + 1] * t.log_softmax(-1)
        s_sum = s_sum + a[..., h:h + 1] * t.softmax(-1)
    total = a.sum(-1, keepdim=True)
    return t_sum / total, s_sum / total


@pytest.mark.parametrize('share_heads', [True, False])
def test_multihead_predictor_matches_reference(share_heads):
    torch.manual_seed(0)
    pred = MultiheadPredictorLG(24, 3, share_heads=share_heads)
    x = torch.randn(2, 7, 24)
    policy = torch.tensor([[1., 1., 0., 1., 1., 0., 1.]] * 2)
    t, s = pred(x, policy)
    assert t.shape == s.shape == (2, 7, 2)
    t_ref, s_ref = _reference_scores(pred, x, policy)
    torch.testing.assert_close(t, t_ref)
    torch.testing.assert_close(s, s_ref)
    torch.testing.assert_close(s.sum(-1), torch.ones(2, 7))


def test_share_heads_reproduces_the_original_sharing():
    shared = MultiheadPredictorLG(24, 3, share_heads=True)
    split = MultiheadPredictorLG(24, 3, share_heads=False)
    for h in (1, 2):  # in_conv and out_conv are both one module
        assert shared.in_conv[h] is shared.in_conv[0]
        assert shared.out_conv[h] is shared.out_conv[0]
        assert split.in_conv[h] is not split.in_conv[0]
        assert split.out_conv[h] is not split.out_conv[0]
    d = 8
    senet = 3 * 1 + 1 + 1 * 3 + 3
    in_conv = 2 * d + d * d + d
    out_conv = (d * 4 + 4) + (4 * 2 + 2) + (2 * 2 + 2)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(shared) == senet + in_conv + out_conv
    assert count(split) == senet + 3 * (in_conv + out_conv)
    # the original's state_dict keys: every head names the shared weights
    keys = shared.state_dict().keys()
    assert {f'in_conv.{h}.1.weight' for h in range(3)} <= keys
    assert {f'out_conv.{h}.4.weight' for h in range(3)} <= keys


def test_independent_heads_with_equal_weights_equal_shared():
    torch.manual_seed(0)
    shared = MultiheadPredictorLG(24, 3, share_heads=True)
    split = MultiheadPredictorLG(24, 3, share_heads=False)
    split.load_state_dict(shared.state_dict())
    x, policy = torch.randn(2, 5, 24), torch.ones(2, 5)
    for a, b in zip(shared(x, policy), split(x, policy)):
        torch.testing.assert_close(a, b)
    with torch.no_grad():
        split.out_conv[2][4].bias[0] += 1.
    assert not torch.allclose(shared(x, policy)[0], split(x, policy)[0])


@pytest.mark.parametrize('share_heads', [True, False])
def test_multihead_predictor_gradients_reach_all_parameters(share_heads):
    torch.manual_seed(0)
    pred = MultiheadPredictorLG(24, 3, share_heads=share_heads)
    policy = torch.tensor([[1., 0., 1., 1., 1.]])
    t, s = pred(torch.randn(1, 5, 24), policy)
    (t[..., 0].sum() + s[..., 0].sum()).backward()
    for name, p in pred.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_multihead_global_pool_ignores_masked_tokens():
    torch.manual_seed(0)
    pred = MultiheadPredictorLG(24, 3)
    x = torch.randn(2, 6, 24)
    x2 = x.clone()
    x2[:, 4] = torch.randn(2, 24)
    others = [0, 1, 2, 3, 5]
    masked = torch.tensor([[1., 1., 1., 1., 0., 1.]] * 2)
    for a, b in zip(pred(x, masked), pred(x2, masked)):
        torch.testing.assert_close(a[:, others], b[:, others])
    kept = torch.ones(2, 6)
    assert not torch.allclose(
        pred(x, kept)[0][:, others],
        pred(x2, kept)[0][:, others])


@pytest.mark.parametrize('embed_dims, num_heads', [(24, 1), (25, 3), (12, 6)])
def test_multihead_predictor_rejects_bad_split(embed_dims, num_heads):
    with pytest.raises(ValueError, match='num_heads'):
        MultiheadPredictorLG(embed_dims, num_heads)


def _hand_tokens():
    x = torch.tensor([[[1., 2.], [3., 4.], [5., 6.]]])
    prev = torch.tensor([[1., 1., 1.]])
    keep = torch.tensor([[0., 1., 0.]])
    return x, prev - keep  # tokens 0 and 2 are dropped now


def test_package_token_is_the_unnormalised_weighted_sum():
    x, drop = _hand_tokens()
    keep_prob = torch.tensor([[.2, .9, .5]])
    # .2 * (1, 2) + .5 * (5, 6); not divided by .2 + .5
    torch.testing.assert_close(
        package_token(x, drop, keep_prob), torch.tensor([[[2.7, 3.4]]]))


def test_empty_drop_set_gives_zeros():
    x, _ = _hand_tokens()
    none = torch.zeros(1, 3)
    zeros = torch.zeros(1, 1, 2)
    torch.testing.assert_close(package_token(x, none, torch.rand(1, 3)), zeros)


def test_package_gradients_reach_tokens_scores_and_drop():
    x, drop = _hand_tokens()
    x.requires_grad_()
    drop.requires_grad_()
    keep_prob = torch.tensor([[.2, .9, .5]], requires_grad=True)
    package_token(x, drop, keep_prob).sum().backward()
    assert x.grad[0, 1].abs().sum() == 0  # the kept token is not packed
    assert (x.grad[0, [0, 2]] != 0).all()
    assert (keep_prob.grad[0, [0, 2]] != 0).all()
    assert (drop.grad != 0).all()
