"""BackboneWarmupHook: the learning rates the optimizer actually steps
with, in iteration- and epoch-based runs, next to a parameter scheduler."""
import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner

from mmtokenprune.engine.hooks.backbone_warmup import BackboneWarmupHook
from mmtokenprune.registry import HOOKS


class ToyBackbone(nn.Module):

    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(2, 2)
        self.layers = nn.ModuleList([nn.Module()])
        self.layers[0].reducer = nn.Module()
        self.layers[0].reducer.selector = nn.Linear(2, 2)


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.backbone = ToyBackbone()
        self.head = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = torch.stack(inputs) if isinstance(inputs, list) else inputs
        x = self.backbone.layers[0].reducer.selector(self.backbone.stem(x))
        return dict(loss=self.head(x).pow(2).mean())


class RecordLr:
    """Records every group's lr at each optimizer step."""

    def __init__(self):
        self.steps = []

    def __call__(self, optimizer, args, kwargs):
        self.steps.append([g['lr'] for g in optimizer.param_groups])


def _run(tmp_path, train_cfg, hook, paramwise_cfg=dict(bias_lr_mult=1.)):
    record = RecordLr()
    runner = Runner(
        model=ToyModel(),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=[torch.randn(2) for _ in range(4)],
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='pseudo_collate'),
            batch_size=2),
        optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=0.1),
            paramwise_cfg=paramwise_cfg),
        param_scheduler=dict(
            type='LinearLR', start_factor=0.5, by_epoch=False, begin=0,
            end=4),
        train_cfg=train_cfg,
        custom_hooks=[hook] if hook else [],
        default_hooks=dict(checkpoint=None),
        experiment_name=f'warmup_{id(record)}')
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.optim_wrapper.optimizer.register_step_pre_hook(record)
    runner.train()
    names = dict((id(p), n) for n, p in runner.model.named_parameters())
    order = [names.get(id(g['params'][0]), '?') for g in
             runner.optim_wrapper.param_groups]
    by_name = [{n: lr for n, lr in zip(order, s)} for s in record.steps]
    return runner, by_name


@pytest.mark.parametrize('train_cfg, hook', [
    (dict(by_epoch=False, max_iters=4),
     dict(type='mmtokenprune.BackboneWarmupHook', warmup=2, lr_mult=0.1)),
    (dict(by_epoch=True, max_epochs=2),  # 2 iterations per epoch
     dict(type='mmtokenprune.BackboneWarmupHook', warmup=1, by_epoch=True,
          lr_mult=0.1)),
])
def test_backbone_lr_is_zero_then_a_fraction(tmp_path, train_cfg, hook):
    # the scheduler's rates without the hook (LinearLR rising from 0.05)
    _, ref = _run(tmp_path / 'ref', train_cfg, None)
    schedule = [lrs['head.weight'] for lrs in ref]
    assert schedule[0] == pytest.approx(0.05) and schedule[3] > schedule[0]
    runner, steps = _run(tmp_path, train_cfg, hook)
    assert len(steps) == 4
    for k, lrs in enumerate(steps):
        base = pytest.approx(schedule[k])
        mult = 0. if k < 2 else 0.1
        assert lrs['head.weight'] == lrs['head.bias'] == base
        # the selector trains from the start at the full rate
        assert lrs['backbone.layers.0.reducer.selector.weight'] == base
        assert lrs['backbone.stem.weight'] == pytest.approx(
            schedule[k] * mult)
        assert lrs['backbone.stem.bias'] == pytest.approx(schedule[k] * mult)
    # the schedulers never saw the scaled rates: all groups end equal
    final = {g['lr'] for g in runner.optim_wrapper.param_groups}
    assert len(final) == 1
    assert runner.message_hub.get_scalar(
        'train/backbone_lr_mult').current() == 0.1


def test_without_exclusions_the_whole_backbone_waits(tmp_path):
    hook = dict(type='mmtokenprune.BackboneWarmupHook', warmup=1,
                exclude=())
    _, steps = _run(tmp_path, dict(by_epoch=False, max_iters=2), hook)
    assert steps[0]['backbone.layers.0.reducer.selector.weight'] == 0.
    assert steps[1]['backbone.stem.weight'] == steps[1]['head.weight'] > 0


@pytest.mark.parametrize('kwargs, paramwise_cfg, match', [
    (dict(warmup=1), dict(),
     r'param group 0 mixes.*optim_wrapper\.paramwise_cfg'),
    (dict(warmup=1, prefix='encoder.'), dict(bias_lr_mult=1.),
     r"`BackboneWarmupHook\.prefix='encoder\.'` matches no parameter"),
    (dict(warmup=1, exclude=('.predictor.', )), dict(bias_lr_mult=1.),
     r"`BackboneWarmupHook\.exclude`: \['\.predictor\.'\] match no"),
])
def test_bad_settings_are_named(tmp_path, kwargs, paramwise_cfg, match):
    hook = dict(type='mmtokenprune.BackboneWarmupHook', **kwargs)
    with pytest.raises(ValueError, match=match):
        _run(tmp_path, dict(by_epoch=False, max_iters=1), hook,
             paramwise_cfg)


@pytest.mark.parametrize('kwargs, match', [
    (dict(warmup=-1), r'BackboneWarmupHook\.warmup'),
    (dict(lr_mult=2.), r'BackboneWarmupHook\.lr_mult'),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BackboneWarmupHook(**kwargs)


def test_registered():
    assert HOOKS.get('BackboneWarmupHook') is BackboneWarmupHook
