"""Keep decisions and attention under a keep policy (DynamicViT/TPS/SPViT)."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmtokenprune.ops import gumbel
from mmtokenprune.ops import policy_attn as pa
from mmtokenprune.ops.gumbel import gumbel_softmax, sample_keep
from mmtokenprune.ops.policy_attn import (policy_attention, policy_bias,
                                          policy_softmax)


def _reference_softmax(s, policy, eps):
    """The masked softmax written out element by element."""
    B, H, N, _ = s.shape
    out = torch.empty_like(s)
    for b in range(B):
        for h in range(H):
            for i in range(N):
                top = max(s[b, h, i].tolist())
                num = [
                    math.exp(s[b, h, i, j] - top) *
                    (1. if i == j else float(policy[b, j])) for j in range(N)
                ]
                for j in range(N):
                    out[b, h, i, j] = (num[j] + eps / N) / (sum(num) + eps)
    return out


def _policies():
    hard = torch.tensor([[1., 0., 1., 1., 0.], [1., 1., 0., 0., 0.]])
    soft = torch.tensor([[1., .3, .9, 0., .5], [1., 0., .2, 1., .7]])
    return {'hard': hard, 'soft': soft}


@pytest.mark.parametrize('kind', ['hard', 'soft'])
@pytest.mark.parametrize('eps', [0., 1e-6, .1])
def test_policy_softmax_matches_reference(kind, eps):
    g = torch.Generator().manual_seed(0)
    s = 3 * torch.randn(2, 2, 5, 5, generator=g, dtype=torch.float64)
    policy = _policies()[kind].double()
    attn = policy_softmax(s, policy, eps)
    torch.testing.assert_close(attn, _reference_softmax(s, policy, eps))
    torch.testing.assert_close(
        attn.sum(-1), torch.ones(2, 2, 5, dtype=s.dtype))


def test_policy_softmax_hand_example():
    # key 1 is dropped; query 0 sees only itself, query 1 still sees itself
    s = torch.tensor([[[[0., 3.], [0., 0.]]]])
    policy = torch.tensor([[1., 0.]])
    eps = .5
    d = math.exp(-3)  # the max is over all keys, the dropped one included
    expected = [[(d + .25) / (d + .5), .25 / (d + .5)], [.5, .5]]
    torch.testing.assert_close(
        policy_softmax(s, policy, eps), torch.tensor([[expected]]))
    torch.testing.assert_close(
        policy_softmax(s, policy, 0.), torch.tensor([[[[1., 0.], [.5, .5]]]]))


def test_masked_keys_get_zero_weight_but_self_is_kept():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(2, 3, 5, 5, generator=g)
    policy = _policies()['hard']
    attn = policy_softmax(s, policy)
    dropped = (policy == 0)[:, None, None, :].expand_as(attn).clone()
    diag = torch.eye(5, dtype=torch.bool).expand_as(attn)
    assert (attn[dropped & ~diag] == 0).all()
    assert (attn[diag] > 0).all()


@pytest.mark.parametrize('kind', ['hard', 'soft'])
def test_fused_path_equals_explicit(kind, monkeypatch):
    calls = []
    fused = pa.fused_attention

    def spy(*args, **kwargs):
        calls.append(1)
        return fused(*args, **kwargs)

    monkeypatch.setattr(pa, 'fused_attention', spy)
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(2, 2, 3, 5, 8, generator=g)
    v = torch.randn(2, 3, 5, 6, generator=g)
    policy = _policies()[kind]
    out = policy_attention(q, k, v, policy, scale=8**-.5)
    expected = policy_softmax((q @ k.transpose(-2, -1)) * 8**-.5, policy) @ v
    assert calls, 'eps=0 without policy gradients must use fused SDPA'
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('eps', [0., 1e-6])
def test_policy_gradients_take_the_explicit_path(eps):
    g = torch.Generator().manual_seed(3)
    q, k, v = torch.randn(3, 1, 2, 4, 8, generator=g)
    policy = torch.tensor([[1., 0., 1., 0.]], requires_grad=True)
    with pytest.raises(ValueError, match='policy_softmax'):
        policy_bias(policy)
    out = policy_attention(q, k, v, policy, scale=8**-.5, eps=eps)
    out.square().sum().backward()
    assert torch.isfinite(policy.grad).all()
    assert (policy.grad[0, 1:] != 0).all()  # dropped keys get gradients
    with torch.no_grad():  # no gradients wanted: the bias is fine
        assert torch.isinf(policy_bias(policy)).any()


def test_gumbel_hard_is_one_hot_with_soft_gradient():
    logits = torch.tensor([[.3, -.2], [-1., .5], [2., 1.9]],
                          requires_grad=True)
    w = torch.tensor([[1., 2.], [3., -1.], [.5, 4.]])
    out = gumbel_softmax(logits, tau=.5, hard=True, noise=False)
    assert out.tolist() == [[1., 0.], [0., 1.], [1., 0.]]
    (out * w).sum().backward()
    soft = logits.detach().clone().requires_grad_()
    ((soft / .5).softmax(-1) * w).sum().backward()
    torch.testing.assert_close(logits.grad, soft.grad)


def test_gumbel_noise_samples_the_softmax():
    torch.manual_seed(0)
    logits = torch.tensor([.8, .2]).log().expand(20000, 2)
    keep = gumbel_softmax(logits, hard=True)[:, 0]
    assert abs(keep.mean().item() - .8) < .02


def test_gumbel_redraws_non_finite_noise(monkeypatch):
    calls = []

    def exponential(like):
        calls.append(1)
        if len(calls) == 1:
            return torch.zeros_like(like)  # -log(0) = inf
        return torch.ones_like(like)

    monkeypatch.setattr(gumbel, '_sample_exponential', exponential)
    out = gumbel_softmax(torch.zeros(3, 2), hard=False)
    assert len(calls) == 2
    torch.testing.assert_close(out, torch.full((3, 2), .5))


def test_sample_keep_stays_inside_previous_policy():
    torch.manual_seed(0)
    log_probs = F.log_softmax(torch.randn(2, 6, 2), dim=-1)
    prev = torch.tensor([[1., 1., 0., 1., 0., 1.]] * 2)
    keep = sample_keep(log_probs, prev)
    assert keep.shape == (2, 6)
    assert set(keep.unique().tolist()) <= {0., 1.}
    assert (keep[prev == 0] == 0).all()
    argmax = sample_keep(log_probs, noise=False)
    assert argmax.tolist() == (log_probs.argmax(-1) == 0).float().tolist()
