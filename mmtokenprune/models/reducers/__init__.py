"""Token reducers: one registered class each, for ViT and Swin alike.

Importing this package registers every reducer in
:data:`~mmtokenprune.registry.TOKEN_REDUCERS`; a backbone's ``token_cfg``
names one by ``type`` (:class:`TokenCfg`).
"""
from .base import TokenReducer
from .matching import ATME, ToMe
from .spvit import SPViT
from .tps import DTPS, ETPS, TPSReducer
from .token_cfg import TokenCfg, reducer_types

__all__ = [
    'TokenReducer', 'ATME', 'ToMe', 'SPViT', 'TPSReducer', 'DTPS', 'ETPS',
    'TokenCfg',
    'reducer_types'
]
