"""torch.compile(fullgraph=True) of every reducer's inference forward.

``fullgraph=True`` turns any graph break into an error, so these tests pin
"no graph breaks in the merge path". They trace with the ``'eager'``
backend (dynamo's tracing, where graph breaks arise, without code
generation: inductor takes minutes per tiny model on the 2-core test
machine), checking that every tensor in the graph has a fixed shape, and
one model with ``'aot_eager'`` (functionalisation and decompositions
too). Outputs must equal eager PyTorch on inputs the graph
was not traced with (a value baked in at tracing would differ).
"""
import copy

import pytest
import torch
from test_reducer_contract import SWIN, VIT

from mmtokenprune.models import (PrunedSwinTransformer,
                                 PrunedVisionTransformer)
from mmtokenprune.models.cdcp import init_gates_by_magnitude

REDUCERS = [
    None,
    dict(type='ATME', r=3),
    dict(type='ToMe', r=3),
    dict(type='dTPS', keep_ratio=0.7),
    dict(type='eTPS', keep_ratio=0.7),
    dict(type='SPViT', keep_ratio=0.6, layers=[1, 2]),
]


def _vit(**kw):
    torch.manual_seed(0)
    model = PrunedVisionTransformer(**copy.deepcopy(VIT), **kw)
    model.init_weights()
    return model.eval()


def static_shapes(gm, example_inputs):
    """The ``'eager'`` backend that first checks every tensor of the graph
    has a fixed shape (no size that depends on values, e.g. a
    ``nonzero``'s: they compile, but not to fixed shapes)."""
    for node in gm.graph.nodes:
        val = node.meta.get('example_value')
        for t in val if isinstance(val, (tuple, list)) else [val]:
            if isinstance(t, torch.Tensor):
                assert all(isinstance(s, int) for s in t.shape), \
                    f'{node.format_node()}: shape {tuple(t.shape)}'
    return gm.forward


def assert_compiles_to_eager(model, backend=static_shapes,
                             shape=(2, 3, 64, 48)):
    torch._dynamo.reset()
    compiled = torch.compile(
        model, backend=backend, fullgraph=True, dynamic=False)
    for seed in (1, 2):  # the second input was not seen while tracing
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            ours, theirs = compiled(x), model(x)
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize('token_cfg', REDUCERS,
                         ids=lambda c: c['type'] if c else 'baseline')
def test_every_vit_reducer_compiles_without_graph_breaks(token_cfg):
    assert_compiles_to_eager(_vit(token_cfg=token_cfg))


def test_cdcp_exported_model_compiles():
    """The smaller dense model CDCP exports, with ATME."""
    gated = _vit(token_cfg=dict(type='ATME', r=3),
                 channel_cfg=dict(type='CDCP'))
    init_gates_by_magnitude(gated, 0.6)
    spec, state = gated.export_pruned()
    small = _vit(token_cfg=dict(type='ATME', r=3),
                 channel_cfg=dict(spec=spec.to_dict()))
    small.load_state_dict(state, strict=True)
    assert sum(p.numel() for p in small.parameters()) < sum(
        p.numel() for p in gated.parameters())
    assert_compiles_to_eager(small)


def test_atme_compiles_through_aot_autograd():
    assert_compiles_to_eager(
        _vit(token_cfg=dict(type='ATME', r=3)), backend='aot_eager')


# SPViT in the shifted and regular blocks of both stages' layouts
SWIN_REDUCERS = REDUCERS[1:-1] + [
    dict(type='SPViT', keep_ratio=0.6, layers=[1, 2, 3])
]


def _swin(**kw):
    """The tiny Swin with 2 heads per stage (SPViT's selector needs 2);
    at 64 x 48 its second stage (8 x 6 tokens, 4 x 4 windows) has padding
    and shift regions, so every layout rule is traced."""
    torch.manual_seed(0)
    cfg = copy.deepcopy(SWIN)
    cfg['arch']['num_heads'] = (2, 2)
    return PrunedSwinTransformer(**cfg, **kw).eval()


def test_swin_atme_compiles_through_aot_autograd():
    """Functionalised: the in-place writes of the window path (padding
    zeroed, rows added) survive."""
    assert_compiles_to_eager(
        _swin(token_cfg=dict(type='ATME', r=3)), backend='aot_eager')


def test_swin_without_reducer_compiles():
    torch.manual_seed(0)
    model = PrunedSwinTransformer(**copy.deepcopy(SWIN)).eval()
    assert_compiles_to_eager(model)


@pytest.mark.parametrize('token_cfg', SWIN_REDUCERS, ids=lambda c: c['type'])
def test_every_swin_reducer_compiles_without_graph_breaks(token_cfg):
    """Counts and indices that follow from the window layout (capacity,
    windows that mix labels, real tokens left) are layout constants, so the
    merged windows have fixed shapes."""
    model = _swin(token_cfg=token_cfg)
    assert all(b.merge_r > 0 for b in model.stages[1].blocks)
    assert_compiles_to_eager(model)
