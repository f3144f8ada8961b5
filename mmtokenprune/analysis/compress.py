"""From a trained model and a latency budget to the compressed model to use.

:func:`run_compress` chains, in order:

1. the device's latency table, reused from the cache when this device,
   threads, dtype, batch, shape and architecture were measured before
   (:mod:`.table_cache`);
2. the candidates the table predicts within the budget: reducer x
   reducing layers x keep ratio, at full widths and at the widths magnitude
   channel pruning keeps at each ``widths`` FLOPs target, plus the
   FLOPs-cost solver's pick (:mod:`mmtokenprune.budgets.candidates`);
3. a training-free score of each on ``calib`` images: how far its
   predictions move from the uncompressed model's (:mod:`.compress_proxy`);
4. real timing of the best few (and the solver's pick for the same
   budget) beside the baseline; when none is within the budget as
   measured, the table's error is corrected by what was measured (the
   median of measured over predicted latency ratio) and steps 2-4 run
   again, the solver asked for the corrected budget too (at most
   ``max_rounds`` rounds);
5. optionally the real validation score of the best ``evaluate``
   candidates, for the proxy's rank correlation;
6. the outputs (:mod:`.compress_report`).

Every result is stored as it is made (:mod:`.compress_state`): a killed
run, started again with the same command, continues where it stopped.
"""
import os.path as osp
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch
from mmengine.config import Config

from ..budgets import (Candidate, enumerate_candidates, smallest_reachable,
                       solver_candidate)
from .compress_models import (CandidateBuilder, candidate_config,
                              save_candidate, slug)
from .compress_proxy import calibration_batches, outputs, proxy_scores
from .compress_state import RunState, measured_ratios
from .latency import check_timing, num_threads
from .table_cache import DEFAULT_CACHE, cached_table

__all__ = ['CompressError', 'check_options', 'run_compress']


class CompressError(ValueError):
    """A budget or option the run cannot serve; the message says which
    option and what is allowed (or reachable)."""


def _check_budget(latency: Optional[float], latency_ms: Optional[float]):
    if (latency is None) == (latency_ms is None):
        raise CompressError('give one budget: --latency (a fraction of the '
                            "baseline's latency) or --latency-ms.")
    if latency is not None and not 0 < latency < 1:
        raise CompressError(f'--latency must be a fraction of the baseline '
                            f'in (0, 1); got {latency}.')
    if latency_ms is not None and not latency_ms > 0:
        raise CompressError(
            f'--latency-ms must be positive; got {latency_ms}.')


def check_options(latency: Optional[float], latency_ms: Optional[float],
                  widths: Sequence[float]) -> None:
    """Refuse a bad budget or widths before any work (CompressError)."""
    _check_budget(latency, latency_ms)
    _check_widths(widths)


def _check_widths(widths: Sequence[float]) -> List[float]:
    bad = [w for w in widths if not 0 < w <= 1]
    if bad or not widths:
        raise CompressError(f'--widths are FLOPs fractions in (0, 1] (1: '
                            f'full widths); got {list(widths)}.')
    return sorted({float(w) for w in widths}, reverse=True)


def run_compress(config: Config,
                 checkpoint: str,
                 out_dir: str,
                 latency: Optional[float] = None,
                 latency_ms: Optional[float] = None,
                 device: str = 'cpu',
                 calib: int = 32,
                 calib_split: str = 'val',
                 reducers: Sequence[str] = ('ATME', 'ToMe'),
                 widths: Sequence[float] = (1.0, 0.85, 0.7),
                 top: int = 3,
                 evaluate: Optional[int] = 0,
                 tolerance: float = 0.05,
                 max_rounds: int = 3,
                 batch: int = 1,
                 dtype: str = 'fp32',
                 clock: Optional[str] = None,
                 timing_threads: Optional[int] = None,
                 threads: Optional[int] = None,
                 repeats: int = 10,
                 table_cache: str = DEFAULT_CACHE,
                 config_path: Optional[str] = None,
                 command: str = '',
                 log: Callable[[str], None] = print) -> Dict:
    """Compress a trained model to a latency budget (module docstring).

    Args:
        config (Config): the trained model's config.
        checkpoint (str): its weights.
        out_dir (str): where the state, the outputs and the report go.
        latency (float, optional): the budget as a fraction of the
            baseline's measured backbone latency, in (0, 1).
        latency_ms (float, optional): the budget in ms (backbone, the
            timing's batch and clock).
        device (str): 'cpu' or 'cuda'. Defaults to 'cpu'.
        calib (int): calibration images. Defaults to 32.
        calib_split (str): 'val', 'train' or 'test'. Defaults to 'val'.
        reducers (Sequence[str]): token reducers to consider.
        widths (Sequence[float]): encoder FLOPs fractions magnitude channel
            pruning keeps (1.0: full widths). Defaults to (1.0, 0.85, 0.7).
        top (int): candidates timed per round. Defaults to 3.
        evaluate (int, optional): the best candidates by proxy to score on
            the whole validation set (with the baseline); None: all.
            Defaults to 0.
        tolerance (float): measured latency may exceed the budget by this
            fraction (timing noise). Defaults to 0.05.
        max_rounds (int): timing rounds (with table corrections).
        batch, dtype: of the table and the timing.
        clock (str, optional): 'cpu' (process CPU time) or 'wall';
            defaults to 'cpu' on CPUs, 'wall' on GPUs.
        timing_threads (int, optional): torch threads while timing;
            defaults to 1 on CPUs.
        threads (int, optional): torch threads for scoring and evaluation.
        repeats (int): timed rounds per model. Defaults to 10.
        table_cache (str): the latency table cache folder.
        config_path (str, optional): the config's file, written as the
            ``_base_`` of the outputs.
        command (str): the command line, written in the report.
        log (callable): progress lines.

    Returns:
        dict: the state (candidates, scores, timing, pick, files).
    """
    _check_budget(latency, latency_ms)
    widths = _check_widths(widths)
    if calib < 1:
        raise CompressError(f'--calib must be >= 1; got {calib}.')
    if top < 1 or not 0 <= tolerance < 1 or max_rounds < 1:
        raise CompressError(f'need --top >= 1, 0 <= --tolerance < 1; got '
                            f'top={top}, tolerance={tolerance}.')
    on_gpu = torch.device(device).type == 'cuda'
    clock = clock or ('wall' if on_gpu else 'cpu')
    timing_threads = timing_threads or (None if on_gpu else 1)
    check_timing(device, dtype, clock, timing_threads)
    import mmtokenprune.models  # noqa: F401  (reducers declare themselves)
    how = dict(
        config=osp.abspath(config_path) if config_path else str(
            config.filename),
        checkpoint=osp.abspath(checkpoint), latency=latency,
        latency_ms=latency_ms, device=device, calib=calib,
        calib_split=calib_split, reducers=list(reducers), widths=widths,
        top=top, tolerance=tolerance, batch=batch, dtype=dtype, clock=clock,
        timing_threads=timing_threads)
    state = RunState(out_dir, how)
    if state.resumed:
        log(f'[compress] resuming {state.path}')
    builder = CandidateBuilder(config, checkpoint)

    phases, t_phase = state.section('phase_s'), time.perf_counter()

    def phase(name: str) -> None:
        nonlocal t_phase
        now = time.perf_counter()
        phases[name] = phases.get(name, 0.) + now - t_phase
        t_phase = now
        state.save()

    # 1. the latency table
    base_model = builder.baseline()
    table, table_path, _ = cached_table(
        base_model.backbone, table_cache, batch=batch, device=device,
        dtype=dtype, clock=clock, threads=timing_threads or 1, log=log)
    state.put('table', table_path)
    base_pred = table.baseline_ms()
    base_meas = table.checks.get('baseline', {}).get('measured_ms',
                                                     base_pred)
    fraction = latency if latency is not None else latency_ms / base_meas
    log(f'[compress] baseline backbone: {base_meas:.1f} ms measured with '
        f'the table, {base_pred:.1f} ms predicted; budget '
        f'{fraction:.3f}x of it')

    phase('table')

    # 2. candidates
    width_dims = {
        w: tuple(map(tuple, state.section('widths').get(str(w)) or []))
        for w in widths
    }
    for w in widths:
        if not width_dims[w]:
            width_dims[w] = builder.magnitude_widths(w)
            state.section('widths')[str(w)] = [list(d) for d in width_dims[w]]
    state.save()
    channels = any(w < 1 for w in widths)

    def candidates_at(scale: float) -> List[Candidate]:
        budget = fraction * base_pred / scale
        found = enumerate_candidates(table, budget, reducers, width_dims)
        for reducer in reducers:
            try:
                found.append(solver_candidate(table, budget, reducer,
                                              channels, correction=scale))
            except ValueError as err:
                log(f'[compress] the FLOPs solver ({reducer}) finds '
                    f'nothing: {err}')
        if not found:
            low = smallest_reachable(table, reducers, width_dims)
            raise CompressError(
                f'no compressed model is predicted within the budget: '
                f'{fraction:.3f}x of the baseline ({budget:.2f} ms '
                f'predicted{"" if scale == 1 else " after correction"}); '
                f'the smallest reachable latency is {low:.2f} ms '
                f'({low / base_pred:.3f}x, about '
                f'{low / base_pred * base_meas:.1f} ms measured) with '
                f'--reducers {" ".join(reducers)} and --widths '
                f'{" ".join(map(str, widths))}.')
        return found

    known = [Candidate.from_dict(d) for d in state.get('candidates', [])]
    if not known:
        known = candidates_at(1.0)
        state.put('candidates', [c.to_dict() for c in known])
    log(f'[compress] {len(known)} candidates predicted within the budget')

    phase('candidates')

    # 3. proxy scores
    with num_threads(threads):
        try:
            batches = calibration_batches(config, calib, calib_split)
        except ValueError as err:
            raise CompressError(str(err)) from None
        reference = outputs(base_model.to(device), batches)
    proxy = state.section('proxy')

    def score(cands: List[Candidate]) -> None:
        todo = [c for c in cands if c.name not in proxy]
        for i, c in enumerate(todo):
            t0 = time.perf_counter()
            with num_threads(threads):
                model = builder.build(c)[0].to(device)
                proxy[c.name] = proxy_scores(reference,
                                             outputs(model, batches))
            state.save()
            log(f'[compress] [{i + 1}/{len(todo)}] {c.name}: KL '
                f'{proxy[c.name]["kl"]:.4f}, agreement '
                f'{proxy[c.name]["agreement"]:.2f} % '
                f'({time.perf_counter() - t0:.0f} s)')

    score(known)

    phase('proxy')

    # 4. timing rounds
    rounds = state.get('timing', [])
    pick = state.get('pick')
    scale = rounds[-1].get('scale', 1.0) if rounds else 1.0
    while pick is None:
        ranked = sorted(known, key=lambda c: proxy[c.name]['kl'])
        timed = {n for r in rounds for n in r['ms']}
        # after a correction, only what fits the corrected budget
        fits = fraction * base_pred / scale * (1 + 1e-9)
        new = [c for c in ranked
               if c.name not in timed and c.predicted_ms <= fits][:top]
        # the solver's pick for this (corrected) budget, timed beside them
        new += [c for c in known if c.family == 'solver' and c not in new
                and c.name not in timed and c.predicted_ms <= fits]
        if new:
            rounds.append(_time_round(builder, base_model, new, table,
                                      batch, device, dtype, clock,
                                      timing_threads, repeats, log))
            state.put('timing', rounds)
        pick = _accepted(ranked, rounds, proxy, fraction, latency_ms,
                         tolerance)
        if pick is not None:
            break
        if len(rounds) >= max_rounds:
            raise RuntimeError(
                f'no candidate measured within the budget after '
                f'{len(rounds)} timing rounds; measured/baseline: '
                f'{_listed(measured_ratios(rounds))}. Try a larger '
                f'--tolerance, more --widths or another budget.')
        scale = _correction(rounds, known, base_pred)
        rounds[-1]['scale'] = scale
        log(f'[compress] none within the budget as measured; the table '
            f'predicts {1 / scale:.3f}x of what was measured: solving '
            f'again for {fraction / scale:.3f}x predicted')
        more = [c for c in candidates_at(scale)
                if c.name not in {k.name for k in known}]
        known += more
        state.put('candidates', [c.to_dict() for c in known])
        score(more)
    state.put('pick', pick)
    log(f'[compress] pick: {pick}')

    phase('timing')

    # 5. validation scores
    by_name = {c.name: c for c in known}
    ranked = sorted(known, key=lambda c: proxy[c.name]['kl'])
    if evaluate is None or evaluate > 0:
        chosen = ranked if evaluate is None else ranked[:evaluate]
        names = [c.name for c in chosen]
        for r in rounds:
            names += [n for n in r['ms'] if n not in names]
        _evaluate(builder, config, ['baseline'] + names, by_name, state,
                  out_dir, log)

    phase('evaluation')

    # 6. outputs
    from .compress_report import write_outputs
    files = write_outputs(state, by_name, builder, config, out_dir, table,
                          command)
    state.put('files', files)
    log(f'[compress] wrote {", ".join(files.values())}')
    return state.data


def _time_round(builder: CandidateBuilder, baseline: torch.nn.Module,
                cands: List[Candidate], table, batch: int, device: str,
                dtype: str, clock: str, threads: Optional[int], repeats: int,
                log: Callable) -> Dict:
    """Time ``cands`` interleaved with the baseline (backbone only)."""
    from .measure import measure
    models = {'baseline': baseline}
    for c in cands:
        models[c.name] = builder.build(c)[0]
    log(f'[compress] timing {len(cands)} candidates beside the baseline '
        f'({repeats} interleaved rounds)')
    stats = measure(
        models, image_size=tuple(table.arch['img_size']),
        batch_sizes=[batch], parts=['backbone'], repeats=repeats, warmup=2,
        device=device, dtype=dtype, clock=clock, threads=threads, count=[],
        log=log)
    key = f'ms_backbone_b{batch}'
    base = stats['baseline'][key]
    ms = {c.name: stats[c.name][key] for c in cands}
    for name, v in ms.items():
        log(f'[compress]   {name}: {v:.2f} ms ({v / base:.3f}x)')
    return dict(baseline_ms=base, ms=ms, clock=clock, threads=threads,
                device=stats['baseline']['device'],
                load_avg=stats['baseline']['load_avg'],
                date=time.strftime('%Y-%m-%d %H:%M'))


def _accepted(ranked: List[Candidate], rounds: List[Dict], proxy: Dict,
              fraction: float, latency_ms: Optional[float],
              tolerance: float) -> Optional[str]:
    """The best candidate by proxy whose measured latency is within the
    budget (fraction of the baseline timed beside it, or ms)."""
    ratios = measured_ratios(rounds)
    ms = {n: v for r in rounds for n, v in r['ms'].items()}
    for c in ranked:
        if c.name not in ratios:
            continue
        ok = (ms[c.name] <= latency_ms * (1 + tolerance)
              if latency_ms is not None else
              ratios[c.name] <= fraction * (1 + tolerance))
        if ok:
            return c.name
    return None


def _listed(ratios: Dict[str, float]) -> str:
    return ', '.join(f'{n} {v:.3f}' for n, v in ratios.items())


def _correction(rounds: List[Dict], known: List[Candidate],
                base_pred: float) -> float:
    """Median of measured over predicted latency ratios of every timed
    candidate (> 1: the table predicts too little)."""
    pred = {c.name: c.predicted_ms / base_pred for c in known}
    got = measured_ratios(rounds)
    return statistics.median(got[n] / pred[n] for n in got if n in pred)


def _evaluate(builder: CandidateBuilder, cfg: Config, names: List[str],
              by_name: Dict[str, Candidate], state: RunState, out_dir: str,
              log: Callable) -> None:
    """Validation score (the config's test set and evaluator) of each."""
    from .sweep_eval import evaluate_setting
    scores = state.section('eval')
    for i, name in enumerate(names):
        if name in scores:
            continue
        c = by_name.get(name)
        ckpt, spec = builder.checkpoint, None
        if c is not None and c.pruned:
            spec, ckpt = save_candidate(builder, c, out_dir)
        ccfg = candidate_config(cfg, c, spec)
        t0 = time.perf_counter()
        _, metrics = evaluate_setting(
            ccfg, ckpt, osp.join(out_dir, 'eval', slug(name)),
            f'compress_{slug(name)}')
        scores[name] = dict(score=metrics['score'],
                            score_name=metrics['score_name'])
        state.save()
        log(f'[compress] [{i + 1}/{len(names)}] validation '
            f'{metrics["score_name"]} {metrics["score"]:.2f}: {name} '
            f'({time.perf_counter() - t0:.0f} s)')
