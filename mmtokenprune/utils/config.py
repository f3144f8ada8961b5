"""Configs and models: the one way every tool reads a config and builds it.

:func:`load_config` reads a config file and applies ``--cfg-options``-style
overrides (a top-level ``data_root`` reaches every dataloader);
:func:`build_model` builds its model with random, seeded weights and no
checkpoint download. ``tools/train.py``/``test.py`` (through
:func:`~.launch.config_from_args`), the benchmark, the sweep, the demo, the
visualiser and the export all go through them.
"""
import copy
import os.path as osp
from typing import Dict, List, Optional, Union

import torch
import torch.nn as nn
from mmengine.config import Config

__all__ = ['load_config', 'propagate_data_root', 'build_model']

_DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def load_config(source: Union[str, Config],
                options: Optional[Dict] = None,
                key: Optional[str] = None) -> Config:
    """A config with ``options`` (``{'a.b.c': value}``) merged in.

    Args:
        source (str | Config): a config file, or a loaded config (copied,
            so settings that share a file parse it once).
        options (dict, optional): overrides, as ``--cfg-options``; a
            top-level ``data_root`` is copied into every dataloader's
            dataset (:func:`propagate_data_root`). Defaults to None.
        key (str, optional): where ``source`` was given (e.g. ``'the
            `config` argument'``), named in error messages. Defaults to
            None.

    Returns:
        Config: the new config (``source`` is not changed).

    Raises:
        FileNotFoundError: the file, or a ``_base_`` file it names, does
            not exist; the message names ``source`` and ``key``.
        SyntaxError: the file (or a base) is no valid Python; likewise.
    """
    if isinstance(source, Config):
        cfg = copy.deepcopy(source)
    else:
        cfg = _read_config(str(source), key)
    if options:
        cfg.merge_from_dict(options)
        if 'data_root' in options:
            propagate_data_root(cfg, options['data_root'])
    return cfg


def _read_config(path: str, key: Optional[str]) -> Config:
    """``Config.fromfile`` whose file errors name ``path`` and ``key``
    (mmengine's name neither the config nor, for syntax errors, any file).
    """
    where = f'config file {path!r}' + (f' ({key})' if key else '')
    if not osp.isfile(path):
        raise FileNotFoundError(f'{where} does not exist.')
    try:
        return Config.fromfile(path)
    except FileNotFoundError as err:  # a missing `_base_` file
        raise FileNotFoundError(
            f'{where}, or one of its `_base_` files, names a file that does '
            f'not exist: {err}') from err
    except SyntaxError as err:
        raise SyntaxError(f'{where}, or one of its `_base_` files, is not '
                          f'valid Python: {err}') from err


def propagate_data_root(cfg: Config, data_root: str) -> None:
    """Copy a ``data_root`` override into the datasets that have one.

    Config variables are resolved when a file is read, so overriding the
    top-level ``data_root`` alone would not reach the dataloaders.

    Args:
        cfg (Config): Config whose train/val/test dataloaders' datasets
            (and datasets nested in wrappers) are updated in place.
        data_root (str): The new data folder.
    """
    for key in _DATALOADERS:
        loader = cfg.get(key, None)
        if loader is None:
            continue
        for dataset in _iter_datasets(loader.get('dataset', None)):
            if 'data_root' in dataset:
                dataset['data_root'] = data_root


def _iter_datasets(dataset) -> List[dict]:
    """Return ``dataset`` and every dataset nested in wrappers of it."""
    if not isinstance(dataset, dict):
        return []
    found = [dataset]
    for child in [dataset.get('dataset', None)] + list(
            dataset.get('datasets', None) or []):
        found.extend(_iter_datasets(child))
    return found


def build_model(cfg: Config, seed: int = 0) -> nn.Module:
    """Build ``cfg.model`` under its default scope with random weights.

    The backbone's ``init_cfg`` is dropped (nothing is downloaded; load
    weights afterwards), weights are initialised randomly (seeded), SyncBN
    becomes plain BN (CPU) and the model is switched to eval.

    Args:
        cfg (Config): a config with ``model``.
        seed (int): torch seed of the random weights. Defaults to 0.

    Returns:
        nn.Module: the model, in eval mode.
    """
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.init_cfg = None
    torch.manual_seed(seed)
    model = MODELS.build(model_cfg)
    model.init_weights()
    model = revert_sync_batchnorm(model)
    model.eval()  # mmpretrain's ViT.train() returns None: do not chain
    return model
