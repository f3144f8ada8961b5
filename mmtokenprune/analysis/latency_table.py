"""A device latency table of a ViT: what a block costs at N tokens and
given widths, read back to predict a whole backbone.

The table (JSON, written by ``tools/analysis/latency_table.py`` through
:func:`~mmtokenprune.analysis.latency_table_build.measure_table`) holds
medians of interleaved timings on one device, at one batch size, dtype,
clock and thread count (all written in it, with the torch version, the
date and the load average):

- ``attention``: ``x + attn(ln1(x))`` over a grid of tokens ``N`` x Q/K
  channels per head x V channels per head, without and with the
  proportional-attention bias (``ms`` / ``ms_bias``);
- ``mlp``: ``ffn(ln2(x), identity=x)`` over ``N`` x hidden width;
- ``reducers``: each reducer's own forward (scoring, matching, merging,
  the map update) over patch tokens ``N`` x removed fraction ``r / N``;
- ``stem`` (patch embedding, class token, position embedding), the final
  norm over ``N``, and the dense output of each ``out_indices`` layer
  (plain, or un-merged from ``N`` tokens).

Between grid points the model is multilinear: piecewise linear in ``N``
(a dense grid, so attention's ``N^2`` term is followed closely) and in the
widths (the measured latency of a block is close to linear in its widths:
the table records how far a linear fit in the widths is off, ``linearity``).
:func:`interp` is written once for floats and tensors, so the solver and
the differentiable budget loss read the same numbers.
"""
import bisect
import copy
import functools
import itertools
import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = [
    'FORMAT', 'LatencyTable', 'LayerChoice', 'interp', 'schedule_counts',
    'reducer_traits'
]

FORMAT = 'mmtokenprune.latency_table/v1'


def interp(grids: Sequence[Sequence[float]],
           values,
           point: Sequence,
           names: Sequence[str] = (),
           extrapolate: bool = False,
           where: str = 'latency table'):
    """Multilinear interpolation of ``values`` (nested lists) on ``grids``.

    Works on Python numbers and on tensors alike: the cell is chosen from
    ``float(x)``, the weights are computed from ``x`` itself, so a tensor
    coordinate gives a differentiable tensor result.

    Args:
        grids (Sequence[Sequence[float]]): ascending grid of each axis.
        values: nested lists, ``values[i][j]...`` at ``grids[0][i]``,
            ``grids[1][j]``...
        point (Sequence): one coordinate per axis (float or tensor).
        names (Sequence[str]): axis names for errors.
        extrapolate (bool): continue the edge cells linearly beyond the
            grid instead of raising. Defaults to False.
        where (str): what is read, for errors.

    Raises:
        ValueError: a coordinate outside its grid (without
            ``extrapolate``), naming the axis and the grid's range.
    """
    names = list(names) or [f'axis {i}' for i in range(len(grids))]
    cells = []
    for g, x, name in zip(grids, point, names):
        xf = float(x.detach() if hasattr(x, 'detach') else x)
        if len(g) == 1:
            cells.append((0, None))
            continue
        tol = 1e-6 * max(1., abs(g[-1]))
        if not extrapolate and not g[0] - tol <= xf <= g[-1] + tol:
            raise ValueError(f'{where}: {name}={xf:g} is outside the '
                             f'measured grid [{g[0]:g}, {g[-1]:g}].')
        i = min(max(bisect.bisect_right(g, xf) - 1, 0), len(g) - 2)
        cells.append((i, (x - g[i]) / (g[i + 1] - g[i])))
    total = 0.
    for corner in itertools.product((0, 1), repeat=len(cells)):
        weight, v = 1., values
        for (i, t), c in zip(cells, corner):
            if t is None:
                if c:
                    break
                v = v[i]
                continue
            weight = weight * (t if c else 1 - t)
            v = v[i + c]
        else:
            total = total + weight * v
    return total


@functools.lru_cache(maxsize=None)
def _traits(reducer: Optional[str]) -> Tuple:
    if reducer is None:
        return (None, False, 0, False)
    from ..models.reducers import reducer_types
    from ..registry import TOKEN_REDUCERS
    types = reducer_types()
    if reducer not in types:
        raise ValueError(f'reducer must be one of {types}; got {reducer!r}.')
    cls = TOKEN_REDUCERS.get(reducer)
    return (cls.where, cls.prunes, cls.tail_tokens, cls.supports_prop_attn)


def reducer_traits(reducer: Optional[str]) -> Dict:
    """``where``, ``prunes``, ``tail_tokens`` and ``prop_attn`` (its
    default: whether it supports proportional attention) of a registered
    reducer (what token counts and costs depend on).

    Raises:
        ValueError: for an unknown reducer, naming the registered ones.
    """
    return dict(
        zip(('where', 'prunes', 'tail_tokens', 'prop_attn'),
            _traits(reducer)))


def schedule_counts(num_patches: int, num_extra_tokens: int,
                    removed: Sequence[int],
                    reducer: Optional[str]) -> List[Dict]:
    """Tokens seen by every layer of a ViT under a per-layer ``r``
    (the rule of ``PrunedVisionTransformer.token_counts``).

    Args:
        num_patches (int): patch tokens of the input.
        num_extra_tokens (int): leading extra tokens (cls).
        removed (Sequence[int]): tokens removed at each layer (0: none).
        reducer (str, optional): the reducer type.

    Returns:
        list[dict]: per layer ``attn`` (tokens of the attention), ``mlp``
        (tokens of the MLP), ``patches`` (patch tokens the reducer sees)
        and ``r``.

    Raises:
        ValueError: a step removing more than the reducer allows (merging:
            half the patch tokens; pruning: all but one).
    """
    traits = reducer_traits(reducer)
    n, extra, out = num_patches, num_extra_tokens, []
    for i, r in enumerate(removed):
        before, before_extra, seen = n, extra, n
        if r:
            most = n - 1 if traits['prunes'] else n // 2
            if not 0 < r <= most:
                raise ValueError(f'layer {i}: r={r} of {n} patch tokens; '
                                 f'{reducer} removes at most {most}.')
            n -= r
            extra += traits['tail_tokens']
        if r and traits['where'] == 'before_block':
            before, before_extra = n, extra
        out.append(
            dict(attn=before + before_extra, mlp=n + extra, patches=seen,
                 r=r))
    return out


@dataclass(frozen=True)
class LayerChoice:
    """What one layer runs: tokens removed and widths.

    Attributes:
        r (int): patch tokens its reducer removes (0: no reducer).
        qk_dims (int): Q/K channels per head.
        v_dims (int): V channels per head.
        ffn_dims (int): MLP hidden channels.
    """
    r: int
    qk_dims: int
    v_dims: int
    ffn_dims: int


@dataclass
class LatencyTable:
    """A measured latency table (see the module docstring).

    Attributes:
        meta (dict): device, threads, dtype, batch, clock, torch version,
            date, load average, repeats.
        arch (dict): ``embed_dims``, ``num_heads``, ``head_dims``,
            ``feedforward_channels``, ``num_layers``, ``num_extra_tokens``,
            ``patch_grid``, ``num_outputs``, ``final_norm``.
        attention (dict): ``tokens``, ``qk_dims``, ``v_dims``, ``ms``,
            ``ms_bias`` (nested ``[N][qk][v]``).
        mlp (dict): ``tokens``, ``ffn_dims``, ``ms`` (``[N][ffn]``).
        reducers (dict): type -> ``tokens`` (patch tokens), ``fraction``
            (``r / N``), ``ms`` (``[N][fraction]``).
        parts (dict): ``stem_ms``; ``final_norm`` and ``unmerge``
            (``tokens``, ``ms``); ``output_ms`` (a plain dense output).
        checks (dict): the linearity of the widths model, and the
            predicted vs measured unreduced backbone.
    """
    meta: Dict
    arch: Dict
    attention: Dict
    mlp: Dict
    reducers: Dict
    parts: Dict
    checks: Dict = field(default_factory=dict)

    # --------------------------------------------------------------- I/O
    def to_dict(self) -> Dict:
        return dict(
            format=FORMAT,
            meta=self.meta,
            arch=self.arch,
            attention=self.attention,
            mlp=self.mlp,
            reducers=self.reducers,
            parts=self.parts,
            checks=self.checks)

    @classmethod
    def from_dict(cls, data: Dict, source: str = 'latency table'
                  ) -> 'LatencyTable':
        if data.get('format') != FORMAT:
            raise ValueError(f'{source}: format {data.get("format")!r} is '
                             f'not {FORMAT!r}.')
        keys = ('meta', 'arch', 'attention', 'mlp', 'reducers', 'parts')
        missing = [k for k in keys if k not in data]
        if missing:
            raise ValueError(f'{source}: missing {missing}.')
        return cls(**{k: data[k] for k in keys},
                   checks=data.get('checks', {}))

    @classmethod
    def load(cls, source) -> 'LatencyTable':
        """From a JSON path, a dict or a table."""
        if isinstance(source, LatencyTable):
            return source
        if isinstance(source, dict):
            return cls.from_dict(source)
        with open(source) as f:
            return cls.from_dict(json.load(f), source)

    def dump(self, path: str) -> None:
        with open(path, 'w') as f:
            json.dump(self.to_dict(), f, indent=1)

    # ------------------------------------------------------------ queries
    @property
    def num_patches(self) -> int:
        h, w = self.arch['patch_grid']
        return h * w

    def attention_ms(self, tokens, qk_dims, v_dims, bias: bool = False,
                     extrapolate: bool = False):
        a = self.attention
        return interp((a['tokens'], a['qk_dims'], a['v_dims']),
                      a['ms_bias'] if bias else a['ms'],
                      (tokens, qk_dims, v_dims),
                      ('tokens', 'qk_dims', 'v_dims'), extrapolate,
                      'latency table attention')

    def mlp_ms(self, tokens, ffn_dims, extrapolate: bool = False):
        m = self.mlp
        return interp((m['tokens'], m['ffn_dims']), m['ms'],
                      (tokens, ffn_dims), ('tokens', 'ffn_dims'),
                      extrapolate, 'latency table mlp')

    def reducer_ms(self, reducer: str, patches, r, extrapolate=False):
        """The reducer's own forward removing ``r`` of ``patches`` tokens
        (0 for ``r == 0``: no reducer runs)."""
        if not float(r.detach() if hasattr(r, 'detach') else r):
            return 0.
        if reducer not in self.reducers:
            raise ValueError(f'the latency table has no reducer '
                             f'{reducer!r}; measured: '
                             f'{sorted(self.reducers)}.')
        t = self.reducers[reducer]
        frac = r / patches
        value = float(frac.detach() if hasattr(frac, 'detach') else frac)
        lo, hi = t['fraction'][0], t['fraction'][-1]
        # below the smallest measured fraction the cost is the smallest's
        # (scoring and matching depend on N, not on r)
        if value < lo:
            frac = frac * 0 + lo
        if value > hi and not extrapolate:
            raise ValueError(f'latency table {reducer}: r={float(r):g} of '
                             f'{float(patches):g} tokens is beyond the '
                             f'measured fraction {hi:g}.')
        return interp((t['tokens'], t['fraction']), t['ms'], (patches, frac),
                      ('patch tokens', 'r / N'), extrapolate,
                      f'latency table {reducer}')

    def final_norm_ms(self, tokens, extrapolate: bool = False):
        if not self.arch['final_norm']:
            return 0.
        p = self.parts['final_norm']
        return interp((p['tokens'], ), p['ms'], (tokens, ), ('tokens', ),
                      extrapolate, 'latency table final norm')

    def outputs_ms(self, patches=None, extrapolate: bool = False):
        """Dense outputs: plain (``patches`` None), else un-merged from
        ``patches`` tokens at each output layer (``patches`` a list)."""
        if patches is None:
            return self.arch['num_outputs'] * self.parts['output_ms']
        p = self.parts['unmerge']
        return sum(
            interp((p['tokens'], ), p['ms'], (n, ), ('tokens', ),
                   extrapolate, 'latency table unmerge') for n in patches)

    def cached(self) -> 'LatencyTable':
        """A copy whose per-entry queries are memoised, for searches that
        ask the same ones many times (the solver)."""
        table = copy.copy(self)
        for name in ('attention_ms', 'mlp_ms', 'reducer_ms',
                     'final_norm_ms'):
            setattr(table, name,
                    functools.lru_cache(maxsize=None)(getattr(self, name)))
        return table

    # --------------------------------------------------------- prediction
    def check_arch(self, head_dims: int, ffn_dims: int, num_layers: int,
                   grid: Tuple[int, int], what: str = 'model') -> None:
        """Refuse a model whose architecture the table was not measured
        for, naming what differs."""
        mine = (self.arch['head_dims'], self.arch['feedforward_channels'],
                self.arch['num_layers'], tuple(self.arch['patch_grid']))
        theirs = (head_dims, ffn_dims, num_layers, tuple(grid))
        if mine != theirs:
            raise ValueError(
                f'the latency table was measured for (head_dims, ffn, '
                f'layers, patch grid) = {mine}; the {what} has {theirs}.')

    def predict(self,
                layers: Sequence[LayerChoice],
                reducer: Optional[str] = None,
                prop_attn: Optional[bool] = None,
                out_indices: Optional[Sequence[int]] = None) -> Dict:
        """Predicted backbone latency of a schedule and widths.

        Args:
            layers (Sequence[LayerChoice]): one per encoder layer.
            reducer (str, optional): the reducer type (None: no tokens
                removed anywhere).
            prop_attn (bool, optional): proportional attention; defaults
                to the reducer's default.
            out_indices (Sequence[int], optional): layers with a dense
                output; defaults to the table's.

        Returns:
            dict: ``ms`` (total) and its parts ``stem``, ``attention``,
            ``mlp``, ``reducer``, ``outputs`` and ``per_layer`` (ms of each
            layer: attention + MLP + reducer).
        """
        if len(layers) != self.arch['num_layers']:
            raise ValueError(f'{len(layers)} layers given; the table is for '
                             f'{self.arch["num_layers"]}.')
        reducing = reducer is not None and any(c.r for c in layers)
        traits = reducer_traits(reducer if reducing else None)
        if prop_attn is None:
            prop_attn = traits['prop_attn']
        bias = reducing and bool(prop_attn)
        counts = schedule_counts(self.num_patches,
                                 self.arch['num_extra_tokens'],
                                 [c.r for c in layers],
                                 reducer if reducing else None)
        out = dict(stem=self.parts['stem_ms'], attention=0., mlp=0.,
                   reducer=0., per_layer=[])
        for c, n in zip(layers, counts):
            a = self.attention_ms(n['attn'], c.qk_dims, c.v_dims, bias)
            m = self.mlp_ms(n['mlp'], c.ffn_dims)
            red = self.reducer_ms(reducer, n['patches'], c.r) if c.r else 0.
            out['attention'] += a
            out['mlp'] += m
            out['reducer'] += red
            out['per_layer'].append(a + m + red)
        out['outputs'] = self.final_norm_ms(counts[-1]['mlp'])
        if reducing:
            idx = out_indices if out_indices is not None else \
                self.arch['out_indices']
            extra = self.arch['num_extra_tokens']
            out['outputs'] += self.outputs_ms(
                [counts[i]['mlp'] - extra for i in idx])
        else:
            out['outputs'] += self.outputs_ms()
        out['ms'] = (out['stem'] + out['attention'] + out['mlp'] +
                     out['reducer'] + out['outputs'])
        return out

    def full_widths(self) -> LayerChoice:
        d = self.arch['head_dims']
        return LayerChoice(0, d, d, self.arch['feedforward_channels'])

    def baseline_ms(self) -> float:
        """Predicted latency of the unreduced, unpruned backbone."""
        return self.predict([self.full_widths()] *
                            self.arch['num_layers'])['ms']
