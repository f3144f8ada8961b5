#!/usr/bin/env bash
# Install mmtokenprune and its requirements into the current python, then run
# the demo: `bash tools/setup.sh [--no-demo] [DEMO ARGS...]`.
# Idempotent: when everything is installed it only checks and goes on.
# Set PYTHON to use another interpreter (default: python).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
cd "$ROOT"

run_demo=1
demo_args=()
for arg in "$@"; do
  if [[ "$arg" == "--no-demo" ]]; then run_demo=0; else demo_args+=("$arg"); fi
done

# PIP_ROOT_USER_ACTION silences the root warning of a container install.
pip_install() {
  PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install --quiet "$@"
}

# Fast path: every `name==version` pin of requirements.txt already installed.
pins_satisfied() {
  "$PY" - requirements.txt <<'PYCODE'
import sys
from importlib.metadata import PackageNotFoundError, version
for line in open(sys.argv[1]):
    line = line.split('#')[0].strip()
    if not line:
        continue
    name, sep, want = line.partition('==')
    try:
        have = version(name.strip())
    except PackageNotFoundError:
        sys.exit(1)
    if sep != '==' or have.split('+')[0] != want.strip():
        sys.exit(1)
# The editable install below builds without isolation: PEP 660 with no
# separate `wheel` package needs setuptools >= 70.1; mmengine 0.10.7 resolves
# `mmseg::`/`mmpretrain::` config bases with pkg_resources, which setuptools
# 81 removed.
import setuptools  # noqa: E402
have = tuple(int(x) for x in setuptools.__version__.split('.')[:2])
if not (70, 1) <= have < (81, 0):
    sys.exit(1)
PYCODE
}
if pins_satisfied >/dev/null 2>&1; then
  echo "[setup] requirements.txt already satisfied"
else
  echo "[setup] installing requirements.txt into $("$PY" -c 'import sys; print(sys.executable)')"
  pip_install -r requirements.txt 'setuptools>=70.1,<81'
fi

# Full mmcv and mmcv-lite install the same `mmcv` module: never replace one
# the user has (import mmtokenprune checks its version range).
if ! "$PY" -c 'import importlib.util as u; assert u.find_spec("mmcv")' \
    >/dev/null 2>&1; then
  echo "[setup] no mmcv found: installing mmcv-lite==2.1.0"
  pip_install mmcv-lite==2.1.0
fi

# Editable install, skipped when this checkout is already the one installed.
installed_here() {
  (cd / && "$PY" - "$ROOT/mmtokenprune/__init__.py" <<'PYCODE'
import importlib.util
import os
import sys
spec = importlib.util.find_spec('mmtokenprune')
ok = spec is not None and spec.origin is not None and \
    os.path.realpath(spec.origin) == os.path.realpath(sys.argv[1])
sys.exit(0 if ok else 1)
PYCODE
  )
}
if installed_here; then
  echo "[setup] mmtokenprune already installed from $ROOT"
else
  echo "[setup] pip install -e $ROOT"
  # --no-deps: the requirements above are installed already.
  pip_install --no-build-isolation --no-deps -e .
fi
"$PY" -c 'import mmtokenprune; print("[setup] mmtokenprune", mmtokenprune.__version__, "ready")'

if [[ "$run_demo" == 0 ]]; then
  exit 0
fi
if [[ -f tools/demo.py ]]; then
  exec "$PY" tools/demo.py ${demo_args[@]+"${demo_args[@]}"}
fi
echo "[setup] note: tools/demo.py does not exist yet; skipping the demo."
