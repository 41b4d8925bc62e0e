"""Matching topics across fits: Hungarian matching on the cosine similarity of basis rows,
agreement between restarts, and the consensus of several restarts.

All functions take bases sample-major as the estimator stores them, ``(n_components,
n_features)`` (the paper's W transposed), and never modify their inputs.  Cosine similarity
is scale-free, so the gauge of the rows (unit L1 norm in stable mode, free in reference mode)
does not matter.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["cosine_similarity", "match_topics", "restart_agreement", "consensus_basis"]


def _as_basis(basis, name="basis"):
    b = np.asarray(basis, dtype=np.float64)
    if b.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_components x n_features); got shape {b.shape}.")
    if not np.all(np.isfinite(b)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return b


def _unit(b):
    norms = np.linalg.norm(b, axis=1, keepdims=True)
    return b / np.where(norms > 0, norms, 1.0)


def cosine_similarity(basis_a, basis_b) -> np.ndarray:
    """Cosine similarity of every row of ``basis_a`` with every row of ``basis_b``.

    Returns an array of shape ``(n_a, n_b)``; an all-zero row has similarity 0 with
    everything."""
    a = _as_basis(basis_a, "basis_a")
    b = _as_basis(basis_b, "basis_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"basis_a has {a.shape[1]} features and basis_b {b.shape[1]}; "
                         "topics can only be matched over the same features.")
    return _unit(a) @ _unit(b).T


def match_topics(basis_a, basis_b):
    """Match the topics of ``basis_b`` to those of ``basis_a`` (Hungarian algorithm).

    The assignment maximises the summed cosine similarity of matched rows
    (:func:`scipy.optimize.linear_sum_assignment`).

    Parameters
    ----------
    basis_a, basis_b : array-like of shape (n_components, n_features)
        Two bases with the same number of topics and features.

    Returns
    -------
    permutation : ndarray of int, shape (n_components,)
        Row ``permutation[k]`` of ``basis_b`` is matched to row ``k`` of ``basis_a``, so
        ``basis_b[permutation]`` is ``basis_b`` in the order of ``basis_a``.
    similarity : ndarray of shape (n_components,)
        Cosine similarity of each matched pair, in the order of ``basis_a``.

    Examples
    --------
    >>> import numpy as np
    >>> from bcnmf.matching import match_topics
    >>> a = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    >>> perm, sim = match_topics(a, a[[2, 0, 1]])
    >>> perm.tolist(), sim.round(3).tolist()
    ([1, 2, 0], [1.0, 1.0, 1.0])
    """
    c = cosine_similarity(basis_a, basis_b)
    if c.shape[0] != c.shape[1]:
        raise ValueError(f"basis_a has {c.shape[0]} topics and basis_b {c.shape[1]}; "
                         "match_topics needs the same number of topics.")
    rows, cols = linear_sum_assignment(-c)
    perm = np.empty(c.shape[0], dtype=np.intp)
    perm[rows] = cols
    return perm, c[np.arange(c.shape[0]), perm]


def _pairwise(bases):
    """Matrix of mean matched cosine similarities between every pair of bases."""
    n = len(bases)
    sim = np.ones((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            sim[i, j] = sim[j, i] = match_topics(bases[i], bases[j])[1].mean()
    return sim


def restart_agreement(bases) -> np.ndarray:
    """Mean, over the other restarts, of the mean cosine similarity of Hungarian-matched
    basis rows; one value per basis (1 for a single basis)."""
    bases = [_as_basis(b) for b in bases]
    n = len(bases)
    if n == 0:
        raise ValueError("restart_agreement needs at least one basis.")
    if n == 1:
        return np.ones(1)
    sim = _pairwise(bases)
    return (sim.sum(axis=1) - 1.0) / (n - 1)


def consensus_basis(bases, reference=None):
    """Consensus of several restarts: topics matched to a reference restart and averaged.

    Every basis is matched to the reference (:func:`match_topics`); the matched rows, each
    scaled to unit L1 norm, are averaged and the average is given the reference row's L1 norm
    (so the gauge of the reference is kept).  A topic's stability is the mean cosine similarity
    of its matched rows in the other restarts with the reference row.

    Parameters
    ----------
    bases : sequence of array-like of shape (n_components, n_features)
    reference : int, optional
        Index of the reference restart; default the medoid, the basis with the largest
        :func:`restart_agreement` (the first on ties).

    Returns
    -------
    basis : ndarray of shape (n_components, n_features)
        Consensus basis, in the topic order of the reference.
    stability : ndarray of shape (n_components,)
        Per-topic stability in [0, 1] (1 for a single basis).
    reference : int
        The reference used.

    Examples
    --------
    >>> import numpy as np
    >>> from bcnmf.matching import consensus_basis
    >>> b = np.random.default_rng(0).random((3, 5))
    >>> basis, stability, ref = consensus_basis([b, b[[1, 2, 0]], b[[2, 0, 1]]])
    >>> bool(np.allclose(basis, b)), stability.round(6).tolist(), ref
    (True, [1.0, 1.0, 1.0], 0)
    """
    bases = [_as_basis(b) for b in bases]
    if not bases:
        raise ValueError("consensus_basis needs at least one basis.")
    shape = bases[0].shape
    for i, b in enumerate(bases):
        if b.shape != shape:
            raise ValueError(f"bases[{i}] has shape {b.shape}, bases[0] has {shape}; all bases "
                             "must have the same shape.")
    n = len(bases)
    if reference is None:
        reference = int(np.argmax(restart_agreement(bases))) if n > 2 else 0
    reference = int(reference)
    if not 0 <= reference < n:
        raise ValueError(f"reference={reference} is not the index of one of the {n} bases.")
    ref = bases[reference]
    scale = np.abs(ref).sum(axis=1)
    total = np.zeros(shape)
    sims = []
    for i, b in enumerate(bases):
        perm, sim = match_topics(ref, b) if i != reference else (np.arange(shape[0]), None)
        rows = b[perm]
        l1 = np.abs(rows).sum(axis=1, keepdims=True)
        total += rows / np.where(l1 > 0, l1, 1.0)
        if sim is not None:
            sims.append(sim)
    basis = total / n * np.where(scale > 0, scale, 1.0)[:, None]
    stability = np.mean(sims, axis=0) if sims else np.ones(shape[0])
    return basis, np.clip(stability, 0.0, 1.0), reference
