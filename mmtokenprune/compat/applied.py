"""Importing this module applies :func:`mmtokenprune.compat.apply_compat`.

The one line that the modules entering mm code put before their mm
imports (a call there would push the imports below it, E402)::

    from ..compat import applied  # noqa: F401  (environment fixes first)
"""
from . import apply_compat

apply_compat()
