"""The compressed models a latency table predicts within a budget.

A *candidate* is one reducer, one set of reducing layers with one keep
ratio at each of them, and one set of channel widths (full, or the widths
magnitude pruning keeps at a FLOPs target). :func:`enumerate_candidates`
gives, for every reducer x layer family x widths, the *largest* uniform
keep ratio the table predicts within the budget (the least compression
that fits), so candidates differ in *where* and *how* they compress, not
in how far below the budget they land. :func:`solver_candidate` adds the
pick of the FLOPs-cost greedy solver
(:func:`~.latency_solver.solve_budget`) as one more candidate.

Nothing here looks at accuracy: ``tools/compress.py`` scores the
candidates on calibration images and times the best.
"""
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from .latency_solver import encoder_flops, solve_budget
from .latency_table import LatencyTable, LayerChoice
from .reducer_traits import reducer_traits

__all__ = [
    'Candidate', 'layer_families', 'keep_schedule', 'keep_for',
    'enumerate_candidates',
    'solver_candidate', 'smallest_reachable'
]

Widths = Tuple[Tuple[int, int, int], ...]


@dataclass(frozen=True)
class Candidate:
    """One compressed model: token schedule and channel widths.

    Attributes:
        reducer (str, optional): token reducer type (None: widths only).
        layers (tuple[int]): layers that reduce tokens.
        r (tuple[int]): patch tokens removed at each of ``layers``.
        keep_ratio (float): the uniform keep ratio behind ``r`` (NaN for
            the solver's per-layer schedule).
        widths_target (float): the FLOPs target the widths were chosen
            for (1.0: full widths).
        widths (tuple): per layer ``(qk, v, ffn)`` widths.
        predicted_ms (float): the table's prediction.
        flops_ratio (float): encoder FLOPs kept against the baseline.
        family (str): the layer family, or ``'solver'``.
    """
    reducer: Optional[str]
    layers: Tuple[int, ...]
    r: Tuple[int, ...]
    keep_ratio: float
    widths_target: float
    widths: Widths
    predicted_ms: float
    flops_ratio: float
    family: str
    extra: Dict = field(default_factory=dict, compare=False)

    @property
    def name(self) -> str:
        """Short and unique within a run, e.g.
        ``ATME 0/3 keep 0.62, widths 0.85``."""
        if self.family == 'solver':
            tokens = f'{self.reducer or "widths"} FLOPs-solver'
            corrected = self.extra.get('correction', 1.0)
            if corrected != 1.0:
                tokens += f' (budget / {corrected:.2f})'
        elif self.reducer is None:
            tokens = 'no token reduction'
        else:
            tokens = (f'{self.reducer} {"/".join(map(str, self.layers))} '
                      f'keep {self.keep_ratio:.2f}')
        if self.family == 'solver':
            return tokens
        widths = ('full widths' if self.widths_target >= 1 else
                  f'widths {self.widths_target:.2f}')
        return f'{tokens}, {widths}'

    @property
    def pruned(self) -> bool:
        """Whether any width is cut."""
        return self.extra.get('pruned', self.widths_target < 1)

    @property
    def uniform(self) -> bool:
        """One keep ratio at every reducing layer (not the solver's
        per-layer ``r``)."""
        return not math.isnan(self.keep_ratio)

    def token_cfg(self) -> Optional[Dict]:
        """The backbone's ``token_cfg``, or None: keep ratios (one, or the
        solver's per layer), which hold at any input size and give the
        candidate's ``r`` at the table's."""
        if self.reducer is None or not self.layers:
            return None
        keep = self.keep_ratio if self.uniform else list(
            self.extra['keep_ratios'])
        return dict(type=self.reducer, keep_ratio=keep,
                    layers=list(self.layers))

    def setting(self, spec: Optional[str] = None) -> str:
        """The sweep's setting string (``tools/analysis/sweep.py``)."""
        parts = []
        tc = self.token_cfg()
        if tc:
            keep = tc['keep_ratio'] if self.uniform else '/'.join(
                map(repr, tc['keep_ratio']))
            parts.append(f'{self.reducer}:keep_ratio={keep},'
                         f'layers={"/".join(map(str, self.layers))}')
        if spec:
            parts.append(f'spec={spec}')
        return '+'.join(parts) or 'baseline'

    def to_dict(self) -> Dict:
        return dict(
            name=self.name, reducer=self.reducer, layers=list(self.layers),
            r=list(self.r), keep_ratio=self.keep_ratio,
            widths_target=self.widths_target,
            widths=[list(w) for w in self.widths],
            predicted_ms=self.predicted_ms, flops_ratio=self.flops_ratio,
            family=self.family, extra=dict(self.extra))

    @classmethod
    def from_dict(cls, d: Dict) -> 'Candidate':
        return cls(
            reducer=d['reducer'], layers=tuple(d['layers']),
            r=tuple(d['r']), keep_ratio=d['keep_ratio'],
            widths_target=d['widths_target'],
            widths=tuple(tuple(w) for w in d['widths']),
            predicted_ms=d['predicted_ms'], flops_ratio=d['flops_ratio'],
            family=d['family'], extra=dict(d.get('extra', {})))


def layer_families(num_layers: int) -> Dict[str, Tuple[int, ...]]:
    """Where a ViT of ``num_layers`` may reduce tokens (12 layers: ``0/3``,
    ``0/3/6``, ``3/6/9``, ``0`` and every layer but the last).

    ``0/3`` is the schedule of our ATME configs, ``3/6/9`` TPS's and
    SPViT's, every layer ToMe's.
    """
    q = max(1, num_layers // 4)
    fams = {
        'early': (0, q),
        'thirds': (0, q, 2 * q),
        'spread': (q, 2 * q, 3 * q),
        'first': (0, ),
        'every': tuple(range(num_layers - 1)),
    }
    out, seen = {}, set()
    for name, layers in fams.items():
        layers = tuple(sorted({i for i in layers if 0 <= i < num_layers}))
        if layers and layers not in seen:
            seen.add(layers)
            out[name] = layers
    return out


def keep_schedule(num_patches: int, layers: Sequence[int], keep: float,
                  num_layers: int, reducer: Optional[str]) -> List[int]:
    """Per-layer ``r`` that keeps ``keep`` of the patch tokens at each of
    ``layers``, rounded up as the backbone rounds a ``keep_ratio``, never
    more than the reducer may remove: what the backbone builds from
    ``token_cfg=dict(keep_ratio=keep, layers=layers)``."""
    prunes = reducer_traits(reducer)['prunes']
    out, n = [], num_patches
    for i in range(num_layers):
        r = 0
        if i in layers:
            r = n - int(math.ceil(n * keep))
            r = max(0, min(r, n - 1 if prunes else n // 2))
        out.append(r)
        n -= r
    return out


def _within_table(num_patches: int, removed: Sequence[int],
                  fewest: int) -> bool:
    """Whether no layer goes below the fewest tokens the table measured
    (a schedule the table would have to extrapolate is left out)."""
    n = num_patches
    for r in removed:
        n -= r
        if r and n < fewest:
            return False
    return True


def _choices(removed: Sequence[int], widths: Widths) -> List[LayerChoice]:
    return [LayerChoice(r, *w) for r, w in zip(removed, widths)]


def _fewest(table: LatencyTable, reducer: Optional[str]) -> int:
    fewest = table.attention['tokens'][0] - table.arch['num_extra_tokens']
    if reducer is not None:
        fewest = max(fewest, table.reducers[reducer]['tokens'][0])
    return max(1, fewest)


def _keeps(reducer: Optional[str], step: float) -> List[float]:
    low = 0.25 if reducer_traits(reducer)['prunes'] else 0.5
    n = int(round((1 - low) / step))
    return [round(1 - step * i, 6) for i in range(1, n + 1)]


def enumerate_candidates(table: LatencyTable,
                         budget_ms: float,
                         reducers: Sequence[Optional[str]],
                         widths: Dict[float, Widths],
                         families: Optional[Dict[str, Sequence[int]]] = None,
                         keep_step: float = 0.01) -> List[Candidate]:
    """Every reducer x layer family x widths that the table predicts within
    ``budget_ms``, each at the largest keep ratio that fits.

    A combination whose widths alone fit the budget is given once as
    ``reducer=None`` (no token reduction); one that cannot fit even at the
    smallest keep ratio (0.5 for merging reducers, 0.25 for pruning ones)
    is left out.

    Args:
        table (LatencyTable): the device's table.
        budget_ms (float): predicted backbone latency to stay within.
        reducers (Sequence[str]): token reducer types (in the table).
        widths (dict[float, tuple]): FLOPs target -> per-layer
            ``(qk, v, ffn)`` widths; ``1.0`` for full widths.
        families (dict, optional): name -> reducing layers; defaults to
            :func:`layer_families`.
        keep_step (float): keep-ratio resolution. Defaults to 0.01.

    Returns:
        list[Candidate]: in order of reducer, widths, family.
    """
    a = table.arch
    L, N = a['num_layers'], table.num_patches
    families = families or layer_families(L)
    base_flops = encoder_flops(table, [table.full_widths()] * L, None)
    out: List[Candidate] = []
    for target, dims in sorted(widths.items(), reverse=True):
        dims = tuple(tuple(int(v) for v in w) for w in dims)
        if len(dims) != L:
            raise ValueError(f'widths {target}: {len(dims)} layers, the '
                             f'table has {L}.')
        plain = _choices([0] * L, dims)
        ms = table.predict(plain)['ms']
        if ms <= budget_ms and target < 1:
            out.append(Candidate(
                None, (), (), 1.0, target, dims, ms,
                encoder_flops(table, plain, None) / base_flops, 'none'))
            continue
        for reducer in reducers:
            if reducer not in table.reducers:
                raise ValueError(f'the latency table has no reducer '
                                 f'{reducer!r}; measured: '
                                 f'{sorted(table.reducers)}.')
            fewest = _fewest(table, reducer)
            for fam, layers in families.items():
                for keep in _keeps(reducer, keep_step):
                    removed = keep_schedule(N, layers, keep, L, reducer)
                    if not any(removed) or not _within_table(
                            N, removed, fewest):
                        continue
                    c = _choices(removed, dims)
                    ms = table.predict(c, reducer)['ms']
                    if ms <= budget_ms:
                        out.append(Candidate(
                            reducer, tuple(i for i in layers if removed[i]),
                            tuple(removed[i] for i in layers if removed[i]),
                            keep, target, dims, ms,
                            encoder_flops(table, c, reducer) / base_flops,
                            fam))
                        break
    return out


def solver_candidate(table: LatencyTable, budget_ms: float,
                     reducer: Optional[str],
                     channels: bool = True,
                     correction: float = 1.0) -> Candidate:
    """The FLOPs-cost greedy solver's pick as a candidate (its widths are
    its own; which channels stay is chosen by magnitude when built).
    ``correction``: the measured/predicted factor ``budget_ms`` was divided
    by (named in the candidate's name when not 1)."""
    sol = solve_budget(table, budget_ms, reducer=reducer, channels=channels,
                       batch=table.meta['batch'])
    layers = tuple(i for i, c in enumerate(sol.layers) if c.r)
    keeps, n = [], table.num_patches
    for c in sol.layers:
        if c.r:
            keeps.append(keep_for(n, c.r))
        n -= c.r
    widths = tuple((c.qk_dims, c.v_dims, c.ffn_dims) for c in sol.layers)
    full = table.full_widths()
    pruned = any(w != (full.qk_dims, full.v_dims, full.ffn_dims)
                 for w in widths)
    return Candidate(
        sol.reducer, layers, tuple(sol.layers[i].r for i in layers),
        float('nan'), sol.flops_ratio if pruned else 1.0, widths,
        sol.predicted_ms, sol.flops_ratio, 'solver',
        extra=dict(pruned=pruned, steps=sol.steps, keep_ratios=keeps,
                   correction=correction))


def keep_for(n: int, r: int) -> float:
    """A keep ratio from which the backbone's rounding gives ``r`` of
    ``n``."""
    keep = (n - r) / n
    while n - int(math.ceil(n * keep)) < r:
        keep = math.nextafter(keep, 0.)
    return keep


def smallest_reachable(table: LatencyTable,
                       reducers: Sequence[Optional[str]],
                       widths: Dict[float, Widths],
                       families: Optional[Dict[str, Sequence[int]]] = None
                       ) -> float:
    """The smallest latency :func:`enumerate_candidates` can reach: every
    family at its smallest keep ratio, with the narrowest widths given."""
    L, N = table.arch['num_layers'], table.num_patches
    families = families or layer_families(L)
    best = math.inf
    for dims in widths.values():
        best = min(best, table.predict(_choices([0] * L, dims))['ms'])
        for reducer in reducers:
            fewest = _fewest(table, reducer)
            for layers in families.values():
                for keep in _keeps(reducer, 0.05)[-3:]:
                    removed = keep_schedule(N, layers, keep, L, reducer)
                    if _within_table(N, removed, fewest):
                        best = min(best, table.predict(
                            _choices(removed, dims), reducer)['ms'])
    return best
