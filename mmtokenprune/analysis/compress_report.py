"""What ``tools/compress.py`` leaves in its output folder.

- ``compressed.py``: the pick, as a delta on the user's config
  (``_base_``), with ``load_from`` set;
- ``prune_spec.json`` and ``compressed.pth`` when the pick cuts widths
  (the smaller dense model and its weights);
- ``finetune_distill.py``: a delta on ``compressed.py`` that fine-tunes it
  with logit distillation from the original model (frozen teacher);
- ``report.md`` and ``report.png``: every candidate with its prediction,
  proxy, measured latency and validation score where they exist; the
  proxy's rank correlation with the validation score; the plot of
  predicted against measured latency and of proxy against score.
"""
import math
import os.path as osp
import shutil
from typing import Dict, List

from mmengine.config import Config

from ..budgets import Candidate
from .compress_models import save_candidate, slug
from .compress_proxy import spearman
from .compress_state import measured_ratios

__all__ = ['write_outputs', 'rank_correlations']

_HEADER = '# Written by tools/compress.py; see report.md beside this file.\n'


def _py(value) -> str:
    """A config value as Python source."""
    return repr(value)


def _model_type(cfg: Config) -> str:
    kind = str(cfg.model.get('type', ''))
    return ('mmtokenprune.PrunedImageClassifier'
            if 'Classifier' in kind else 'mmtokenprune.PrunedEncoderDecoder')


def _compressed_config(pick: Candidate, base_rel: str, load_from: str,
                       pruned: bool, summary: str, path: str) -> str:
    channel = ("dict(spec='{{ fileDirname }}/prune_spec.json')"
               if pruned else 'None')
    return (f'{_HEADER}# {summary}\n'
            f'#   python tools/test.py {path} {load_from}\n'
            f'_base_ = [{_py(base_rel)}]\n\n'
            f'model = dict(\n'
            f'    backbone=dict(\n'
            f'        token_cfg={_py(pick.token_cfg())},\n'
            f'        channel_cfg={channel}))\n'
            f'load_from = {_py(load_from)}\n')


def _finetune_config(cfg: Config, config_path: str, checkpoint: str,
                     path: str) -> str:
    kl = dict(temperature=1.0, loss_weight=0.5)
    if 'Classifier' not in _model_type(cfg):
        kl['ignore_index'] = 255
    return (
        f'{_HEADER}# The compressed model fine-tuned with logit distillation '
        'from the\n# original one (a frozen teacher, not in the checkpoints), '
        'on your\n# config\'s schedule (shorten it with --cfg-options '
        'train_cfg.max_iters=N):\n'
        f'#   python tools/train.py {path} --work-dir DIR\n'
        "_base_ = ['./compressed.py']\n\n"
        'custom_imports = dict(\n'
        "    imports=['mmtokenprune.models', 'mmtokenprune.datasets',\n"
        "             'mmtokenprune.engine'],\n"
        '    allow_failed_imports=False)\n'
        'model = dict(\n'
        f'    type={_py(_model_type(cfg))},\n'
        f'    teacher=dict(checkpoint={_py(checkpoint)},\n'
        f'                 config={_py(config_path)}),\n'
        f'    distill=dict(kl={_py(kl)}))\n')


def rank_correlations(rows: List[Dict]) -> Dict[str, float]:
    """Spearman correlations over the evaluated candidates (``score``):
    of ``-kl`` and ``agreement`` with the score; over the timed ones, of
    predicted with measured latency."""
    ev = [r for r in rows if r.get('score') is not None]
    timed = [r for r in rows if r.get('measured') is not None]
    return dict(
        kl=spearman([-r['kl'] for r in ev], [r['score'] for r in ev]),
        agreement=spearman([r['agreement'] for r in ev],
                           [r['score'] for r in ev]),
        evaluated=len(ev),
        latency=spearman([r['predicted'] for r in timed],
                         [r['measured'] for r in timed]),
        timed=len(timed))


def _rows(state, by_name: Dict[str, Candidate], base_pred: float
          ) -> List[Dict]:
    proxy, scores = state.get('proxy', {}), state.get('eval', {})
    measured = measured_ratios(state.get('timing', []))
    rows = []
    for name, c in by_name.items():
        if name not in proxy:
            continue
        rows.append(dict(
            name=name, family=c.family, flops=c.flops_ratio,
            predicted=c.predicted_ms / base_pred,
            measured=measured.get(name), kl=proxy[name]['kl'],
            agreement=proxy[name]['agreement'],
            score=(scores.get(name) or {}).get('score'),
            token_cfg=c.token_cfg(), widths=c.widths_target,
            pruned=c.pruned))
    rows.sort(key=lambda r: r['kl'])
    return rows


def _fmt(v, spec: str = '.3f') -> str:
    return '' if v is None or (isinstance(v, float) and math.isnan(v)) \
        else format(v, spec)


def _markdown(state, rows: List[Dict], corr: Dict, table, pick: str,
              command: str, files: Dict[str, str]) -> str:
    how = state.get('how')
    base_score = (state.get('eval', {}).get('baseline') or {}).get('score')
    rounds = state.get('timing', [])
    budget = (f'{how["latency"]}x of the baseline' if how['latency']
              is not None else f'{how["latency_ms"]} ms')
    lines = [
        '# Compressed to a latency budget', '',
        f'Command: `{command}`', '',
        f'- model: `{how["config"]}`, `{how["checkpoint"]}`',
        f'- budget: {budget} (backbone, batch {how["batch"]}, '
        f'{how["dtype"]}, clock {how["clock"]}, '
        f'{how["timing_threads"] or "default"} timing thread(s); measured '
        f'latency may exceed it by {how["tolerance"]:.0%})',
        f'- latency table: `{state.get("table")}` ({table.meta["device"]}, '
        f'measured {table.meta["date"]})',
        f'- proxy: {how["calib"]} images of the {how["calib_split"]} set, '
        'KL divergence of the class distribution from the uncompressed '
        "model's, per pixel",
    ]
    for i, r in enumerate(rounds):
        lines.append(
            f'- timing round {i + 1} ({r["date"]}): {r["device"]}, load '
            f'average {r["load_avg"]:.2f}, baseline {r["baseline_ms"]:.2f} '
            'ms')
    phases = state.get('phase_s', {})
    parts = ', '.join(f'{k} {v / 60:.1f}' for k, v in phases.items())
    lines += [
        f'- run time: {sum(phases.values()) / 60:.1f} min ({parts}; summed '
        "over resumed runs, a killed run's unfinished step not counted)", '',
        f'**Pick: {pick}**', '',
        '| candidate | FLOPs kept | predicted × | measured × | KL | '
        'agreement % | val score | Δ |',
        '|---|---:|---:|---:|---:|---:|---:|---:|']
    if base_score is not None:
        lines.append(f'| baseline | 1.000 | 1.000 | 1.000 | 0 | 100 | '
                     f'{base_score:.2f} | |')
    for r in rows:
        delta = (None if r['score'] is None or base_score is None else
                 r['score'] - base_score)
        name = f'**{r["name"]}**' if r['name'] == pick else r['name']
        lines.append(
            f'| {name} | {r["flops"]:.3f} | {r["predicted"]:.3f} | '
            f'{_fmt(r["measured"])} | {r["kl"]:.4f} | '
            f'{r["agreement"]:.2f} | {_fmt(r["score"], ".2f")} | '
            f'{_fmt(delta, "+.2f")} |')
    lines += [
        '', f'Rank correlation (Spearman) with the validation score over '
        f'{corr["evaluated"]} evaluated candidates: −KL '
        f'{_fmt(corr["kl"], ".2f")}, agreement '
        f'{_fmt(corr["agreement"], ".2f")}. Predicted against measured '
        f'latency over {corr["timed"]} timed candidates: '
        f'{_fmt(corr["latency"], ".2f")}.', '', 'Files:', '']
    lines += [f'- `{p}`: {what}' for what, p in files.items()]
    lines.append('')
    return '\n'.join(lines)


def _plot(rows: List[Dict], pick: str, path: str, base_score) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    timed = [r for r in rows if r['measured'] is not None]
    for r in timed:
        a.scatter(r['predicted'], r['measured'],
                  c='C3' if r['name'] == pick else 'C0')
    lims = [min([r['predicted'] for r in timed] +
                [r['measured'] for r in timed] + [1]) - 0.05, 1.02]
    a.plot(lims, lims, 'k:', lw=1)
    a.set_xlabel('predicted latency (× baseline, latency table)')
    a.set_ylabel('measured latency (× baseline, timed beside it)')
    a.set_title('the table against the clock')
    ev = [r for r in rows if r['score'] is not None]
    for r in ev:
        b.scatter(r['kl'], r['score'], c='C3' if r['name'] == pick else
                  ('C1' if r['family'] == 'solver' else 'C0'))
    if base_score is not None:
        b.axhline(base_score, color='k', ls=':', lw=1, label='baseline')
        b.legend()
    b.set_xscale('symlog', linthresh=1e-3)
    b.set_xlabel('proxy: KL to the uncompressed model (calibration images)')
    b.set_ylabel('validation score')
    b.set_title('proxy against the real score (red: pick, orange: '
                'FLOPs solver)', fontsize=9)
    if not ev:
        b.text(0.5, 0.5, 'no candidate evaluated\n(--evaluate N)',
               ha='center', transform=b.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(state, by_name: Dict[str, Candidate], builder, cfg: Config,
                  out_dir: str, table, command: str) -> Dict[str, str]:
    """Write the files of the module docstring; returns what -> path."""
    how = state.get('how')
    pick = by_name[state.get('pick')]
    base_pred = table.baseline_ms()
    files = {}
    out_abs = osp.abspath(out_dir)
    base_rel = osp.relpath(how['config'], out_abs)
    load_from = how['checkpoint']
    if pick.pruned:
        spec, path = save_candidate(builder, pick, out_dir)
        shutil.copyfile(path, osp.join(out_dir, 'compressed.pth'))
        spec.dump(osp.join(out_dir, 'prune_spec.json'))
        load_from = osp.join(out_abs, 'compressed.pth')
        files['the pruned widths'] = osp.join(out_dir, 'prune_spec.json')
        files['the pruned weights'] = osp.join(out_dir, 'compressed.pth')
    for name in {n for r in state.get('timing', []) for n in r['ms']}:
        if by_name[name].pruned:  # the sweep's `spec=` settings need them
            save_candidate(builder, by_name[name], out_dir)
    measured = measured_ratios(state.get('timing', []))
    summary = (f'{pick.name}: predicted {pick.predicted_ms / base_pred:.3f}x'
               f', measured {measured[pick.name]:.3f}x of the baseline')
    path = osp.join(out_dir, 'compressed.py')
    text = _compressed_config(pick, base_rel, load_from, pick.pruned,
                              summary, path)
    with open(path, 'w') as f:
        f.write(text)
    files['the compressed config'] = path
    path = osp.join(out_dir, 'finetune_distill.py')
    with open(path, 'w') as f:
        f.write(_finetune_config(cfg, how['config'], how['checkpoint'],
                                 path))
    files['the fine-tune config (distillation)'] = path
    rows = _rows(state, by_name, base_pred)
    corr = rank_correlations(rows)
    state.put('rank_correlation', corr)
    base_score = (state.get('eval', {}).get('baseline') or {}).get('score')
    png = osp.join(out_dir, 'report.png')
    _plot(rows, pick.name, png, base_score)
    files['the plot'] = png
    md = osp.join(out_dir, 'report.md')
    files['this report'] = md
    with open(md, 'w') as f:
        f.write(_markdown(state, rows, corr, table, pick.name, command,
                          files))
    settings = {c.name: c.setting(
        osp.join(out_dir, 'candidates', slug(c.name), 'prune_spec.json')
        if c.pruned else None) for c in by_name.values()
        if c.name in measured}
    state.put('settings', settings)
    return files
