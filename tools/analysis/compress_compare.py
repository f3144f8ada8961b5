"""compress's pick against the FLOPs-only solver's pick and the best fixed
setting, at each budget, by score and by measured latency.

Reads each ``tools/compress.py`` run folder (its budget, its pick and the
solver's pick as sweep setting strings) and one sweep
(``tools/analysis/sweep.py``) that evaluated and timed those settings and
the reference settings side by side with the baseline. For every budget,
the reference is the best-scoring reference setting whose measured
latency (1 / backbone speed-up at batch 1) is within the budget (with the
same tolerance as compress). Writes a markdown table.

Example (stage ``compress`` of tools/reproduce_results.sh):
    python tools/analysis/compress_compare.py \\
        --runs work_dirs/compress_xseq_0.7 work_dirs/compress_xseq_0.55 \\
        --sweep work_dirs/sweep_compress_compare \\
        --references ATME:keep_ratio=0.9 ToMe:keep_ratio=0.9 --out compare.md
"""
import argparse
import json
import os.path as osp
from typing import Dict, List, Optional

import mmtokenprune.compat.applied  # noqa: F401  (environment fixes first)
from mmtokenprune.analysis.sweep_store import read_rows


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--runs', nargs='+', required=True,
                   help='tools/compress.py output folders')
    p.add_argument('--sweep', required=True,
                   help='sweep folder with every pick and reference')
    p.add_argument('--references', nargs='+', required=True,
                   help='the fixed settings to compare with (sweep rows)')
    p.add_argument('--solver', default='ATME',
                   help='whose FLOPs-solver pick to compare (default ATME)')
    p.add_argument('--out', help='write the markdown here')
    return p.parse_args(argv)


def _ratio(row: Dict) -> Optional[float]:
    s = row.get('speedup_backbone_b1')
    return 1 / s if isinstance(s, float) and s > 0 else None


def _cell(row: Optional[Dict], missing: str = 'none within budget') -> str:
    if row is None:
        return f'{missing} | | '
    score = row.get('score')
    score = f'{score:.2f}' if isinstance(score, float) else 'not evaluated'
    ratio = _ratio(row)
    ratio = f'{ratio:.3f}' if ratio is not None else 'not timed'
    return f'`{row["setting"]}` | {score} | {ratio}'


def compare(runs: List[str], sweep: str, references: List[str],
            solver: str = 'ATME') -> Dict:
    rows = read_rows(osp.join(sweep, 'sweep.csv'))
    if not rows:
        raise FileNotFoundError(f'{sweep}/sweep.csv has no rows.')
    states = []
    for run in runs:
        with open(osp.join(run, 'compress_state.json')) as f:
            states.append(json.load(f))
    missing = [s for s in references if s not in rows]
    if missing:
        raise KeyError(f'{sweep}/sweep.csv has no row for {missing}.')
    refs = [rows[s] for s in references
            if isinstance(rows[s].get('score'), float) and _ratio(rows[s])]
    out = []
    for run, st in zip(runs, states):
        how = st['how']
        if how['latency'] is None:
            raise ValueError(f'{run}: a --latency-ms run; compare runs with '
                             'a fractional --latency.')
        budget = how['latency'] * (1 + how['tolerance'])
        settings = st.get('settings', {})
        pick = rows.get(settings.get(st['pick']))
        solver_row = rows.get(settings.get(f'{solver} FLOPs-solver'))
        # the solver asked for the budget corrected by measurement (the
        # last correction), when compress made one
        corrected = [k for k in settings
                     if k.startswith(f'{solver} FLOPs-solver (budget /')]
        corrected_row = rows.get(settings[corrected[-1]]) if corrected \
            else None
        within = [r for r in refs if _ratio(r) <= budget]
        best = max(within, key=lambda r: r['score']) if within else None
        out.append(dict(run=run, latency=how['latency'], pick=pick,
                        solver=solver_row, solver_corrected=corrected_row,
                        reference=best,
                        pick_name=st['pick']))
    base = rows.get('baseline', {}).get('score')
    return dict(rows=out, baseline=base)


def markdown(result: Dict) -> str:
    lines = [
        f'Baseline score: {result["baseline"]}. Measured latency: backbone, '
        'batch 1, as a fraction of the baseline timed beside it (the '
        "sweep's timing).", '',
        '| budget | compress pick | score | measured × | FLOPs solver | '
        'score | measured × | FLOPs solver, corrected budget | score | '
        'measured × | best fixed setting | score | measured × | '
        'compress − solver | compress − corrected solver | '
        'compress − fixed |',
        '|---|---|---:|---:|---|---:|---:|---|---:|---:|---|---:|---:|'
        '---:|---:|---:|'
    ]

    def diff(a, b):
        if a is None or b is None or not isinstance(
                a.get('score'), float) or not isinstance(
                    b.get('score'), float):
            return ''
        return f'{a["score"] - b["score"]:+.2f}'

    for r in result['rows']:
        lines.append(
            f'| {r["latency"]}× | {_cell(r["pick"])} | {_cell(r["solver"])} '
            f'| {_cell(r["solver_corrected"], "no correction")} | '
            f'{_cell(r["reference"])} | '
            f'{diff(r["pick"], r["solver"])} | '
            f'{diff(r["pick"], r["solver_corrected"])} | '
            f'{diff(r["pick"], r["reference"])} |')
    return '\n'.join(lines) + '\n'


def main(argv: Optional[List[str]] = None) -> Dict:
    args = parse_args(argv)
    result = compare(args.runs, args.sweep, args.references, args.solver)
    text = markdown(result)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text)
    return result


if __name__ == '__main__':
    main()
