"""Registries of mmtokenprune.

``type='mmtokenprune.X'`` works from mmseg and mmpretrain configs alike:
mmengine resolves the ``mmtokenprune`` scope to this child of its root
registry and imports ``mmtokenprune.registry`` on demand, whose
``locations`` import the modules that register ``X``.

Importing this module applies the environment fixes
(:mod:`mmtokenprune.compat`), so code that enters mm through it (e.g.
``init_default_scope('mmtokenprune')``) has them before mmseg is imported.
In an mmseg-scoped build of ``type='mmtokenprune.X'`` mmengine imports
``mmseg.models`` *before* this module, so configs still name
``mmtokenprune.models`` in ``custom_imports`` (read at ``Config.fromfile``).
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

from .compat import applied  # noqa: F401  (environment fixes first)

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

# Training hooks (``type='mmtokenprune.X'`` in ``custom_hooks``).
HOOKS = Registry(
    'hook',
    parent=MMENGINE_HOOKS,
    scope='mmtokenprune',
    locations=['mmtokenprune.engine'])

__all__ = ['MODELS', 'TOKEN_REDUCERS', 'HOOKS']
