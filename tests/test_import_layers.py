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


def probe(module: str) -> dict:
    """Import ``module`` in a fresh interpreter and report its effects."""
    proc = subprocess.run(
        [sys.executable, '-c', PROBE, module, ','.join(MM_PACKAGES)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('module', ['mmtokenprune', 'mmtokenprune.ops'])
def test_pure_layer_imports_no_mm_code(module):
    effects = probe(module)
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


@pytest.mark.parametrize('module', [
    'mmtokenprune.models', 'mmtokenprune.datasets', 'mmtokenprune.registry',
    'mmtokenprune.analysis', 'mmtokenprune.utils'
])
def test_mm_entry_points_apply_the_fixes(module):
    from mmtokenprune.compat import mmcv_ops_compiled
    effects = probe(module)
    assert effects['compat_applied']
    assert any('HistoryBuffer' in g for g in effects['new_safe_globals'])
    assert effects['mmcv_ops_fallback'] != mmcv_ops_compiled()
