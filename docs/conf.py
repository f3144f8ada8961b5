"""Sphinx configuration of the mmtokenprune documentation (myst markdown,
OpenMMLab's convention). Build: ``sphinx-build -W -b html docs
docs/_build/html`` (tests/test_docs.py builds it with warnings as errors).
"""
import os
import sys

sys.path.insert(0, os.path.abspath('..'))

from mmtokenprune.version import __version__  # noqa: E402

project = 'mmtokenprune'
author = 'mmtokenprune developers'
copyright = '2026, mmtokenprune developers'
version = release = __version__

extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
    'sphinx.ext.napoleon',
    'sphinx.ext.viewcode',
]
source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
root_doc = 'index'
exclude_patterns = ['_build', '_generated', 'specs']

# "## 1. CamVid baseline" -> anchor #1-camvid-baseline, as on GitHub
myst_heading_anchors = 4
myst_enable_extensions = ['colon_fence']

autodoc_member_order = 'bysource'
autodoc_typehints = 'description'
autodoc_default_options = {'members': True, 'show-inheritance': True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = [('Options', 'params_style')]

html_theme = 'sphinx_rtd_theme'
html_title = f'mmtokenprune {version}'


def write_model_zoo(app) -> None:
    """docs/_generated/model_zoo_table.md: one table per metafile of
    model-index.yml (what ``mim search`` lists), numbers as the metafiles
    quote them, each with its source page."""
    import yaml
    root = os.path.abspath(os.path.join(app.srcdir, '..'))
    with open(os.path.join(root, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    out = []
    for meta in index['Import']:
        with open(os.path.join(root, meta)) as f:
            models = yaml.safe_load(f)['Models']
        folder = os.path.dirname(meta)
        out += [f'## `{folder}/`', '',
                '| config | reducer | channels | backbone GFLOPs | '
                'speed-up b1 | result | numbers from |',
                '|---|---|---|---:|---:|---|---|']
        for m in models:
            info = m['Metadata']
            results = '; '.join(
                f'{k} {v:.2f}' for r in m.get('Results', [])
                for k, v in r['Metrics'].items()) or '–'
            source = info.get('Source')
            if source and source.startswith('docs/'):
                source = f'{{doc}}`/{source[5:-3]}`'
            out.append('| `{}` | {} | {} | {} | {} | {} | {} |'.format(
                m['Name'], info.get('Token Reducer', '–'),
                info.get('Channel Pruning', '–'),
                info.get('Backbone GFLOPs', '–'),
                info.get('Backbone Speed-up B1', '–'), results,
                source or 'not measured'))
        out.append('')
    path = os.path.join(app.srcdir, '_generated', 'model_zoo_table.md')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write('\n'.join(out))


def setup(app):
    app.connect('builder-inited', write_model_zoo)
