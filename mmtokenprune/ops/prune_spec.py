"""A pruned architecture as data: per-layer channel widths, JSON on disk.

A spec is what export writes beside a plain state_dict, and what a backbone
is built from to load that state_dict with ``strict=True``. Models are never
pickled.
"""
import json
from dataclasses import asdict, dataclass
from typing import Dict, List, Tuple, Union

__all__ = ['LayerDims', 'PruneSpec']

FORMAT = 'mmtokenprune.prune_spec/v1'
#: Where a spec is given in configs, named in error messages.
SPEC_KEY = 'model.backbone.channel_cfg.spec'


@dataclass(frozen=True)
class LayerDims:
    """Channel widths of one encoder layer after pruning.

    Attributes:
        qk_dims (int): channels per head shared by Q and K.
        v_dims (int): channels per head of V (= input columns of ``proj``
            per head).
        ffn_dims (int): hidden channels of the MLP.
    """
    qk_dims: int
    v_dims: int
    ffn_dims: int


@dataclass(frozen=True)
class PruneSpec:
    """Per-layer widths of a channel-pruned ViT/Swin encoder.

    Attributes:
        arch (dict): the unpruned ``embed_dims``, ``num_heads`` and
            ``feedforward_channels`` per layer (lists for Swin's stages),
            used to check that the spec fits the model it builds.
        layers (tuple[LayerDims]): one entry per encoder layer.
    """
    arch: Dict
    layers: Tuple[LayerDims, ...]

    @classmethod
    def from_dict(cls, data: Dict) -> 'PruneSpec':
        if not isinstance(data, dict):
            raise ValueError('a prune spec is a JSON object with `arch` and '
                             f'`layers`, got a {type(data).__name__}.')
        if data.get('format', FORMAT) != FORMAT:
            raise ValueError(f'prune spec format {data.get("format")!r} is '
                             f'not {FORMAT!r}.')
        try:
            layers = tuple(LayerDims(**d) for d in data['layers'])
            arch = dict(data['arch'])
        except (KeyError, TypeError) as e:
            raise ValueError(
                'a prune spec needs `arch` and `layers` (each with qk_dims, '
                f'v_dims, ffn_dims): {e}') from e
        return cls(arch=arch, layers=layers)

    @classmethod
    def load(cls,
             source: Union[str, Dict, 'PruneSpec'],
             key: str = SPEC_KEY) -> 'PruneSpec':
        """From a JSON path, a dict, or a spec.

        Args:
            source (str | dict | PruneSpec): what ``key`` holds.
            key (str): config key named in error messages.

        Raises:
            FileNotFoundError: the file does not exist.
            ValueError: the file is no JSON, or not a prune spec; the
                message names the file and ``key``.
        """
        if isinstance(source, PruneSpec):
            return source
        if isinstance(source, dict):
            return cls.from_dict(source)
        where = f'`{key}`: prune spec file {str(source)!r}'
        try:
            with open(source) as f:
                data = json.load(f)
        except FileNotFoundError as err:
            raise FileNotFoundError(f'{where} does not exist.') from err
        except (ValueError, OSError) as err:  # JSONDecodeError, bad bytes
            raise ValueError(
                f'{where} cannot be read as JSON ({err}); '
                'tools/export_pruned.py writes one.') from err
        try:
            return cls.from_dict(data)
        except ValueError as err:
            raise ValueError(f'{where}: {err}') from err

    def to_dict(self) -> Dict:
        return dict(
            format=FORMAT,
            arch=self.arch,
            layers=[asdict(d) for d in self.layers])

    def dump(self, path: str) -> None:
        with open(path, 'w') as f:
            json.dump(self.to_dict(), f, indent=1)

    def validate(self, head_dims: List[int], ffn_dims: List[int],
                 key: str = SPEC_KEY) -> None:
        """Check the spec against a model's unpruned per-layer widths.

        Args:
            head_dims (list[int]): channels per head of each layer.
            ffn_dims (list[int]): MLP hidden channels of each layer.
            key (str): config key named in error messages.

        Raises:
            ValueError: naming the layer and the field that does not fit.
        """
        if len(self.layers) != len(head_dims):
            raise ValueError(
                f'`{key}` has {len(self.layers)} layers but the model has '
                f'{len(head_dims)}; the spec was made for arch {self.arch}.')
        for i, (d, hd, fd) in enumerate(zip(self.layers, head_dims,
                                            ffn_dims)):
            for name, value, limit in (('qk_dims', d.qk_dims, hd),
                                       ('v_dims', d.v_dims, hd),
                                       ('ffn_dims', d.ffn_dims, fd)):
                if not isinstance(value, int) or not 1 <= value <= limit:
                    raise ValueError(
                        f'`{key}`: layers[{i}].{name}={value!r} must be an '
                        f'int in [1, {limit}] for this model (spec arch '
                        f'{self.arch}).')
