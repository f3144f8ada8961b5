"""Evaluate a checkpoint with a config's test dataloader and evaluator,
keeping the per-class results."""
import copy
import gc
import time
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config

__all__ = ['evaluate_setting']


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

    Args:
        cfg (Config): the config (see
            :func:`~mmtokenprune.analysis.sweep_config.setting_config`).
        checkpoint (str): the weights to load.
        work_dir (str): the Runner's folder (logs).
        name (str): the Runner's experiment name prefix.

    Returns:
        tuple[nn.Module, dict]: the loaded model (eval) and the metrics:
        ``score_name`` ('mIoU' or 'top1'), ``score``, the evaluator's
        other scalars and per-class values, ``eval_s``, ``num_images``.

    Raises:
        KeyError: when the evaluator gives neither 'mIoU' nor
            'accuracy/top1'.
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
