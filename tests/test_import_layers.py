"""Which imports change the environment.

``import mmtokenprune.ops`` is pure torch: it loads no mm* module, leaves
``sys.modules['mmcv.ops']`` alone and allow-lists nothing for
``torch.load``. The modules that enter mm code apply the environment fixes
(:mod:`mmtokenprune.compat`) before anything of mmseg is imported. Each
check runs in a fresh interpreter, since this one has long been fixed.
"""
import ast
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
OPS_DIR = osp.join(REPO, 'mmtokenprune', 'ops')
MM_PACKAGES = ('mmcv', 'mmengine', 'mmseg', 'mmpretrain', 'mmdet')

# Prints what importing `sys.argv[1]` did to the interpreter.
PROBE = r'''
import json, sys
import torch
before = set(map(repr, torch.serialization.get_safe_globals()))
import importlib
importlib.import_module(sys.argv[1])
after = set(map(repr, torch.serialization.get_safe_globals()))
print(json.dumps(dict(
    mm_modules=sorted(m for m in sys.modules
                      if m.split('.')[0] in sys.argv[2].split(',')),
    mmcv_ops_loaded='mmcv.ops' in sys.modules,
    mmcv_ops_fallback=getattr(sys.modules.get('mmcv.ops'),
                              '__mmtokenprune_fallback__', False),
    new_safe_globals=sorted(after - before),
    compat_applied=getattr(sys.modules.get('mmtokenprune.compat'),
                           '_applied', False))))
'''

PURE = ('mmtokenprune', 'mmtokenprune.ops')
ENTRY_POINTS = ('mmtokenprune.models', 'mmtokenprune.datasets',
                'mmtokenprune.registry', 'mmtokenprune.analysis',
                'mmtokenprune.utils')


@pytest.fixture(scope='module')
def probes():
    """Import each module in its own fresh interpreter, all at once."""
    procs = {
        module:
        subprocess.Popen(
            [sys.executable, '-c', PROBE, module, ','.join(MM_PACKAGES)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True)
        for module in PURE + ENTRY_POINTS
    }
    return {
        module: (proc.communicate(timeout=300)[0], proc.returncode)
        for module, proc in procs.items()
    }


def effects_of(probes, module: str) -> dict:
    """What importing ``module`` did, as :data:`PROBE` reported it."""
    out, returncode = probes[module]
    assert returncode == 0, out[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize('module', PURE)
def test_pure_layer_imports_no_mm_code(probes, module):
    effects = effects_of(probes, module)
    assert effects['mm_modules'] == []
    assert not effects['mmcv_ops_loaded']
    assert effects['new_safe_globals'] == []
    assert not effects['compat_applied']


def test_ops_sources_import_nothing_outside_ops():
    """Also the ops modules that ``ops/__init__`` does not import."""
    offending = []
    for name in sorted(n for n in os.listdir(OPS_DIR) if n.endswith('.py')):
        with open(osp.join(OPS_DIR, name)) as f:
            tree = ast.parse(f.read(), name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [(0, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [(node.level, node.module or '')]
            else:
                continue
            for level, module in modules:
                top = module.split('.')[0]
                if level > 1 or top in MM_PACKAGES or top == 'mmtokenprune':
                    offending.append(f'{name}:{node.lineno} {"." * level}'
                                     f'{module}')
    assert offending == [], offending


@pytest.mark.parametrize('module', ENTRY_POINTS)
def test_mm_entry_points_apply_the_fixes(probes, module):
    from mmtokenprune.compat import mmcv_ops_compiled
    effects = effects_of(probes, module)
    assert effects['compat_applied']
    assert any('HistoryBuffer' in g for g in effects['new_safe_globals'])
    assert effects['mmcv_ops_fallback'] != mmcv_ops_compiled()
