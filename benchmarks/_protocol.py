"""Evaluation protocol shared by the quality benchmarks (described in docs/benchmarks.md).

Everything here is deterministic given its seeds:

- :func:`cluster_ari`: KMeans(n_clusters = number of labels, n_init = 20, random_state = 42) on the
  target codes, adjusted Rand index against the labels; optionally after per-cell L1 normalisation.
- :func:`contrastive_pca`: our own contrastive PCA (top eigenvectors of Cov(X) - a Cov(Y)).
- :func:`pca_codes`, :func:`nmf_codes`: the PCA and scikit-learn NMF baselines.
- :func:`summarise`: ``"mean ± sd"`` string for a list of values.

Arrays are sample-major (samples x features) throughout.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import scipy.linalg
from sklearn.decomposition import NMF

__all__ = [
    "KMEANS_N_INIT",
    "KMEANS_SEED",
    "cluster_ari",
    "contrastive_pca",
    "covariances",
    "json_safe",
    "l1_normalize_rows",
    "nmf_codes",
    "pca_codes",
    "standardise_features",
    "summarise",
]

# The evaluation protocol itself lives in the library (one definition for the demo, the
# benchmarks and users).
from bcnmf.metrics import KMEANS_N_INIT, KMEANS_SEED, cluster_ari, l1_normalize_rows  # noqa: E402,F401


def standardise_features(A):
    """Centre each feature and divide by its standard deviation (ddof = 0; constant features are
    only centred), as the ``contrastive`` package does separately for target and background."""
    A = np.asarray(A, dtype=np.float64)
    sd = A.std(axis=0, keepdims=True)
    sd[sd == 0] = 1.0
    return (A - A.mean(axis=0, keepdims=True)) / sd


def _centre(A):
    A = np.asarray(A, dtype=np.float64)
    return A - A.mean(axis=0, keepdims=True)


def _centred_covariance(A):
    Ac = _centre(A)
    return Ac.T @ Ac / max(Ac.shape[0] - 1, 1), Ac


# Above this many features the eigenvectors are found with ARPACK on an implicit operator
# (fixed start vector: deterministic) instead of a dense eigendecomposition.
DENSE_EIGH_MAX_FEATURES = 800


def _top_eigvecs_dense(C, k):
    C = 0.5 * (C + C.T)
    p = C.shape[0]
    _, V = scipy.linalg.eigh(C, subset_by_index=[p - k, p - 1])
    return V[:, ::-1]  # descending eigenvalues


def _top_eigvecs_implicit(Xc, Yc, a, k):
    from scipy.sparse.linalg import LinearOperator, eigsh

    p = Xc.shape[1]
    sx = 1.0 / max(Xc.shape[0] - 1, 1)
    sy = a / max(Yc.shape[0] - 1, 1)

    def matvec(v):
        v = np.asarray(v, dtype=np.float64).reshape(p, -1)
        out = sx * (Xc.T @ (Xc @ v))
        if sy != 0.0:
            out -= sy * (Yc.T @ (Yc @ v))
        return out

    op = LinearOperator((p, p), matvec=matvec, matmat=matvec, dtype=np.float64)
    v0 = np.random.RandomState(0).standard_normal(p)
    w, V = eigsh(op, k=k, which="LA", v0=v0, ncv=min(p - 1, max(2 * k + 1, 100)), tol=1e-10,
                 maxiter=50 * p)
    return V[:, np.argsort(w)[::-1]]


def _fix_signs(V):
    idx = np.argmax(np.abs(V), axis=0)
    signs = np.sign(V[idx, np.arange(V.shape[1])])
    signs[signs == 0] = 1.0
    return V * signs


def contrastive_pca(X, Y, n_components, a):
    """Contrastive PCA scores of the target.

    Top ``n_components`` eigenvectors V of C = Cov(X) - a Cov(Y) (each dataset centred on its own
    mean, covariances with n - 1), returned as the projected centred target (X - mean(X)) V.
    Eigenvector signs are fixed so that the largest-magnitude loading is positive; for more than
    ``DENSE_EIGH_MAX_FEATURES`` features ARPACK is used with a fixed start vector, so the result is
    deterministic either way.  For the standardised variant (the ``contrastive`` package's
    default, the setting of the contrastive PCA paper's numbers) pass ``standardise_features(X)`` and
    ``standardise_features(Y)``.

    Parameters
    ----------
    X : array (n_target, n_features)
    Y : array (n_background, n_features)
    n_components : int
    a : float or sequence of float
        Contrast strength (a = 0 is ordinary PCA).  A sequence returns a list, one score matrix
        per value, sharing the centring and covariances.

    Returns
    -------
    array (n_target, n_components), or a list of them when ``a`` is a sequence.
    """
    many = np.ndim(a) > 0
    a_values = [float(x) for x in np.atleast_1d(a)]
    Xc, Yc = _centre(X), _centre(Y)
    p = Xc.shape[1]
    k = int(min(n_components, p))
    if p <= DENSE_EIGH_MAX_FEATURES:
        cov_x = Xc.T @ Xc / max(Xc.shape[0] - 1, 1)
        cov_y = Yc.T @ Yc / max(Yc.shape[0] - 1, 1)
        bases = [_top_eigvecs_dense(cov_x - av * cov_y, k) for av in a_values]
    else:
        bases = [_top_eigvecs_implicit(Xc, Yc, av, k) for av in a_values]
    out = [Xc @ _fix_signs(V) for V in bases]
    return out if many else out[0]


def covariances(X, Y):
    """(Cov(X), Cov(Y)) of the centred data, with n - 1."""
    return _centred_covariance(X)[0], _centred_covariance(Y)[0]


def pca_codes(X, n_components, *, standardise=False):
    """PCA scores of the target: top eigenvectors of Cov(X) (deterministic), optionally on
    standardised features.  Same numerics as :func:`contrastive_pca` with a = 0."""
    X = standardise_features(X) if standardise else np.asarray(X, dtype=np.float64)
    Xc = _centre(X)
    k = int(min(n_components, Xc.shape[1]))
    if Xc.shape[1] <= DENSE_EIGH_MAX_FEATURES:
        V = _top_eigvecs_dense(Xc.T @ Xc / max(Xc.shape[0] - 1, 1), k)
    else:
        V = _top_eigvecs_implicit(Xc, Xc[:0], 0.0, k)
    return Xc @ _fix_signs(V)


def nmf_codes(X, n_components, random_state, *, beta_loss="frobenius", max_iter=500):
    """scikit-learn NMF codes of the target (random initialisation, seeded).

    Frobenius uses the coordinate-descent solver, Kullback-Leibler the multiplicative solver.
    """
    X = np.asarray(X, dtype=np.float64)
    solver = "cd" if beta_loss == "frobenius" else "mu"
    model = NMF(
        n_components=n_components,
        init="random",
        solver=solver,
        beta_loss=beta_loss,
        max_iter=max_iter,
        random_state=random_state,
    )
    return model.fit_transform(X)


def summarise(values, digits=3):
    """``"mean ± sd"`` of the finite values (sd with ddof = 1; only the mean for one value).

    NaNs (failed fits) are dropped; ``"nan"`` if nothing is left.
    """
    v = np.asarray([x for x in values], dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "nan"
    mean = v.mean()
    if v.size == 1:
        return f"{mean:.{digits}f}"
    sd = v.std(ddof=1)
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def json_safe(obj):
    """``obj`` with numpy scalars made Python scalars and NaN or infinities made None, so
    that ``json.dumps`` writes standard JSON (nulls)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


ROOT = Path(__file__).resolve().parents[1]


def git(*args) -> str:
    """The stripped output of ``git *args`` in the repository; "" where git is unavailable."""
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT,
                              timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def commit_stamp() -> str:
    """The checkout's short commit, with ``-dirty`` when the library's sources (``src``)
    have uncommitted changes: what a printed table is stamped with."""
    commit = git("rev-parse", "--short", "HEAD") or "?"
    return commit + "-dirty" if git("status", "--porcelain", "--", "src") else commit
