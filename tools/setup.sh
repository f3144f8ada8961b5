#!/usr/bin/env bash
# Install mmtokenprune and its requirements into the current python, then run
# the demo: `bash tools/setup.sh [--no-demo] [DEMO ARGS...]`.
# Idempotent: when everything is installed it only checks and goes on.
# Set PYTHON to use another interpreter (default: python).
#
# Quiet by design: the terminal shows the set-up steps, the demo's progress
# lines (its "[tag] ..." lines), its table and where its pictures are. pip's
# output goes to outputs/setup.log (or $SETUP_LOG), the demo's full output
# (model builds, mmengine's init_weights records) to OUT_DIR/demo.log; a
# failing step prints the end of its log and the log's path.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
cd "$ROOT"

run_demo=1
demo_args=()
out_dir=outputs/demo  # tools/demo.py's default --out-dir
prev=
for arg in "$@"; do
  case "$arg" in
    --no-demo) run_demo=0 ;;
    -h|--help)
      sed -n '2,5p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      echo "Demo arguments: see \`python tools/demo.py --help\`."
      exit 0 ;;
    --out-dir=*) out_dir="${arg#--out-dir=}"; demo_args+=("$arg") ;;
    *) if [[ "$prev" == "--out-dir" ]]; then out_dir="$arg"; fi
       demo_args+=("$arg") ;;
  esac
  prev="$arg"
done

SETUP_LOG="${SETUP_LOG:-$ROOT/outputs/setup.log}"
mkdir -p "$(dirname "$SETUP_LOG")"
: >"$SETUP_LOG"

# Print the end of log $2 and where it is after step $1 failed; exit $3.
fail() {
  echo "[setup] FAILED: $1. Last lines of $2:" >&2
  tail -n 40 "$2" | sed 's/^/  | /' >&2
  echo "[setup] full log: $2" >&2
  exit "${3:-1}"
}

# Run "$@" with its output appended to the set-up log; $1 names the step.
logged() {
  local step="$1"; shift
  echo "### $step: $*" >>"$SETUP_LOG"
  "$@" >>"$SETUP_LOG" 2>&1 || fail "$step" "$SETUP_LOG" $?
}

# PIP_ROOT_USER_ACTION silences the root warning of a container install.
pip_install() {
  PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install "$@"
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
  echo "[setup] installing requirements.txt into" \
    "$("$PY" -c 'import sys; print(sys.executable)') (a few minutes; pip's" \
    "output: $SETUP_LOG)"
  logged "pip install -r requirements.txt" \
    pip_install -r requirements.txt 'setuptools>=70.1,<81'
fi

# Full mmcv and mmcv-lite install the same `mmcv` module: never replace one
# the user has (mmtokenprune.compat checks its version range).
if ! "$PY" -c 'import importlib.util as u; assert u.find_spec("mmcv")' \
    >/dev/null 2>&1; then
  echo "[setup] no mmcv found: installing mmcv-lite==2.1.0"
  logged "pip install mmcv-lite" pip_install mmcv-lite==2.1.0
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
  logged "pip install -e ." \
    pip_install --no-build-isolation --no-deps -e .
fi

# Import what configs import: applies the environment fixes (mmcv version
# range, mmcv.ops fallbacks) and imports mmseg and mmpretrain.
logged "import check" "$PY" -c '
import mmtokenprune.datasets, mmtokenprune.models
from mmtokenprune import __version__
from mmtokenprune.compat import uses_mmcv_ops_fallback
ops = "pure-torch fallbacks (mmcv-lite)" if uses_mmcv_ops_fallback() \
    else "compiled (full mmcv)"
print(f"[ready] mmtokenprune {__version__} ready; mmcv.ops: {ops}")'
sed -n 's/^\[ready\] /[setup] /p' "$SETUP_LOG"

if [[ "$run_demo" == 0 ]]; then
  exit 0
fi
if [[ ! -f tools/demo.py ]]; then
  echo "[setup] note: tools/demo.py does not exist yet; skipping the demo."
  exit 0
fi

# The demo: its "[tag] ..." lines, with the elapsed time, are the progress
# shown; everything it prints goes to its log.
mkdir -p "$out_dir"
demo_log="$out_dir/demo.log"
echo "[setup] running tools/demo.py${demo_args[*]+ ${demo_args[*]}}" \
  "(about 2 minutes on 2 CPU cores, less with --quick); full output:" \
  "$demo_log"
start=$SECONDS
set +e
PYTHONUNBUFFERED=1 "$PY" tools/demo.py ${demo_args[@]+"${demo_args[@]}"} 2>&1 |
  while IFS= read -r line || [[ -n "$line" ]]; do
    printf '%s\n' "$line" >&3
    if [[ "$line" =~ ^\[[A-Za-z_-]+\]\  ]]; then
      printf '[setup] %4ds  %s\n' $((SECONDS - start)) "$line"
    fi
  done 3>"$demo_log"
status=${PIPESTATUS[0]}
set -e
if [[ "$status" != 0 ]]; then
  fail "tools/demo.py (exit $status)" "$demo_log" "$status"
fi

if [[ -f "$out_dir/results.md" ]]; then
  echo "[setup] demo results ($out_dir/results.md):"
  echo
  cat "$out_dir/results.md"
  echo
fi
shopt -s nullglob
pictures=("$out_dir"/*.png)
if (( ${#pictures[@]} )); then
  echo "[setup] pictures: ${pictures[*]}"
fi
echo "[setup] done; the demo's full output: $demo_log"
