"""``token_cfg``: checked once, at construction.

Common keys (``type``, the schedule and ``prop_attn``) are parsed here;
every other key is an option of the reducer named by ``type``, which
refuses unknown ones by name (:meth:`TokenReducer.check_options`). Every bad
key or value is reported here, naming the key and what is allowed, instead
of failing later inside a forward.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ...ops import parse_schedule
from ...ops.schedule import Step
from ...registry import TOKEN_REDUCERS

__all__ = ['TokenCfg', 'reducer_types']


def reducer_types() -> List[str]:
    """Names of the registered token reducers."""
    TOKEN_REDUCERS.import_from_location()
    return sorted(TOKEN_REDUCERS.module_dict)


@dataclass(frozen=True)
class TokenCfg:
    """Parsed ``token_cfg``: reducer type, per-layer schedule, options."""
    type: Optional[str] = None
    schedule: Tuple[Optional[Step], ...] = ()
    prop_attn: bool = True
    options: Dict = field(default_factory=dict)
    key: str = 'token_cfg'

    COMMON = ('type', 'r', 'keep_ratio', 'layers', 'prop_attn')

    @classmethod
    def parse(cls,
              cfg: Optional[Dict],
              num_layers: int,
              default_layers: Optional[Sequence[int]] = None,
              key: str = 'token_cfg') -> 'TokenCfg':
        """Parse and check a ``token_cfg``.

        Args:
            cfg (dict, optional): the config; None turns reduction off.
            num_layers (int): layers (or blocks) of the backbone.
            default_layers (Sequence[int], optional): reducing layers when
                ``cfg`` has no ``layers``; defaults to all but the last.
            key (str): the name used in errors. Defaults to 'token_cfg'.
        """
        if cfg is None:
            return cls(schedule=(None, ) * num_layers, key=key)
        if not isinstance(cfg, dict):
            raise TypeError(f'`{key}` must be a dict or None; got {cfg!r}.')
        types = reducer_types()
        if cfg.get('type') not in types:
            raise ValueError(f'`{key}.type` must be one of {types}; got '
                             f'{cfg.get("type")!r}.')
        options = {k: v for k, v in cfg.items() if k not in cls.COMMON}
        reducer = TOKEN_REDUCERS.get(cfg['type'])
        reducer.check_options(options, key)
        prop_attn = cfg.get('prop_attn', reducer.supports_prop_attn)
        if prop_attn and not reducer.supports_prop_attn:
            raise ValueError(f"`{key}.prop_attn`: type='{cfg['type']}' "
                             'has no proportional attention; set it False '
                             'or leave it out.')
        layers = cfg.get('layers', default_layers)
        schedule = parse_schedule(
            num_layers,
            r=cfg.get('r'),
            keep_ratio=cfg.get('keep_ratio'),
            layers=None if layers is None else list(layers),
            key=key)
        return cls(
            type=cfg['type'],
            schedule=schedule,
            prop_attn=bool(prop_attn),
            options=options,
            key=key)

    @property
    def enabled(self) -> bool:
        return any(step is not None for step in self.schedule)

    @property
    def reducer_class(self):
        """The registered reducer class (None when reduction is off)."""
        return TOKEN_REDUCERS.get(self.type) if self.type else None

    def build_reducers(self,
                       num_extra_tokens: int = 0,
                       dims: Optional[Sequence[Tuple[int, int]]] = None
                       ) -> List:
        """One reducer per reducing layer (None elsewhere).

        Args:
            num_extra_tokens (int): leading extra tokens. Defaults to 0.
            dims (Sequence[tuple[int, int]], optional): ``(embed_dims,
                num_heads)`` of every layer, for learned reducers.
        """
        reducers, index = [], 0
        for i, step in enumerate(self.schedule):
            if step is None:
                reducers.append(None)
                continue
            reducers.append(
                # the class itself: building through the registry would
                # look for mmseg's/mmpretrain's scope (a warning) first
                self.reducer_class(
                    step=step,
                    index=index,
                    num_extra_tokens=num_extra_tokens,
                    embed_dims=dims[i][0] if dims else None,
                    num_heads=dims[i][1] if dims else None,
                    key=self.key,
                    **self.options))
            index += 1
        return reducers

    def describe(self) -> str:
        if not self.enabled:
            return 'no token reduction'
        layers = [i for i, s in enumerate(self.schedule) if s is not None]
        opts = ''.join(f', {k}={v!r}' for k, v in self.options.items())
        place = self.options.get('where', self.reducer_class.where)
        where = 'before' if place == 'before_block' else 'in'
        return (f'{self.type} {where} layers {layers}, prop_attn='
                f'{self.prop_attn}{opts}')
