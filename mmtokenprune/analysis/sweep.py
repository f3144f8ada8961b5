"""Accuracy against speed over a grid of settings of one trained model.

For each setting (a string, see
:mod:`~mmtokenprune.analysis.sweep_settings`), :func:`run_sweep` rewrites
the config (:mod:`~mmtokenprune.analysis.sweep_config`), evaluates the
checkpoint with the config's test dataloader and evaluator (mIoU and
per-class IoU, or top-1 and per-class accuracy;
:mod:`~mmtokenprune.analysis.sweep_eval`), counts its FLOPs and times its
latency (backbone and whole model, batch 1 and 8) in turns with the
unreduced, unpruned model of the same config (fused SDPA) in the same run
(:mod:`~mmtokenprune.analysis.sweep_timing`), so every speed-up compares
two models timed side by side. Rows are kept in a CSV keyed by the setting
string (:mod:`~mmtokenprune.analysis.sweep_store`): a rerun skips finished
settings. A timing-only sweep skips evaluation: latency depends on shapes,
not weight values, so each setting is built with random weights and timed
exactly as above, its score left empty. An accuracy-only sweep evaluates
and counts FLOPs but times nothing (latency columns stay empty), for
accuracy on a machine busy with other jobs; a later sweep into the same
folder adds what a row lacks.
"""
import gc
import os
import os.path as osp
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config

from ..utils.config import build_model
from .latency import check_timing, num_threads
from .sweep_config import setting_config
from .sweep_eval import evaluate_setting
from .sweep_settings import SweepSetting, parse_setting
from .sweep_store import (check_resumable, read_rows, row_serves, row_timed,
                          write_rows)
from .sweep_timing import time_setting

__all__ = ['run_sweep']


def run_sweep(config: Config,
              checkpoint: Optional[str],
              settings: Sequence[str],
              out_dir: str,
              image_size: Tuple[int, int] = (360, 480),
              batch_sizes: Sequence[int] = (1, 8),
              repeats: int = 10,
              warmup: int = 2,
              clock: str = 'wall',
              threads: Optional[int] = None,
              timing_only: bool = False,
              accuracy_only: bool = False,
              on_row: Optional[Callable[[List[Dict]], None]] = None,
              progress: bool = True) -> List[Dict]:
    """Evaluate, count and time every setting; skip those already in
    ``out_dir/sweep.csv``.

    Args:
        config (Config): the trained model's config (any reducer or
            pruning in it is replaced by each setting's).
        checkpoint (str, optional): its checkpoint (a setting may name
            another); needed unless ``timing_only``.
        settings (Sequence[str]): setting strings; all are parsed before
            anything runs, so a bad one fails fast.
        out_dir (str): ``sweep.csv`` and per-setting Runner logs go here.
        image_size (tuple[int, int]): ``(H, W)`` of FLOPs and latency
            inputs. Defaults to CamVid's (360, 480).
        batch_sizes (Sequence[int]): of the latency measurement.
            Defaults to (1, 8).
        repeats (int): timed rounds. Defaults to 10.
        warmup (int): untimed rounds first. Defaults to 2.
        clock (str): 'wall' or 'cpu' (process CPU time), see
            :func:`~mmtokenprune.analysis.sweep_timing.time_setting`.
            Defaults to 'wall'.
        threads (int, optional): torch CPU threads for evaluation and
            timing (restored after). Defaults to None: torch's setting.
            Rows of the CSV made from another ``checkpoint``, image size,
            clock, number of threads or repeats are not mixed in: a
            ValueError says so.
        timing_only (bool): skip evaluation: build each setting with random
            weights (no checkpoint is read) and time it as above; score
            columns stay empty. Defaults to False.
        accuracy_only (bool): evaluate and count FLOPs, time nothing;
            latency columns stay empty. Defaults to False.
        on_row (callable, optional): called with all rows after each new
            row (e.g. to redraw the table and the plot). Defaults to None.
        progress (bool): show a progress bar over settings.
            Defaults to True.

    Returns:
        list[dict]: one row per setting, in the order of ``settings``.
    """
    from tqdm import tqdm

    if checkpoint is None and not timing_only:
        raise ValueError('checkpoint is needed unless timing_only=True.')
    if timing_only and accuracy_only:
        raise ValueError('timing_only and accuracy_only exclude each other.')
    check_timing(clock=clock, threads=threads)
    parsed = [
        parse_setting(s, check_checkpoints=not timing_only) for s in settings
    ]
    os.makedirs(out_dir, exist_ok=True)
    csv_path = osp.join(out_dir, 'sweep.csv')
    done = read_rows(csv_path)
    how = dict(
        sweep_checkpoint=checkpoint or '',
        image_size=f'{image_size[0]}x{image_size[1]}',
        clock=clock,
        threads=threads or torch.get_num_threads(),
        repeats=repeats)
    check_resumable(done, how, csv_path, accuracy_only)
    ref = None
    for setting in tqdm(parsed, desc='sweep', disable=not progress):
        stored = done.get(setting.text)
        if row_serves(stored, need_score=not timing_only,
                      need_timing=not accuracy_only):
            tqdm.write(f'[sweep] {setting.text}: done before, skipped')
            continue
        if ref is None and not accuracy_only:
            base = setting_config(config, SweepSetting('baseline'))
            ref = build_model(base)  # weights do not change timing
        cfg = setting_config(config, setting)
        if timing_only:
            ckpt, metrics = '', {}
            model = build_model(cfg)
        else:
            ckpt = setting.checkpoint or checkpoint
            slug = re.sub(r'[^A-Za-z0-9._=-]+', '_', setting.text)[:80]
            with num_threads(threads):
                model, metrics = evaluate_setting(
                    cfg, ckpt, osp.join(out_dir, 'runs', slug),
                    f'sweep_{slug}')
        timing = time_setting(
            model,
            ref if setting.text != 'baseline' and ref is not None else model,
            image_size,
            () if accuracy_only else batch_sizes,
            repeats,
            warmup,
            clock=clock,
            threads=threads)
        row = dict(setting=setting.text, family=setting.family, **metrics)
        # the timed half owns the counts and how they were measured (its
        # input size, clock, threads): scoring a timed row adds the score only
        if not (accuracy_only and stored is not None and row_timed(stored)):
            row.update(**timing, **how)
        if ckpt or not stored:
            row['checkpoint'] = ckpt
        done[setting.text] = {**(stored or {}), **row}  # keeps the other half
        score = (f'{metrics["score_name"]} {metrics["score"]:.2f}'
                 if metrics else 'not evaluated (timing only)')
        tqdm.write(f'[sweep] {setting.text}: {score}, backbone speed-up b1 '
                   f'{timing.get("speedup_backbone_b1", float("nan")):.2f}')
        rows = [done[s] for s in done]
        write_rows(rows, csv_path)
        if on_row is not None:
            on_row(rows)
        del model
        gc.collect()
    return [done[s.text] for s in parsed]
