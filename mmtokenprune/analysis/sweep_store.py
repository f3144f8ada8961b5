"""The sweep's CSV: one row per setting, read back to resume a sweep.

A rerun reuses a stored row only if it was made the same way (same
checkpoint, image size, clock, torch threads and repeats: the ``how`` of
:func:`check_resumable`) and has what the run needs (a score unless the run is
timing-only, latencies unless it is accuracy-only: :func:`row_serves`).
"""
import csv
import os
import os.path as osp
from typing import Dict, Optional, Sequence

__all__ = [
    'read_rows', 'write_rows', 'check_resumable', 'row_serves', 'row_timed'
]


def _parse_cell(value: str):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def read_rows(path: str) -> Dict[str, Dict]:
    """Rows of a sweep CSV keyed by setting (empty if there is none).

    Args:
        path (str): the CSV file.

    Returns:
        dict[str, dict]: setting -> row; numbers as floats, empty cells as
        ''.
    """
    if not osp.isfile(path):
        return {}
    with open(path, newline='') as f:
        rows = list(csv.DictReader(f))
    return {
        row['setting']: {
            k: _parse_cell(v)
            for k, v in row.items()
        }
        for row in rows
    }


def write_rows(rows: Sequence[Dict], path: str) -> None:
    """Write rows (dicts) as CSV; columns are the union, first-seen order,
    a row's missing columns left empty. The file is replaced at once.

    Args:
        rows (Sequence[dict]): the rows.
        path (str): the CSV file.
    """
    columns = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    tmp = path + '.tmp'
    with open(tmp, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def check_resumable(rows: Dict[str, Dict], how: Dict, path: str,
                    accuracy_only: bool = False) -> None:
    """Check that every stored row was measured as this run measures.

    Scores depend on the checkpoint only, not on the threads or the timing
    input: a row with nothing timed (from ``--accuracy-only``), or any row
    when this run times nothing, is checked for its checkpoint only (a
    timing run recounts the FLOPs at its own input size when it fills a
    row's latencies).

    Args:
        rows (dict[str, dict]): stored rows (see :func:`read_rows`).
        how (dict): this run's ``sweep_checkpoint``, ``image_size``,
            ``clock``, ``threads``, ``repeats``... as written in each row.
        path (str): the CSV file (named in the error).
        accuracy_only (bool): this run times nothing. Defaults to False.

    Raises:
        ValueError: naming the first row that differs, its values and this
            run's.
    """
    for text, row in rows.items():
        keys = how if row_timed(row) and not accuracy_only else {
            k: v
            for k, v in how.items() if k == 'sweep_checkpoint'
        }
        clash = {
            k: row.get(k)
            for k, v in keys.items() if str(row.get(k)) != str(v)
            and _parse_cell(str(row.get(k))) != _parse_cell(str(v))
        }
        if clash:
            raise ValueError(f'{path}: row {text!r} was measured with '
                             f'{clash}, this run with {how}; use another '
                             'output folder (--out).')


def row_timed(row: Dict) -> bool:
    """Whether a stored row holds a latency."""
    return any(
        k.startswith('speedup_backbone_b') and v not in ('', None)
        for k, v in row.items())


def row_serves(row: Optional[Dict], need_score: bool,
               need_timing: bool) -> bool:
    """Whether a stored row has what this run would make.

    Args:
        row (dict, optional): the stored row of a setting, if any.
        need_score (bool): the run evaluates (not timing-only).
        need_timing (bool): the run times (not accuracy-only).

    Returns:
        bool: True if the setting need not be run again.
    """
    if row is None:
        return False
    has_score = row.get('score', '') not in ('', None)
    return ((has_score or not need_score)
            and (row_timed(row) or not need_timing))
