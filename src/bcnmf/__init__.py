"""bcnmf: background-contrastive non-negative matrix factorisation.

Public names: :class:`BCNMF`, :func:`factorize`, :class:`FactorizationResult`;
submodules ``datasets`` and ``exceptions`` are loaded on first access.
"""

import importlib

from ._version import __version__
from .core.result import FactorizationResult
from .estimator import BCNMF, factorize

__all__ = ["BCNMF", "factorize", "FactorizationResult", "datasets", "exceptions", "metrics",
           "__version__"]

_LAZY = {"datasets", "exceptions", "metrics"}


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'bcnmf' has no attribute {name!r}")
