"""mmengine training pieces: importing this registers mmtokenprune's hooks."""
from ..compat import applied  # noqa: F401  (environment fixes first)
from . import hooks  # noqa: F401
