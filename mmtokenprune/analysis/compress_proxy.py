"""A cheap, label-free accuracy proxy: how far a compressed model's
predictions move from the uncompressed model's on a few images.

:func:`calibration_batches` takes ``n`` images, evenly spaced, from the
config's val (or train) set, through the *test* pipeline, so the model
sees them as in evaluation (sliding windows included). :func:`outputs`
runs a model's ``test_step`` on them and keeps its class log-probabilities
(segmentation: every ``stride``-th pixel of the full-resolution logits;
classification: the scores). :func:`proxy_scores` compares a candidate's
with the baseline's:

- ``kl``: mean KL divergence, baseline to candidate, per pixel (image);
  lower is better;
- ``agreement``: % of pixels (images) where both predict the same class.

:func:`spearman` is the rank correlation that says how well a proxy
orders candidates as their real validation score does.
"""
import copy
from typing import Dict, List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config

__all__ = [
    'SPLITS', 'calibration_batches', 'outputs', 'proxy_scores', 'spearman'
]

SPLITS = ('val', 'train', 'test')


def _test_pipeline_everywhere(dataset: Dict, pipeline) -> Dict:
    dataset = copy.deepcopy(dataset)
    if 'pipeline' in dataset:
        dataset['pipeline'] = copy.deepcopy(pipeline)
    if isinstance(dataset.get('dataset'), dict):
        dataset['dataset'] = _test_pipeline_everywhere(
            dataset['dataset'], pipeline)
    if dataset.get('datasets'):
        dataset['datasets'] = [
            _test_pipeline_everywhere(d, pipeline) for d in dataset['datasets']
        ]
    return dataset


def calibration_batches(cfg: Config, n: int, split: str = 'val') -> List:
    """``n`` images of ``split``, evenly spaced, each a collated batch of
    one (the test pipeline; labels are loaded but never read).

    Raises:
        ValueError: an unknown split, a config without its dataloader, or
            ``n`` outside ``[1, len(dataset)]``, naming the option.
    """
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DATASETS, init_default_scope
    if split not in SPLITS:
        raise ValueError(f'--calib-split must be one of {SPLITS}; got '
                         f'{split!r}.')
    key = f'{split}_dataloader'
    if cfg.get(key) is None or cfg.get('test_dataloader') is None:
        raise ValueError(f'--calib-split {split}: the config has no '
                         f'`{key}` (or no `test_dataloader`).')
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    pipeline = cfg.test_dataloader.dataset.pipeline
    dataset = DATASETS.build(
        _test_pipeline_everywhere(cfg[key].dataset, pipeline))
    total = len(dataset)
    if not 1 <= n <= total:
        raise ValueError(f'--calib must be in [1, {total}] (images in the '
                         f'{split} set); got {n}.')
    index = [int(i * total / n) for i in range(n)]
    return [pseudo_collate([dataset[i]]) for i in index]


@torch.no_grad()
def outputs(model: nn.Module, batches: Sequence,
            stride: int = 4) -> List[torch.Tensor]:
    """Class log-probabilities of ``model`` on ``batches``: per image
    ``(C, H/stride, W/stride)`` (segmentation) or ``(C, )``."""
    model.eval()
    out = []
    for batch in batches:
        for sample in model.test_step(batch):
            if 'seg_logits' in sample:
                logits = sample.seg_logits.data[:, ::stride, ::stride]
            elif 'pred_score' in sample:
                logits = sample.pred_score.clamp(min=1e-12).log()
            else:
                raise KeyError(f'{type(model).__name__}.test_step gave '
                               'neither seg_logits nor pred_score.')
            out.append(F.log_softmax(logits.float(), dim=0))
    return out


def proxy_scores(reference: Sequence[torch.Tensor],
                 candidate: Sequence[torch.Tensor]) -> Dict[str, float]:
    """``kl`` (baseline to candidate, mean per pixel or image) and
    ``agreement`` (% same predicted class) of two :func:`outputs`."""
    if len(reference) != len(candidate):
        raise ValueError(f'{len(reference)} reference outputs, '
                         f'{len(candidate)} candidate outputs.')
    kl = agree = count = 0.
    for p, q in zip(reference, candidate):
        if p.shape != q.shape:
            raise ValueError(f'output shapes differ: {tuple(p.shape)} vs '
                             f'{tuple(q.shape)}.')
        kl += float((p.exp() * (p - q)).sum(0).sum())
        agree += float((p.argmax(0) == q.argmax(0)).sum())
        count += p[0].numel()
    return dict(kl=kl / count, agreement=100 * agree / count)


def _ranks(values: Sequence[float]) -> List[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):  # ties share their mean rank
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (ties: mean ranks); NaN below 3 pairs
    or when one side is constant."""
    if len(x) != len(y):
        raise ValueError(f'{len(x)} vs {len(y)} values.')
    if len(x) < 3:
        return float('nan')
    rx, ry = _ranks(list(x)), _ranks(list(y))
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = sum((a - mx)**2 for a in rx)
    vy = sum((b - my)**2 for b in ry)
    if vx == 0 or vy == 0:
        return float('nan')
    return cov / (vx * vy)**0.5
