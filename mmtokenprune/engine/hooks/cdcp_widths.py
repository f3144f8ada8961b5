"""Log what CDCP's gates hold while they train."""
from typing import Dict, Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ...registry import HOOKS

__all__ = ['CDCPWidthsHook', 'cdcp_width_scalars']


def cdcp_width_scalars(backbone) -> Dict[str, float]:
    """Per-block kept widths and the kept FLOPs fraction of a CDCP backbone.

    Returns:
        dict: ``cdcp/l{i}_qk``, ``cdcp/l{i}_v``, ``cdcp/l{i}_ffn`` (hard
        kept channels of block ``i``: what an export now would keep) and
        ``cdcp/flops_ratio`` (hard widths), ``cdcp/flops_ratio_soft``
        (soft widths, what a ``budget='soft'`` loss sees).
    """
    out = {}
    with torch.no_grad():
        hard = float(backbone.flops_ratio(hard=True))
        soft = float(backbone.flops_ratio())
    for i, widths in enumerate(backbone.kept_widths()):
        for kind, n in zip(('qk', 'v', 'ffn'), widths):
            out[f'cdcp/l{i}_{kind}'] = float(n)
    out['cdcp/flops_ratio'] = hard
    out['cdcp/flops_ratio_soft'] = soft
    return out


@HOOKS.register_module()
class CDCPWidthsHook(Hook):
    """Every ``interval`` training iterations (and after the last), put the
    gates' kept widths per block (qk, v, ffn) and the FLOPs fraction into
    the message hub as ``train/cdcp/...`` scalars (see
    :func:`cdcp_width_scalars`), so the logger prints them and the
    visualizer writes them to ``vis_data/scalars.json`` with the losses.

    Set ``interval`` to the logger's (or a multiple of it): the logger
    shows the latest value. ``tools/analysis/plot_cdcp_widths.py`` draws
    them over iterations.

    Args:
        interval (int): iterations between records. Defaults to 50.
    """

    priority = 'NORMAL'  # before LoggerHook (BELOW_NORMAL) in each iteration

    def __init__(self, interval: int = 50):
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'CDCPWidthsHook `interval` must be an int >= '
                             f'1; got {interval!r}.')
        self.interval = interval

    @staticmethod
    def _backbone(runner):
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        backbone = getattr(model, 'backbone', None)
        gated = getattr(getattr(backbone, 'channel_cfg', None), 'gated',
                        False)
        if not gated:
            raise TypeError(
                'CDCPWidthsHook needs a model whose backbone has CDCP gates '
                "(`model.backbone.channel_cfg.type='CDCP'`); got "
                f'{type(backbone).__name__}.')
        return backbone

    def before_train(self, runner) -> None:
        self._backbone(runner)  # fail at the start, not at the first log

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        if not (self.every_n_train_iters(runner, self.interval)
                or self.is_last_train_iter(runner)):
            return
        hub = runner.message_hub
        for key, value in cdcp_width_scalars(self._backbone(runner)).items():
            hub.update_scalar(f'train/{key}', value)
