"""ToMe as the official code merges (facebookresearch/ToMe, tome/merge.py):
the alternation over the whole sequence, the order of what comes out, the
clamp of ``r``. Small cases computed by hand."""
import pytest
import torch

from mmtokenprune.models import PrunedVisionTransformer
from mmtokenprune.models.reducers import matching
from mmtokenprune.ops import Step, TokenMap, tome_plan, unmerge_tokens
from mmtokenprune.registry import TOKEN_REDUCERS

# six patches of a 2 x 3 grid, features that pick their partners:
# p1 -> p4 (cos .995), p3 -> p0 (.894), p5 -> p2 (.697)
P = torch.tensor([[1., 0, 0], [.1, 0, 1], [0, 1, 0], [1, .5, 0], [0, 0, 1],
                  [.5, 1, .9]])
CLS = torch.tensor([[7., 7, 7]])


def _tome(r, extra=1, **options):
    return TOKEN_REDUCERS.build(
        dict(type='ToMe', step=Step(r=r), index=0, num_extra_tokens=extra,
             **options))


def _layer(reducer, x, tokens):
    # keys = the tokens themselves, one head: ToMe's metric is the features
    return reducer(x, tokens, keys=x.unsqueeze(1))


def test_two_layers_merge_and_order_as_the_official_code():
    x = torch.cat([CLS, P]).unsqueeze(0)
    tokens = TokenMap.identity(1, (2, 3))
    # layer 1: [cls, p0..p5] alternates from the cls token, so the sources
    # are p1, p3, p5 (sequence positions 2, 4, 6) and the two best merge;
    # out comes [cls, unmerged sources (p5), destinations (p0, p2, p4)]
    x, tokens = _layer(_tome(2), x, tokens)
    p0_, p4_ = (P[0] + P[3]) / 2, (P[4] + P[1]) / 2
    torch.testing.assert_close(
        x[0], torch.stack([CLS[0], P[5], p0_, P[2], p4_]))
    assert tokens.size.tolist() == [[1., 2., 1., 2.]]
    # layer 2 alternates over that order: sources p0' and p4' (positions
    # 2 and 4); p4' matches p5 best (.644 against p0''s .507) and merges;
    # out: [cls, p0', p5 + p4', p2]
    x, tokens = _layer(_tome(1), x, tokens)
    torch.testing.assert_close(
        x[0], torch.stack([CLS[0], p0_, (P[5] + 2 * p4_) / 3, P[2]]))
    assert tokens.size.tolist() == [[2., 3., 1.]]
    assert tokens.assign.tolist() == [[0, 1, 2, 0, 1, 1]]
    assert tokens.anchor.tolist() == [[0, 5, 2]]
    # un-merge: every patch gets the token that stands for it
    full = unmerge_tokens(x[:, 1:], tokens)
    torch.testing.assert_close(full[0], x[0, 1:][tokens.assign[0]])


def test_patches_alternation_is_the_old_rule():
    # mmtokenprune 0.1: sources p0, p2, p4, kept tokens in sequence order
    x = torch.cat([CLS, P]).unsqueeze(0)
    out, tokens = _layer(_tome(1, alternate='patches'), x,
                         TokenMap.identity(1, (2, 3)))
    # p0's best is p3 (.894), p2's p5 (.697), p4's p1 (.995): p4 -> p1
    torch.testing.assert_close(
        out[0], torch.stack([CLS[0], P[0], (P[1] + P[4]) / 2, P[2], P[3],
                             P[5]]))


def test_parity_follows_the_extra_tokens():
    # the destinations come last: patch i is a source when E + i is even
    metric = P.unsqueeze(0)
    for extra, destinations in [(0, [1, 3, 5]), (1, [0, 2, 4]),
                                (2, [1, 3, 5])]:
        plan = tome_plan(metric, 1, num_extra_tokens=extra)
        assert plan.keep_idx[0, -3:].tolist() == destinations, extra


def test_without_a_class_token_unmerged_sources_come_by_score():
    # the official code sorts the unmerged sources only to keep the class
    # token first; without one they stay in descending order of their best
    # score: p0 (.894 to p3) before p2 (.697 to p5); p4 (.995) merged
    plan = tome_plan(P.unsqueeze(0), 1, num_extra_tokens=0)
    assert plan.keep_idx.tolist() == [[0, 2, 1, 3, 5]]
    plan = tome_plan(P.unsqueeze(0), 1, num_extra_tokens=2)
    assert plan.keep_idx.tolist() == [[0, 2, 1, 3, 5]]  # sorted: same here
    swapped = P[[2, 1, 0, 3, 4, 5]]  # now p0's partner is p5, p2's p3
    plan = tome_plan(swapped.unsqueeze(0), 1, num_extra_tokens=0)
    assert plan.keep_idx.tolist() == [[2, 0, 1, 3, 5]]
    plan = tome_plan(swapped.unsqueeze(0), 1, num_extra_tokens=2)
    assert plan.keep_idx.tolist() == [[0, 2, 1, 3, 5]]


def test_r_above_half_is_clamped_with_one_log_line(monkeypatch):
    said = []
    monkeypatch.setattr(matching, 'print_log',
                        lambda msg, **kw: said.append(msg))
    matching._log_clamp.cache_clear()
    model = PrunedVisionTransformer(
        arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                  feedforward_channels=64),
        img_size=64, patch_size=16, out_type='featmap',
        token_cfg=dict(type='ToMe', r=12, layers=[0, 1]))
    # 16 patches: 8 merge (not 12), then 4 of the 8 left
    assert [c[2] for c in model.token_counts()] == [1 + 8, 1 + 4]
    for _ in range(2):
        out = model(torch.randn(2, 3, 64, 64))
    assert out[0].shape[-2:] == (4, 4)
    assert len(said) == 2  # one line per layer and size, not per forward
    assert 'r=12' in said[0] and '16 patch tokens' in said[0] and \
        'merging 8' in said[0]


def test_windows_refuse_the_patches_alternation():
    with pytest.raises(ValueError, match=r"token_cfg.alternate='patches'"):
        _tome(1, extra=0, alternate='patches').window_roles(4)
    with pytest.raises(ValueError, match=r"token_cfg.alternate.*'sequence'"):
        _tome(1, alternate='pairs')
