"""Files a user names (prune spec, checkpoint, config) fail by name.

A bad file must raise an error that names the file and the config key or
argument it came from, and the tools must turn it into one usage line,
not a traceback from json, torch or mmengine.
"""
import os.path as osp
import zipfile

import pytest
import torch

from mmtokenprune.models import PrunedVisionTransformer
from mmtokenprune.ops import PruneSpec
from mmtokenprune.utils.checkpoint_file import check_checkpoint_file
from mmtokenprune.utils.config import load_config
from test_tools import REPO, load_tool

SPEC_KEY = '`model.backbone.channel_cfg.spec`'
TINY = dict(
    arch=dict(
        embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
    img_size=32,
    patch_size=16,
    out_type='featmap')
CONFIG = osp.join(REPO, 'configs', 'camvid',
                  'deit-t16_fcn_1xb4-2k_camvid-256x256.py')


def tiny_spec(tmp_path) -> str:
    """A valid spec file for :data:`TINY` (from a gated model's export)."""
    model = PrunedVisionTransformer(**TINY, channel_cfg=dict(type='CDCP'))
    spec, _ = model.export_pruned()
    path = str(tmp_path / 'prune_spec.json')
    spec.dump(path)
    return path


@pytest.mark.parametrize('text,why', [
    ('{"format": "mmtokenprune.prune_spec/v1", "layers": [', 'as JSON'),
    ('\udcff'.encode('utf-8', 'surrogateescape'), 'as JSON'),
    ('[1, 2]', 'a JSON object'),
    ('{"layers": []}', 'needs `arch` and `layers`'),
])
def test_bad_prune_spec_names_file_and_key(tmp_path, text, why):
    path = tmp_path / 'bad_spec.json'
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(ValueError) as err:
        PrunedVisionTransformer(**TINY, channel_cfg=dict(spec=str(path)))
    msg = str(err.value)
    assert SPEC_KEY in msg and repr(str(path)) in msg and why in msg, msg


def test_missing_prune_spec_names_file_and_key(tmp_path):
    path = str(tmp_path / 'nowhere' / 'prune_spec.json')
    with pytest.raises(FileNotFoundError) as err:
        PrunedVisionTransformer(**TINY, channel_cfg=dict(spec=path))
    assert SPEC_KEY in str(err.value) and repr(path) in str(err.value)


def test_good_prune_spec_file_still_builds(tmp_path):
    path = tiny_spec(tmp_path)
    model = PrunedVisionTransformer(**TINY, channel_cfg=dict(spec=path))
    assert model.prune_spec == PruneSpec.load(path)


def write_checkpoints(tmp_path) -> dict:
    """Good and bad checkpoint files by name."""
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.ones(3)}}, str(good))
    legacy = tmp_path / 'legacy.pth'
    torch.save({'w': torch.ones(3)},
               str(legacy),
               _use_new_zipfile_serialization=False)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[:200])
    text = tmp_path / 'spec.pth'
    text.write_text('{"layers": []}')
    other_zip = tmp_path / 'other.pth'
    with zipfile.ZipFile(str(other_zip), 'w') as z:
        z.writestr('readme.txt', 'not a checkpoint')
    return dict(
        good=str(good),
        legacy=str(legacy),
        truncated=str(truncated),
        text=str(text),
        other_zip=str(other_zip))


def test_checkpoint_file_check(tmp_path):
    files = write_checkpoints(tmp_path)
    check_checkpoint_file(files['good'], '`load_from`')
    check_checkpoint_file(files['legacy'], '`load_from`')
    check_checkpoint_file('https://example.org/x.pth', '`load_from`')
    for name, error, why in (('truncated', ValueError, 'truncated'),
                             ('text', ValueError, 'neither a zip'),
                             ('other_zip', ValueError, 'no data.pkl')):
        with pytest.raises(error) as err:
            check_checkpoint_file(files[name], '`load_from`')
        msg = str(err.value)
        assert repr(files[name]) in msg and '`load_from`' in msg, msg
        assert why in msg, msg
    missing = str(tmp_path / 'missing.pth')
    with pytest.raises(FileNotFoundError, match='`load_from`'):
        check_checkpoint_file(missing, '`load_from`')


def test_config_errors_name_the_file_and_argument(tmp_path):
    missing = str(tmp_path / 'missing.py')
    with pytest.raises(FileNotFoundError) as err:
        load_config(missing, key='the `config` argument')
    assert repr(missing) in str(err.value)
    assert 'the `config` argument' in str(err.value)
    broken_base = tmp_path / 'broken_base.py'
    broken_base.write_text("_base_ = './nope.py'\n")
    with pytest.raises(FileNotFoundError) as err:
        load_config(str(broken_base))
    assert repr(str(broken_base)) in str(err.value)
    assert 'nope.py' in str(err.value)
    syntax = tmp_path / 'syntax.py'
    syntax.write_text('model = dict(\n')
    with pytest.raises(SyntaxError) as err:
        load_config(str(syntax))
    assert repr(str(syntax)) in str(err.value)


def usage_error(capsys, tool, argv) -> str:
    """Run ``tools/<tool>.py`` in-process; return its one-line error."""
    with pytest.raises(SystemExit) as exit_info:
        load_tool(tool).main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert 'Traceback' not in err
    return err.strip().splitlines()[-1]


def test_tools_refuse_bad_files_in_one_line(tmp_path, capsys):
    files = write_checkpoints(tmp_path)
    line = usage_error(capsys, 'test', [CONFIG, files['truncated']])
    assert repr(files['truncated']) in line
    assert 'the `checkpoint` argument' in line
    line = usage_error(capsys, 'train', [
        CONFIG, '--work-dir',
        str(tmp_path / 'work'), '--cfg-options', f'load_from={files["text"]}'
    ])
    assert repr(files['text']) in line and '`load_from`' in line
    line = usage_error(capsys, 'train', [
        CONFIG, '--work-dir',
        str(tmp_path / 'work'), '--resume', files['truncated']
    ])
    assert repr(files['truncated']) in line and '`--resume`' in line
    missing = str(tmp_path / 'missing.py')
    line = usage_error(capsys, 'test', [missing, files['good']])
    assert repr(missing) in line and 'the `config` argument' in line
    line = usage_error(
        capsys, 'export_pruned',
        [CONFIG, files['other_zip'], '--out-dir',
         str(tmp_path / 'out')])
    assert repr(files['other_zip']) in line
    assert not osp.exists(tmp_path / 'out')
