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
Entries are read through :func:`~.multilinear.interp` (floats and tensors
alike), so the solver and the differentiable budget loss read the same
numbers; token counts follow :func:`~.token_counts.schedule_counts`.
"""
import copy
import functools
import json
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

from .multilinear import interp
from .reducer_traits import reducer_traits
from .token_counts import schedule_counts

__all__ = ['FORMAT', 'LatencyTable', 'LayerChoice']

FORMAT = 'mmtokenprune.latency_table/v1'


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
