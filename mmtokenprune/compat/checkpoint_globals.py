"""The few globals that mmengine checkpoints need under ``weights_only``.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``, and
mmengine 0.10.7 calls it without the argument, so a checkpoint the Runner
itself wrote fails to load: its ``meta`` holds numpy scalars and arrays,
and its ``message_hub`` holds :class:`~mmengine.logging.HistoryBuffer`
objects. :func:`checkpoint_safe_globals` lists exactly the globals those
objects pickle to, for ``torch.serialization.add_safe_globals``; every
other global is still rejected.
"""
import importlib
import pickle
from typing import Any, Callable, List, Tuple, Union

import numpy as np
from mmengine.logging import HistoryBuffer

__all__ = ['checkpoint_safe_globals', 'history_buffer_getattr']

SafeGlobal = Union[Callable, Tuple[Callable, str]]

# Fixed-size numeric dtypes: their arrays and scalars carry raw bytes only.
# Which of them a checkpoint holds depends on what was logged (float64 for
# metrics, int64 for counts, float32/float16 under AMP, bool for flags).
_NUMERIC_DTYPES = ('BoolDType', 'Int8DType', 'Int16DType', 'Int32DType',
                   'Int64DType', 'UInt8DType', 'UInt16DType', 'UInt32DType',
                   'UInt64DType', 'Float16DType', 'Float32DType',
                   'Float64DType', 'LongLongDType', 'ULongLongDType',
                   'ByteDType', 'UByteDType', 'ShortDType', 'UShortDType',
                   'IntDType', 'UIntDType', 'LongDType', 'ULongDType')

# What HistoryBuffer._set_default_statistics registers.
_HISTORY_BUFFER_STATISTICS = frozenset(('min', 'max', 'current', 'mean'))


def history_buffer_getattr(obj: Any, name: str) -> Callable:
    """``getattr`` restricted to HistoryBuffer's own statistics methods.

    ``HistoryBuffer.__getstate__`` pickles its statistics methods as
    ``getattr(HistoryBuffer, 'mean')`` and so on, which makes every
    HistoryBuffer refer to ``builtins.getattr``. Allowing the real
    ``getattr`` would let a file fetch any attribute of any object it can
    build; this stand-in is registered under that name instead and serves
    only those lookups.

    Args:
        obj (Any): Must be the ``HistoryBuffer`` class.
        name (str): One of ``'min'``, ``'max'``, ``'current'``,
            ``'mean'``.

    Returns:
        Callable: ``getattr(HistoryBuffer, name)``.

    Raises:
        pickle.UnpicklingError: For any other object or name.
    """
    if obj is HistoryBuffer and isinstance(name, str) \
            and name in _HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'mmtokenprune allows getattr only for HistoryBuffer statistics '
        f'methods under weights_only loading, got getattr({obj!r}, '
        f'{name!r})')


def _multiarray():
    """Return numpy's ``multiarray`` module (``numpy._core`` in numpy 2)."""
    try:
        return importlib.import_module('numpy._core.multiarray')
    except ImportError:  # numpy < 2
        return importlib.import_module('numpy.core.multiarray')


def checkpoint_safe_globals() -> List[SafeGlobal]:
    """List the globals that Runner checkpoints need, nothing more.

    Returns:
        list: Entries for ``torch.serialization.add_safe_globals``; a tuple
        ``(obj, 'module.name')`` maps a pickled name to ``obj``.
    """
    multiarray = _multiarray()
    safe: List[SafeGlobal] = [
        np.ndarray,
        np.dtype,
        multiarray._reconstruct,
        multiarray.scalar,
        # Names written by numpy 1.x, so older checkpoints load too.
        (multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
        (multiarray.scalar, 'numpy.core.multiarray.scalar'),
        HistoryBuffer,
        (history_buffer_getattr, 'builtins.getattr'),
    ]
    dtypes = getattr(np, 'dtypes', None)  # numpy >= 1.25
    if dtypes is not None:
        classes = {getattr(dtypes, name, None) for name in _NUMERIC_DTYPES}
        safe.extend(
            sorted((c for c in classes if c is not None),
                   key=lambda c: c.__name__))
    return safe
