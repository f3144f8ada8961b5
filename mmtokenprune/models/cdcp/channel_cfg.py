"""``channel_cfg``: checked once, at construction."""
from dataclasses import dataclass
from typing import Dict, Optional

__all__ = ['ChannelCfg', 'BlockCDCP']


@dataclass(frozen=True)
class BlockCDCP:
    """CDCP settings of one block, handed to its attention and MLP.

    Attributes:
        qk_dims (int, optional): Q/K channels per head (same in every head);
            None keeps ``embed_dims // num_heads``.
        v_dims (int, optional): V channels per head; None keeps them all.
        ffn_dims (int, optional): MLP hidden channels; None keeps them all.
        gated (bool): add CDCP gates. Defaults to False.
        gate_init (float): initial gate logit. Defaults to 3.0.
    """
    qk_dims: Optional[int] = None
    v_dims: Optional[int] = None
    ffn_dims: Optional[int] = None
    gated: bool = False
    gate_init: float = 3.0


@dataclass(frozen=True)
class ChannelCfg:
    """Parsed ``channel_cfg``: a prune spec to build from and/or gates.

    Defaults are the recipe of our magnitude-initialised CamVid and CIFAR-10
    fine-tunes: keep 70% of the encoder FLOPs, budget loss weight 2, the
    squared excess of the soft FLOPs fraction, gates opened at logit 3.

    Attributes:
        budget (str): which kept FLOPs fraction the budget loss sees:
            ``'soft'`` (soft widths ``sum(sigmoid(logits))``) or ``'hard'``
            (the hard masks' widths, i.e. what the model computes and
            exports, with the soft widths' gradient: straight-through).
        penalty (str): ``'squared'`` or ``'linear'`` excess over the
            target, or ``'two-sided'`` distance to it
            (:func:`~.budget.budget_loss`).
        latency (dict, optional): a latency budget beside the FLOPs one:
            ``table`` (a latency table JSON,
            ``tools/analysis/latency_table.py``), ``budget_ms`` and
            ``loss_weight`` (defaults to 1) of
            :class:`~mmtokenprune.models.losses.LatencyBudgetLoss`, whose
            loss on the gates' soft widths is added as
            ``loss_latency_budget``. Gates only (``type='CDCP'``).
    """
    spec: Optional[object] = None
    gated: bool = False
    flops_target: float = 0.7
    loss_weight: float = 2.0
    gate_init: float = 3.0
    budget: str = 'soft'
    penalty: str = 'squared'
    latency: Optional[Dict] = None

    ALLOWED = ('type', 'spec', 'flops_target', 'loss_weight', 'gate_init',
               'budget', 'penalty', 'latency')
    LATENCY_KEYS = ('table', 'budget_ms', 'loss_weight')
    TYPES = ('CDCP', )
    BUDGETS = ('soft', 'hard')
    PENALTIES = ('squared', 'linear', 'two-sided')

    @classmethod
    def parse(cls, cfg: Optional[Dict],
              key: str = 'channel_cfg') -> 'ChannelCfg':
        if cfg is None:
            return cls()
        if not isinstance(cfg, dict):
            raise TypeError(f'`{key}` must be a dict or None; got {cfg!r}.')
        unknown = sorted(set(cfg) - set(cls.ALLOWED))
        if unknown:
            raise ValueError(f'`{key}` has unknown keys {unknown}; allowed: '
                             f'{list(cls.ALLOWED)}.')
        kind = cfg.get('type')
        if kind is not None and kind not in cls.TYPES:
            raise ValueError(f'`{key}.type` must be one of '
                             f'{list(cls.TYPES)} (or absent with a `spec`); '
                             f'got {kind!r}.')
        latency = cfg.get('latency')
        if latency is not None:
            cls._check_latency(latency, kind, key)
        if kind is None and cfg.get('spec') is None:
            raise ValueError(f"`{key}` needs `type='CDCP'` (train gates) "
                             'and/or `spec` (build a pruned model).')
        target = cfg.get('flops_target', cls.flops_target)
        if not isinstance(target, (int, float)) or not 0 < target <= 1:
            raise ValueError(f'`{key}.flops_target` must be in (0, 1]; got '
                             f'{target!r}.')
        for name in ('loss_weight', 'gate_init'):
            value = cfg.get(name, getattr(cls, name))
            if (not isinstance(value, (int, float))
                    or isinstance(value, bool)
                    or (name == 'loss_weight' and value < 0)):
                allowed = ('a number >= 0'
                           if name == 'loss_weight' else 'a number')
                raise ValueError(f'`{key}.{name}` must be {allowed}; got '
                                 f'{value!r}.')
        for name, allowed in (('budget', cls.BUDGETS),
                              ('penalty', cls.PENALTIES)):
            value = cfg.get(name, getattr(cls, name))
            if value not in allowed:
                raise ValueError(f'`{key}.{name}` must be one of '
                                 f'{list(allowed)}; got {value!r}.')
        return cls(
            spec=cfg.get('spec'),
            gated=kind is not None,
            flops_target=float(target),
            loss_weight=float(cfg.get('loss_weight', cls.loss_weight)),
            gate_init=float(cfg.get('gate_init', cls.gate_init)),
            budget=cfg.get('budget', cls.budget),
            penalty=cfg.get('penalty', cls.penalty),
            latency=None if latency is None else dict(latency))

    @classmethod
    def _check_latency(cls, latency, kind, key: str) -> None:
        if kind is None:
            raise ValueError(f"`{key}.latency` budgets the gates: it needs "
                             "`type='CDCP'`.")
        if not isinstance(latency, dict):
            raise TypeError(f'`{key}.latency` must be a dict with keys '
                            f'{list(cls.LATENCY_KEYS)}; got {latency!r}.')
        unknown = sorted(set(latency) - set(cls.LATENCY_KEYS))
        missing = [k for k in ('table', 'budget_ms') if k not in latency]
        if unknown or missing:
            raise ValueError(
                f'`{key}.latency` needs `table` and `budget_ms` (and may '
                f'set `loss_weight`); got unknown {unknown}, missing '
                f'{missing}.')

    @property
    def enabled(self) -> bool:
        return self.gated or self.spec is not None

    def describe(self) -> str:
        parts = []
        if self.spec is not None:
            parts.append('pruned widths from a spec')
        if self.gated:
            latency = '' if self.latency is None else \
                f", latency budget {self.latency['budget_ms']} ms"
            parts.append(f'CDCP gates (flops_target={self.flops_target}, '
                         f'{self.budget} budget, {self.penalty} penalty'
                         f'{latency})')
        return ', '.join(parts) or 'no channel pruning'
