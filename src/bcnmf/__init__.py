"""bcnmf: background-contrastive non-negative matrix factorisation.

Public names: :class:`BCNMF`, :class:`MiniBatchBCNMF` (online),
:class:`CombinedBCNMF` (shared + target-specific topics), :class:`MultiModalBCNMF`,
:class:`MultiConditionBCNMF`,
:func:`factorize`, :class:`FactorizationResult`,
:func:`load` (saved models); submodules ``tl`` (AnnData tools), ``pl`` (plots),
``io`` (file readers), ``report``, ``datasets``, ``metrics`` and ``exceptions``
are loaded on first access, so ``import bcnmf`` imports none of anndata,
scanpy or matplotlib.
"""

import importlib

from ._version import __version__
from .core.guard import get_config, set_config
from .core.result import FactorizationResult
from .combined import CombinedBCNMF
from .conditions import MultiConditionBCNMF
from .estimator import BCNMF, factorize
from .minibatch import MiniBatchBCNMF
from .multimodal import MultiModalBCNMF

__all__ = ["BCNMF", "CombinedBCNMF", "MiniBatchBCNMF", "MultiConditionBCNMF", "MultiModalBCNMF", "factorize", "FactorizationResult", "load", "datasets", "exceptions",
           "get_config", "set_config",
           "io", "metrics", "pl", "report", "tl", "__version__"]

_LAZY = {"datasets", "exceptions", "io", "metrics", "pl", "report", "tl"}


def load(path, *, device=None):
    """Load a model saved with ``model.save(path)``; see :func:`bcnmf.persistence.load_model`."""
    from .persistence import load_model

    return load_model(path, device=device)


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'bcnmf' has no attribute {name!r}")
