"""Initial factors.  Random draws are made on the host with numpy."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .backend import is_torch, is_torch_sparse, torch_dtype
from .source import Scan

INIT_METHODS = ("random", "uniform")


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
