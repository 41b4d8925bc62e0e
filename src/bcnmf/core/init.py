"""Initial factors.  Random draws are made on the host with numpy."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .backend import is_torch, is_torch_sparse, torch_dtype
from .source import Scan

INIT_METHODS = ("random", "uniform")
#: BCNMF's starts: the draws above, or the contrast's relaxation (:func:`contrastive_basis`)
CONTRAST_INIT_METHODS = INIT_METHODS + ("contrastive",)
#: dense eigen-solver up to this many features, Lanczos (``eigsh``) above
DENSE_EIGEN_FEATURES = 500
#: the share of a topic's mean weight added to every entry of a contrastive start, so that
#: no entry starts at zero (a multiplicative update cannot move a zero)
CONTRAST_FILL = 0.1


def _mean(a) -> float:
    if isinstance(a, Scan):
        return a.mean_entry
    values = a.data if sp.issparse(a) else a
    return float(np.sum(values, dtype=np.float64)) / max(a.shape[0] * a.shape[1], 1)


def initial_factors(X, Y, n_components: int, method: str, rng: np.random.Generator,
                    dtype):
    """Return ``(basis, codes_x, codes_y)``; ``codes_y`` is ``None`` without ``Y``.

    ``X`` and ``Y`` are matrices or scans of them (only their shapes and mean
    entries are used).

    ``"uniform"`` is the authors' initialisation: every entry U[0, 1).
    ``"random"`` scales half-normal draws so that ``codes @ basis`` matches the
    data's mean (as scikit-learn's ``init="random"``), separately for target
    and background codes.
    """
    n_features = X.shape[1]
    k = n_components
    if method == "uniform":
        basis = rng.random((k, n_features))
        cx = rng.random((X.shape[0], k))
        cy = rng.random((Y.shape[0], k)) if Y is not None else None
    elif method == "random":
        # floors at the working dtype's tiny (float64's is 0 in float32); an
        # all-zero target takes its scale from the background
        tiny = float(np.finfo(np.float32 if "float32" in str(dtype) else np.float64).tiny)
        mean_x = _mean(X)
        if not mean_x > 0 and Y is not None:
            mean_x = _mean(Y)
        avg = np.sqrt(max(mean_x, tiny) / k)
        basis = avg * np.abs(rng.standard_normal((k, n_features)))
        cx = avg * np.abs(rng.standard_normal((X.shape[0], k)))
        cy = None
        if Y is not None:
            avg_y = max(_mean(Y), tiny) / (k * avg)
            cy = avg_y * np.abs(rng.standard_normal((Y.shape[0], k)))
    else:  # pragma: no cover - validated at the boundary
        raise ValueError(f"unknown init {method!r}")
    cast = lambda a: None if a is None else np.ascontiguousarray(a, dtype=dtype)  # noqa: E731
    return cast(basis), cast(cx), cast(cy)


def codes_for_basis(X, basis: np.ndarray) -> np.ndarray:
    """Deterministic starting codes for a fixed basis (used by ``transform``):
    each cell's mass split evenly over the topics, ``c_ik = sum_j x_ij /
    (K * sum_j b_kj)``."""
    k = basis.shape[0]
    if is_torch(basis):   # the same expression on the basis's device
        rowsum = X.row_sums() if is_torch_sparse(X) else X.sum(dim=1, dtype=torch_dtype(
            np.float64))
        bsum = basis.sum(dim=1, dtype=rowsum.dtype)
        bsum[bsum <= 0] = 1.0
        return (rowsum[:, None] / (k * bsum[None, :])).to(basis.dtype).contiguous()
    rowsum = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    bsum = basis.sum(axis=1, dtype=np.float64)
    bsum[bsum <= 0] = 1.0
    codes = rowsum[:, None] / (k * bsum[None, :])
    return np.ascontiguousarray(codes, dtype=basis.dtype)


def contrastive_basis(X, Y, n_components: int, weight: float, loss: str, shared=None):
    """Starting topics from the relaxation of the contrast (``init="contrastive"``).

    ``X`` and ``Y`` are host matrices (numpy or scipy sparse; a sample of the
    cells is enough), ``weight`` the contrast weight for them (the fit's raw
    alpha rescaled to the sample's numbers of cells) and ``shared`` the fixed
    shared topics (rows) or None.

    Without the constraints, the squared-error objective with orthonormal
    topics ``B`` and the codes that are best for them is
    ``const - tr(B M B^T)``, ``M = X^T X - weight Y^T Y`` computed on the
    part of the data outside the span of the shared topics: its minimisers
    are the top eigenvectors of ``M``, as the top singular vectors are for
    NMF.  Each eigenvector ``u`` is split into its positive and negative
    parts, and the part with the larger product of norms with the matching
    part of the target's scores ``X u`` is kept (the sign rule of NNDSVD,
    Boutsidis and Gallopoulos 2008); every entry is raised by
    :data:`CONTRAST_FILL` times the topic's mean and the row scaled to unit
    sum.  For the Poisson loss the same is done on the square roots of the
    counts (which makes the noise about even across entries); since
    ``||sqrt(A)||^2`` is the total count, the relative alpha carries over
    unchanged.  Deterministic: the Lanczos start vector is fixed.  Returns a
    ``(n_components, n_features)`` float64 array."""
    from scipy.linalg import eigh
    from scipy.sparse.linalg import LinearOperator, eigsh

    def host(a):
        a = a.astype(np.float64) if sp.issparse(a) else np.asarray(a, dtype=np.float64)
        if loss == "frobenius":
            return a
        if sp.issparse(a):
            a = a.tocsr(copy=True)
            a.data = np.sqrt(np.maximum(a.data, 0.0))
            return a
        return np.sqrt(np.maximum(a, 0.0))

    Xh, Yh = host(X), host(Y)
    n_features = Xh.shape[1]
    q = None
    if shared is not None and len(shared):
        g = np.asarray(shared, dtype=np.float64)
        q, _ = np.linalg.qr((g if loss == "frobenius" else np.sqrt(g)).T)

    def project(v):
        return v if q is None else v - q @ (q.T @ v)

    def contrast(v):
        v = project(v)
        return project(Xh.T @ (Xh @ v) - weight * (Yh.T @ (Yh @ v)))

    k = n_components
    if n_features <= max(DENSE_EIGEN_FEATURES, k + 1):
        # dense arithmetic whatever the input's format, so that sparse and dense data give
        # the same start also where eigenvalues are close (their vectors are then
        # sensitive to rounding)
        Xh, Yh = (a.toarray() if sp.issparse(a) else a for a in (Xh, Yh))
        m = contrast(np.eye(n_features))
        values, vectors = eigh((m + m.T) / 2.0)
    else:
        op = LinearOperator((n_features, n_features), matvec=contrast, matmat=contrast,
                            dtype=np.float64)
        v0 = np.random.default_rng(0).standard_normal(n_features)
        values, vectors = eigsh(op, k=k, which="LA", v0=v0)
    vectors = vectors[:, np.argsort(values)[::-1][:k]]
    scores = Xh @ project(vectors)
    basis = np.empty((k, n_features))
    for j in range(k):
        u, t = vectors[:, j], scores[:, j]
        pos = np.linalg.norm(np.maximum(u, 0)) * np.linalg.norm(np.maximum(t, 0))
        neg = np.linalg.norm(np.maximum(-u, 0)) * np.linalg.norm(np.maximum(-t, 0))
        if abs(pos - neg) <= 1e-9 * max(pos, neg):
            # a tie up to rounding: the sign of the largest entry decides, so that data in
            # another format (other rounding) start alike
            flip = u[np.argmax(np.abs(u))] < 0
        else:
            flip = neg > pos
        b = np.maximum(-u if flip else u, 0.0)
        if not b.sum() > 0:       # no direction at all: an even topic
            b = np.ones(n_features)
        b = b / b.sum()
        b = b + CONTRAST_FILL * b.mean()
        basis[j] = b / b.sum()
    return basis
