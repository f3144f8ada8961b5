"""The package as an OpenMMLab user gets it: a wheel driven by ``mim``.

Builds the sdist and, from it, the wheel (``python -m build
--no-isolation``: no download), installs the wheel with ``--no-deps`` into
a fresh venv that sees this interpreter's packages (torch, mmcv, mmseg,
mmpretrain and openmim are reused, from a virtualenv as from the system
Python: installing them would need the network and minutes), and from a
folder outside the repository runs what docs/get_started.md's "Install
from a wheel / with mim" shows: ``mim search``, a 2-iteration ``mim train`` of a packaged
CamVid config on a tiny synthetic CamVid-layout dataset, ``mim test`` of
its checkpoint and ``mim run mmtokenprune demo --quick``. The venv must
import the wheel's ``mmtokenprune``, never this checkout (asserted).

The metafile checks at the end read the repository only.
"""
import glob
import os
import os.path as osp
import re
import site
import subprocess
import sys
import zipfile

import pytest
import yaml

from conftest import make_camvid
from test_tools import REPO

CONFIG = 'deit-t16_fcn_1xb4-2k_camvid-256x256.py'
# What the CI test adds to get_started's `mim train` line: the synthetic data is
# 64x48, so crops, the backbone's input size and the pipelines' scales
# shrink to 64 (the model stays the config's DeiT-T + FCN), no workers.
SMALL = [
    'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
    'default_hooks.logger.interval=1',
    'default_hooks.checkpoint.save_best=None', 'train_dataloader.batch_size=2',
    'model.backbone.img_size=(64,64)', 'model.data_preprocessor.size=(64,64)',
    'train_dataloader.dataset.pipeline.2.scale=(64,48)',
    'train_dataloader.dataset.pipeline.3.crop_size=(64,64)',
    'val_dataloader.dataset.pipeline.1.scale=(64,48)',
    'test_dataloader.dataset.pipeline.1.scale=(64,48)'
] + [
    f'{loader}_dataloader.{key}'
    for loader in ('train', 'val', 'test')
    for key in ('num_workers=0', 'persistent_workers=False')
]


@pytest.fixture(scope='module')
def venv(tmp_path_factory):
    """``(python, site-packages)`` of a venv holding only the wheel."""
    root = tmp_path_factory.mktemp('packaging')
    dist = root / 'dist'
    run([
        sys.executable, '-m', 'build', '--no-isolation', '--outdir',
        str(dist), REPO
    ],
        cwd=str(root))
    wheels = glob.glob(str(dist / 'mmtokenprune-*.whl'))
    assert len(wheels) == 1, os.listdir(dist)
    env_dir = root / 'venv'
    # --without-pip: this interpreter's pip (a system site-package) installs
    # into the venv just as well, and ensurepip would cost seconds.
    run([
        sys.executable, '-m', 'venv', '--system-site-packages',
        '--without-pip',
        str(env_dir)
    ])
    python = str(env_dir / 'bin' / 'python')
    purelib = run([python, '-c', 'import sysconfig; '
                   'print(sysconfig.get_paths()["purelib"])'],
                  cwd=str(root)).stdout.strip()
    share_site_packages(purelib)
    # --ignore-installed: the editable checkout installed in the system
    # site-packages has the same version, so pip would keep it otherwise.
    run([
        python, '-m', 'pip', 'install', '--no-deps', '--no-index',
        '--ignore-installed', '--no-compile', wheels[0]
    ])
    return dict(python=python, site=purelib, wheel=wheels[0], root=root)


def share_site_packages(purelib: str) -> None:
    """Let the venv whose site-packages is ``purelib`` import what this
    interpreter imports.

    ``--system-site-packages`` exposes the *base* interpreter's packages
    only: run from inside a virtualenv (how most users work), the test's
    venv would miss everything installed there (mmcv-lite, mmseg, ...).
    A ``.pth`` file in the new venv appends this interpreter's
    site-packages to its ``sys.path``, after the venv's own (so the wheel
    still wins). Plain paths, not site dirs: their ``.pth`` files, among
    them the editable install of this checkout, stay unread.
    """
    shared = [p for p in site.getsitepackages() if osp.isdir(p)]
    with open(osp.join(purelib, '_mmtokenprune_test_parent.pth'), 'w') as f:
        f.write('\n'.join(shared) + '\n')


def clean_env() -> dict:
    """This environment without anything that puts the checkout on
    ``sys.path``."""
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    env.pop('PYTHONPATH', None)
    return env


def run(argv, cwd=None, timeout=600):
    """Run ``argv``; fail the test with its output's end if it fails."""
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout)
    assert proc.returncode == 0, ' '.join(argv) + '\n' + (
        proc.stdout + proc.stderr)[-6000:]
    return proc


def repo_files(folder: str, pattern: str):
    """Files of the repository's ``folder`` matching ``pattern``, relative
    to the repository root."""
    return sorted(
        osp.relpath(p, REPO)
        for p in glob.glob(osp.join(REPO, folder, '**', pattern),
                           recursive=True) if '__pycache__' not in p)


def test_wheel_carries_configs_tools_and_index_for_mim(venv):
    names = set(zipfile.ZipFile(venv['wheel']).namelist())
    mim = 'mmtokenprune/.mim/'
    assert mim + 'model-index.yml' in names
    expected = repo_files('configs', '*.py') + repo_files(
        'configs', '*.yml') + repo_files('tools', '*.py')
    missing = [f for f in expected if mim + f not in names]
    assert not missing, missing
    shipped = {n for n in names if n.startswith(mim)}
    assert not [n for n in shipped if n.endswith('.sh') or '__pycache__' in n]
    assert 'mmtokenprune/__init__.py' in names
    assert not [n for n in names if n.startswith(('tests/', 'configs/'))]


def test_mim_trains_tests_and_runs_the_demo_from_the_wheel(venv, tmp_path):
    python, site = venv['python'], venv['site']
    work = tmp_path / 'outside'  # no checkout on the path from here
    work.mkdir()
    origin = run([
        python, '-c', 'import mmtokenprune.models, mmtokenprune; '
        'print(mmtokenprune.__file__)'
    ],
        cwd=str(work)).stdout.strip().splitlines()[-1]
    assert origin == osp.join(site, 'mmtokenprune', '__init__.py'), origin
    assert not origin.startswith(REPO)
    mim = [python, '-m', 'mim']
    package = osp.join(site, 'mmtokenprune', '.mim')

    found = run(mim + ['search', 'mmtokenprune', '--valid-config'],
                cwd=str(work)).stdout
    assert osp.splitext(CONFIG)[0] in found
    assert 'atme-cdcp_deit-s16_upernet_8xb2-80k_ade20k-512x512' in found

    data = make_camvid(str(tmp_path / 'camvid'))
    options = ['--cfg-options', f'data_root={data}'] + SMALL
    train = run(mim + ['train', 'mmtokenprune', CONFIG, '--work-dir', 'work'] +
                options,
                cwd=str(work))
    log = train.stdout + train.stderr
    # mim found the packaged config by its name and ran the packaged tool
    assert osp.join(package, 'configs', 'camvid', CONFIG) in log
    assert osp.join(package, 'tools', 'train.py') in log
    assert 'Iter(train) [2/2]' in log and 'Iter(val) [2/2]' in log
    checkpoint = work / 'work' / 'iter_2.pth'
    assert checkpoint.is_file()

    test = run(mim + [
        'test', 'mmtokenprune', CONFIG, '--checkpoint', 'work/iter_2.pth',
        '--out', 'metrics.json'
    ] + options,
               cwd=str(work))
    assert osp.join(package, 'tools', 'test.py') in test.stdout
    assert re.search(r'Iter\(test\) \[2/2\].*mIoU', test.stdout + test.stderr)
    assert 'mIoU' in (work / 'metrics.json').read_text()

    demo = run(
        mim + ['run', 'mmtokenprune', 'demo', '--quick', '--out-dir', 'demo'],
        cwd=str(work))
    assert osp.join(package, 'tools', 'demo.py') in demo.stdout
    table = (work / 'demo' / 'results.md').read_text()
    assert 'ATME+CDCP' in table, table
    assert (work / 'demo' / 'merge_regions.png').is_file()

    # mim runs the packaged compress tool (a budget of 0 is refused before
    # any work; mim's own `-h` handling cannot show a tool's help)
    compress = subprocess.run(
        mim + ['run', 'mmtokenprune', 'compress',
               osp.join(package, 'configs', 'camvid', CONFIG),
               'work/iter_2.pth', '--latency', '0'] + options,
        cwd=str(work), env=clean_env(), capture_output=True, text=True,
        timeout=600)
    out = compress.stdout + compress.stderr
    assert compress.returncode != 0
    assert osp.join(package, 'tools', 'compress.py') in out, out[-3000:]
    assert '--latency must be a fraction of the baseline in (0, 1)' in out


def test_without_mmcv_the_import_says_what_to_install(venv, tmp_path):
    """mmcv is no requirement (full mmcv and mmcv-lite are one module under
    two names); the wheel's import says what to install instead."""
    proc = subprocess.run([
        venv['python'], '-c', 'import sys; sys.modules["mmcv"] = None; '
        'import mmtokenprune.models'
    ],
                          cwd=str(tmp_path),
                          env=clean_env(),
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('ImportError: mmtokenprune needs mmcv'), last
    assert 'pip install mmcv-lite==2.1.0' in last, last


# ------------------------------------------------ model-index / metafiles
def load_models():
    """Every model of model-index.yml's imports, with its metafile."""
    with open(osp.join(REPO, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    collections = {c['Name'] for c in index['Collections']}
    models = []
    for meta in index['Import']:
        with open(osp.join(REPO, meta)) as f:
            models += [(meta, m) for m in yaml.safe_load(f)['Models']]
    return collections, models


def test_every_config_is_listed_once_with_its_metadata():
    collections, models = load_models()
    listed = [m['Config'] for _, m in models]
    configs = [
        c for c in repo_files('configs', '*.py')
        if not c.startswith(osp.join('configs', '_base_'))
    ]
    unlisted = sorted(set(configs) - set(listed))
    assert not unlisted, ('configs in no configs/<family>/metafile.yml (add '
                          f'them for `mim search`): {unlisted}')
    assert sorted(listed) == sorted(set(listed)), 'a config listed twice'
    for meta, model in models:
        config = model['Config']
        assert osp.isfile(osp.join(REPO, config)), (meta, config)
        assert osp.dirname(config) == osp.dirname(meta), (meta, config)
        assert model['Name'] == osp.splitext(osp.basename(config))[0]
        assert model['In Collection'] in collections, model['Name']
        for key in ('Task', 'Backbone', 'Token Reducer', 'Training Data'):
            assert model['Metadata'].get(key), (model['Name'], key)
    # `mim train mmtokenprune NAME.py` finds configs by file name alone
    names = [osp.basename(c) for c in configs]
    assert len(names) == len(set(names))


def numbers_of(model):
    """The measured numbers a model entry quotes, as written in docs (two
    decimals); the baseline's GFLOPs (a reference, on another row) apart.
    """
    meta = model['Metadata']
    values = [
        v for k, v in meta.items()
        if ('GFLOPs' in k or 'Speed-up' in k) and not k.startswith('Baseline')
    ]
    for result in model.get('Results', []):
        values += list(result['Metrics'].values())
    for value in values:
        assert isinstance(value, float), (model['Name'], value)
    return [f'{v:.2f}' for v in values]


def on_one_line(numbers, text: str) -> bool:
    """Whether one line of ``text`` holds every number (whole numbers:
    1.44 does not match 11.44 or 1.445)."""
    patterns = [
        re.compile(rf'(?<![\d.]){re.escape(n)}(?!\d)') for n in numbers
    ]
    return any(
        all(p.search(line) for p in patterns) for line in text.splitlines())


def test_every_quoted_number_is_in_its_source():
    """No invented numbers: an entry's numbers stand together on one line
    (a table row) of the document it names as ``Source`` (a page of
    docs/results/ or README.md); the baseline GFLOPs it compares with on another."""
    quoted = 0
    for meta, model in load_models()[1]:
        numbers = numbers_of(model)
        if not numbers:
            continue
        info = model['Metadata']
        assert re.fullmatch(r'docs/results/\w+\.md|README\.md',
                            info.get('Source', '')), model['Name']
        if any('Speed-up' in k for k in info):  # names the machine
            assert re.search(r'Intel Xeon|AMD EPYC', info['Speed Measured']), \
                model['Name']
        with open(osp.join(REPO, info['Source'])) as f:
            text = f.read()
        assert on_one_line(numbers, text), (model['Name'], numbers)
        if 'Baseline Backbone GFLOPs' in info:
            assert on_one_line([f"{info['Baseline Backbone GFLOPs']:.2f}"],
                               text), model['Name']
        quoted += len(numbers)
    assert quoted > 30
    ade20k = [m for meta, m in load_models()[1] if 'ade20k' in meta]
    assert not [m for m in ade20k if m.get('Results')], 'no ADE20K accuracy'
