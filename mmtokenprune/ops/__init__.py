"""Pure-torch algorithms of mmtokenprune; nothing here imports mm*."""
from .attention import fused_attention, split_qkv
from .channel import ChannelGate, gate_mask, head_channel_index, slice_linear
from .matching import atme_level, atme_plan, plan_from_scores, tome_plan
from .prune_spec import LayerDims, PruneSpec
from .schedule import Step, parse_schedule
from .token_map import MergePlan, TokenMap, merge_tokens, unmerge_tokens

__all__ = [
    'fused_attention', 'split_qkv', 'ChannelGate', 'gate_mask',
    'head_channel_index', 'slice_linear', 'atme_level', 'atme_plan',
    'plan_from_scores', 'tome_plan', 'LayerDims', 'PruneSpec', 'Step',
    'parse_schedule', 'MergePlan', 'TokenMap', 'merge_tokens',
    'unmerge_tokens'
]
