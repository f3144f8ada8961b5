"""Build hook of mmtokenprune; the metadata lives in setup.cfg.

A built package (a wheel, hence also ``pip install .``) carries the
repository's configs, Python tools and ``model-index.yml`` inside it, in
OpenMMLab's ``mmtokenprune/.mim/`` layout, which ``mim`` reads::

    mmtokenprune/.mim/configs/   # configs/ (*.py with _base_, metafiles)
    mmtokenprune/.mim/tools/     # tools/ (the *.py scripts only)
    mmtokenprune/.mim/model-index.yml

so ``mim train mmtokenprune CONFIG``, ``mim test``, ``mim run mmtokenprune
TOOL`` and ``mim search mmtokenprune`` work wherever the package is
installed. The folder keeps the repository's relative layout: configs find
``../_base_/`` and ``tools/analysis/benchmark.py`` finds ``configs/ade20k``
as they do in a checkout.

The files are copied into the build folder, never into the source tree.
An editable install (``pip install -e .``) gets no ``.mim``: it runs from
the checkout, and mim 0.3.9 cannot locate an editable (PEP 660) install's
package folder anyway; run ``tools/*.py`` from the checkout instead.
Shell scripts (``tools/setup.sh``, ``tools/reproduce_results.sh``) are left
out: they install or reproduce from a checkout.
"""
import fnmatch
import os.path as osp
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = osp.dirname(osp.abspath(__file__))
PACKAGE = 'mmtokenprune'
#: Copied into ``<package>/.mim``: (source, files kept when a folder).
MIM_FILES = (('configs', ('*.py', '*.yml')), ('tools', ('*.py', )),
             ('model-index.yml', None))


def _ignore_except(patterns):
    """A ``shutil.copytree`` ignore callable keeping folders and files that
    match one of ``patterns`` (caches dropped)."""
    def ignore(folder, names):
        return [
            name for name in names
            if name == '__pycache__' or (
                not osp.isdir(osp.join(folder, name))
                and not any(fnmatch.fnmatch(name, p) for p in patterns))
        ]

    return ignore


class BuildPyWithMim(build_py):
    """``build_py`` that also writes ``<package>/.mim`` into the build."""

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):
            return
        target = osp.join(self.build_lib, PACKAGE, '.mim')
        if osp.isdir(target):  # no stale files from an earlier build
            shutil.rmtree(target)
        for name, patterns in MIM_FILES:
            src = osp.join(HERE, name)
            dst = osp.join(target, name)
            if not osp.exists(src):
                # e.g. an sdist made without MANIFEST.in's entries
                raise FileNotFoundError(
                    f'{src} is missing: a wheel of {PACKAGE} ships it in '
                    f'{PACKAGE}/.mim for mim (see setup.py).')
            if patterns is None:
                shutil.copy2(src, dst)
            else:
                shutil.copytree(src, dst, ignore=_ignore_except(patterns))


if __name__ == '__main__':
    setup(cmdclass={'build_py': BuildPyWithMim})
