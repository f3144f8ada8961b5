"""The sweep's setting strings: grammar and parser.

A *setting* is a short string that says how to change a config's backbone
before evaluating a checkpoint with it. Parts are joined by ``+``:

- ``baseline``: the config as it is (reducers and pruning off).
- ``TYPE:KEY=VALUE,...``: a token reducer, ``TYPE`` one of the registered
  reducers (``ATME``, ``ToMe``, ``dTPS``, ``eTPS``, ...), keys ``r``,
  ``keep_ratio``, ``layers`` and ``prop_attn`` of ``token_cfg`` plus the
  reducer's own options (its class attribute ``options``, e.g. TPS's
  ``temperature``). Lists are written with ``/`` (``r=16/8/4``);
  ``layers`` also takes a range (``layers=0-10``); booleans are
  ``true``/``false`` or ``1``/``0``. An option's value is read as the type
  of its default (a bool, a number or numbers, or text).
- ``spec=PATH[,ckpt=PATH]``: build the pruned widths of a prune spec
  (``channel_cfg=dict(spec=PATH)``) and load ``ckpt`` (defaults to
  ``pruned.pth`` beside the spec), as written by ``tools/export_pruned.py``.
- ``ckpt=PATH``: evaluate another checkpoint than the sweep's.

Examples: ``ATME:keep_ratio=0.9``, ``ToMe:r=8``,
``dTPS:keep_ratio=0.7,layers=3/6/9,prop_attn=0,temperature=0.5``,
``ATME:keep_ratio=0.9+spec=work_dirs/x/prune_spec.json``.
"""
import os.path as osp
import re
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence

__all__ = ['REDUCER_KEYS', 'MODEL_KEYS', 'SweepSetting', 'parse_setting']

REDUCER_KEYS = ('r', 'keep_ratio', 'layers', 'prop_attn')
MODEL_KEYS = ('spec', 'ckpt')


@dataclass(frozen=True)
class SweepSetting:
    """A parsed setting string (see the module docstring).

    Attributes:
        text (str): the string, also the key of its CSV row.
        token_cfg (dict, optional): the backbone's ``token_cfg``.
        spec (str, optional): a prune spec JSON path.
        checkpoint (str, optional): a checkpoint replacing the sweep's.
    """
    text: str
    token_cfg: Optional[Dict] = None
    spec: Optional[str] = None
    checkpoint: Optional[str] = None

    @property
    def family(self) -> str:
        """``'baseline'``, the reducer type, and/or ``'spec'``."""
        parts = [self.token_cfg['type']] if self.token_cfg else []
        parts += ['spec'] if self.spec else []
        return '+'.join(parts) or 'baseline'


def _number(text: str, key: str, setting: str):
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ValueError(f'setting {setting!r}: `{key}={text}` is not a '
                         'number.') from None


_BOOLS = {'true': True, '1': True, 'false': False, '0': False}
_NO_DEFAULT = object()


def _bool(raw: str, key: str, setting: str) -> bool:
    if raw.lower() not in _BOOLS:
        raise ValueError(f'setting {setting!r}: `{key}` must be true or '
                         f'false (or 1 or 0); got {raw!r}.')
    return _BOOLS[raw.lower()]


def _reducer_value(key: str,
                   raw: str,
                   setting: str,
                   default: Any = _NO_DEFAULT):
    """A common key's value, or an option's read as its ``default``'s
    type (a bool; a number or ``/``-separated numbers; text)."""
    if key == 'prop_attn' or isinstance(default, bool):
        return _bool(raw, key, setting)
    if default is not _NO_DEFAULT and isinstance(default, str):
        return raw
    if key == 'layers' and re.fullmatch(r'\d+-\d+', raw):
        start, end = (int(v) for v in raw.split('-'))
        return list(range(start, end + 1))
    values = [_number(v, key, setting) for v in raw.split('/')]
    if isinstance(default, float):
        values = [float(v) for v in values]
    return values if len(values) > 1 or key == 'layers' else values[0]


def _pairs(body: str, allowed: Sequence[str], setting: str) -> Dict:
    out = {}
    for item in filter(None, body.split(',')):
        key, sep, value = item.partition('=')
        key = key.strip()
        if not sep or not value:
            raise ValueError(f'setting {setting!r}: {item!r} is not '
                             'KEY=VALUE.')
        if key not in allowed:
            raise ValueError(f'setting {setting!r}: unknown key {key!r}; '
                             f'allowed: {list(allowed)}.')
        out[key] = value.strip()
    return out


def parse_setting(text: str, check_checkpoints: bool = True) -> SweepSetting:
    """Parse a setting string (grammar in the module docstring).

    Args:
        text (str): the setting string.
        check_checkpoints (bool): whether a checkpoint the setting names
            (``ckpt``, or ``pruned.pth`` beside a ``spec``) must exist;
            a timing-only sweep loads no weights and needs only the spec.
            Defaults to True.

    Returns:
        SweepSetting: the parsed setting.

    Raises:
        ValueError: naming the offending key, type or part, or a missing
            ``spec`` (or ``ckpt``) file.
    """
    from ..models.reducers import reducer_types
    from ..registry import TOKEN_REDUCERS
    text = text.strip()
    token_cfg, model = None, {}
    for part in text.split('+'):
        part = part.strip()
        if part == 'baseline':
            continue
        if part.startswith(MODEL_KEYS):
            model.update(_pairs(part, MODEL_KEYS, text))
            continue
        kind, sep, body = part.partition(':')
        types = reducer_types()
        if kind not in types:
            raise ValueError(f'setting {text!r}: {part!r} is not `baseline`, '
                             f'`TYPE:KEY=VALUE,...` with TYPE in {types}, '
                             f'`spec=PATH[,ckpt=PATH]` or `ckpt=PATH`.')
        if token_cfg is not None:
            raise ValueError(f'setting {text!r}: one token reducer only.')
        options = TOKEN_REDUCERS.get(kind).options  # its own keys
        pairs = _pairs(body, REDUCER_KEYS + tuple(options), text)
        token_cfg = dict(type=kind)
        token_cfg.update({
            k: _reducer_value(k, v, text, options.get(k, _NO_DEFAULT))
            for k, v in pairs.items()
        })
    spec, ckpt = model.get('spec'), model.get('ckpt')
    if spec is not None:
        if not osp.isfile(spec):
            raise ValueError(f'setting {text!r}: `spec` file {spec!r} does '
                             'not exist.')
        ckpt = ckpt or osp.join(osp.dirname(spec), 'pruned.pth')
    if check_checkpoints and ckpt is not None and not osp.isfile(ckpt):
        raise ValueError(f'setting {text!r}: `ckpt` file {ckpt!r} does not '
                         'exist.')
    return SweepSetting(text, token_cfg, spec, ckpt)
