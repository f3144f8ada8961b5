"""Measure a :class:`~mmtokenprune.budgets.latency_table.LatencyTable` on
the current device, for the architecture of a ViT backbone.

Every entry is the median of interleaved timings
(:func:`~mmtokenprune.analysis.latency.time_interleaved`, the benchmark's
timer): all block settings of all token counts run in turns (and all
settings of one reducer), so drift of a shared machine falls on them
alike instead of bending the table along ``N``; then every series along
``N`` is fitted with a quadratic (:func:`smooth_in_tokens`), so one noisy
median cannot steer the solver. Blocks are timed in pieces with fresh
random weights: attention (``x + attn(ln1(x))``), MLP
(``ffn(ln2(x), identity=x)``), each reducer's own forward, and the parts
outside the blocks, taken from the backbone itself.
"""
import datetime
import os
import statistics
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..budgets import FORMAT, LatencyTable
from ..ops import Step, TokenMap, unmerge_tokens
from .latency import (check_timing, device_name, num_threads,
                      time_interleaved)

__all__ = ['default_grids', 'measure_table']

MERGE_FRACTIONS = (1 / 16, 1 / 4, 1 / 2)
PRUNE_FRACTIONS = (1 / 16, 1 / 4, 1 / 2, 3 / 4, 15 / 16)


def default_grids(num_patches: int, num_extra_tokens: int, head_dims: int,
                  ffn_dims: int, token_points: int = 16) -> Dict:
    """The default grid: tokens from ``E + N0 / 64`` to ``E + N0``
    (geometric below ``N0 / 4``, then ``token_points`` evenly spaced),
    widths in quarters (Q/K and V per head also at 8), MLP in eighths
    up to a quarter, then quarters."""
    E, N0 = num_extra_tokens, num_patches
    low = [max(2, N0 // 2**k) for k in range(2, 7)]
    high = np.linspace(N0 // 4, N0, token_points).round().astype(int)
    tokens = sorted({E + int(n) for n in list(low) + list(high)})
    heads = sorted({min(8, head_dims)} |
                   {max(1, head_dims * k // 4) for k in range(1, 5)})
    ffn = sorted({max(1, ffn_dims * k // 8) for k in (1, 2, 4, 6, 8)})
    return dict(tokens=tokens, head_dims=heads, ffn_dims=ffn)


def _median(times: Dict[str, List[float]]) -> Dict[str, float]:
    return {k: statistics.median(v) for k, v in times.items()}


def _stem(backbone: nn.Module, img: torch.Tensor) -> torch.Tensor:
    """The backbone's forward up to its first layer."""
    return backbone.stem(img)[0]


def _reduced_map(reducer_cls, n_from: int, n_to: int, batch: int,
                 grid, embed_dims: int, num_heads: int, extra: int,
                 gen: torch.Generator, device: str = 'cpu'):
    """Random features and the map of ``n_to`` tokens, reduced from the
    full grid by the reducer type itself (untimed), with any trailing
    tokens it appends."""
    tokens = TokenMap.identity(batch, grid, torch.device(device))
    x = torch.randn(batch, extra + n_from, embed_dims,
                    generator=gen).to(device)
    n, index = n_from, 0
    while n > n_to:
        r = n - n_to if reducer_cls.prunes else min(n // 2, n - n_to)
        red = _build_reducer(reducer_cls, r, extra, embed_dims, num_heads,
                             index).to(device)
        q = k = torch.randn(batch, num_heads, x.shape[1],
                            embed_dims // num_heads, generator=gen).to(device)
        x, tokens = red(x, tokens, queries=q, keys=k, scale=1.)
        n, index = n - r, index + 1
    return x, tokens


def _build_reducer(cls, r: int, extra: int, embed_dims: int, num_heads: int,
                   index: int = 0) -> nn.Module:
    return cls(
        step=Step(r=r),
        index=index,
        num_extra_tokens=extra,
        embed_dims=embed_dims,
        num_heads=num_heads).eval()


def measure_table(backbone: nn.Module,
                  batch: int = 1,
                  grids: Optional[Dict] = None,
                  reducers: Optional[Sequence[str]] = None,
                  repeats: int = 7,
                  warmup: int = 2,
                  device: str = 'cpu',
                  dtype: str = 'fp32',
                  clock: str = 'cpu',
                  threads: Optional[int] = 1,
                  seed: int = 0,
                  check_repeats: int = 5,
                  smooth: bool = True,
                  log: Optional[Callable[[str], None]] = None
                  ) -> LatencyTable:
    """Measure the latency table of ``backbone``'s architecture.

    Args:
        backbone (nn.Module): a :class:`PrunedVisionTransformer` (random
            weights are fine), unreduced and unpruned; its first layer
            gives the widths, its ``img_size`` the patch grid.
        batch (int): images per timed forward. Defaults to 1.
        grids (dict, optional): ``tokens``, ``head_dims`` (Q/K and V per
            head) and ``ffn_dims``; defaults to :func:`default_grids`.
        reducers (Sequence[str], optional): reducer types to measure;
            defaults to every registered one.
        repeats, warmup (int): timed and untimed rounds per entry.
            Defaults to 7 and 2.
        device, dtype, clock, threads: as the benchmark's
            (:func:`~mmtokenprune.analysis.latency.time_interleaved`).
            Defaults to CPU, fp32, process CPU time and 1 thread.
        seed (int): seed of the random inputs and weights. Defaults to 0.
        check_repeats (int): rounds of the whole-backbone check (predicted
            vs measured); 0 skips it. Defaults to 5.
        smooth (bool): fit every series along ``N`` with a quadratic
            (:func:`smooth_in_tokens`; raw medians kept as ``ms_raw``).
            Defaults to True.
        log (callable, optional): progress lines.

    Returns:
        LatencyTable: the table.
    """
    from ..models.layers import PrunedTransformerEncoderLayer
    from ..models.cdcp import BlockCDCP
    from ..models.layers.encoder_layer import size_bias
    from ..models.reducers import reducer_types
    from ..registry import TOKEN_REDUCERS
    check_timing(device, dtype, clock, threads)
    say = log or (lambda msg: None)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    layer0 = backbone.layers[0]
    C, h = layer0.attn.embed_dims, layer0.attn.num_heads
    d, F = layer0.attn.qk_dims, layer0.ffn.layers[0][0].out_features
    if layer0.attn.v_dims != d or layer0.reducer is not None:
        raise ValueError('measure_table needs the unpruned, unreduced '
                         'backbone (token_cfg=None, no channel spec).')
    E, grid = backbone.num_extra_tokens, tuple(backbone.patch_resolution)
    N0 = grid[0] * grid[1]
    grids = grids or default_grids(N0, E, d, F)
    tokens, heads = grids['tokens'], grids['head_dims']
    ffns = grids['ffn_dims']
    if max(tokens) != E + N0 or max(heads) != d or max(ffns) != F:
        raise ValueError(f'the grids must end at the full model: tokens '
                         f'{E + N0}, head_dims {d}, ffn_dims {F}; got '
                         f'{max(tokens)}, {max(heads)}, {max(ffns)}.')
    reducers = list(reducers if reducers is not None else reducer_types())

    def timed(fns: Dict[str, Callable], n: int = repeats) -> Dict:
        return _median(
            time_interleaved(fns, n, warmup, device, dtype, clock, threads))

    def layer(qk, v, f):
        return PrunedTransformerEncoderLayer(
            C, h, F, num_extra_tokens=E,
            cdcp=BlockCDCP(qk_dims=qk, v_dims=v, ffn_dims=f)).to(device).eval()

    loads = [os.getloadavg()[0]]
    attn_layers = {(qk, v): layer(qk, v, 1) for qk in heads for v in heads}
    mlp_layers = {f: layer(1, 1, f) for f in ffns}
    ms = [[[0.] * len(heads) for _ in heads] for _ in tokens]
    ms_bias = [[[0.] * len(heads) for _ in heads] for _ in tokens]
    mlp = [[0.] * len(ffns) for _ in tokens]
    # every token count in the same rounds: drift of a shared machine falls
    # on all entries alike, not on the counts timed last
    fns = {}
    for n in tokens:
        x = torch.randn(batch, n, C, generator=gen).to(device)
        sizes = TokenMap(
            assign=torch.zeros(batch, 1, dtype=torch.long),
            size=torch.rand(batch, n - E, generator=gen) + 1,
            anchor=torch.zeros(batch, n - E, dtype=torch.long), grid=grid)
        bias = size_bias(sizes, E, n, x.dtype).to(device)
        for (qk, v), m in attn_layers.items():
            fns[(n, qk, v, False)] = (
                lambda m=m, x=x: x + m.attn(m.ln1(x))[0])
            fns[(n, qk, v, True)] = (lambda m=m, x=x, bias=bias: x + m.attn(
                m.ln1(x), attn_bias=bias)[0])
        for f, m in mlp_layers.items():
            fns[(n, f)] = (lambda m=m, x=x: m.ffn(m.ln2(x), identity=x))
    say(f'[blocks] timing {len(fns)} attention and MLP settings over '
        f'{len(tokens)} token counts in {repeats} interleaved rounds')
    got = timed(fns)
    for a, n in enumerate(tokens):
        for i, qk in enumerate(heads):
            for j, v in enumerate(heads):
                ms[a][i][j] = got[(n, qk, v, False)]
                ms_bias[a][i][j] = got[(n, qk, v, True)]
        for f in ffns:
            mlp[a][ffns.index(f)] = got[(n, f)]
    loads.append(os.getloadavg()[0])
    say(f'[blocks] N={tokens[-1]}: attention {ms[-1][-1][-1]:.2f} ms, MLP '
        f'{mlp[-1][-1]:.2f} ms (full widths)')

    reducer_tables = {}
    patch_tokens = [n - E for n in tokens if n - E >= 4]
    for name in reducers:
        cls = TOKEN_REDUCERS.get(name)
        fractions = PRUNE_FRACTIONS if cls.prunes else MERGE_FRACTIONS
        fns = {}
        for n in patch_tokens:
            x, tmap = _reduced_map(cls, N0, n, batch, grid, C, h, E, gen,
                                   device)
            q = torch.randn(batch, h, x.shape[1], d, generator=gen).to(device)
            k = torch.randn(batch, h, x.shape[1], d, generator=gen).to(device)
            for frac in fractions:
                r = max(1, int(round(frac * n)))
                r = min(r, n - 1 if cls.prunes else n // 2)
                red = _build_reducer(cls, r, E, C, h).to(device)
                fns[(n, frac)] = (lambda red=red, x=x, tmap=tmap, q=q, k=k:
                                  red(x, tmap, queries=q, keys=k,
                                      scale=d**-0.5))
        got = timed(fns)
        rows = [[got[(n, f)] for f in fractions] for n in patch_tokens]
        loads.append(os.getloadavg()[0])
        reducer_tables[name] = dict(
            tokens=patch_tokens, fraction=list(fractions), ms=rows,
            where=cls.where)
        say(f'[reducer] {name}: {rows[-1][0]:.2f} ms at N={N0}, '
            f'r={max(1, round(fractions[0] * N0))}')

    backbone = backbone.to(device).eval()
    img = torch.randn(batch, 3, *backbone.img_size, generator=gen).to(device)
    feats = torch.randn(batch, E + N0, C, generator=gen).to(device)
    fns = {'stem': lambda: _stem(backbone, img),
           'output': lambda: backbone._format_output(feats, grid)}
    norm_tokens = tokens
    xs = {n: torch.randn(batch, n, C, generator=gen).to(device)
          for n in tokens}
    for n in norm_tokens:
        fns[('norm', n)] = (lambda n=n: backbone.ln1(xs[n]))
    maps = {}
    for n in patch_tokens:
        maps[n] = TokenMap(
            assign=torch.randint(0, n, (batch, N0), generator=gen).to(device),
            size=torch.ones(batch, n, device=device),
            anchor=torch.arange(n, device=device).expand(batch, n),
            grid=grid)
        fns[('unmerge', n)] = (lambda n=n: backbone._format_output(
            torch.cat([xs[n + E][:, :E],
                       unmerge_tokens(xs[n + E][:, E:], maps[n])], 1), grid))
    got = timed(fns)
    parts = dict(
        stem_ms=got['stem'],
        output_ms=got['output'],
        final_norm=dict(tokens=norm_tokens,
                        ms=[got[('norm', n)] for n in norm_tokens]),
        unmerge=dict(tokens=patch_tokens,
                     ms=[got[('unmerge', n)] for n in patch_tokens]))
    loads.append(os.getloadavg()[0])
    with num_threads(threads):
        machine = device_name(device)
    meta = dict(
        device=machine,
        threads=threads if threads is not None else torch.get_num_threads(),
        dtype=dtype,
        batch=batch,
        clock=clock,
        torch=torch.__version__,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec='seconds'),
        load_avg=dict(mean=statistics.mean(loads), max=max(loads)),
        repeats=repeats,
        warmup=warmup,
        seed=seed)
    arch = dict(
        embed_dims=C, num_heads=h, head_dims=d, feedforward_channels=F,
        num_layers=len(backbone.layers), num_extra_tokens=E,
        patch_grid=list(grid), img_size=list(backbone.img_size),
        out_indices=list(backbone.out_indices),
        num_outputs=len(backbone.out_indices),
        final_norm=bool(backbone.final_norm))
    table = LatencyTable(
        meta=meta,
        arch=arch,
        attention=dict(tokens=tokens, qk_dims=heads, v_dims=heads, ms=ms,
                       ms_bias=ms_bias),
        mlp=dict(tokens=tokens, ffn_dims=ffns, ms=mlp),
        reducers=reducer_tables,
        parts=parts)
    if smooth:
        _smooth_table(table)
        worst = max(v['max_rel_residual']
                    for v in table.checks['smoothing'].values())
        say(f'[smooth] quadratic fits along N: raw medians off the fit by '
            f'at most {worst:.1%}')
    table.checks['linearity'] = linearity(table)
    table.checks['holdout'] = holdout(table, timed, layer, batch, device, gen)
    worst = max(abs(h['measured_ms'] / h['predicted_ms'] - 1)
                for h in table.checks['holdout'])
    say(f'[check] off-grid points: interpolation off by at most '
        f'{worst:.1%}')
    if check_repeats:
        full = xs[E + N0]

        def pieces():  # the table's decomposition, with the real layers
            _stem(backbone, img)
            for m in backbone.layers:
                full + m.attn(m.ln1(full))[0]
                m.ffn(m.ln2(full), identity=full)
            backbone.ln1(full)
            for _ in backbone.out_indices:
                backbone._format_output(full, grid)

        got = timed({'backbone': lambda: backbone(img), 'pieces': pieces},
                    check_repeats)
        predicted = table.baseline_ms()
        table.checks['baseline'] = dict(
            predicted_ms=predicted, measured_ms=got['backbone'],
            ratio=got['backbone'] / predicted,
            pieces_ms=got['pieces'],
            composition=got['backbone'] / got['pieces'])
        say(f'[check] unreduced backbone: predicted {predicted:.1f} ms, '
            f'measured {got["backbone"]:.1f} ms; its pieces timed in the '
            f'same rounds {got["pieces"]:.1f} ms (backbone / pieces '
            f'{got["backbone"] / got["pieces"]:.3f}: how well blocks timed '
            'alone add up, free of drift since the grid was timed)')
    assert table.to_dict()['format'] == FORMAT
    return table


def smooth_in_tokens(tokens: Sequence[float], values) -> Dict:
    """Fit every series along the token axis with ``a + b N + c N^2``
    (least squares on relative error): linear layers cost ``~N``,
    attention ``~N^2``, so one noisy median cannot bend the table (and the
    solver, which would chase it).

    Args:
        tokens (Sequence[float]): the token grid (first axis of
            ``values``).
        values: nested lists ``[N][...]`` of medians.

    Returns:
        dict: ``ms`` (the fitted values, same nesting) and the largest and
        median absolute relative residual of the fit.
    """
    y = np.asarray(values, dtype=float)
    flat = y.reshape(len(tokens), -1)
    n = np.asarray(tokens, dtype=float)
    X = np.stack([np.ones_like(n), n, n * n], 1)
    fitted = np.empty_like(flat)
    for j in range(flat.shape[1]):
        w = 1 / flat[:, j]
        coef = np.linalg.lstsq(X * w[:, None], flat[:, j] * w,
                               rcond=None)[0]
        fitted[:, j] = X @ coef
    res = np.abs(fitted / flat - 1)
    return dict(ms=fitted.reshape(y.shape).tolist(),
                max_rel_residual=float(res.max()),
                median_rel_residual=float(np.median(res)))


def _smooth_table(table: LatencyTable) -> None:
    """Smooth every token-indexed series of ``table`` in place (raw medians
    kept as ``ms_raw``), the fit's residuals in ``checks['smoothing']``."""
    report = {}

    def apply(name: str, part: Dict, key: str = 'ms') -> None:
        if len(part['tokens']) < 4:  # too few points to fit 3 terms
            return
        fit = smooth_in_tokens(part['tokens'], part[key])
        part[f'{key}_raw'] = part[key]
        part[key] = fit['ms']
        report[name] = dict(max_rel_residual=fit['max_rel_residual'],
                            median_rel_residual=fit['median_rel_residual'])

    apply('attention', table.attention)
    apply('attention_bias', table.attention, 'ms_bias')
    apply('mlp', table.mlp)
    for name, part in table.reducers.items():
        apply(f'reducer {name}', part)
    apply('final_norm', table.parts['final_norm'])
    apply('unmerge', table.parts['unmerge'])
    table.checks['smoothing'] = report


def _between(grid: Sequence[int], share: float = 0.5, align: int = 8) -> int:
    """A point inside the widest interval of the upper half of ``grid``
    (a multiple of ``align`` where the interval has one inside)."""
    upper = grid[len(grid) // 2 - 1:] if len(grid) > 2 else grid
    lo, hi = max(zip(upper, upper[1:]), key=lambda p: p[1] - p[0])
    x = int(round(lo + share * (hi - lo)))
    aligned = int(round(x / align)) * align
    return aligned if lo < aligned < hi else x


def holdout(table: LatencyTable, timed: Callable, layer: Callable,
            batch: int, device: str, gen: torch.Generator) -> List[Dict]:
    """Time attention and MLP at a token count between the grid's (and
    the MLP at a width between them) and compare with the table's
    interpolation: how good the model between grid points is, on this
    device."""
    a, m = table.attention, table.mlp
    C = table.arch['embed_dims']
    n = _between(a['tokens'])
    # widths: grid points for attention (what the solver picks), between
    # grid points for the MLP
    qk, v = a['qk_dims'][-2], a['v_dims'][max(0, len(a['v_dims']) - 3)]
    f = _between(m['ffn_dims'], 0.5, align=64)
    attn_layer, mlp_layer = layer(qk, v, 1), layer(1, 1, f)
    x = torch.randn(batch, n, C, generator=gen).to(device)
    got = timed({
        'attention': lambda: x + attn_layer.attn(attn_layer.ln1(x))[0],
        'mlp': lambda: mlp_layer.ffn(mlp_layer.ln2(x), identity=x)
    })
    return [
        dict(part='attention', tokens=n, qk_dims=qk, v_dims=v,
             measured_ms=got['attention'],
             predicted_ms=table.attention_ms(n, qk, v)),
        dict(part='mlp', tokens=n, ffn_dims=f, measured_ms=got['mlp'],
             predicted_ms=table.mlp_ms(n, f))
    ]


def linearity(table: LatencyTable) -> Dict:
    """How far a linear fit in the widths is from the measured grid: the
    largest relative residual over all token counts, for attention (in
    Q/K and V together) and MLP (in the hidden width)."""
    out = {}
    a = table.attention
    qk, v = np.meshgrid(a['qk_dims'], a['v_dims'], indexing='ij')
    X = np.stack([np.ones(qk.size), qk.ravel(), v.ravel()], 1)
    worst = 0.
    for row in a['ms']:
        y = np.asarray(row).ravel()
        fit = X @ np.linalg.lstsq(X, y, rcond=None)[0]
        worst = max(worst, float(np.max(np.abs(fit - y) / y)))
    out['attention_max_rel_residual'] = worst
    m = table.mlp
    X = np.stack([np.ones(len(m['ffn_dims'])), m['ffn_dims']], 1)
    worst = 0.
    for row in m['ms']:
        y = np.asarray(row)
        fit = X @ np.linalg.lstsq(X, y, rcond=None)[0]
        worst = max(worst, float(np.max(np.abs(fit - y) / y)))
    out['mlp_max_rel_residual'] = worst
    return out
