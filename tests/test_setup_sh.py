"""tools/setup.sh keeps the terminal short and the logs complete.

``PYTHON`` points the script at a stand-in interpreter that answers its
checks, prints as much noise as pip and the demo do, and fails on request,
so the script's own plumbing is tested in about a second.
"""
import os
import os.path as osp
import subprocess

from test_tools import REPO

SETUP = osp.join(REPO, 'tools', 'setup.sh')
NOISE = 500  # lines of INFO records per noisy command

FAKE_PYTHON = r'''#!/usr/bin/env bash
# A stand-in interpreter for tools/setup.sh; FAKE_* variables steer it.
noise() { for i in $(seq 1 "$NOISE"); do echo "$1 $i: INFO noise"; done; }
case "$1" in
  -)  # heredoc scripts: pins_satisfied (requirements.txt), installed_here
      cat >/dev/null
      if [[ "$2" == requirements.txt ]]; then exit "${FAKE_PINS:-0}"; fi
      exit 0 ;;
  -c) case "$2" in
        *mmtokenprune.models*)
          noise import; echo "warning: noise" >&2
          echo "[ready] mmtokenprune 9.9 ready; mmcv.ops: fake" ;;
        *sys.executable*) echo /fake/python ;;
      esac
      exit 0 ;;
  -m) noise pip; echo "ERROR: pip says no" >&2; exit "${FAKE_PIP:-0}" ;;
  tools/demo.py)
      shift; out=outputs/demo
      while (( $# )); do
        if [[ "$1" == --out-dir ]]; then out="$2"; fi; shift
      done
      echo "[demo] the backbone is RANDOMLY INITIALISED"
      noise init_weights
      echo "[build] baseline"
      if [[ -n "${FAKE_DEMO_FAIL:-}" ]]; then
        echo "Traceback: demo broke here" >&2; exit "$FAKE_DEMO_FAIL"
      fi
      echo "| baseline | 52.09 |"  # the table printed among the noise
      printf '| setting | params (M) |\n| baseline | 52.09 |\n' \
        >"$out/results.md"
      touch "$out/merge_regions.png"
      echo "[demo] done" ;;
  *)  echo "fake python: unexpected $*" >&2; exit 99 ;;
esac
'''


def run_setup(tmp_path, *args, **fake_env):
    """Run tools/setup.sh with the stand-in interpreter."""
    fake = tmp_path / 'python'
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    env = dict(
        os.environ,
        PYTHON=str(fake),
        NOISE=str(NOISE),
        SETUP_LOG=str(tmp_path / 'setup.log'),
        **fake_env)
    return subprocess.run(['bash', SETUP, *args],
                          cwd=REPO,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=60)


def test_demo_output_goes_to_its_log(tmp_path):
    out_dir = tmp_path / 'demo'
    proc = run_setup(tmp_path, '--quick', '--out-dir', str(out_dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) < 20 and proc.stderr == '', proc.stdout + proc.stderr
    assert 'noise' not in proc.stdout
    assert lines[0] == '[setup] requirements.txt already satisfied'
    assert '[setup] mmtokenprune 9.9 ready; mmcv.ops: fake' in lines
    progress = [
        line for line in lines if line.endswith('RANDOMLY '
                                                'INITIALISED')
    ]
    assert len(progress) == 1 and progress[0].startswith('[setup] ')
    # The table once (from results.md), the pictures and the log named.
    assert proc.stdout.count('| baseline | 52.09 |') == 1
    assert f'pictures: {out_dir}/merge_regions.png' in proc.stdout
    demo_log = out_dir / 'demo.log'
    assert str(demo_log) in lines[-1]
    log = demo_log.read_text()
    assert log.count('INFO noise') == NOISE and '[demo] done' in log
    assert (tmp_path / 'setup.log').read_text().count('INFO noise') == NOISE


def test_no_demo_prints_only_the_steps(tmp_path):
    proc = run_setup(tmp_path, '--no-demo')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        '[setup] requirements.txt already satisfied',
        f'[setup] mmtokenprune already installed from {REPO}',
        '[setup] mmtokenprune 9.9 ready; mmcv.ops: fake'
    ]


def test_failing_pip_shows_the_end_of_its_log(tmp_path):
    proc = run_setup(tmp_path, '--no-demo', FAKE_PINS='1', FAKE_PIP='3')
    assert proc.returncode == 3
    assert 'noise' not in proc.stdout
    log = tmp_path / 'setup.log'
    assert proc.stderr.startswith('[setup] FAILED: pip install -r '
                                  f'requirements.txt. Last lines of {log}:')
    assert '  | ERROR: pip says no' in proc.stderr
    assert proc.stderr.count('INFO noise') < 40
    assert proc.stderr.rstrip().endswith(f'[setup] full log: {log}')


def test_failing_demo_shows_the_end_of_its_log(tmp_path):
    out_dir = tmp_path / 'demo'
    proc = run_setup(tmp_path, '--out-dir', str(out_dir), FAKE_DEMO_FAIL='4')
    assert proc.returncode == 4
    assert 'demo results' not in proc.stdout
    assert '[setup] FAILED: tools/demo.py (exit 4)' in proc.stderr
    assert '  | Traceback: demo broke here' in proc.stderr
    assert f'full log: {out_dir}/demo.log' in proc.stderr
