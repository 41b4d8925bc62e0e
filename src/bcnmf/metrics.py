"""Agreement of codes with labels, by the fixed protocol of MODEL.md section 8.

KMeans with ``n_clusters`` = number of distinct labels, ``n_init=20``,
``random_state=42`` on the target codes (raw or per-cell L1-normalised), then
the adjusted Rand index against labels that were never used in fitting.
"""

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

__all__ = ["KMEANS_N_INIT", "KMEANS_SEED", "cluster_ari", "l1_normalise_rows"]

KMEANS_N_INIT = 20
KMEANS_SEED = 42


def l1_normalise_rows(codes):
    """Divide each row by its L1 norm; all-zero rows stay zero."""
    codes = np.asarray(codes, dtype=np.float64)
    norms = np.abs(codes).sum(axis=1, keepdims=True)
    out = np.zeros_like(codes)
    np.divide(codes, norms, out=out, where=norms > 0)
    return out


def cluster_ari(codes, labels, *, normalise=False):
    """Adjusted Rand index of KMeans clusters of ``codes`` against ``labels``.

    KMeans uses ``n_clusters`` = number of distinct labels, ``n_init=20``,
    ``random_state=42``.  With ``normalise=True`` every row is first divided by
    its L1 norm (all-zero rows stay zero).  Non-finite codes give NaN.
    KMeans runs single-threaded (small problem; avoids oversubscription).

    Parameters
    ----------
    codes : array-like of shape (n_cells, n_components)
    labels : array-like of shape (n_cells,)
    normalise : bool, default=False

    Returns
    -------
    float
    """
    codes = np.asarray(codes, dtype=np.float64)
    labels = np.asarray(labels)
    if codes.ndim != 2 or codes.shape[0] != labels.shape[0]:
        raise ValueError(f"codes of shape {codes.shape} do not match {labels.shape[0]} labels.")
    if not np.all(np.isfinite(codes)):
        return float("nan")
    if normalise:
        codes = l1_normalise_rows(codes)
    km = KMeans(n_clusters=int(np.unique(labels).size), n_init=KMEANS_N_INIT,
                random_state=KMEANS_SEED)
    # One thread: the problem is tiny (cells x a few components), and multithreaded KMeans is
    # orders of magnitude slower on a busy machine (thread oversubscription).
    with threadpool_limits(limits=1):
        pred = km.fit_predict(codes)
    return float(adjusted_rand_score(labels, pred))
