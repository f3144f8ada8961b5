"""``token_cfg`` and ``channel_cfg``: checked once, at construction.

Both backbones take these two dicts. Every bad key or value is reported
here, naming the key and what is allowed, instead of failing later inside a
forward.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from ...ops import parse_schedule
from ...ops.schedule import Step
from ...registry import TOKEN_REDUCERS

__all__ = ['TokenCfg', 'ChannelCfg']


def _check_keys(cfg: Dict, allowed: Tuple[str, ...], key: str) -> None:
    if not isinstance(cfg, dict):
        raise TypeError(f'`{key}` must be a dict or None; got {cfg!r}.')
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        raise ValueError(f'`{key}` has unknown keys {unknown}; allowed: '
                         f'{list(allowed)}.')


def reducer_types() -> List[str]:
    TOKEN_REDUCERS.import_from_location()
    return sorted(TOKEN_REDUCERS.module_dict)


@dataclass(frozen=True)
class TokenCfg:
    """Parsed ``token_cfg``: reducer type, per-layer schedule, options."""
    type: Optional[str] = None
    schedule: Tuple[Optional[Step], ...] = ()
    prop_attn: bool = True
    key: str = 'token_cfg'

    ALLOWED = ('type', 'r', 'keep_ratio', 'layers', 'prop_attn')

    @classmethod
    def parse(cls, cfg: Optional[Dict], num_layers: int,
              key: str = 'token_cfg') -> 'TokenCfg':
        if cfg is None:
            return cls(schedule=(None, ) * num_layers, key=key)
        _check_keys(cfg, cls.ALLOWED, key)
        types = reducer_types()
        if cfg.get('type') not in types:
            raise ValueError(f'`{key}.type` must be one of {types}; got '
                             f'{cfg.get("type")!r}.')
        schedule = parse_schedule(
            num_layers,
            r=cfg.get('r'),
            keep_ratio=cfg.get('keep_ratio'),
            layers=cfg.get('layers'),
            key=key)
        return cls(
            type=cfg['type'],
            schedule=schedule,
            prop_attn=bool(cfg.get('prop_attn', True)),
            key=key)

    @property
    def enabled(self) -> bool:
        return any(step is not None for step in self.schedule)

    def build_reducers(self, num_extra_tokens: int) -> List:
        """One reducer per reducing layer (None elsewhere)."""
        reducers, index = [], 0
        for step in self.schedule:
            if step is None:
                reducers.append(None)
                continue
            reducers.append(
                TOKEN_REDUCERS.build(
                    dict(
                        type=self.type,
                        step=step,
                        index=index,
                        num_extra_tokens=num_extra_tokens,
                        key=self.key)))
            index += 1
        return reducers

    def describe(self) -> str:
        if not self.enabled:
            return 'no token reduction'
        layers = [i for i, s in enumerate(self.schedule) if s is not None]
        return (f'{self.type} at layers {layers}, prop_attn='
                f'{self.prop_attn}')


@dataclass(frozen=True)
class ChannelCfg:
    """Parsed ``channel_cfg``: a prune spec to build from and/or gates."""
    spec: Optional[object] = None
    gated: bool = False
    flops_target: float = 0.7
    loss_weight: float = 1.0
    gate_init: float = 3.0

    ALLOWED = ('type', 'spec', 'flops_target', 'loss_weight', 'gate_init')
    TYPES = ('CDCP', )

    @classmethod
    def parse(cls, cfg: Optional[Dict],
              key: str = 'channel_cfg') -> 'ChannelCfg':
        if cfg is None:
            return cls()
        _check_keys(cfg, cls.ALLOWED, key)
        kind = cfg.get('type')
        if kind is not None and kind not in cls.TYPES:
            raise ValueError(f'`{key}.type` must be one of '
                             f'{list(cls.TYPES)} (or absent with a `spec`); '
                             f'got {kind!r}.')
        if kind is None and cfg.get('spec') is None:
            raise ValueError(f"`{key}` needs `type='CDCP'` (train gates) "
                             'and/or `spec` (build a pruned model).')
        target = cfg.get('flops_target', 0.7)
        if not isinstance(target, (int, float)) or not 0 < target <= 1:
            raise ValueError(f'`{key}.flops_target` must be in (0, 1]; got '
                             f'{target!r}.')
        return cls(
            spec=cfg.get('spec'),
            gated=kind is not None,
            flops_target=float(target),
            loss_weight=float(cfg.get('loss_weight', 1.0)),
            gate_init=float(cfg.get('gate_init', 3.0)))

    @property
    def enabled(self) -> bool:
        return self.gated or self.spec is not None

    def describe(self) -> str:
        parts = []
        if self.spec is not None:
            parts.append('pruned widths from a spec')
        if self.gated:
            parts.append(f'CDCP gates (flops_target={self.flops_target})')
        return ', '.join(parts) or 'no channel pruning'
