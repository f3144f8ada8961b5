"""Markdown tables and the Pareto plot of a sweep's rows.

Rows are the dicts of :func:`mmtokenprune.analysis.sweep.run_sweep` (or
read back from its CSV).
"""
import math
import re
from typing import Dict, List, Optional, Sequence, Tuple

from .latency import CLOCK_TEXT

__all__ = ['format_markdown', 'short_label', 'pareto_front', 'plot_pareto']

MARKERS = {
    'ATME': 'o', 'ToMe': 's', 'spec': '^', 'dTPS': 'v', 'eTPS': '<',
    'SPViT': '>', 'baseline': 'X'
}
COLORS = {
    'ATME': 'tab:blue', 'ToMe': 'tab:orange', 'spec': 'tab:green',
    'dTPS': 'tab:purple', 'eTPS': 'tab:brown', 'SPViT': 'tab:pink',
    'baseline': 'tab:red'
}


def _num(row: Dict, key: str) -> float:
    value = row.get(key, float('nan'))
    try:
        return float(value)
    except (TypeError, ValueError):
        return float('nan')


def _fmt(value: float, digits: int = 2) -> str:
    return '–' if math.isnan(value) else f'{value:.{digits}f}'


def _batches(rows: Sequence[Dict]) -> List[int]:
    found = {
        int(k.rsplit('_b', 1)[1])
        for r in rows
        for k in r if k.startswith('ms_backbone_b')
    }
    return sorted(found)


def _baseline(rows: Sequence[Dict]) -> Optional[Dict]:
    return next((r for r in rows if r.get('setting') == 'baseline'), None)


def _score_name(rows: Sequence[Dict]) -> str:
    """'mIoU' or 'top1' from the first evaluated row ('score' if none:
    a timing-only sweep)."""
    return next((r['score_name'] for r in rows if r.get('score_name')),
                'score')


def format_markdown(rows: Sequence[Dict], title: str = '') -> str:
    """A results table and a per-class table.

    Speed-ups are against the unreduced, unpruned model timed in turns with
    each setting in the same run; Δ is against the ``baseline`` row. Rows
    of a timing-only sweep show '–' for the score.
    """
    if not rows:
        return ''
    name = _score_name(rows)
    base = _baseline(rows)
    batches = _batches(rows)
    head = [
        'setting', name, f'Δ{name}', 'backbone GFLOPs', 'model GFLOPs',
        'merge GFLOPs'
    ]
    head += [f'backbone ms b{b}' for b in batches]
    head += [f'model ms b{b}' for b in batches]
    head += [f'backbone speed-up b{b}' for b in batches]
    head += [f'model speed-up b{b}' for b in batches]
    head += [f'backbone speed-up b{b} (min)' for b in batches]
    head += ['load avg']
    lines = []
    if title:
        lines += [title, '']
    first = rows[0]
    if batches:
        timing = (
            f'latency = median ms per forward of the batch over '
            f'{_fmt(_num(first, "repeats"), 0)} repeats, '
            f'{CLOCK_TEXT.get(first.get("clock"), "wall-clock")}; speed-up = '
            'latency of the unreduced, unpruned model '
            '(fused SDPA) timed in turns with the setting in the same run, '
            'divided by the setting\'s (medians; "(min)": ratio of the '
            'minima, closer to the unloaded machine where load only adds '
            'time); ')
    else:
        timing = 'accuracy only, nothing timed; '
    lines += [
        f'Machine: {first.get("device", "?")}; input '
        f'{first.get("image_size", "?")}; {timing}'
        'GFLOPs per image (1 MAC = 1 FLOP), '
        'merge = gather/scatter/sort ops; load avg = 1-min load during '
        'timing.', '', '| ' + ' | '.join(head) + ' |',
        '|' + '|'.join(['---'] + ['---:'] * (len(head) - 1)) + '|'
    ]
    for r in rows:
        score = _num(r, 'score')
        delta = score - _num(base, 'score') if base else float('nan')
        cells = [
            f'`{r["setting"]}`',
            _fmt(score),
            _fmt(delta, 2),
            _fmt(_num(r, 'gflops_backbone')),
            _fmt(_num(r, 'gflops_model')),
            _fmt(_num(r, 'gflops_merge'), 3)
        ]
        cells += [_fmt(_num(r, f'ms_backbone_b{b}'), 0) for b in batches]
        cells += [_fmt(_num(r, f'ms_model_b{b}'), 0) for b in batches]
        cells += [_fmt(_num(r, f'speedup_backbone_b{b}')) for b in batches]
        cells += [_fmt(_num(r, f'speedup_model_b{b}')) for b in batches]
        cells += [_fmt(_num(r, f'speedup_min_backbone_b{b}')) for b in batches]
        cells += [_fmt(_num(r, 'load_avg'), 1)]
        lines.append('| ' + ' | '.join(cells) + ' |')
    classes = [k for k in rows[0] if k.startswith(('IoU.', 'acc.'))]
    if classes:
        lines += [
            '', f'Per class ({classes[0].split(".")[0]}, %):', '',
            '| setting | ' + ' | '.join(c.split('.', 1)[1]
                                        for c in classes) + ' |',
            '|' + '|'.join(['---'] + ['---:'] * len(classes)) + '|'
        ]
        for r in rows:
            lines.append(f'| `{r["setting"]}` | ' +
                         ' | '.join(_fmt(_num(r, c), 1)
                                    for c in classes) + ' |')
    return '\n'.join(lines) + '\n'


def short_label(setting: str) -> str:
    """``setting`` with each path cut to its last two folders, or folder and
    file (plot labels): ``spec=work_dirs/ft/export/prune_spec.json`` ->
    ``spec=ft/export``, ``ckpt=work_dirs/ft/iter_1000.pth`` ->
    ``ckpt=ft/iter_1000.pth``."""

    def cut(m):
        parts = m[2].split('/')
        if m[1] == 'spec' and parts[-1] == 'prune_spec.json':
            parts = parts[:-1]
        return f'{m[1]}=' + '/'.join(parts[-2:])

    return re.sub(r'(spec|ckpt)=([^,+]+)', cut, setting)


def pareto_front(points: Sequence[Tuple[float, float]]) -> List[int]:
    """Indices of points no other point beats (lower x and higher y),
    sorted by x."""
    order = sorted(
        range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_pareto(rows: Sequence[Dict],
                path: str,
                batch: int = 1,
                title: str = '',
                annotate: bool = True) -> None:
    """Accuracy against relative backbone latency and against GFLOPs.

    One marker per setting (shape by family), the baseline a large red
    star, the Pareto front dashed. Latency is the setting's over the
    unreduced model's, both timed in the same run (1.0 = baseline). Rows
    of several sweeps may carry a ``group`` (e.g. 'training-free',
    'fine-tuned'): the first group's markers are filled, the others'
    hollow, and the legend names the group.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = [r for r in rows if not math.isnan(_num(r, 'score'))]
    name = _score_name(rows)
    groups = list(dict.fromkeys(r['group'] for r in rows if 'group' in r))
    axes_keys = (('rel_latency', f'backbone latency at batch {batch}, '
                  'relative to the unreduced model'),
                 ('gflops_backbone', 'backbone GFLOPs per image'))
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, (key, label) in zip(axes, axes_keys):
        points = []
        for r in rows:
            if key == 'rel_latency':
                x = 1 / _num(r, f'speedup_backbone_b{batch}')
            else:
                x = _num(r, key)
            points.append((x, _num(r, 'score')))
        for r, (x, y) in zip(rows, points):
            family = r.get('family', 'baseline')
            is_base = r.get('setting') == 'baseline'
            kind = family.split('+')[0]
            marker = 'P' if '+spec' in family else MARKERS.get(kind, 'D')
            color = 'red' if is_base else COLORS.get(kind, 'tab:gray')
            group = r.get('group')
            hollow = group is not None and group != groups[0]
            ax.scatter(
                x,
                y,
                marker='*' if is_base else marker,
                s=260 if is_base else 60,
                c='none' if hollow else color,
                zorder=3,
                edgecolors=color if hollow else 'black',
                linewidths=1.5 if hollow else 0.5,
                label=None if is_base else
                (f'{family}, {group}' if group else family))
            if annotate:
                ax.annotate(
                    short_label(r['setting']), (x, y),
                    fontsize=7,
                    xytext=(4, 4),
                    textcoords='offset points')
        front = [points[i] for i in pareto_front(points)]
        ax.plot([p[0] for p in front], [p[1] for p in front],
                '--',
                color='gray',
                zorder=1,
                label='Pareto front')
        ax.set_xlabel(label)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=8)
    fig.suptitle(title or f'{name} vs speed (baseline: red star)')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
