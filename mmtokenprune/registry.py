"""Registries of mmtokenprune.

``type='mmtokenprune.X'`` works from mmseg and mmpretrain configs alike:
mmengine resolves the ``mmtokenprune`` scope to this child of its root
registry and imports ``mmtokenprune.registry`` on demand, whose
``locations`` import the modules that register ``X``.
"""
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry(
    'model',
    parent=MMENGINE_MODELS,
    scope='mmtokenprune',
    locations=['mmtokenprune.models'])

# Token reducers (ATME, ToMe, ...), built per reducing layer from a
# backbone's ``token_cfg``; ``type`` names one of these.
TOKEN_REDUCERS = Registry(
    'token reducer',
    scope='mmtokenprune',
    locations=['mmtokenprune.models.reducers'])

__all__ = ['MODELS', 'TOKEN_REDUCERS']
