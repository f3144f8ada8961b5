"""Fine-tunes repeated with several seeds, summarised per recipe.

A sweep scores each fine-tuned checkpoint as its own setting
(``...+ckpt=work_dirs/NAME_seed1/iter_500.pth``). Settings that differ only
by the ``_seedK`` suffix of their checkpoint's folder are one recipe; the
folder without a suffix is seed 0.
"""
import re
import statistics
from typing import Dict, List, Sequence

__all__ = ['recipe_of', 'seed_of', 'summarise_seeds']

_SEED = re.compile(r'_seed(\d+)(?=/)')


def recipe_of(setting: str) -> str:
    """The setting with its checkpoint's seed suffix removed."""
    return _SEED.sub('', setting)


def seed_of(setting: str) -> int:
    """The seed of the setting's checkpoint folder (0 without a suffix)."""
    m = _SEED.search(setting)
    return int(m.group(1)) if m else 0


def summarise_seeds(rows: Sequence[Dict],
                    score: str = 'score',
                    control: str = '') -> List[Dict]:
    """One row per recipe: its scores by seed, their mean and spread, and
    the mean's difference to the ``control`` recipe's mean.

    Args:
        rows (Sequence[dict]): sweep rows with ``setting`` and ``score``;
            rows without a score are left out.
        score (str): the score column. Defaults to 'score'.
        control (str): a substring naming the control recipe (e.g. its
            checkpoint folder); '' for no difference column.

    Returns:
        list[dict]: ``recipe``, ``seeds`` (seed -> score), ``mean``,
        ``spread`` (max - min; 0 for one seed), ``std`` (sample standard
        deviation; 0 for one seed) and ``delta`` (mean - control mean, or
        None), in first-seen order.

    Raises:
        ValueError: when ``control`` names no recipe, or several.
    """
    groups: Dict[str, Dict[int, float]] = {}
    for row in rows:
        value = row.get(score)
        if not isinstance(value, float):
            continue
        groups.setdefault(recipe_of(row['setting']),
                          {})[seed_of(row['setting'])] = value
    base = None
    if control:
        named = [r for r in groups if control in r]
        if len(named) != 1:
            raise ValueError(f'control {control!r} names {len(named)} '
                             f'recipes ({named}); it must name one.')
        base = statistics.mean(groups[named[0]].values())
    out = []
    for recipe, seeds in groups.items():
        values = [seeds[k] for k in sorted(seeds)]
        mean = statistics.mean(values)
        out.append(
            dict(recipe=recipe, seeds=dict(sorted(seeds.items())), mean=mean,
                 spread=max(values) - min(values),
                 std=statistics.stdev(values) if len(values) > 1 else 0.,
                 delta=None if base is None else mean - base))
    return out
