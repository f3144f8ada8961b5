"""timm's ViT keys in the backbone's names: a strict load that computes what
timm computes (the weights the official ToMe and SPViT code run on)."""
import pytest
import timm
import torch

from mmtokenprune.models import PrunedVisionTransformer
from mmtokenprune.utils.timm_keys import timm_vit_key, timm_vit_state_dict


def test_timm_vit_loads_strictly_and_computes_the_same():
    torch.manual_seed(0)
    ref = timm.models.vision_transformer.VisionTransformer(
        img_size=64, patch_size=16, embed_dim=32, depth=2, num_heads=2,
        mlp_ratio=2, num_classes=5).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.2)
    model = PrunedVisionTransformer(
        arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                  feedforward_channels=64),
        img_size=64, patch_size=16, out_type='raw').eval()
    model.load_state_dict(timm_vit_state_dict(ref.state_dict()), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(
            model(x)[0], ref.forward_features(x), atol=1e-5, rtol=1e-5)


def test_spvit_selectors_and_unknown_keys():
    assert timm_vit_key('score_predictor.1.senet.0.weight', [3, 6, 9]) == \
        'layers.6.reducer.selector.senet.0.weight'
    assert timm_vit_key('head.weight') is None
    with pytest.raises(KeyError, match='pruning_loc'):
        timm_vit_key('score_predictor.0.senet.0.weight')
    with pytest.raises(KeyError, match="'blocks.0.ls1.gamma'"):
        timm_vit_key('blocks.0.ls1.gamma')
