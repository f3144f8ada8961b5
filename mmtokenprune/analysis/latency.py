"""Forward latency: warm-up, synchronisation, medians, the device named.

Timing follows ToMe's and timm's benchmarks: ``torch.inference_mode()``,
warm-up forwards first, ``torch.cuda.synchronize()`` around each timed
forward on CUDA, one input batch reused, the median over repeats reported.
:func:`time_interleaved` times several models in turns (A B C A B C ...),
so that drift of a shared machine (other jobs, clock changes) falls on all
of them alike.
Every option reaches the forward it describes: ``clock`` picks the
function read around each forward, ``threads`` is set for the timed rounds
only (and restored), ``dtype`` is the autocast around them and ``device``
the place they are synchronised on.
"""
import os
import platform
import time
from contextlib import contextmanager, nullcontext
from typing import Callable, Dict, Iterator, List, Optional

import torch

__all__ = [
    'DTYPES', 'CLOCKS', 'CLOCK_TEXT', 'cpu_model', 'device_name', 'autocast',
    'num_threads', 'busy_cores', 'check_timing', 'time_forward',
    'time_interleaved'
]

DTYPES = {'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``)."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or 'unknown CPU'


def device_name(device: str = 'cpu') -> str:
    """The machine a timing was taken on, e.g. ``'Intel(R) Xeon(R)
    Processor, 2 cores, torch 2 threads'`` or ``'NVIDIA H100 (CUDA 12.4)'``.
    """
    device = torch.device(device)
    if device.type == 'cuda':
        name = torch.cuda.get_device_name(device)
        return f'{name} (CUDA {torch.version.cuda}, torch {torch.__version__})'
    return (f'{cpu_model()}, {os.cpu_count()} cores, torch '
            f'{torch.get_num_threads()} threads, torch {torch.__version__}')


def autocast(device: str, dtype: str = 'fp32'):
    """Autocast context for ``dtype`` in :data:`DTYPES` (none for fp32).

    Raises:
        ValueError: for an unknown dtype, or fp16 on CPU.
    """
    if dtype not in DTYPES:
        raise ValueError(f'dtype must be one of {list(DTYPES)}; got '
                         f'{dtype!r}.')
    device_type = torch.device(device).type
    if DTYPES[dtype] is None:
        return nullcontext()
    if dtype == 'fp16' and device_type != 'cuda':
        raise ValueError('fp16 timing needs --device cuda; use fp32 or bf16 '
                         'on CPU.')
    return torch.autocast(device_type, dtype=DTYPES[dtype])


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


CLOCKS = {'wall': time.perf_counter, 'cpu': time.process_time}
# How each clock is named in a results table.
CLOCK_TEXT = dict(
    wall='wall-clock',
    cpu=('process CPU time (with one thread: the latency without other '
         "jobs' preemption)"))


def _cpu_jiffies() -> Optional[tuple]:
    """``(busy, total)`` jiffies of all CPUs from ``/proc/stat``, or None
    where it does not exist."""
    try:
        with open('/proc/stat') as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def busy_cores(interval: float = 1.0) -> float:
    """How many cores other processes keep busy, now.

    Sleeps ``interval`` seconds and reads the busy share of all CPUs over
    them from ``/proc/stat`` (time stolen by the hypervisor counts as
    busy): this process sleeps meanwhile, so the share is the other jobs'.
    The 1-minute load average would lag by a minute and count what this
    process itself did just before (an install, a build). Where
    ``/proc/stat`` does not exist, that load average is the answer.

    Returns:
        float: busy cores, between 0 and ``os.cpu_count()``.
    """
    before = _cpu_jiffies()
    if before is None:
        return os.getloadavg()[0]
    time.sleep(interval)
    after = _cpu_jiffies()
    total = after[1] - before[1]
    share = (after[0] - before[0]) / total if total > 0 else 0.
    return share * (os.cpu_count() or 1)


def _check_threads(threads: Optional[int]) -> None:
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f'threads must be a positive int or None; got '
                         f'{threads!r}.')


@contextmanager
def num_threads(threads: Optional[int] = None) -> Iterator[None]:
    """Run the body with ``threads`` torch CPU threads, then restore the
    previous number (``None``: leave torch's setting as it is)."""
    _check_threads(threads)
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_timing(device: str = 'cpu',
                 dtype: str = 'fp32',
                 clock: str = 'wall',
                 threads: Optional[int] = None) -> None:
    """Check the timing options before any work is done.

    Args:
        device, dtype, clock, threads: as :func:`time_interleaved`.

    Raises:
        ValueError: naming the bad option and the values it allows.
    """
    if clock not in CLOCKS:
        raise ValueError(f'clock must be one of {list(CLOCKS)}; got '
                         f'{clock!r}.')
    if clock == 'cpu' and torch.device(device).type != 'cpu':
        raise ValueError(f"clock='cpu' times CPU forwards only; use "
                         f"clock='wall' on device {device!r}.")
    autocast(device, dtype)  # checks dtype against the device
    _check_threads(threads)


def time_forward(fn: Callable[[], object],
                 device: str = 'cpu',
                 clock: str = 'wall') -> float:
    """Milliseconds of one call of ``fn`` (synchronised on CUDA).

    Args:
        fn (callable): the forward, input bound.
        device (str): where it runs. Defaults to 'cpu'.
        clock (str): 'wall' (latency) or 'cpu' (CPU time of this process:
            on a CPU shared with other jobs and with one torch thread, the
            latency the forward would have on its own, since time spent
            descheduled is not counted; with more threads it also counts
            their spinning). Defaults to 'wall'.
    """
    check_timing(device, clock=clock)
    device = torch.device(device)
    now = CLOCKS[clock]
    _sync(device)
    start = now()
    fn()
    _sync(device)
    return (now() - start) * 1e3


def time_interleaved(fns: Dict[str, Callable[[], object]],
                     repeats: int = 10,
                     warmup: int = 2,
                     device: str = 'cpu',
                     dtype: str = 'fp32',
                     clock: str = 'wall',
                     threads: Optional[int] = None) -> Dict[str, List[float]]:
    """Time several forwards in turns: ``warmup`` untimed rounds, then
    ``repeats`` rounds of A B C ...

    Args:
        fns (dict[str, callable]): name -> argument-free forward (the input
            bound already, on ``device``).
        repeats (int): timed rounds. Defaults to 10.
        warmup (int): untimed rounds first. Defaults to 2.
        device (str): where the forwards run. Defaults to 'cpu'.
        dtype (str): 'fp32', 'fp16' (CUDA) or 'bf16' (autocast).
            Defaults to 'fp32'.
        clock (str): 'wall' or 'cpu', see :func:`time_forward`.
            Defaults to 'wall'.
        threads (int, optional): torch CPU threads during warm-up and timed
            rounds (restored after). Defaults to None: torch's setting.

    Returns:
        dict[str, list[float]]: name -> milliseconds of each timed round.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f'need repeats >= 1 and warmup >= 0; got '
                         f'repeats={repeats}, warmup={warmup}.')
    check_timing(device, dtype, clock, threads)
    times = {name: [] for name in fns}
    with torch.inference_mode(), autocast(device, dtype), \
            num_threads(threads):
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        for _ in range(repeats):
            for name, fn in fns.items():
                times[name].append(time_forward(fn, device, clock))
    return times
