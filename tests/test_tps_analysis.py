"""dTPS and eTPS in the analysis tools: the sweep's setting grammar, the
benchmark's preset, and FLOPs that include dTPS's predictor."""
import pytest
import torch
from mmengine.config import Config
from test_tools import load_tool
from test_tps import TINY

from mmtokenprune.analysis import count_flops
from mmtokenprune.analysis.sweep_settings import parse_setting
from mmtokenprune.models import PrunedVisionTransformer
from mmtokenprune.models.reducers import DTPS, TokenReducer
from mmtokenprune.registry import TOKEN_REDUCERS


# ---------------------------------------------------------------- sweep
def test_sweep_setting_takes_the_tps_schedule_and_options():
    s = parse_setting('dTPS:keep_ratio=0.7,layers=3/6/9,prop_attn=0')
    assert s.token_cfg == dict(
        type='dTPS', keep_ratio=0.7, layers=[3, 6, 9], prop_attn=False)
    assert s.family == 'dTPS'
    s = parse_setting('dTPS:r=4,temperature=1,tau=0.5,prop_attn=false')
    assert s.token_cfg == dict(
        type='dTPS', r=4, temperature=1.0, tau=0.5, prop_attn=False)
    assert isinstance(s.token_cfg['temperature'], float)
    assert parse_setting('eTPS:keep_ratio=0.5,temperature=0.5').token_cfg \
        == dict(type='eTPS', keep_ratio=0.5, temperature=0.5)
    assert parse_setting('ATME:r=8,prop_attn=1').token_cfg['prop_attn']


@pytest.mark.parametrize('text, match', [
    # an option of another reducer is refused, naming what this one has
    ('eTPS:tau=0.5', r"unknown key 'tau'.*'temperature'"),
    ('ATME:temperature=2', r"unknown key 'temperature'.*'metric', 'where'\]"),
    ('dTPS:temperature=hot', 'temperature=hot'),
    ('dTPS:prop_attn=2', 'prop_attn'),
])
def test_sweep_setting_refuses_bad_options_by_name(text, match):
    with pytest.raises(ValueError, match=match):
        parse_setting(text)


class _Opts(TokenReducer):
    """Test-only: options of every kind, none of them known to the sweep."""
    options = dict(flag=False, mode='a', weights=1.0, count=2)


@pytest.fixture
def opts_reducer():
    TOKEN_REDUCERS.register_module(module=_Opts)
    yield '_Opts'
    TOKEN_REDUCERS._module_dict.pop('_Opts')


def test_sweep_setting_reads_any_reducers_options_by_their_defaults(
        opts_reducer):
    s = parse_setting(f'{opts_reducer}:r=2,flag=1,mode=b,weights=1/2,'
                      'count=3')
    assert s.token_cfg == dict(
        type=opts_reducer, r=2, flag=True, mode='b', weights=[1.0, 2.0],
        count=3)
    assert s.token_cfg['flag'] is True  # a bool, not the number 1
    with pytest.raises(ValueError, match='`flag` must be true or false'):
        parse_setting(f'{opts_reducer}:r=2,flag=yes')


def test_a_sweep_setting_builds_the_reducer_it_names():
    s = parse_setting('dTPS:keep_ratio=0.5,layers=1/2,prop_attn=0,'
                      'temperature=0.5,tau=2')
    model = PrunedVisionTransformer(**TINY, token_cfg=s.token_cfg)
    reducers = [layer.reducer for layer in model.layers
                if layer.reducer is not None]
    assert [type(r) for r in reducers] == [DTPS, DTPS]
    assert all(r.temperature == 0.5 and r.tau == 2 for r in reducers)


# ------------------------------------------------------------ benchmark
def test_benchmark_preset_lists_dtps_and_etps_at_the_tps_schedule():
    tool = load_tool('analysis/benchmark')
    # the default stays the three arms of the README table and the demo
    assert [n for n, _ in tool.PRESETS['deit-s']] == [
        'baseline', 'ATME', 'ATME+CDCP']
    arms = dict(tool.PRESETS['deit-s-all'])
    assert list(arms)[:3] == ['baseline', 'ATME', 'ATME+CDCP']
    for name in ('dTPS', 'eTPS'):
        cfg = Config.fromfile(arms[name])
        assert cfg.model.backbone.arch == 'deit-small'
        assert cfg.model.backbone.img_size == (512, 512)
        assert cfg.model.backbone.token_cfg == dict(
            type=name, keep_ratio=0.7, layers=[3, 6, 9], prop_attn=False)
    assert Config.fromfile(arms['SPViT']).model.backbone.token_cfg.type == \
        'SPViT'
    assert tool.parse_args(['--preset', 'deit-s-all']).preset == 'deit-s-all'
    swin = dict(tool.PRESETS['swin-t-all'])
    assert list(swin)[:3] == [n for n, _ in tool.PRESETS['swin-t']]
    assert list(swin)[3:] == ['Swin-T dTPS', 'Swin-T eTPS', 'Swin-T SPViT']
    for name in ('dTPS', 'eTPS', 'SPViT'):
        cfg = Config.fromfile(swin[f'Swin-T {name}'])
        assert cfg.model.backbone.type == 'mmtokenprune.PrunedSwinTransformer'
        assert cfg.model.backbone.token_cfg.type == name


# ---------------------------------------------------------------- FLOPs
def _predictor_macs(dims, tokens):
    """PredictorLG per token: LN (mmengine: 5 per element) and Linear
    C->C, C->C/2, C/2->C/4, C/4->2 (GELU, pooling, softmax are free)."""
    per_token = 5 * dims + dims * dims + dims * (dims // 2) + \
        (dims // 2) * (dims // 4) + (dims // 4) * 2
    return per_token * sum(tokens)


def test_flops_count_dtps_predictor_on_the_live_tokens(monkeypatch):
    """dTPS costs its schedule plus exactly its predictor's MACs on the
    tokens the predictor sees (16 before layer 1, 12 before layer 2)."""
    x = torch.randn(1, 3, 64, 64)  # 16 patch tokens
    cfg = dict(type='dTPS', keep_ratio=0.7, layers=[1, 2])
    torch.manual_seed(0)
    model = PrunedVisionTransformer(**TINY, token_cfg=cfg).eval()
    with_predictor = count_flops(model, x, modules=())['model'] * 1e9
    # the same reducer scoring with a free stand-in: same counts, same
    # top-k and squeeze, no predictor
    monkeypatch.setattr(DTPS, 'keep_scores',
                        lambda self, patches, tokens, attn: patches[..., 0])
    without = count_flops(model, x, modules=())['model'] * 1e9
    assert [m.num_tokens for m in model.token_maps(x)] == [16, 12, 9, 9]
    assert with_predictor - without == pytest.approx(
        _predictor_macs(32, [16, 12]), rel=1e-6)
