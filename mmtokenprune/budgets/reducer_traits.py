"""What token counts and costs depend on in a token reducer, by name.

The reducers are registered classes in :mod:`mmtokenprune.models`, a layer
above this one, so this package never imports them: the reducers package
declares where their classes are found (:func:`declare_reducers`, once, when
it is imported) and :func:`reducer_traits` reads four class attributes of
the one named. A reducer registered later (a plugin) is found too, since
the source is asked at every look-up.
"""
from typing import Callable, Dict, List, Mapping, Optional

__all__ = ['declare_reducers', 'reducer_traits']

#: Where registered reducer classes are found: set by
#: :mod:`mmtokenprune.models.reducers` when imported.
_SOURCES: List[Callable[[], Mapping[str, type]]] = []


def declare_reducers(source: Callable[[], Mapping[str, type]]) -> None:
    """Say where the reducer classes are: ``source()`` maps each registered
    name to its class (with ``where``, ``prunes``, ``tail_tokens`` and
    ``supports_prop_attn``). Declaring the same source again is a no-op."""
    if source not in _SOURCES:
        _SOURCES.append(source)


def reducer_traits(reducer: Optional[str]) -> Dict:
    """``where``, ``prunes``, ``tail_tokens`` and ``prop_attn`` (its
    default: whether it supports proportional attention) of a registered
    reducer (what token counts and costs depend on); no reducer (None)
    removes nothing.

    Raises:
        ValueError: for an unknown reducer, naming the registered ones.
    """
    if reducer is None:
        return dict(where=None, prunes=False, tail_tokens=0, prop_attn=False)
    classes: Dict[str, type] = {}
    for source in _SOURCES:
        classes.update(source())
    if reducer not in classes:
        hint = '' if classes else (
            ' (no reducer is declared: importing mmtokenprune.models '
            'declares the registered ones)')
        raise ValueError(f'reducer must be one of {sorted(classes)}; got '
                         f'{reducer!r}{hint}.')
    cls = classes[reducer]
    return dict(where=cls.where, prunes=cls.prunes,
                tail_tokens=cls.tail_tokens,
                prop_attn=cls.supports_prop_attn)
