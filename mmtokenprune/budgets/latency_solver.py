"""From a latency budget to a per-layer token schedule and channel widths.

:func:`solve_budget` reads a :class:`~.latency_table.LatencyTable` and
greedily compresses the backbone until the table predicts it meets the
budget. Each step tries, for every layer, to keep fewer tokens (a lower
keep ratio at that layer; the reducer's own measured cost is paid once the
layer reduces) and to narrow Q/K, V or the MLP by one step, and takes the
move that saves the most predicted milliseconds per unit of *cost*: the
encoder FLOPs it loses, divided by the fraction of that knob left after
it (so a layer is not emptied first just because narrow layers are the
cheapest to narrow further; our choice, as a stand-in for accuracy). When
some move reaches the budget, the one of least cost among them ends the
search. SPViT's latency-aware idea (a hardware table instead of FLOPs);
the greedy search and the cost are ours.

Constraints: merging reducers remove at most half the tokens of a layer
(the keep ratio floor is 0.5), pruning ones ``min_keep`` (default 0.25);
no layer goes below the fewest tokens the table was measured at;
widths are multiples of ``head_step`` / ``ffn_step`` within the table's
measured grid. A budget below what the most compressed model allowed
reaches raises a ``ValueError`` naming both.
"""
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from ..ops import LayerDims, PruneSpec
from .block_flops import attention_flops, ffn_flops
from .latency_table import LatencyTable, LayerChoice
from .reducer_traits import reducer_traits
from .token_counts import schedule_counts

__all__ = ['BudgetSolution', 'solve_budget', 'encoder_flops']


def encoder_flops(table: LatencyTable, layers: Sequence[LayerChoice],
                  reducer: Optional[str]) -> float:
    """Multiply-accumulates of the encoder blocks per image (as CDCP's
    budget counts them)."""
    a = table.arch
    counts = schedule_counts(table.num_patches, a['num_extra_tokens'],
                             [c.r for c in layers], reducer)
    total = 0.
    for c, n in zip(layers, counts):
        total += attention_flops(n['attn'], a['embed_dims'], a['num_heads'],
                                 c.qk_dims, c.v_dims)
        total += ffn_flops(n['mlp'], a['embed_dims'], c.ffn_dims)
    return total


@dataclass
class BudgetSolution:
    """What :func:`solve_budget` chose.

    Attributes:
        budget_ms (float): the budget.
        predicted (dict): :meth:`LatencyTable.predict` of the choice.
        layers (list[LayerChoice]): per layer ``r`` and widths.
        reducer (str, optional): the reducer type.
        keep_ratios (list[float]): per-layer fraction of patch tokens kept.
        flops_ratio (float): encoder FLOPs kept, against the baseline.
        steps (int): greedy moves taken.
    """
    budget_ms: float
    predicted: Dict
    layers: List[LayerChoice]
    reducer: Optional[str]
    keep_ratios: List[float]
    flops_ratio: float
    steps: int = 0
    arch: Dict = field(default_factory=dict)
    prop_attn: Optional[bool] = None

    @property
    def predicted_ms(self) -> float:
        return self.predicted['ms']

    def token_cfg(self) -> Optional[Dict]:
        """The backbone's ``token_cfg`` (per-layer ``r``), or None."""
        layers = [i for i, c in enumerate(self.layers) if c.r]
        if not layers or self.reducer is None:
            return None
        cfg = dict(
            type=self.reducer,
            r=[self.layers[i].r for i in layers],
            layers=layers)
        if self.prop_attn is not None:
            cfg['prop_attn'] = self.prop_attn
        return cfg

    def prune_spec(self) -> Optional[PruneSpec]:
        """The widths as a :class:`PruneSpec`, or None when unpruned."""
        a = self.arch
        full = (a['head_dims'], a['head_dims'], a['feedforward_channels'])
        if all((c.qk_dims, c.v_dims, c.ffn_dims) == full
               for c in self.layers):
            return None
        return PruneSpec(
            arch=dict(
                embed_dims=a['embed_dims'],
                num_layers=a['num_layers'],
                num_heads=a['num_heads'],
                feedforward_channels=a['feedforward_channels']),
            layers=tuple(
                LayerDims(c.qk_dims, c.v_dims, c.ffn_dims)
                for c in self.layers))

    def channel_cfg(self) -> Optional[Dict]:
        spec = self.prune_spec()
        return None if spec is None else dict(spec=spec.to_dict())


def _widths(grid: Sequence[int], step: int, key: str) -> List[int]:
    lo, hi = grid[0], grid[-1]
    if not isinstance(step, int) or step < 1:
        raise ValueError(f'`{key}` must be a positive int; got {step!r}.')
    values = [w for w in range(hi, lo - 1, -step)]
    return values  # descending: full first


def solve_budget(table: LatencyTable,
                 budget_ms: float,
                 reducer: Optional[str] = 'ATME',
                 channels: bool = True,
                 layers: Optional[Sequence[int]] = None,
                 keep_step: float = 0.01,
                 keep_move: int = 5,
                 min_keep: Optional[float] = None,
                 head_step: int = 16,
                 ffn_step: Optional[int] = None,
                 prop_attn: Optional[bool] = None,
                 batch: Optional[int] = None) -> BudgetSolution:
    """Choose a token schedule and widths that the table predicts meet
    ``budget_ms`` (see the module docstring).

    Args:
        table (LatencyTable): measured on the device of interest.
        budget_ms (float): the backbone's latency budget, in the table's
            units (ms per forward of the table's batch, its clock).
        reducer (str, optional): token reducer type; None reduces no
            tokens. Defaults to 'ATME'.
        channels (bool): prune channels (Q/K, V per head, MLP hidden).
            Defaults to True.
        layers (Sequence[int], optional): layers that may reduce tokens;
            defaults to all but the last.
        keep_step (float): keep-ratio resolution. Defaults to 0.01.
        keep_move (int): the most ``keep_step`` one move takes at a layer
            that already reduces. Defaults to 5.
        min_keep (float, optional): the smallest keep ratio of one layer;
            defaults to 0.5 for merging reducers (at most half merge),
            0.25 for pruning ones.
        head_step (int): Q/K and V widths per head step down from the
            full width by it. Defaults to 16: the points of the table's
            grid, and on CPUs with 16-float vectors a width between two
            multiples of 16 can cost nearly what the larger one does
            (attention at 40 channels per head measured close to 48), which
            interpolation would not see.
        ffn_step (int, optional): MLP width step; defaults to 1/24 of the
            full width.
        prop_attn (bool, optional): proportional attention; defaults to
            the reducer's default.
        batch (int, optional): the batch the budget is for; must be the
            table's.

    Returns:
        BudgetSolution: the choice and its prediction.

    Raises:
        ValueError: for a budget the constrained model cannot reach (naming
            the budget and the smallest reachable latency), a batch other
            than the table's, or bad options.
    """
    a = table.arch
    L, d, F = a['num_layers'], a['head_dims'], a['feedforward_channels']
    source, table = table, table.cached()
    if batch is not None and batch != table.meta['batch']:
        raise ValueError(f'the latency table was measured at batch '
                         f'{table.meta["batch"]}; got batch={batch}.')
    if not budget_ms > 0:
        raise ValueError(f'budget_ms must be positive; got {budget_ms!r}.')
    traits = reducer_traits(reducer)
    if reducer is not None and reducer not in table.reducers:
        raise ValueError(f'the latency table has no reducer {reducer!r}; '
                         f'measured: {sorted(table.reducers)}.')
    if min_keep is None:
        min_keep = 0.25 if traits['prunes'] else 0.5
    if not 0 < keep_step < 1 or not 0 < min_keep <= 1 or keep_move < 1:
        raise ValueError(f'need 0 < keep_step < 1, 0 < min_keep <= 1 and '
                         f'keep_move >= 1; got keep_step={keep_step}, '
                         f'min_keep={min_keep}, keep_move={keep_move}.')
    if not traits['prunes'] and min_keep < 0.5:
        raise ValueError(f'min_keep={min_keep}: {reducer} merges, at most '
                         'half the tokens of a layer (min_keep >= 0.5).')
    reducing = set(range(L - 1) if layers is None else layers)
    if reducer is None:
        reducing = set()
    bad = sorted(i for i in reducing if not 0 <= i < L)
    if bad:
        raise ValueError(f'layers {bad} are not in [0, {L}).')
    ffn_step = ffn_step or max(1, F // 24)
    keeps = [1.]
    while keeps[-1] - keep_step >= min_keep - 1e-9:
        keeps.append(round(keeps[-1] - keep_step, 6))
    options = dict(
        keep=keeps,
        qk=_widths(table.attention['qk_dims'], head_step, 'head_step'),
        v=_widths(table.attention['v_dims'], head_step, 'head_step'),
        ffn=_widths(table.mlp['ffn_dims'], ffn_step, 'ffn_step'))
    if not channels:
        options.update(qk=[d], v=[d], ffn=[F])
    for name, first in (('qk', d), ('v', d), ('ffn', F)):
        if options[name][0] != first:
            raise ValueError(f'the table\'s {name} grid ends at '
                             f'{options[name][0]}, not the model\'s {first}.')
    knobs = ('keep', 'qk', 'v', 'ffn')
    cache: Dict = {}

    # the fewest patch tokens the table was measured at
    fewest = table.attention['tokens'][0] - a['num_extra_tokens']
    if reducer is not None:
        fewest = max(fewest, table.reducers[reducer]['tokens'][0])

    def choices(state) -> List[LayerChoice]:
        out, n = [], table.num_patches
        for i, s in enumerate(state):
            keep = options['keep'][s[0]]
            r = n - int(math.ceil(n * keep)) if i in reducing else 0
            r = max(0, min(r, n - fewest))
            out.append(LayerChoice(r, options['qk'][s[1]],
                                   options['v'][s[2]],
                                   options['ffn'][s[3]]))
            n -= r
        return out

    def evaluate(state):
        key = tuple(state)
        if key not in cache:
            c = choices(state)
            cache[key] = (table.predict(c, reducer, prop_attn)['ms'],
                          encoder_flops(table, c, reducer), c)
        return cache[key]

    def worst(state):
        return [tuple(len(options[k]) - 1 if (k != 'keep' or i in reducing)
                      else 0 for k in knobs) for i in range(L)]

    def floor() -> float:
        """The smallest latency the constraints reach: narrowest widths,
        and the keep ratios found by coordinate descent on the predicted
        latency (a reducer costs time of its own, so removing the most
        tokens everywhere need not be fastest)."""
        narrow = [(0, len(options['qk']) - 1, len(options['v']) - 1,
                   len(options['ffn']) - 1)] * L
        found = []
        for state in (narrow, worst(narrow)):
            ms = evaluate(state)[0]
            while True:
                best = None
                for i in sorted(reducing):
                    for t in range(len(options['keep'])):
                        if t == state[i][0]:
                            continue
                        new = list(state)
                        new[i] = (t, ) + state[i][1:]
                        m = evaluate(new)[0]
                        if m < ms - 1e-9 and (best is None or m < best[0]):
                            best = (m, new)
                if best is None:
                    break
                ms, state = best
            found.append(ms)
        return min(found)

    def impossible(smallest: float) -> ValueError:
        return ValueError(
            f'latency budget {budget_ms:.2f} ms is below the smallest '
            f'reachable latency {smallest:.2f} ms under these constraints '
            f'(reducer={reducer}, min_keep={min_keep}, channels='
            f'{channels}, widths down to qk/v {options["qk"][-1]}, ffn '
            f'{options["ffn"][-1]}; baseline {full_ms:.2f} ms).')

    state = [(0, 0, 0, 0)] * L
    full_ms, full_flops, _ = evaluate(state)
    if budget_ms < full_ms:
        floor_ms = floor()
        if budget_ms < floor_ms:
            raise impossible(floor_ms)
    steps = 0
    ms, flops, _ = evaluate(state)
    while ms > budget_ms:
        best = reach = None
        for i in range(L):
            for k, knob in enumerate(knobs):
                cur = state[i][k]
                if knob == 'keep':
                    if i not in reducing:
                        continue
                    # from no reduction, any keep ratio: the reducer's own
                    # cost is paid once, so a first step must be judged
                    # with its size; then up to ``keep_move`` steps
                    last = len(options['keep']) if cur == 0 else \
                        cur + 1 + keep_move
                    targets = range(cur + 1, last)
                else:
                    targets = [cur + 1]
                for t in targets:
                    if t >= len(options[knob]):
                        continue
                    new = list(state)
                    new[i] = state[i][:k] + (t, ) + state[i][k + 1:]
                    m, f, _ = evaluate(new)
                    saved, lost = ms - m, flops - f
                    if saved <= 0:
                        continue
                    left = options[knob][t] / options[knob][0]
                    cost = max(lost, 0.) / left
                    if m <= budget_ms and (reach is None or cost < reach[0]):
                        reach = (cost, new)
                    ratio = saved / cost if cost > 0 else math.inf
                    if best is None or ratio > best[0]:
                        best = (ratio, new)
        if reach is not None:
            state = reach[1]
        elif best is not None:
            state = best[1]
        else:  # a local minimum of the search above the budget
            raise impossible(min(ms, floor_ms))
        ms, flops, _ = evaluate(state)
        steps += 1
    _, _, chosen = evaluate(state)
    keep_ratios, n = [], table.num_patches
    for c in chosen:
        keep_ratios.append((n - c.r) / n)
        n -= c.r
    return BudgetSolution(
        budget_ms=budget_ms,
        predicted=source.predict(chosen, reducer, prop_attn),
        layers=chosen,
        reducer=reducer if any(c.r for c in chosen) else None,
        keep_ratios=keep_ratios,
        flops_ratio=flops / full_flops,
        steps=steps,
        arch=dict(a),
        prop_attn=prop_attn)
