"""Accuracy against speed over a grid of settings of one trained model.

A *setting* is a short string that says how to change a config's backbone
before evaluating a checkpoint with it. Parts are joined by ``+``:

- ``baseline``: the config as it is (reducers and pruning off).
- ``TYPE:KEY=VALUE,...``: a token reducer, ``TYPE`` one of the registered
  reducers (``ATME``, ``ToMe``), keys ``r``, ``keep_ratio``, ``layers`` and
  ``prop_attn`` of ``token_cfg``. Lists are written with ``/``
  (``r=16/8/4``); ``layers`` also takes a range (``layers=0-10``).
- ``spec=PATH[,ckpt=PATH]``: build the pruned widths of a prune spec
  (``channel_cfg=dict(spec=PATH)``) and load ``ckpt`` (defaults to
  ``pruned.pth`` beside the spec), as written by ``tools/export_pruned.py``.
- ``ckpt=PATH``: evaluate another checkpoint than the sweep's.

Examples: ``ATME:keep_ratio=0.9``, ``ToMe:r=8``,
``ATME:keep_ratio=0.9+spec=work_dirs/x/prune_spec.json``.

Each setting is evaluated with the config's test dataloader and evaluator
(mIoU and per-class IoU, or top-1 and per-class accuracy), its FLOPs are
counted with :func:`~mmtokenprune.analysis.flops.count_flops` and its
latency (backbone and whole model, batch 1 and 8) is timed in turns with
the unreduced, unpruned model of the same config (fused SDPA) in the same
run, so every speed-up compares two models timed side by side. Rows are
kept in a CSV keyed by the setting string: a rerun skips finished settings.
"""
import copy
import csv
import gc
import os
import os.path as osp
import re
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config

from .flops import count_flops
from .latency import device_name, time_interleaved

__all__ = [
    'SweepSetting', 'parse_setting', 'setting_config', 'evaluate_setting',
    'time_setting', 'read_rows', 'write_rows', 'run_sweep'
]

REDUCER_KEYS = ('r', 'keep_ratio', 'layers', 'prop_attn')
MODEL_KEYS = ('spec', 'ckpt')


@dataclass(frozen=True)
class SweepSetting:
    """A parsed setting string (see the module docstring).

    Attributes:
        text (str): the string, also the key of its CSV row.
        token_cfg (dict, optional): the backbone's ``token_cfg``.
        spec (str, optional): a prune spec JSON path.
        checkpoint (str, optional): a checkpoint replacing the sweep's.
    """
    text: str
    token_cfg: Optional[Dict] = None
    spec: Optional[str] = None
    checkpoint: Optional[str] = None

    @property
    def family(self) -> str:
        """``'baseline'``, the reducer type, and/or ``'spec'``."""
        parts = [self.token_cfg['type']] if self.token_cfg else []
        parts += ['spec'] if self.spec else []
        return '+'.join(parts) or 'baseline'


def _number(text: str, key: str, setting: str):
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ValueError(f'setting {setting!r}: `{key}={text}` is not a '
                         'number.') from None


def _reducer_value(key: str, raw: str, setting: str):
    if key == 'prop_attn':
        if raw.lower() not in ('true', 'false'):
            raise ValueError(f'setting {setting!r}: `prop_attn` must be '
                             f'true or false; got {raw!r}.')
        return raw.lower() == 'true'
    if key == 'layers' and re.fullmatch(r'\d+-\d+', raw):
        start, end = (int(v) for v in raw.split('-'))
        return list(range(start, end + 1))
    values = [_number(v, key, setting) for v in raw.split('/')]
    return values if len(values) > 1 or key == 'layers' else values[0]


def _pairs(body: str, allowed: Sequence[str], setting: str) -> Dict:
    out = {}
    for item in filter(None, body.split(',')):
        key, sep, value = item.partition('=')
        key = key.strip()
        if not sep or not value:
            raise ValueError(f'setting {setting!r}: {item!r} is not '
                             'KEY=VALUE.')
        if key not in allowed:
            raise ValueError(f'setting {setting!r}: unknown key {key!r}; '
                             f'allowed: {list(allowed)}.')
        out[key] = value.strip()
    return out


def parse_setting(text: str) -> SweepSetting:
    """Parse a setting string (grammar in the module docstring).

    Raises:
        ValueError: naming the offending key, type or part.
    """
    from ..models.backbones.compress_cfg import reducer_types
    text = text.strip()
    token_cfg, model = None, {}
    for part in text.split('+'):
        part = part.strip()
        if part == 'baseline':
            continue
        if part.startswith(MODEL_KEYS):
            model.update(_pairs(part, MODEL_KEYS, text))
            continue
        kind, sep, body = part.partition(':')
        types = reducer_types()
        if kind not in types:
            raise ValueError(f'setting {text!r}: {part!r} is not `baseline`, '
                             f'`TYPE:KEY=VALUE,...` with TYPE in {types}, '
                             f'`spec=PATH[,ckpt=PATH]` or `ckpt=PATH`.')
        if token_cfg is not None:
            raise ValueError(f'setting {text!r}: one token reducer only.')
        pairs = _pairs(body, REDUCER_KEYS, text)
        token_cfg = dict(type=kind)
        token_cfg.update({
            k: _reducer_value(k, v, text)
            for k, v in pairs.items()
        })
    spec, ckpt = model.get('spec'), model.get('ckpt')
    if spec is not None:
        if not osp.isfile(spec):
            raise ValueError(f'setting {text!r}: `spec` file {spec!r} does '
                             'not exist.')
        ckpt = ckpt or osp.join(osp.dirname(spec), 'pruned.pth')
    if ckpt is not None and not osp.isfile(ckpt):
        raise ValueError(f'setting {text!r}: `ckpt` file {ckpt!r} does not '
                         'exist.')
    return SweepSetting(text, token_cfg, spec, ckpt)


def setting_config(cfg: Config, setting: SweepSetting) -> Config:
    """A copy of ``cfg`` whose backbone follows ``setting`` (reducers and
    pruning of ``cfg`` itself are replaced, ``init_cfg`` removed)."""
    cfg = copy.deepcopy(cfg)
    backbone = cfg.model.backbone
    backbone.token_cfg = copy.deepcopy(setting.token_cfg)
    backbone.channel_cfg = (
        dict(spec=setting.spec) if setting.spec is not None else None)
    backbone.init_cfg = None
    if cfg.model.get('type') == 'mmtokenprune.PrunedEncoderDecoder':
        cfg.model.type = 'EncoderDecoder'  # no gates: no budget loss
    if cfg.model.get('type') == 'mmtokenprune.PrunedImageClassifier':
        cfg.model.type = 'ImageClassifier'
    return cfg


def _per_class(results: List, classes: Sequence[str]) -> Dict[str, float]:
    """Per-class IoU (mmseg's IoUMetric results) or per-class accuracy
    (mmpretrain's Accuracy results), in percent."""
    if not results:
        return {}
    if isinstance(results[0], (tuple, list)):  # (inter, union, pred, label)
        inter = sum(r[0] for r in results).double()
        union = sum(r[1] for r in results).double()
        iou = (100 * inter / union.clamp(min=1)).tolist()
        return {f'IoU.{c}': v for c, v in zip(classes, iou)}
    if 'gt_label' in results[0]:
        gt = torch.cat([r['gt_label'].view(-1) for r in results])
        pred = torch.cat([
            r['pred_score'].view(1, -1).argmax(1)
            if 'pred_score' in r else r['pred_label'].view(-1) for r in results
        ])
        return {
            f'acc.{c}': 100 * float((pred[gt == i] == i).float().mean())
            for i, c in enumerate(classes) if bool((gt == i).any())
        }
    return {}


def evaluate_setting(cfg: Config, checkpoint: str, work_dir: str,
                     name: str) -> Tuple[nn.Module, Dict]:
    """Evaluate ``checkpoint`` with ``cfg``'s test dataloader and evaluator.

    The Runner is built from ``cfg`` (``load_from=checkpoint``) and its test
    loop's dataloader and evaluator are run by hand, to read the per-class
    results before the evaluator discards them.

    Returns:
        tuple[nn.Module, dict]: the loaded model (eval) and the metrics:
        ``score_name`` ('mIoU' or 'top1'), ``score``, the evaluator's
        other scalars and per-class values, ``eval_s``.
    """
    from ..utils.launch import build_runner
    cfg = copy.deepcopy(cfg)
    cfg.load_from = checkpoint
    cfg.resume = False
    cfg.work_dir = work_dir
    cfg.experiment_name = f'{name}_{time.time_ns()}'
    cfg.launcher = 'none'
    runner = build_runner(cfg)
    loop = runner.test_loop
    runner.load_or_resume()
    model = runner.model
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for batch in loop.dataloader:
            loop.evaluator.process(
                data_samples=model.test_step(batch), data_batch=batch)
    classes = loop.dataloader.dataset.metainfo.get('classes') or []
    per_class = _per_class(list(loop.evaluator.metrics[0].results), classes)
    metrics = loop.evaluator.evaluate(len(loop.dataloader.dataset))
    out = dict(
        eval_s=time.perf_counter() - start,
        num_images=len(loop.dataloader.dataset))
    if 'mIoU' in metrics:
        out.update(score_name='mIoU', score=float(metrics['mIoU']))
    elif 'accuracy/top1' in metrics:
        out.update(score_name='top1', score=float(metrics['accuracy/top1']))
    else:
        raise KeyError(f'the evaluator returned {sorted(metrics)}; the '
                       "sweep needs 'mIoU' or 'accuracy/top1'.")
    out.update({
        k: float(v)
        for k, v in metrics.items() if isinstance(v, (int, float))
    })
    out.update(per_class)
    del runner
    gc.collect()
    return model, out


def time_setting(model: nn.Module,
                 ref: nn.Module,
                 image_size: Tuple[int, int],
                 batch_sizes: Sequence[int],
                 repeats: int,
                 warmup: int,
                 clock: str = 'wall') -> Dict[str, float]:
    """FLOPs of ``model`` and median latency of ``model`` and ``ref`` timed
    in turns, for the backbone and the whole model at each batch size.

    ``clock`` is passed to :func:`time_interleaved`: 'wall', or 'cpu' (the
    process's CPU time; with one torch thread on a CPU shared with other
    jobs, the latency the forward would have on a free core).

    Returns:
        dict: ``params_M``, ``gflops_{model,backbone,merge}`` (per image,
        1 MAC = 1 FLOP) and for each part and batch ``ms_<part>_b<n>``,
        ``ref_ms_<part>_b<n>`` and ``speedup_<part>_b<n>`` (medians), the
        same with ``min_`` (minima: on a loaded machine, where noise only
        adds, the closer estimate of the unloaded latency) and
        ``load_avg``.
    """
    flops = count_flops(model, torch.randn(1, 3, *image_size))
    out = dict(
        params_M=sum(p.numel() for p in model.parameters()) / 1e6,
        gflops_model=flops['model'],
        gflops_backbone=flops.get('backbone', float('nan')),
        gflops_merge=flops['merge'])
    for batch in batch_sizes:
        x = torch.randn(batch, 3, *image_size)
        for part in ('backbone', 'model'):
            fns = {'setting': _call(model, part, x)}
            if ref is not model:
                fns['ref'] = _call(ref, part, x)
            times = time_interleaved(fns, repeats, warmup, clock=clock)
            mine, theirs = times['setting'], times.get('ref', times['setting'])
            for stat, fn in (('', statistics.median), ('min_', min)):
                ms, ref_ms = fn(mine), fn(theirs)
                out[f'{stat}ms_{part}_b{batch}'] = ms
                out[f'ref_{stat}ms_{part}_b{batch}'] = ref_ms
                out[f'speedup_{stat}{part}_b{batch}'] = ref_ms / ms
    out['load_avg'] = os.getloadavg()[0]
    return out


def _call(model: nn.Module, part: str, x: torch.Tensor) -> Callable:
    module = model.backbone if part == 'backbone' else model
    return lambda: module(x)


def read_rows(path: str) -> Dict[str, Dict]:
    """Rows of a sweep CSV keyed by setting (empty if there is none)."""
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


def _parse_cell(value: str):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def write_rows(rows: Sequence[Dict], path: str) -> None:
    """Write rows (dicts) as CSV; columns are the union, first-seen order."""
    columns = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    tmp = path + '.tmp'
    with open(tmp, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def run_sweep(config: Config,
              checkpoint: str,
              settings: Sequence[str],
              out_dir: str,
              image_size: Tuple[int, int] = (360, 480),
              batch_sizes: Sequence[int] = (1, 8),
              repeats: int = 10,
              warmup: int = 2,
              clock: str = 'wall',
              on_row: Optional[Callable[[List[Dict]], None]] = None,
              progress: bool = True) -> List[Dict]:
    """Evaluate, count and time every setting; skip those already in
    ``out_dir/sweep.csv``.

    Args:
        config (Config): the trained model's config (any reducer or
            pruning in it is replaced by each setting's).
        checkpoint (str): its checkpoint (a setting may name another).
        settings (sequence[str]): setting strings; all are parsed before
            anything runs, so a bad one fails fast.
        out_dir (str): ``sweep.csv`` and per-setting Runner logs go here.
        image_size (tuple[int, int]): ``(H, W)`` of FLOPs and latency
            inputs. Defaults to CamVid's (360, 480).
        batch_sizes, repeats, warmup, clock: of the latency measurement
            (see :func:`time_setting`). Rows of the CSV made from another
            ``checkpoint`` or measured otherwise (or with another number of
            torch threads) are not mixed in: a ValueError says so.
        on_row (callable, optional): called with all rows after each new
            row (e.g. to redraw the table and the plot).
        progress (bool): show a progress bar over settings.

    Returns:
        list[dict]: one row per setting, in the order of ``settings``.
    """
    from tqdm import tqdm

    from .benchmark import build_model
    parsed = [parse_setting(s) for s in settings]
    os.makedirs(out_dir, exist_ok=True)
    csv_path = osp.join(out_dir, 'sweep.csv')
    done = read_rows(csv_path)
    how = dict(
        sweep_checkpoint=checkpoint,
        image_size=f'{image_size[0]}x{image_size[1]}',
        clock=clock,
        threads=torch.get_num_threads(),
        repeats=repeats)
    for text, row in done.items():
        clash = {
            k: row.get(k)
            for k, v in how.items() if str(row.get(k)) != str(v)
            and _parse_cell(str(row.get(k))) != _parse_cell(str(v))
        }
        if clash:
            raise ValueError(f'{csv_path}: row {text!r} was measured with '
                             f'{clash}, this run with {how}; use another '
                             'output folder (--out).')
    ref = None
    for setting in tqdm(parsed, desc='sweep', disable=not progress):
        if setting.text in done:
            tqdm.write(f'[sweep] {setting.text}: done before, skipped')
            continue
        if ref is None:
            base = setting_config(config, SweepSetting('baseline'))
            ref = build_model(base)  # weights do not change timing
        cfg = setting_config(config, setting)
        ckpt = setting.checkpoint or checkpoint
        slug = re.sub(r'[^A-Za-z0-9._=-]+', '_', setting.text)[:80]
        model, metrics = evaluate_setting(cfg, ckpt,
                                          osp.join(out_dir, 'runs', slug),
                                          f'sweep_{slug}')
        timing = time_setting(model,
                              ref if setting.text != 'baseline' else model,
                              image_size, batch_sizes, repeats, warmup)
        done[setting.text] = dict(
            setting=setting.text,
            family=setting.family,
            **metrics,
            **timing,
            **how,
            device=device_name('cpu'),
            checkpoint=ckpt)
        tqdm.write(f'[sweep] {setting.text}: {metrics["score_name"]} '
                   f'{metrics["score"]:.2f}, backbone speed-up b1 '
                   f'{timing.get("speedup_backbone_b1", float("nan")):.2f}')
        rows = [done[s] for s in done]
        write_rows(rows, csv_path)
        if on_row is not None:
            on_row(rows)
        del model
        gc.collect()
    return [done[s.text] for s in parsed]
