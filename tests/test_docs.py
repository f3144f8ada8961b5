"""The documentation holds: the site builds with warnings as errors, every
path README and docs name exists, every ``python tools/...`` command in them
parses its arguments, and the add-a-reducer guide's example runs."""
import argparse
import glob
import os.path as osp
import re
import runpy
import shlex
import subprocess
import sys

import pytest

from test_tools import REPO

DOCS = [osp.join(REPO, 'README.md')] + sorted(
    p for p in glob.glob(osp.join(REPO, 'docs', '**', '*.md'), recursive=True)
    if '_build' not in p and '_generated' not in p)
# a repository path: configs/..., tools/..., docs/..., mmtokenprune/..., tests/...
PATH = re.compile(r'(?<![\w/.-])((?:configs|tools|docs|mmtokenprune|tests)'
                  r'/[\w./*{},-]*[\w/*}])')
# globs, shell variables, elisions, CAPITALS and the wheel's .mim folder
PLACEHOLDER = re.compile(r'[*{}$]|\.\.\.|\b[A-Z][A-Z_]+\b|\.mim/')
LINK = re.compile(r'\]\(([^)#\s]+)(?:#[^)]*)?\)')
BLOCK = re.compile(r'```(\w*)\n(.*?)```', re.S)


def rel(path: str) -> str:
    return osp.relpath(path, REPO)


def named_paths(text: str):
    """Repository paths a document names, placeholders left out (a glob
    with nothing else in it stays: it must match something)."""
    for match in PATH.finditer(text):
        path = match.group(1).rstrip('.')
        if '_build' in path or PLACEHOLDER.search(path.replace('*', '')):
            continue
        yield path


def exists(path: str) -> bool:
    return bool(glob.glob(osp.join(REPO, path)))


def tool_commands(text: str):
    """``python tools/X.py ARGS`` commands of a document (code blocks with
    their line continuations joined, and inline code), as argv lists."""
    lines = []
    for _, body in BLOCK.findall(text):
        # commands quoted in comments ("# = python tools/...") count too
        body = re.sub(r'^#+ *(?:= *)?', '', body, flags=re.M)
        lines += body.replace('\\\n', ' ').splitlines()
    lines += re.findall(r'`(python tools/[^`]+)`', text)
    for line in lines:
        start = line.find('python tools/')
        if start < 0:
            continue
        line = line[start:].split(' # ')[0].split('  #')[0]
        argv = shlex.split(line)[1:]
        if not PLACEHOLDER.search(argv[0]):  # python tools/NAME.py
            yield argv


class _Parsed(Exception):
    """Raised once a tool's command line has been parsed."""


def parse_only(argv, monkeypatch) -> None:
    """Run the tool ``argv[0]`` until its arguments are parsed, then stop
    (argparse's own errors, e.g. an unknown option, fail the call)."""
    known, parse = (argparse.ArgumentParser.parse_known_args,
                    argparse.ArgumentParser.parse_args)
    inside = []

    def parse_known_args(self, args=None, namespace=None):
        result = known(self, args, namespace)
        if not inside:  # a tool that parses known args only
            raise _Parsed
        return result

    def parse_args(self, args=None, namespace=None):
        inside.append(True)
        try:
            parse(self, args, namespace)
        finally:
            inside.pop()
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, 'parse_known_args',
                        parse_known_args)
    monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', parse_args)
    monkeypatch.setattr(sys, 'argv', list(argv))
    with pytest.raises(_Parsed):
        runpy.run_path(osp.join(REPO, argv[0]), run_name='__main__')


def test_every_named_path_exists():
    missing = []
    for doc in DOCS:
        text = open(doc).read()
        missing += [(rel(doc), p) for p in named_paths(text)
                    if not exists(p)]
        for target in LINK.findall(text):
            if '://' in target or target.startswith('mailto:'):
                continue
            if not osp.exists(osp.join(osp.dirname(doc), target)):
                missing.append((rel(doc), target))
    assert not missing, missing


def test_the_checks_see_what_they_check():
    """The scanners find the paths and commands they are meant to find
    (and leave placeholders alone)."""
    text = ('see `configs/camvid/x.py` and tools/demo.py.\n```bash\n'
            'python tools/train.py CONFIG \\\n    --work-dir w  # comment\n'
            '# = python tools/sweep.py C \\\n#   --out o\npython tools/NAME.py\n```\n'
            'and `python tools/test.py A B`; configs/*/y.py, not '
            'work_dirs/CONFIG/x.py, tools/.../z.py, configs/{a,b}/DIR')
    assert list(named_paths(text)) == [
        'configs/camvid/x.py', 'tools/demo.py', 'tools/train.py',
        'tools/sweep.py', 'tools/test.py', 'configs/*/y.py'
    ]
    assert exists('configs/*/metafile.yml') and not exists('configs/*/y.py')
    assert list(tool_commands(text)) == [
        ['tools/train.py', 'CONFIG', '--work-dir', 'w'],
        ['tools/sweep.py', 'C', '--out', 'o'], ['tools/test.py', 'A', 'B']
    ]


def commands():
    seen = {}
    for doc in DOCS:
        for argv in tool_commands(open(doc).read()):
            seen.setdefault(' '.join(argv), (rel(doc), argv))
    return sorted(seen.values(), key=lambda item: item[1])


@pytest.mark.parametrize('doc,argv', commands(),
                         ids=lambda x: x if isinstance(x, str) else None)
def test_every_tool_command_parses(doc, argv, monkeypatch):
    assert osp.isfile(osp.join(REPO, argv[0])), (doc, argv[0])
    parse_only(argv, monkeypatch)


def test_a_wrong_option_fails_the_parse_check(monkeypatch):
    with pytest.raises(SystemExit):
        parse_only(['tools/analysis/sweep.py', 'CONFIG', '--no-such-option'],
                   monkeypatch)


def test_the_add_reducer_example_runs():
    text = open(osp.join(REPO, 'docs', 'user_guides', 'add_reducer.md')).read()
    code = [body for lang, body in BLOCK.findall(text) if lang == 'python']
    assert 'class L2Merge(TokenReducer)' in code[0]
    from mmtokenprune.registry import TOKEN_REDUCERS
    try:
        exec(compile(code[0], 'add_reducer.md', 'exec'), {})
    finally:
        TOKEN_REDUCERS._module_dict.pop('L2Merge', None)


def test_the_site_builds_without_warnings(tmp_path):
    proc = subprocess.run([
        sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q', '-b',
        'html',
        osp.join(REPO, 'docs'),
        str(tmp_path / 'html')
    ],
                          capture_output=True,
                          text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for page in ('index', 'get_started', 'api', 'model_zoo', 'changelog',
                 'results/index', 'user_guides/add_reducer'):
        assert (tmp_path / 'html' / f'{page}.html').is_file(), page
