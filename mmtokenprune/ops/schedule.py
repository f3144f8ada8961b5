"""Where a token reducer acts and how much it removes, parsed once.

A schedule is an immutable per-layer tuple. Each entry is ``None`` (no
reduction after that layer's attention) or a :class:`Step`, which removes
either a fixed number of tokens ``r`` or keeps a fraction ``keep_ratio`` of
the current tokens. A fixed count per layer gives every image in a batch the
same shape.
"""
import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

__all__ = ['Step', 'parse_schedule']

Number = Union[int, float]


@dataclass(frozen=True)
class Step:
    """One reduction: remove ``r`` tokens, or keep ``keep_ratio`` of them."""
    r: Optional[int] = None
    keep_ratio: Optional[float] = None

    def requested(self, num_tokens: int) -> int:
        """Tokens this step asks to remove from ``num_tokens``, unchecked."""
        if self.r is not None:
            return self.r
        return num_tokens - int(math.ceil(num_tokens * self.keep_ratio))

    def num_removed(self,
                    num_tokens: int,
                    key: str = 'token_cfg',
                    max_removed: Optional[int] = None) -> int:
        """Tokens to remove from ``num_tokens`` patch tokens.

        Args:
            num_tokens (int): current patch tokens.
            key (str): config key named in errors.
            max_removed (int, optional): the most one step may remove;
                defaults to half the tokens (merging: a source needs a
                destination). Pruning reducers allow all but one.

        Raises:
            ValueError: if the step would remove more than ``max_removed``.
        """
        r = self.requested(num_tokens)
        limit = num_tokens // 2 if max_removed is None else max_removed
        if r > limit:
            what = f'r={self.r}' if self.r is not None else \
                f'keep_ratio={self.keep_ratio}'
            rule = ('at most half ({}) can be merged per layer'
                    if max_removed is None else
                    'at most {} can be pruned (one must stay)').format(limit)
            raise ValueError(
                f'`{key}`: {what} removes {r} of {num_tokens} patch tokens '
                f'in one layer; {rule}. Use a smaller r / larger keep_ratio '
                'or a larger input.')
        return r


def _per_layer(value, layers: Sequence[int], num_layers: int, name: str,
               key: str) -> Tuple:
    if isinstance(value, (list, tuple)):
        if len(value) != len(layers):
            raise ValueError(
                f'`{key}.{name}` has {len(value)} entries but there are '
                f'{len(layers)} reducing layers ({list(layers)}).')
        return tuple(value)
    return (value, ) * len(layers)


def parse_schedule(num_layers: int,
                   r: Union[None, int, Sequence[int]] = None,
                   keep_ratio: Union[None, float, Sequence[float]] = None,
                   layers: Optional[Sequence[int]] = None,
                   key: str = 'token_cfg') -> Tuple[Optional[Step], ...]:
    """Turn ``r``/``keep_ratio`` and ``layers`` into a per-layer tuple.

    Args:
        num_layers (int): number of encoder layers.
        r (int | list[int], optional): tokens removed at each reducing
            layer (one value for all, or one per entry of ``layers``).
        keep_ratio (float | list[float], optional): fraction of the current
            tokens kept at each reducing layer, in (0, 1].
        layers (list[int], optional): indices of the reducing layers.
            Defaults to all but the last.
        key (str): config key named in error messages.

    Returns:
        tuple: ``num_layers`` entries, each ``None`` or a :class:`Step`.

    Examples:
        >>> parse_schedule(4, r=8, layers=[1, 2])
        (None, Step(r=8, keep_ratio=None), Step(r=8, keep_ratio=None), None)
    """
    if (r is None) == (keep_ratio is None):
        raise ValueError(f'`{key}` needs exactly one of `r` (tokens removed '
                         'per layer) and `keep_ratio` (fraction kept per '
                         f'layer); got r={r!r}, keep_ratio={keep_ratio!r}.')
    if layers is None:
        layers = range(num_layers - 1)
    layers = tuple(layers)
    for i in layers:
        if not isinstance(i, int) or not 0 <= i < num_layers:
            raise ValueError(f'`{key}.layers` entries must be ints in '
                             f'[0, {num_layers}); got {i!r}.')
    if len(set(layers)) != len(layers):
        raise ValueError(f'`{key}.layers` has duplicates: {list(layers)}.')
    steps = [None] * num_layers
    if r is not None:
        for i, ri in zip(layers, _per_layer(r, layers, num_layers, 'r', key)):
            if not isinstance(ri, int) or isinstance(ri, bool) or ri < 0:
                raise ValueError(
                    f'`{key}.r` must be a non-negative int; got {ri!r}.')
            steps[i] = Step(r=ri) if ri > 0 else None
    else:
        ratios = _per_layer(keep_ratio, layers, num_layers, 'keep_ratio', key)
        for i, k in zip(layers, ratios):
            if not isinstance(k, (int, float)) or not 0 < k <= 1:
                raise ValueError(f'`{key}.keep_ratio` must be in (0, 1]; '
                                 f'got {k!r}.')
            steps[i] = Step(keep_ratio=float(k)) if k < 1 else None
    return tuple(steps)
