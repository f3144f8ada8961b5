"""A trained model's config rewritten for one sweep setting."""
import copy

from mmengine.config import Config

from .sweep_settings import SweepSetting

__all__ = ['setting_config']


def setting_config(cfg: Config, setting: SweepSetting) -> Config:
    """A copy of ``cfg`` whose backbone follows ``setting``.

    Reducers and pruning of ``cfg`` itself are replaced, ``init_cfg`` is
    removed, and a CDCP model type (gates: budget loss) becomes the plain
    mmseg/mmpretrain one.

    Args:
        cfg (Config): the trained model's config (not changed).
        setting (SweepSetting): the parsed setting.

    Returns:
        Config: the rewritten copy.
    """
    cfg = copy.deepcopy(cfg)
    backbone = cfg.model.backbone
    backbone.token_cfg = copy.deepcopy(setting.token_cfg)
    backbone.channel_cfg = (
        dict(spec=setting.spec) if setting.spec is not None else None)
    backbone.init_cfg = None
    if cfg.model.get('type') == 'mmtokenprune.PrunedEncoderDecoder':
        cfg.model.type = 'EncoderDecoder'  # no gates: no budget loss
    if cfg.model.get('type') == 'mmtokenprune.PrunedImageClassifier':
        cfg.model.type = 'ImageClassifier'
    return cfg
