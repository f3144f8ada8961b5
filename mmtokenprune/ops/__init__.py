"""Pure-torch algorithms of mmtokenprune; nothing here imports mm*."""
from .attention import fused_attention, split_qkv
from .channel import ChannelGate, gate_mask, head_channel_index, slice_linear
from .matching import atme_level, atme_plan, plan_from_scores, tome_plan
from .prune_spec import LayerDims, PruneSpec
from .schedule import Step, parse_schedule
from .token_map import MergePlan, TokenMap, merge_tokens, unmerge_tokens
from .gumbel import gumbel_softmax, sample_keep
from .package import package_token
from .policy_attn import (policy_attention, policy_bias, policy_matrix,
                          policy_softmax)
from .predictors import MultiheadPredictorLG, PredictorLG
from .squeeze import squeeze_plan, squeeze_tokens, squeeze_train, tps_squeeze
from .topk import cls_attention_score, num_keep_from_ratio, topk_split

__all__ = [
    'fused_attention', 'split_qkv', 'ChannelGate', 'gate_mask',
    'head_channel_index', 'slice_linear', 'atme_level', 'atme_plan',
    'plan_from_scores', 'tome_plan', 'LayerDims', 'PruneSpec', 'Step',
    'parse_schedule', 'MergePlan', 'TokenMap', 'merge_tokens',
    'unmerge_tokens',
    'gumbel_softmax', 'sample_keep', 'package_token',
    'policy_attention', 'policy_bias', 'policy_matrix', 'policy_softmax',
    'MultiheadPredictorLG', 'PredictorLG', 'squeeze_plan', 'squeeze_tokens',
    'squeeze_train', 'tps_squeeze', 'cls_attention_score',
    'num_keep_from_ratio', 'topk_split'
]
