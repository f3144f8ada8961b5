"""Loading into PrunedMMSegVisionTransformer: loud on a wrong or partial
checkpoint even under mmengine's non-strict loader; ImageNet weights in
timm's (official DeiT) or mmseg's keys load as mmseg's recipe loads them."""
import importlib.util
import os.path as osp

import pytest
import timm
import torch
from mmengine.runner import load_checkpoint
from mmseg_zoo import MMSEG_CONFIGS, build, save_zoo_checkpoint, zoo_config

from mmtokenprune.models import (PrunedMMSegVisionTransformer,
                                 PrunedVisionTransformer)

NAME = 'vit_deit-s16_upernet_8xb2-80k_ade20k-512x512.py'
TINY = dict(img_size=64, embed_dims=32, num_layers=2, num_heads=2)


@pytest.fixture(scope='module')
def zoo_ckpt(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('zoo') / 'zoo.pth')
    return path, save_zoo_checkpoint(NAME, path)


def edited(tmp_path, state, drop=(), add=None):
    state = {k: v for k, v in state.items() if k not in drop}
    state.update(add or {})
    path = str(tmp_path / 'edited.pth')
    torch.save(dict(state_dict=state, meta={}), path)
    return path


def test_partial_checkpoint_raises_naming_the_keys(zoo_ckpt, tmp_path):
    _, state = zoo_ckpt
    path = edited(tmp_path, state, drop=[
        'backbone.layers.1.attn.attn.out_proj.weight'])
    model = build(zoo_config(NAME, plugin=True))
    with pytest.raises(RuntimeError,
                       match=r"missing keys \['layers\.1\.attn\.proj"):
        load_checkpoint(model, path, strict=False)  # the Runner's call


def test_unexpected_and_misshaped_keys_raise(zoo_ckpt, tmp_path):
    _, state = zoo_ckpt
    extra = {'backbone.layers.7.ln1.weight': torch.ones(32)}
    model = build(zoo_config(NAME, plugin=True))
    with pytest.raises(RuntimeError, match=r"'layers\.7\.ln1\.weight'"):
        load_checkpoint(model, edited(tmp_path, state, add=extra))
    wider = build(
        zoo_config(
            NAME,
            plugin=True,
            **{
                'model.backbone.embed_dims': 48,
                'model.backbone.num_heads': 3,
                'model.decode_head.in_channels': [48] * 4,
                'model.auxiliary_head.in_channels': 48
            }))
    with pytest.raises(RuntimeError, match=r'cls_token: \(1, 1, 32\) vs '
                       r'\(1, 1, 48\)'):
        load_checkpoint(wider, zoo_ckpt[0], strict=False)


def test_reducer_parts_may_be_missing_but_nothing_else(zoo_ckpt, tmp_path):
    path, state = zoo_ckpt
    dtps = {'model.backbone.token_cfg': dict(type='dTPS', keep_ratio=0.7,
                                             layers=[1])}
    model = build(zoo_config(NAME, plugin=True, **dtps))
    load_checkpoint(model, path, strict=False)  # predictor: new, kept
    torch.testing.assert_close(
        model.backbone.layers[0].attn.qkv.weight,
        state['backbone.layers.0.attn.attn.in_proj_weight'])
    partial = edited(tmp_path, state, drop=['backbone.ln1.weight'] + [
        k for k in state if k.startswith('backbone.patch_embed')])
    with pytest.raises(RuntimeError, match='patch_embed.projection.weight'):
        load_checkpoint(model, partial, strict=False)


def test_mmpretrain_flavour_refuses_mmseg_keys(zoo_ckpt):
    """The plain backbone (configs/ade20k) would otherwise load it
    non-strictly into another architecture."""
    model = PrunedVisionTransformer(
        arch=dict(embed_dims=32, num_layers=4, num_heads=2,
                  feedforward_channels=128),
        img_size=64, out_type='featmap')
    state = {
        k[len('backbone.'):]: v
        for k, v in zoo_ckpt[1].items() if k.startswith('backbone.')
    }
    with pytest.raises(RuntimeError, match='PrunedMMSegVisionTransformer'):
        model.load_state_dict(state, strict=False)


def _vit2mmseg():
    """mmseg's own converter of timm ViT weights (tools/model_converters,
    shipped in mmseg's .mim folder)."""
    path = osp.join(osp.dirname(MMSEG_CONFIGS), 'tools', 'model_converters',
                    'vit2mmseg.py')
    spec = importlib.util.spec_from_file_location('vit2mmseg', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.convert_vit


@pytest.mark.parametrize('final_norm', [False, True])
def test_official_deit_file_loads_as_mmseg_recipe_loads_it(
        tmp_path, final_norm):
    """A DeiT file (``{'model': timm keys}``, 32px: 2x2 patches) read by
    ``init_cfg`` equals mmseg's ViT given the vit2mmseg conversion (which
    leaves out the final norm and the patch bias, interpolates pos_embed
    to 4x4)."""
    from mmseg.models.backbones import VisionTransformer as MMSegViT
    torch.manual_seed(0)
    deit = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=2,
        num_classes=7)
    with torch.no_grad():
        for p in deit.parameters():
            p.normal_(0, 0.2)
    official = str(tmp_path / 'deit_tiny_patch16_32.pth')
    torch.save(dict(model=deit.state_dict()), official)
    converted = str(tmp_path / 'converted.pth')
    torch.save(_vit2mmseg()(deit.state_dict()), converted)

    args = dict(TINY, out_indices=(0, 1), final_norm=final_norm)
    ref = MMSegViT(**args, init_cfg=dict(type='Pretrained',
                                         checkpoint=converted))
    ref.init_weights()
    ours = PrunedMMSegVisionTransformer(**args, pretrained=official)
    ours.init_weights()
    ours.eval()  # mmpretrain's ViT.train() returns None: do not chain
    ref.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(ours(x), ref(x)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # mmseg's converted file loads the same way
    again = PrunedMMSegVisionTransformer(
        **args, init_cfg=dict(type='Pretrained', checkpoint=converted))
    again.init_weights()
    again.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x), ours(x))


@pytest.mark.parametrize('bad, match', [
    (dict(out_origin=True), r'`out_origin=True`.*allowed: False'),
    (dict(frozen_exclude=['pos_embed']), r"frozen_exclude.*allowed: \['all'"),
    (dict(output_cls_token=True, with_cls_token=False), 'with_cls_token'),
    (dict(pretrained='a.pth', init_cfg=dict(type='Pretrained')),
     '`pretrained` and `init_cfg`'),
    (dict(img_size=72), r'img_size=\(72, 72\).*patch_size=16'),
])
def test_bad_arguments_name_the_key(bad, match):
    with pytest.raises(ValueError, match=match):
        PrunedMMSegVisionTransformer(**dict(TINY, **bad))
