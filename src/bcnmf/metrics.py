"""Agreement of codes with labels, by one fixed protocol (the one the benchmarks use).

KMeans with ``n_clusters`` = number of distinct labels, ``n_init=20``,
``random_state=42`` on the target codes (raw or per-cell L1-normalised,
optionally embedded by UMAP first), then the adjusted Rand index against
labels that were never used in fitting.  :func:`cluster_agreement` returns the
scores with the protocol that produced them, so that a published number can
be reproduced exactly; :func:`cluster_ari` is its one-number shortcut.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

import numpy as np
import sklearn
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

__all__ = ["KMEANS_N_INIT", "KMEANS_SEED", "UMAP_DEFAULTS", "AgreementResult",
           "cluster_agreement", "cluster_ari", "l1_normalize_rows"]

KMEANS_N_INIT = 20
KMEANS_SEED = 42
#: UMAP settings of the protocol (the paper's figures use UMAP before KMeans)
UMAP_DEFAULTS = {"n_components": 2, "n_neighbors": 15, "min_dist": 0.1, "random_state": 42,
                 "n_jobs": 1}


def l1_normalize_rows(codes):
    """Divide each row by its L1 norm; all-zero rows stay zero."""
    codes = np.asarray(codes, dtype=np.float64)
    norms = np.abs(codes).sum(axis=1, keepdims=True)
    out = np.zeros_like(codes)
    np.divide(codes, norms, out=out, where=norms > 0)
    return out


@dataclass(frozen=True)
class AgreementResult:
    """Scores of :func:`cluster_agreement` and the protocol behind them.

    Attributes
    ----------
    ari, nmi : float
        Adjusted Rand index and normalised mutual information of the KMeans
        clusters against the labels (NaN when the codes are not finite).
    clusters : ndarray of int
        The KMeans cluster of every cell.
    protocol : dict
        Everything needed to reproduce the numbers: the steps, their
        settings, and the versions of the libraries that ran them.
    """

    ari: float
    nmi: float
    clusters: np.ndarray = field(repr=False)
    protocol: dict = field(repr=False)


def _umap_embedding(codes, params):
    import warnings

    try:
        with warnings.catch_warnings():   # umap warns that its TensorFlow variant is missing
            warnings.simplefilter("ignore", ImportWarning)
            import umap
    except ImportError as exc:
        raise ImportError("umap=True needs umap-learn: pip install 'bcnmf[umap]' "
                          "(or umap-learn).") from exc
    with warnings.catch_warnings():   # a seeded UMAP runs single-threaded; it says so
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        return umap.UMAP(**params).fit_transform(codes), umap.__version__


def cluster_agreement(codes, labels, *, normalize=False, umap=False, umap_params=None,
                      n_clusters=None, n_init=KMEANS_N_INIT, random_state=KMEANS_SEED):
    """Cluster the codes and compare the clusters with known labels.

    Steps: per-cell L1 normalisation (``normalize=True``; all-zero rows stay
    zero), a UMAP embedding (``umap=True``; needs umap-learn; settings
    ``UMAP_DEFAULTS`` updated by ``umap_params``), then KMeans with
    ``n_clusters`` (default: the number of distinct labels), ``n_init`` and
    ``random_state``, run single-threaded.

    Parameters
    ----------
    codes : array-like of shape (n_cells, n_components)
    labels : array-like of shape (n_cells,)
        Used only for scoring.
    normalize, umap : bool, default=False
    umap_params : dict, optional
    n_clusters : int, optional
    n_init, random_state : int, default=20, 42

    Returns
    -------
    AgreementResult
    """
    from sklearn.metrics import normalized_mutual_info_score

    codes = np.asarray(codes, dtype=np.float64)
    labels = np.asarray(labels)
    if codes.ndim != 2 or codes.shape[0] != labels.shape[0]:
        raise ValueError(f"codes of shape {codes.shape} do not match {labels.shape[0]} labels.")
    k = int(np.unique(labels).size) if n_clusters is None else int(n_clusters)
    protocol = {"normalize": "l1 per cell" if normalize else None, "umap": None,
                "kmeans": {"n_clusters": k, "n_init": int(n_init),
                           "random_state": random_state, "threads": 1},
                "scores": ["adjusted_rand_score", "normalized_mutual_info_score"],
                "versions": {"scikit-learn": sklearn.__version__, "numpy": np.__version__,
                             "python": platform.python_version()}}
    if not np.all(np.isfinite(codes)):
        return AgreementResult(float("nan"), float("nan"), np.full(len(labels), -1), protocol)
    if normalize:
        codes = l1_normalize_rows(codes)
    if umap:
        params = {**UMAP_DEFAULTS, **(umap_params or {})}
        codes, version = _umap_embedding(codes, params)
        protocol["umap"] = params
        protocol["versions"]["umap-learn"] = version
    km = KMeans(n_clusters=k, n_init=n_init, random_state=random_state)
    # One thread: the problem is tiny (cells x a few components), and multithreaded KMeans is
    # orders of magnitude slower on a busy machine (thread oversubscription).
    with threadpool_limits(limits=1):
        pred = km.fit_predict(codes)
    return AgreementResult(float(adjusted_rand_score(labels, pred)),
                           float(normalized_mutual_info_score(labels, pred)), pred, protocol)


def cluster_ari(codes, labels, *, normalize=False):
    """Adjusted Rand index of KMeans clusters of ``codes`` against ``labels``
    by the fixed protocol (:func:`cluster_agreement` without UMAP).

    KMeans uses ``n_clusters`` = number of distinct labels, ``n_init=20``,
    ``random_state=42``.  With ``normalize=True`` every row is first divided by
    its L1 norm (all-zero rows stay zero).  Non-finite codes give NaN.

    Parameters
    ----------
    codes : array-like of shape (n_cells, n_components)
    labels : array-like of shape (n_cells,)
    normalize : bool, default=False

    Returns
    -------
    float
    """
    return cluster_agreement(codes, labels, normalize=normalize).ari
