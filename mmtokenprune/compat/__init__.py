"""Environment fixes, applied where mm code is entered.

``import mmtokenprune`` and ``import mmtokenprune.ops`` change nothing. The
modules that enter mm code call :func:`apply_compat` before anything else:
``mmtokenprune.models``, ``mmtokenprune.datasets``,
``mmtokenprune.registry``, ``mmtokenprune.analysis`` and
``mmtokenprune.utils`` (the tools' Runner and export helpers).

1. mmcv: check that the installed mmcv is in the range mmseg 1.2.x
   supports. When it has no compiled ops (mmcv-lite), install a small
   pure-torch ``mmcv.ops`` so that ``import mmseg.models`` works; any op
   without a fallback raises a ``ModuleNotFoundError`` that says full mmcv
   is needed (mmseg's guarded imports then see ``None``, as they expect).
   With full mmcv nothing is replaced.
2. torch >= 2.6 loads with ``weights_only=True``: allow-list the few
   globals that mmengine's own checkpoints contain (numpy scalars, arrays
   and dtypes, ``HistoryBuffer``), see
   :mod:`mmtokenprune.compat.checkpoint_globals`. ``weights_only`` is never
   turned off and ``torch.load`` is not patched.

Distributed training on machines without CUDA is prepared by
:mod:`mmtokenprune.compat.dist`, called by the tools' ``build_runner``.
"""
import importlib.util
import logging
import sys
import types

__all__ = ['apply_compat', 'mmcv_ops_compiled', 'uses_mmcv_ops_fallback']

MMCV_MIN = '2.0.0'
MMCV_MAX = '2.2.0'  # exclusive: mmseg 1.2.x asserts mmcv < 2.2.0
FALLBACK_OPS = ('point_sample', 'sigmoid_focal_loss')
_FALLBACK_FLAG = '__mmtokenprune_fallback__'
_applied = False


def apply_compat() -> None:
    """Apply every fix; cheap and idempotent.

    Raises:
        ImportError: If mmcv is missing or outside ``[2.0.0, 2.2.0)``.
    """
    global _applied
    if _applied:
        return
    _check_mmcv_version()
    fallback = _install_mmcv_ops_fallback()
    _allow_checkpoint_globals()
    _applied = True
    if fallback:
        _log('mmtokenprune: mmcv has no compiled ops (mmcv-lite); using '
             f'pure-torch fallbacks for mmcv.ops.{{{", ".join(FALLBACK_OPS)}'
             '}, other mmcv.ops need full mmcv.')
    else:
        _log('mmtokenprune: using the compiled mmcv.ops of full mmcv.')


def mmcv_ops_compiled() -> bool:
    """Return whether mmcv's compiled extension ``mmcv._ext`` exists."""
    return importlib.util.find_spec('mmcv._ext') is not None


def uses_mmcv_ops_fallback() -> bool:
    """Return whether ``mmcv.ops`` is mmtokenprune's pure-torch fallback."""
    return getattr(sys.modules.get('mmcv.ops'), _FALLBACK_FLAG, False)


def _check_mmcv_version() -> None:
    """Raise a clear ``ImportError`` unless ``MMCV_MIN <= mmcv < MMCV_MAX``."""
    hint = ('run `bash tools/setup.sh`, or `pip install mmcv-lite==2.1.0` '
            f'(or a full mmcv>={MMCV_MIN},<{MMCV_MAX})')
    try:
        import mmcv
    except ImportError as err:
        raise ImportError(f'mmtokenprune needs mmcv; {hint}.') from err
    from mmengine.utils import digit_version
    version = mmcv.__version__
    if not (digit_version(MMCV_MIN) <= digit_version(version) <
            digit_version(MMCV_MAX)):
        raise ImportError(
            f'mmtokenprune needs mmcv>={MMCV_MIN},<{MMCV_MAX} (the range '
            f'mmsegmentation 1.2.x supports), but mmcv=={version} is '
            f'installed; {hint}.')


def _install_mmcv_ops_fallback() -> bool:
    """Expose the pure-torch ``mmcv.ops`` if the compiled ops are absent.

    Returns:
        bool: Whether the fallback is (now) active.
    """
    if uses_mmcv_ops_fallback():
        return True
    if mmcv_ops_compiled() or 'mmcv.ops' in sys.modules:
        return False
    import mmcv

    from . import mmcv_ops as ops
    module = types.ModuleType(
        'mmcv.ops', 'Pure-torch stand-in for mmcv.ops installed by '
        'mmtokenprune because mmcv has no compiled ops (mmcv-lite).')
    module.__spec__ = importlib.util.spec_from_loader(
        'mmcv.ops', loader=None, origin=ops.__file__)
    module.__all__ = list(FALLBACK_OPS)
    for name in FALLBACK_OPS:
        setattr(module, name, getattr(ops, name))
    setattr(module, _FALLBACK_FLAG, True)
    module.__getattr__ = _missing_op
    sys.modules['mmcv.ops'] = module
    mmcv.ops = module
    return True


def _missing_op(name: str):
    """Module ``__getattr__`` of the fallback: fail loudly for real ops."""
    if name.startswith('_'):  # keep hasattr/inspect/IPython probes quiet
        raise AttributeError(f"module 'mmcv.ops' has no attribute {name!r}")
    from .mmcv_ops import missing_op_message
    raise ModuleNotFoundError(missing_op_message(name), name='mmcv._ext')


def _allow_checkpoint_globals() -> None:
    """Allow-list the globals of mmengine checkpoints (torch >= 2.6)."""
    import torch
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is None:  # torch < 2.4 has no weights_only default
        return
    from .checkpoint_globals import checkpoint_safe_globals
    add_safe_globals(checkpoint_safe_globals())


def _log(msg: str, level: int = logging.INFO) -> None:
    """Log through mmengine's current logger; never fail at import."""
    try:
        from mmengine.logging import print_log
        print_log(msg, logger='current', level=level)
    except Exception:  # noqa: BLE001 - logging must not break the import
        logging.getLogger(__name__).log(level, msg)
