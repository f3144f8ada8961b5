"""Token reducers: one registered class each, for ViT and Swin alike.

Importing this package registers every reducer in
:data:`~mmtokenprune.registry.TOKEN_REDUCERS` (a backbone's ``token_cfg``
names one by ``type``: :class:`TokenCfg`) and declares that registry to
:mod:`mmtokenprune.budgets`, whose latency table and token counts read the
reducers' traits without importing the models.
"""
from ...budgets import declare_reducers
from ...registry import TOKEN_REDUCERS
from .base import TokenReducer
from .matching import ATME, ToMe
from .spvit import SPViT
from .tps import DTPS, ETPS, TPSReducer
from .token_cfg import TokenCfg, reducer_types

declare_reducers(lambda: TOKEN_REDUCERS.module_dict)

__all__ = [
    'TokenReducer', 'ATME', 'ToMe', 'SPViT', 'TPSReducer', 'DTPS', 'ETPS',
    'TokenCfg',
    'reducer_types'
]
