"""bcnmf: background-contrastive non-negative matrix factorisation.

Public names: :class:`BCNMF`, :class:`MiniBatchBCNMF` (online),
:class:`CombinedBCNMF` (shared + target-specific topics), :class:`MultiModalBCNMF`,
:class:`MultiConditionBCNMF`,
:func:`factorize`, :class:`FactorizationResult`,
:func:`load` (saved models); model selection and topic statistics
(:func:`select_model`, :class:`SelectionResult`, :func:`topic_enrichment`,
:func:`top_features`, :func:`background_corrected`, :func:`match_topics`,
:func:`consensus_basis`, :func:`topic_gene_sets`, loaded on first use); submodules ``tl``
(AnnData tools), ``pl`` (plots),
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

__all__ = ["BCNMF", "CombinedBCNMF", "MiniBatchBCNMF", "MultiConditionBCNMF", "MultiModalBCNMF",
           "factorize", "FactorizationResult", "load", "datasets", "exceptions",
           "get_config", "set_config",
           "io", "metrics", "pl", "report", "tl", "__version__",
           "select_model", "SelectionResult", "topic_enrichment", "top_features",
           "topic_usage", "background_corrected", "match_topics", "consensus_basis",
           "topic_gene_sets"]

_LAZY = {"datasets", "exceptions", "io", "metrics", "pl", "report", "tl"}
#: public functions and classes loaded from their module on first access
_LAZY_NAMES = {
    "select_model": "selection", "SelectionResult": "selection",
    "topic_enrichment": "topics", "top_features": "topics", "topic_usage": "topics",
    "background_corrected": "topics",
    "match_topics": "matching", "consensus_basis": "matching",
    "topic_gene_sets": "gene_sets",
}


def load(path, *, device=None):
    """Load a model saved with ``model.save(path)``; see :func:`bcnmf.persistence.load_model`."""
    from .persistence import load_model

    return load_model(path, device=device)


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
    raise AttributeError(f"module 'bcnmf' has no attribute {name!r}")
