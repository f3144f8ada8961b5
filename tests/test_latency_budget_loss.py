"""The latency budget loss: hand-computed values on a synthetic table."""
import math

import pytest
import torch
from test_latency_table import attn_fn, mlp_fn, synthetic_table, tiny_vit

from mmtokenprune.budgets import (LatencyTable, LayerChoice, latency_excess,
                                 soft_latency_ms, soft_token_counts)
from mmtokenprune.models.losses.latency_budget import (LatencyBudgetLoss,
                                                       backbone_latency_ms)
from mmtokenprune.models import PrunedVisionTransformer
from mmtokenprune.registry import MODELS

SIG3 = 1 / (1 + math.exp(-3.))  # a fresh gate's keep probability


@pytest.fixture(scope='module')
def table():
    return LatencyTable.load(synthetic_table())


def test_excess_and_registered_loss(table):
    assert float(latency_excess(120., 100.)) == pytest.approx(0.04)
    assert float(latency_excess(90., 100.)) == 0.
    loss = MODELS.build(
        dict(type='mmtokenprune.LatencyBudgetLoss', table=synthetic_table(),
             budget_ms=100., loss_weight=2.))
    assert float(loss(torch.tensor(125.))) == pytest.approx(2 * 0.25**2)
    with pytest.raises(ValueError, match='budget_ms'):
        LatencyBudgetLoss(synthetic_table(), budget_ms=0.)


def test_soft_latency_by_hand(table):
    keep = torch.tensor(0.75, requires_grad=True)
    qk = torch.tensor(12.5, requires_grad=True)
    counts = soft_token_counts(64, 1, [keep, None, None, None], 'ATME')
    ms = soft_latency_ms(table, counts, [qk, 16, 16, 16], [10., 16, 16, 16],
                         [40., 64, 64, 64], 'ATME', bias=True)
    # ATME after layer 0's attention: 65 tokens attend, 49 go on
    want = (1.0 + attn_fn(65, 12.5, 10., True) + mlp_fn(49, 40) +
            0.002 * 64 + 3 * (attn_fn(49, 16, 16, True) + mlp_fn(49, 64)) +
            0.049 + 2 * (0.02 + 0.0001 * 48))
    assert float(ms.detach()) == pytest.approx(want)
    ms.backward()
    assert float(qk.grad) == pytest.approx(0.001 * 65 * 1.1)
    # d/dkeep: 64 tokens per unit of keep ratio in everything after it
    per_token = (0.005 + 0.0005 * 40 +  # layer 0's MLP
                 3 * (1.1 * (0.01 + 0.001 * 32) + 0.005 + 0.0005 * 64) +
                 0.001 + 2 * 0.0001)  # final norm, two un-merges
    assert float(keep.grad) == pytest.approx(64 * per_token)


def test_backbone_gates_by_hand_and_they_learn(table):
    model = tiny_vit(channel_cfg=dict(type='CDCP'))
    w, f = 16 * SIG3, 64 * SIG3
    want = 1.0 + 4 * (attn_fn(65, w, w) + mlp_fn(65, f)) + 0.065 + 0.02
    assert float(backbone_latency_ms(model, table)) == pytest.approx(want)
    # the loss alone moves the gates until the prediction meets the budget
    budget = 0.6 * table.baseline_ms()
    loss_fn = LatencyBudgetLoss(table, budget_ms=budget, loss_weight=10.)
    gates = [p for n, p in model.named_parameters() if n.endswith('logits')]
    opt = torch.optim.Adam(gates, lr=0.3)
    first = float(loss_fn(model))
    for _ in range(30):
        opt.zero_grad()
        loss = loss_fn(model)
        loss.backward()
        opt.step()
    assert first > 0 and float(loss_fn(model)) < 0.01 * first
    assert float(loss_fn.latency_ms(model)) < 1.05 * budget


def test_backbone_with_tokens_matches_the_table(table):
    model = tiny_vit(token_cfg=dict(type='ATME', r=[16], layers=[0]))
    fixed = backbone_latency_ms(model, table)
    layers = [LayerChoice(16, 16, 16, 64)] + [LayerChoice(0, 16, 16, 64)] * 3
    assert float(fixed) == pytest.approx(table.predict(layers, 'ATME')['ms'])
    keep = torch.tensor(0.75, requires_grad=True)
    soft = backbone_latency_ms(model, table, [keep, None, None, None])
    assert float(soft) == pytest.approx(float(fixed))
    soft.backward()
    assert float(keep.grad) > 0
    with pytest.raises(ValueError, match='4 layers'):
        backbone_latency_ms(model, table, [keep])
    other = tiny_vit(img_size=128)
    with pytest.raises(ValueError, match='measured for'):
        backbone_latency_ms(other, table)


def test_channel_cfg_latency_adds_the_loss_to_compression_losses(table):
    """``channel_cfg.latency`` reaches compression_losses(): the same value
    as the loss built by hand, its gradient reaches the gates, no state_dict
    key is added; a table of another architecture or bad keys are refused
    by name."""
    budget = 0.6 * table.baseline_ms()
    latency = dict(table=synthetic_table(), budget_ms=budget, loss_weight=3.)
    model = tiny_vit(channel_cfg=dict(type='CDCP', latency=latency))
    plain = tiny_vit(channel_cfg=dict(type='CDCP'))
    assert set(model.state_dict()) == set(plain.state_dict())
    losses = model.compression_losses()
    want = LatencyBudgetLoss(table, budget_ms=budget, loss_weight=3.)(model)
    assert float(losses['loss_latency_budget']) == pytest.approx(float(want))
    assert float(want) > 0 and 'loss_cdcp_budget' in losses
    losses['loss_latency_budget'].backward()
    grads = [p.grad for n, p in model.named_parameters()
             if n.endswith('logits')]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    assert 'loss_latency_budget' not in plain.compression_losses()

    with pytest.raises(ValueError, match=r"channel_cfg.latency.*CDCP"):
        tiny_vit(channel_cfg=dict(spec=None, latency=latency))
    with pytest.raises(ValueError, match=r'channel_cfg.latency.*budget_ms'):
        tiny_vit(channel_cfg=dict(type='CDCP',
                                  latency=dict(table=synthetic_table())))
    with pytest.raises(ValueError, match=r'channel_cfg.latency.*cannot'):
        PrunedVisionTransformer(
            arch=dict(embed_dims=48, num_layers=4, num_heads=2,
                      feedforward_channels=64),
            img_size=64, patch_size=8,
            channel_cfg=dict(type='CDCP', latency=latency))
