"""What a compress run has done so far, on disk, so a killed run resumes.

``OUT/compress_state.json`` holds the run's settings (``how``), then each
step's results as they finish: the table's file, the candidates, every
proxy score, the timing rounds, validation scores and the pick. It is
rewritten whole (a temporary file, then a rename) after every result, so
it is never half-written. A rerun with other settings into the same folder
is refused, naming the first that differs.
"""
import json
import os
import os.path as osp
from typing import Any, Dict, List

__all__ = ['RunState', 'measured_ratios']


class RunState:
    """The state file of one output folder (see the module docstring).

    Args:
        out_dir (str): the run's folder.
        how (dict): the settings results depend on (JSON-able).
    """
    FILE = 'compress_state.json'

    def __init__(self, out_dir: str, how: Dict):
        self.path = osp.join(out_dir, self.FILE)
        self.data: Dict[str, Any] = dict(how=how)
        if osp.isfile(self.path):
            with open(self.path) as f:
                stored = json.load(f)
            old = stored.get('how', {})
            clash = sorted(k for k in set(old) | set(how)
                           if old.get(k) != how.get(k))
            if clash:
                k = clash[0]
                raise ValueError(
                    f'{self.path} was made with {k}={old.get(k)!r}, this '
                    f'run has {k}={how.get(k)!r}; resume with the same '
                    'options or choose another --out.')
            self.data = stored
        os.makedirs(out_dir, exist_ok=True)

    @property
    def resumed(self) -> bool:
        return len(self.data) > 1

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.save()

    def section(self, key: str) -> Dict:
        """A dict entry, created empty (change it, then :meth:`save`)."""
        return self.data.setdefault(key, {})

    def save(self) -> None:
        tmp = self.path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(self.data, f, indent=1)
        os.replace(tmp, self.path)


def measured_ratios(rounds: List[Dict]) -> Dict[str, float]:
    """Each timed candidate's latency over the baseline's timed in the same
    round, from the state's ``timing`` rounds."""
    return {n: v / r['baseline_ms'] for r in rounds
            for n, v in r['ms'].items()}
