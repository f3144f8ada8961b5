"""The benchmark's table: settings side by side against the first one, as
markdown and as CSV.

Rows are :class:`~mmtokenprune.analysis.benchmark.Setting` whose ``stats``
come from :func:`~mmtokenprune.analysis.measure.measure`.
"""
import csv
from typing import Dict, List, Optional, Sequence, Tuple

from .benchmark import Setting
from .latency import CLOCK_TEXT

__all__ = ['runs_text', 'table_rows', 'format_markdown', 'write_csv']


def runs_text(dtypes: Sequence[str] = ('fp32', ),
              compile: Optional[str] = None,
              runtimes: Sequence[str] = ('torch', )) -> str:
    """How the rows ran, for the table's header: the first dtype, eager or
    compiled, and what the suffixed rows are.

    Args:
        dtypes (Sequence[str]): as measured; rows of the others are named
            ``'<setting> [<dtype>]'``.
        compile (str, optional): the ``torch.compile`` backend, or None
            (eager).
        runtimes (Sequence[str]): as measured.
    """
    how = (f'torch.compile({compile}, fullgraph, static shapes)'
           if compile else 'eager')
    text = f'PyTorch {how}, {dtypes[0]}'
    for dtype in dtypes[1:]:
        text += f'; [{dtype}] rows: {dtype} autocast'
    if 'onnxruntime' in runtimes:
        import onnxruntime
        text += (f'; [onnxruntime] rows: onnxruntime '
                 f'{onnxruntime.__version__} CPU, fp32, exported at each '
                 'batch shape')
    return text


def _columns(settings: Sequence[Setting]) -> List[Tuple[str, str]]:
    """``(header, stats key or derived key)`` of every table column."""
    stats = settings[0].stats
    batches = sorted(
        {int(k.rsplit('_b', 1)[1])
         for k in stats if k.startswith('ms_')})
    cols = [('params (M)', 'params_M'), ('backbone GFLOPs', 'gflops_backbone'),
            ('model GFLOPs', 'gflops_model')]
    for part in ('backbone', 'model'):
        cols += [(f'{part} ms b{b}', f'ms_{part}_b{b}') for b in batches
                 if f'ms_{part}_b{b}' in stats]
    cols += [(f'backbone speed-up b{b}', f'speedup_b{b}') for b in batches
             if f'ms_backbone_b{b}' in stats]
    cols.append(('FLOPs reduction', 'flops_reduction'))
    cols += [(f'efficiency b{b}', f'efficiency_b{b}') for b in batches
             if f'ms_backbone_b{b}' in stats]
    cols.append(('load avg', 'load_avg'))
    return cols


def _derived(setting: Setting, base: Setting) -> Dict[str, float]:
    """Speed-up, FLOPs reduction and efficiency against ``base``."""
    s, b = setting.stats, base.stats
    out = dict(s)
    out['flops_reduction'] = b['gflops_backbone'] / s['gflops_backbone']
    for key in s:
        if key.startswith('ms_backbone_b'):
            batch = key.rsplit('_b', 1)[1]
            speedup = b[key] / s[key]
            out[f'speedup_b{batch}'] = speedup
            out[f'efficiency_b{batch}'] = speedup / out['flops_reduction']
    return out


def _fmt(key: str, value: float) -> str:
    if key.startswith(('speedup', 'flops_red', 'efficiency')):
        return f'{value:.2f}'
    if key.startswith('ms_'):
        return f'{value:.0f}' if value >= 100 else f'{value:.1f}'
    if key == 'load_avg':
        return f'{value:.1f}'
    return f'{value:.2f}' if abs(value) >= 1 else f'{value:.3g}'


def table_rows(settings: Sequence[Setting]) -> Tuple[List[str], List[List]]:
    """Headers and numeric rows; the first setting is the reference.

    Args:
        settings (Sequence[Setting]): measured settings.

    Returns:
        tuple[list[str], list[list]]: the headers and one row per setting
        (its name, then numbers).
    """
    cols = _columns(settings)
    rows = []
    for s in settings:
        values = _derived(s, settings[0])
        rows.append([s.name] + [values[key] for _, key in cols])
    return ['setting'] + [h for h, _ in cols], rows


def format_markdown(settings: Sequence[Setting],
                    dtype: str = 'fp32',
                    repeats: Optional[int] = None,
                    image_size: Tuple[int, int] = (512, 512),
                    clock: str = 'wall') -> str:
    """The results as a markdown table with the machine and method named.

    Args:
        settings (Sequence[Setting]): measured settings; the first is the
            reference of speed-up and FLOPs reduction.
        dtype (str): as measured, or :func:`runs_text`. Defaults to 'fp32'.
        repeats (int, optional): timed rounds. Defaults to None (not said).
        image_size (tuple[int, int]): ``(H, W)`` as measured.
            Defaults to (512, 512).
        clock (str): 'wall' or 'cpu', as measured. Defaults to 'wall'.

    Returns:
        str: the machine and method, the table, then each setting's notes.
    """
    headers, rows = table_rows(settings)
    keys = [None] + [key for _, key in _columns(settings)]
    lines = [
        f'Machine: {settings[0].stats["device"]}. {dtype}, input '
        f'{image_size[0]}x{image_size[1]}; latency = median '
        f'{CLOCK_TEXT[clock]} ms per forward of the batch (bN = batch N)' +
        (f' over {repeats} interleaved repeats' if repeats else '') +
        '; GFLOPs per image (1 MAC = 1 FLOP). Speed-up and FLOPs reduction'
        f' are backbone vs `{settings[0].name}`; efficiency = speed-up / '
        'FLOPs reduction; load avg = 1-min load average during timing.', '',
        '| ' + ' | '.join(headers) + ' |',
        '|' + '|'.join(['---'] + ['---:'] * (len(headers) - 1)) + '|'
    ]
    for row in rows:
        cells = [row[0]] + [_fmt(k, v) for k, v in zip(keys[1:], row[1:])]
        lines.append('| ' + ' | '.join(cells) + ' |')
    notes = [f'- {s.name}: {note}' for s in settings for note in s.notes]
    if notes:
        lines += [''] + notes
    return '\n'.join(lines) + '\n'


def write_csv(settings: Sequence[Setting], path: str) -> None:
    """The numeric table (full precision) as CSV.

    Args:
        settings (Sequence[Setting]): measured settings.
        path (str): the CSV file to write.
    """
    headers, rows = table_rows(settings)
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(headers)
        writer.writerows(rows)
