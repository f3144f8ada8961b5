"""CDCP gates that learn: open ranked start, hard budget, export, logging."""
import copy
import json
from types import SimpleNamespace

import pytest
import torch
from mmengine.logging import MessageHub

from mmtokenprune.engine.hooks.cdcp_widths import CDCPWidthsHook
from mmtokenprune.models import PrunedVisionTransformer
from mmtokenprune.models.cdcp import (budget_loss, ffn_gate,
                                      init_gates_open_by_magnitude)
from mmtokenprune.ops import ChannelGate

TINY = dict(
    arch=dict(
        embed_dims=32, num_layers=3, num_heads=2, feedforward_channels=64),
    img_size=64,
    patch_size=16,
    out_indices=(2, ),
    out_type='featmap')
LEARNED = dict(
    type='CDCP',
    flops_target=0.6,
    budget='hard',
    penalty='linear',
    loss_weight=1.)


def build(channel_cfg=None, seed=0):
    torch.manual_seed(seed)
    model = PrunedVisionTransformer(
        **copy.deepcopy(TINY), channel_cfg=channel_cfg).eval()
    model.loss_owner = 'these tests'  # they add compression_losses()
    return model


def gates(model):
    return [m for m in model.modules() if isinstance(m, ChannelGate)]


def train_gates(model, steps, task=None, lr=0.1):
    """AdamW on the gate logits only (no momentum, as the CamVid recipe),
    on the budget loss plus ``task(model)``; hard ratio after each step."""
    params = [g.logits for g in gates(model)]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0., 0.999),
                            weight_decay=0.)
    model.train()
    ratios = []
    for _ in range(steps):
        opt.zero_grad()
        loss = model.compression_losses()['loss_cdcp_budget']
        if task is not None:
            loss = loss + task(model)
        loss.backward()
        opt.step()
        with torch.no_grad():
            ratios.append(float(model.flops_ratio(hard=True)))
    return model.eval(), ratios


def test_open_start_equals_the_ungated_model():
    plain = build()
    model = build(LEARNED)
    model.load_state_dict(plain.state_dict(), strict=False)
    info = init_gates_open_by_magnitude(model, low=1., high=3.)
    logits = torch.cat([g.logits for g in gates(model)])
    assert float(logits.min()) == 1. and float(logits.max()) == 3.
    assert len(logits.unique()) == len(logits)  # a strict order, no ties
    assert info['flops_ratio'] == 1.
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(model(x), plain(x))


def test_budget_closes_open_gates_to_the_target_in_a_few_steps():
    model = build(LEARNED)
    init_gates_open_by_magnitude(model)
    start = [g.logits.detach().clone() for g in gates(model)]
    soft_before = float(model.flops_ratio())
    model, ratios = train_gates(model, steps=25)
    reached = next(i for i, r in enumerate(ratios) if r <= 0.6)
    assert reached < 20
    assert 0.6 - 0.08 <= ratios[-1] <= 0.6  # stops at the budget
    assert float(model.flops_ratio()) < soft_before - 0.2
    # widths differ between gates and layers (not one uniform cut)
    widths = model.kept_widths()
    assert len({w[2] for w in widths}) > 1
    # with the budget alone, the lowest-ranked channels close first
    closed = torch.cat([s[g.logits <= 0] for s, g in zip(start, gates(model))])
    kept = torch.cat([s[g.logits > 0] for s, g in zip(start, gates(model))])
    assert closed.numel() > 0 and float(closed.mean()) < float(kept.mean())


def test_two_sided_budget_lands_at_the_target():
    """Closed past the budget, the two-sided penalty reopens channels; the
    one-sided one leaves them closed."""
    ends = {}
    for penalty in ('linear', 'two-sided'):
        model = build(dict(LEARNED, penalty=penalty))
        init_gates_open_by_magnitude(model)
        for g in gates(model):  # well past the budget of 0.6
            g.logits.data.sub_(2.4)
        assert float(model.flops_ratio(hard=True)) < 0.4
        model, ratios = train_gates(model, steps=30)
        ends[penalty] = ratios[-1]
    assert ends['linear'] < 0.4
    assert abs(ends['two-sided'] - 0.6) < 0.05


def test_soft_budget_stalls_where_the_hard_one_does_not():
    """The soft ratio counts a closed gate at logit -1 as 0.27 kept, so a
    soft budget is met while the exported widths are far above it."""
    hard = build(LEARNED)
    soft = build(dict(LEARNED, budget='soft'))
    for model in (hard, soft):
        init_gates_open_by_magnitude(model)
        for g in gates(model):  # all near zero: soft ~ half of each gate
            g.logits.data.mul_(0.1)
    assert float(soft.compression_losses()['loss_cdcp_budget']) == 0.
    assert float(hard.compression_losses()['loss_cdcp_budget']) > 0.3


def test_task_gradient_keeps_a_channel_the_ranking_closes_first():
    """The ranked start orders the closing; a task gradient through the
    straight-through mask overrules it for a channel the task needs."""

    def run(with_task):
        model = build(LEARNED)
        init_gates_open_by_magnitude(model)
        gate = ffn_gate(model.layers[0].ffn)
        a = int(gate.logits.argmin())  # the first to close by rank
        model.layers[0].ffn.layers[0][0].bias.data[a] = 5.  # gelu(.) > 0
        seen = {}
        handle = gate.register_forward_hook(
            lambda m, i, o: seen.__setitem__('h', o))
        x = torch.randn(1, 3, 64, 64)

        def task(m):  # wants channel a's (gated) activation large
            m(x)
            return -seen['h'][..., a].mean()

        model, ratios = train_gates(
            model, steps=25, task=task if with_task else None)
        handle.remove()
        return bool(gate.logits[a] > 0), ratios[-1]

    kept, ratio = run(with_task=True)
    assert kept and ratio <= 0.6
    kept, ratio = run(with_task=False)
    assert not kept and ratio <= 0.6


def test_exported_widths_follow_the_learned_gates():
    model = build(LEARNED)
    init_gates_open_by_magnitude(model)
    x = torch.randn(1, 3, 64, 64)
    model, _ = train_gates(model, steps=25, task=lambda m: m(x)[0].pow(2)
                           .mean())
    spec, state = model.export_pruned()
    counts = [(len(a.qk_gate.kept_indices()), len(a.v_gate.kept_indices()),
               len(ffn_gate(f).kept_indices()))
              for _, a, _, f in model.cdcp_blocks()]
    assert [(d.qk_dims, d.v_dims, d.ffn_dims) for d in spec.layers] == counts
    assert model.kept_widths() == counts
    assert counts != [(16, 16, 64)] * 3  # the gates did prune
    small = build(dict(spec=spec.to_dict()))
    small.load_state_dict(state, strict=True)
    torch.testing.assert_close(small(x), model(x), atol=1e-5, rtol=1e-5)
    # the hard ratio is the exported model's block FLOPs over the full's
    full = build()
    assert float(small.flops_ratio()) == 1.  # no gates: its own widths
    kept = sum(p.numel() for n, p in small.named_parameters()
               if 'layers.' in n)
    assert kept < sum(p.numel() for n, p in full.named_parameters()
                      if 'layers.' in n)


def test_hard_ratio_has_the_soft_gradient():
    model = build(LEARNED)
    init_gates_open_by_magnitude(model)
    for g in gates(model):
        g.logits.data.sub_(1.5)  # a quarter of the channels closed
    hard = model.flops_ratio(hard=True)
    soft = model.flops_ratio()
    widths = model.kept_widths()
    assert float(hard) != pytest.approx(float(soft), abs=1e-3)
    g_hard = torch.autograd.grad(hard, gates(model)[0].logits)[0]
    g_soft = torch.autograd.grad(soft, gates(model)[0].logits)[0]
    torch.testing.assert_close(g_hard, g_soft)
    for g in gates(model):  # the hard value counts hard masks only
        g.logits.data = torch.where(g.logits > 0, 50., -50.)
    assert model.kept_widths() == widths
    torch.testing.assert_close(model.flops_ratio(), hard.detach())


def test_linear_penalty_and_config_errors():
    ratio = torch.tensor([0.9, 0.7, 0.5])
    torch.testing.assert_close(
        budget_loss(ratio, 0.7, 'linear'), torch.tensor([0.2, 0., 0.]))
    torch.testing.assert_close(
        budget_loss(ratio, 0.7, 'two-sided'), torch.tensor([0.2, 0., 0.2]))
    with pytest.raises(
            ValueError,
            match="one of \\['squared', 'linear', 'two-sided'\\]"):
        budget_loss(ratio, 0.7, 'cubic')
    with pytest.raises(ValueError,
                       match=r"channel_cfg.budget` must be one of "
                       r"\['soft', 'hard'\]; got 'exact'"):
        build(dict(LEARNED, budget='exact'))
    with pytest.raises(ValueError,
                       match=r"channel_cfg.penalty` must be one of "
                       r"\['squared', 'linear', 'two-sided'\]"):
        build(dict(LEARNED, penalty='abs'))
    with pytest.raises(ValueError,
                       match=r'channel_cfg.loss_weight` must be a number '
                       r'>= 0; got -1'):
        build(dict(LEARNED, loss_weight=-1))
    with pytest.raises(ValueError, match='need 0 < low <= high'):
        init_gates_open_by_magnitude(build(LEARNED), low=0.)


def fake_runner(model, it, max_iters=1000):
    hub = MessageHub.get_instance(f'test_cdcp_widths_{id(model)}_{it}')
    return SimpleNamespace(
        model=SimpleNamespace(backbone=model),
        message_hub=hub,
        iter=it,
        max_iters=max_iters)


def test_hook_logs_what_the_gates_hold():
    model = build(LEARNED)
    torch.manual_seed(1)
    for g in gates(model):
        g.logits.data = torch.randn_like(g.logits)
    hook = CDCPWidthsHook(interval=50)
    runner = fake_runner(model, it=49)
    hook.before_train(runner)
    hook.after_train_iter(runner, batch_idx=49)
    scalars = runner.message_hub.log_scalars
    for i, (_, attn, _, ffn) in enumerate(model.cdcp_blocks()):
        for kind, gate in (('qk', attn.qk_gate), ('v', attn.v_gate),
                           ('ffn', ffn_gate(ffn))):
            assert scalars[f'train/cdcp/l{i}_{kind}'].current() == len(
                gate.kept_indices())
    assert scalars['train/cdcp/flops_ratio'].current() == pytest.approx(
        float(model.flops_ratio(hard=True)))
    assert scalars['train/cdcp/flops_ratio_soft'].current() == \
        pytest.approx(float(model.flops_ratio()))
    assert float(model.flops_ratio(hard=True)) < 1.
    # off the interval: nothing; at the last iteration: a record
    runner = fake_runner(model, it=10)
    hook.after_train_iter(runner, batch_idx=10)
    assert 'train/cdcp/flops_ratio' not in runner.message_hub.log_scalars
    runner = fake_runner(model, it=10, max_iters=11)
    hook.after_train_iter(runner, batch_idx=10)
    assert 'train/cdcp/flops_ratio' in runner.message_hub.log_scalars
    with pytest.raises(TypeError, match="channel_cfg.type='CDCP'"):
        hook.before_train(fake_runner(build(), it=0))


def test_plot_tool_reads_what_the_hook_wrote(tmp_path):
    from test_tools import load_tool
    tool = load_tool('analysis/plot_cdcp_widths')
    records = [
        dict(lr=1e-3, step=50),
        {'cdcp/l0_qk': 16., 'cdcp/l0_v': 16., 'cdcp/l0_ffn': 64.,
         'cdcp/l1_qk': 16., 'cdcp/l1_v': 15., 'cdcp/l1_ffn': 60.,
         'cdcp/flops_ratio': 0.97, 'cdcp/flops_ratio_soft': 0.9,
         'loss': 1., 'step': 50},
        {'cdcp/l0_qk': 12., 'cdcp/l0_v': 16., 'cdcp/l0_ffn': 40.,
         'cdcp/l1_qk': 8., 'cdcp/l1_v': 10., 'cdcp/l1_ffn': 30.,
         'cdcp/flops_ratio': 0.6, 'cdcp/flops_ratio_soft': 0.65,
         'loss': 1., 'step': 100},
        dict(mIoU=30., step=100),
    ]
    path = tmp_path / 'scalars.json'
    path.write_text('\n'.join(json.dumps(r) for r in records) + '\n')
    out = tmp_path / 'widths.png'
    run, = tool.main([str(path), '--out', str(out)])
    assert run['iters'] == [50, 100]
    assert run['widths']['ffn'] == {0: [64., 40.], 1: [60., 30.]}
    assert run['widths']['v'][1] == [15., 10.]
    assert run['flops_ratio'] == [0.97, 0.6]
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    empty = tmp_path / 'empty.json'
    empty.write_text(json.dumps(dict(loss=1., step=1)) + '\n')
    with pytest.raises(ValueError, match='CDCPWidthsHook'):
        tool.main([str(empty), '--out', str(out)])


def test_init_tool_open_mode_keeps_the_model_and_ranks_gates(tmp_path):
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    from test_tools import PLAIN_BACKBONE, load_tool, tiny_seg_config
    gated = tmp_path / 'gated.py'
    gated.write_text(
        tiny_seg_config(
            str(tmp_path), dict(PLAIN_BACKBONE, channel_cfg=LEARNED)))
    init_default_scope('mmseg')
    model = MODELS.build(Config.fromfile(str(gated)).model)
    ckpt = tmp_path / 'plain.pth'
    state = {k: v for k, v in model.state_dict().items()
             if not k.endswith('.logits')}
    torch.save(dict(state_dict=state, meta={}), ckpt)
    out = tmp_path / 'init.pth'
    load_tool('init_cdcp_gates').main(
        [str(gated), str(ckpt), '--out', str(out), '--mode', 'open'])
    saved = torch.load(out)
    assert saved['meta']['mode'] == 'open'
    assert saved['meta']['flops_ratio'] == 1.
    for k, v in state.items():
        torch.testing.assert_close(saved['state_dict'][k], v)
    logits = torch.cat([
        v for k, v in saved['state_dict'].items() if k.endswith('.logits')
    ])
    assert float(logits.min()) == 1. and float(logits.max()) == 3.
