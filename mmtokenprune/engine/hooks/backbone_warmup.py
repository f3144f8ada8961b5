"""Backbone warm-up freeze: the backbone learns later and slower.

SPViT (Kong et al., ECCV 2022) trains its token selectors first with the
pretrained backbone frozen, then fine-tunes the backbone at a fraction of
the base learning rate. :class:`BackboneWarmupHook` does this on the
optimizer's param groups: during every training iteration the learning
rate of the backbone's groups (except the reducers' selectors and
predictors) is ``lr * 0`` for the first ``warmup`` iterations (or epochs)
and ``lr * lr_mult`` after; the rate is restored after the iteration, so
the parameter schedulers, which compute each rate from the previous one,
never see the scaled value.
"""
from typing import Dict, List, Optional, Sequence

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapperDict

from ...registry import HOOKS

__all__ = ['BackboneWarmupHook']


@HOOKS.register_module()
class BackboneWarmupHook(Hook):
    """Scale the backbone's learning rate: 0 while warming up, then
    ``lr_mult``.

    Parameters are chosen by name, as the optimizer constructor names them
    (``model.named_parameters()``): those starting with ``prefix`` and
    containing none of ``exclude``. Each of them must have a param group
    of its own or shared only with chosen ones: any ``paramwise_cfg`` in
    ``optim_wrapper`` makes mmengine's default constructor give every
    parameter its own group.

    Args:
        warmup (int): iterations (or epochs with ``by_epoch``) with the
            chosen learning rates at 0. Defaults to 0.
        by_epoch (bool): count ``warmup`` in epochs. Defaults to False.
        lr_mult (float): factor on the chosen learning rates after the
            warm-up, in [0, 1]. Defaults to 1.
        prefix (str): name prefix of the chosen parameters. Defaults to
            'backbone.'.
        exclude (Sequence[str]): name parts that keep a parameter at the
            full rate from the start; each must match some chosen-prefix
            parameter. Defaults to ('.reducer.', ): the token reducers'
            selectors and predictors.
    """

    # after_train_iter restores the rates before ParamSchedulerHook ('LOW')
    priority = 'NORMAL'

    def __init__(self,
                 warmup: int = 0,
                 by_epoch: bool = False,
                 lr_mult: float = 1.0,
                 prefix: str = 'backbone.',
                 exclude: Sequence[str] = ('.reducer.', )):
        if not (isinstance(warmup, int) and warmup >= 0):
            raise ValueError('`BackboneWarmupHook.warmup` must be an int >= '
                             f'0; got {warmup!r}.')
        if not 0 <= lr_mult <= 1:
            raise ValueError('`BackboneWarmupHook.lr_mult` must be in '
                             f'[0, 1]; got {lr_mult!r}.')
        if isinstance(exclude, str):
            exclude = (exclude, )
        self.warmup = warmup
        self.by_epoch = by_epoch
        self.lr_mult = float(lr_mult)
        self.prefix = prefix
        self.exclude = tuple(exclude)
        self._groups: List[int] = []  # chosen param groups (set up once)
        self._restore: Dict[int, float] = {}  # within one iteration

    def mult(self, runner) -> float:
        """The factor of the current iteration."""
        step = runner.epoch if self.by_epoch else runner.iter
        return 0. if step < self.warmup else self.lr_mult

    def _param_groups(self, runner) -> List[Dict]:
        optim_wrapper = runner.optim_wrapper
        if isinstance(optim_wrapper, OptimWrapperDict):
            raise TypeError('BackboneWarmupHook works with one optimizer '
                            '(`optim_wrapper` of type OptimWrapper).')
        return optim_wrapper.param_groups

    def before_train(self, runner) -> None:
        """Choose the param groups; check the choice."""
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        names = {id(p): n for n, p in model.named_parameters()}
        matched = {e: 0 for e in self.exclude}
        self._groups = []
        for index, group in enumerate(self._param_groups(runner)):
            chosen = []
            for p in group['params']:
                name = names.get(id(p), '')
                hits = [e for e in self.exclude if e in name]
                if name.startswith(self.prefix):
                    for e in hits:
                        matched[e] += 1
                chosen.append(name.startswith(self.prefix) and not hits)
            if chosen and all(chosen):
                self._groups.append(index)
            elif any(chosen):
                raise ValueError(
                    f'BackboneWarmupHook: param group {index} mixes '
                    f"parameters under prefix '{self.prefix}' with others; "
                    'set `optim_wrapper.paramwise_cfg` (any key, e.g. '
                    '`bias_lr_mult=1.`) so every parameter gets its own '
                    'group.')
        if not self._groups:
            raise ValueError(f"`BackboneWarmupHook.prefix='{self.prefix}'` "
                             'matches no parameter of the optimizer.')
        unmatched = [e for e, n in matched.items() if n == 0]
        if unmatched:
            raise ValueError(
                f'`BackboneWarmupHook.exclude`: {unmatched} match no '
                f"parameter under '{self.prefix}'; use () to scale them all.")
        unit = 'epochs' if self.by_epoch else 'iterations'
        print_log(
            f'BackboneWarmupHook: {len(self._groups)} param groups under '
            f"'{self.prefix}' (not {list(self.exclude)}): lr x 0 for "
            f'{self.warmup} {unit}, then x {self.lr_mult}', logger='current')

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        mult = self.mult(runner)
        runner.message_hub.update_scalar('train/backbone_lr_mult', mult)
        if mult == 1.:
            return
        groups = self._param_groups(runner)
        for index in self._groups:
            self._restore[index] = groups[index]['lr']
            groups[index]['lr'] = groups[index]['lr'] * mult

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        groups = self._param_groups(runner)
        for index, lr in self._restore.items():
            groups[index]['lr'] = lr
        self._restore = {}
