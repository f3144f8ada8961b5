"""Which imports change the environment, and which way the layers point.

``import mmtokenprune.ops`` is pure torch: it loads no mm* module, leaves
``sys.modules['mmcv.ops']`` alone and allow-lists nothing for
``torch.load``. The modules that enter mm code apply the environment fixes
(:mod:`mmtokenprune.compat`) before anything of mmseg is imported. Each
check runs in a fresh interpreter, since this one has long been fixed.

The layers (design.md): ``budgets/`` imports only ``ops/`` (and torch),
``models/`` never imports ``analysis/``, and no modules of mmtokenprune
import each other in a circle. Read from the sources' syntax trees, lazy
imports inside functions included.
"""
import ast
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PACKAGE_DIR = osp.join(REPO, 'mmtokenprune')
OPS_DIR = osp.join(PACKAGE_DIR, 'ops')
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


# ------------------------------------------------------------------- layers
def package_modules() -> dict:
    """Every module of mmtokenprune: dotted name -> (path, is a package)."""
    modules = {}
    for root, _, files in os.walk(PACKAGE_DIR):
        for name in files:
            if not name.endswith('.py'):
                continue
            parts = osp.relpath(osp.join(root, name), REPO)[:-3].split(os.sep)
            is_package = parts[-1] == '__init__'
            dotted = '.'.join(parts[:-1] if is_package else parts)
            modules[dotted] = (osp.join(root, name), is_package)
    return modules


def import_graph() -> dict:
    """module -> the mmtokenprune modules its import statements run
    (anywhere in it, so lazy imports count): the named module and the
    packages above it that the importer is not itself inside."""
    modules = package_modules()
    graph = {}
    for module, (path, is_package) in modules.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        here = module.split('.') if is_package else module.split('.')[:-1]
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ''
                if node.level:
                    base = '.'.join(here[:len(here) - node.level + 1] +
                                    ([base] if base else []))
                # `from package import submodule` runs the submodule too
                names = [base] + [f'{base}.{a.name}' for a in node.names]
            else:
                continue
            for name in names:
                parts = name.split('.')
                for i in range(1, len(parts) + 1):
                    target = '.'.join(parts[:i])
                    if target in modules and not (
                            module == target
                            or module.startswith(target + '.')):
                        edges.add(target)
        graph[module] = edges
    return graph


def find_cycle(graph: dict):
    """One import circle as a path ``[a, b, ..., a]``, or None."""
    state, path = {}, []

    def visit(module):
        state[module] = 'open'
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 'open':
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        state[module] = 'done'
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


def edges_from(graph: dict, source: str, allowed=None, forbidden=None):
    return sorted(
        f'{module} -> {target}' for module, targets in graph.items()
        if module == source or module.startswith(source + '.')
        for target in targets
        if (allowed is not None and not target.startswith(allowed)) or (
            forbidden is not None and target.startswith(forbidden)))


def test_budgets_import_nothing_above_ops():
    """The latency table, solver and budget losses sit below the models
    and the analysis tools, which both use them."""
    graph = import_graph()
    assert 'mmtokenprune.budgets' in graph
    assert edges_from(graph, 'mmtokenprune.budgets',
                      allowed=('mmtokenprune.budgets',
                               'mmtokenprune.ops')) == []
    mm = []
    for module in (m for m in graph if m.startswith('mmtokenprune.budgets')):
        path = package_modules()[module][0]
        with open(path) as f:
            for node in ast.walk(ast.parse(f.read(), path)):
                if isinstance(node, ast.Import):
                    tops = [a.name.split('.')[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    tops = [(node.module or '').split('.')[0]]
                else:
                    continue
                mm += [f'{module}:{node.lineno} {top}' for top in tops
                       if top in MM_PACKAGES]
    assert mm == []


def test_models_never_import_analysis():
    assert edges_from(import_graph(), 'mmtokenprune.models',
                      forbidden='mmtokenprune.analysis') == []


def test_no_import_circle():
    """Lazy imports count: a circle hidden in a function still ties the
    layers together (as cdcp and the latency loss once did)."""
    graph = import_graph()
    assert 'mmtokenprune.models.cdcp.backbone' in graph
    cycle = find_cycle(graph)
    assert cycle is None, ' -> '.join(cycle)
