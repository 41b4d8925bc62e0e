"""How many shared topics: the number of programs of the background, counted from its data.

A bcNMF fit with ``n_shared="auto"`` fits as many shared topics as the background has
*programs*: independent non-negative patterns (cell types, states, a baseline profile) that
stand out from the measurement noise.  :func:`shared_count` counts them on a sample of
background cells (at most :data:`MAX_ROWS`, chosen by :func:`sample_rows`).

The criterion in plain words
----------------------------
1. **Put the noise on one scale.**  Squared error (``"frobenius"``): the data as they are
   (not centred, so that a baseline profile counts as a program like any other).  Poisson
   (``"kullback-leibler"``): the Pearson residuals of the simplest count model, in which every
   cell has the same expression profile scaled by its total (``E = rowsum x colsum / total``,
   residual ``(Y - E) / sqrt(E)``; features and cells without counts dropped).  Poisson noise
   then has variance about 1 everywhere, and the mean profile this removes is one program,
   added back in step 5.  At most :data:`MAX_FEATURES` features are kept: those of largest
   variance (of the residuals, for Poisson).
2. **Measure the patterns.**  The singular values of that matrix, largest first: the
   ``j``-th measures how much of the data the ``j``-th pattern explains.
3. **Measure the noise.**  Remove the patterns accepted so far and give every entry of the
   remainder a random sign.  Random signs keep the size of every entry, so cells or features
   that are noisier than others (uneven library sizes, overdispersed genes, variance that
   depends on the cell type) stay as noisy, but they destroy every pattern.  The largest
   singular value of the sign-flipped remainder is the noise level: the largest value noise
   of this data reaches by chance.  (After removing ``k`` patterns it is scaled up slightly,
   :func:`deflation_factor`, for the noise removed along with them.)
4. **Count the patterns clearly above the noise.**  A pattern counts when its singular value
   exceeds the noise level times ``lambda*(beta) / (1 + sqrt(beta))``, with ``beta`` the short
   side over the long side of the matrix (:func:`optimal_threshold_ratio`: 1.155 for a square
   matrix, 1.16 for 2000 x 3000, 1.20 for 2000 x 200, 1.24 for 2000 x 77, approaching
   ``sqrt(2)`` for very thin matrices).  That factor is not tuned: it is Gavish and Donoho's
   (2014) optimal hard threshold, above which keeping a pattern makes the estimate of the
   noise-free data better and below which it makes it worse.  Patterns are tested largest
   first and counting stops at the first one below the threshold.  Whenever patterns were
   accepted, they are removed and the noise level is measured again (strong programs inflate
   the noise level of a remainder that still holds them and would hide weaker ones), until no
   new pattern passes.
5. **Count = number of patterns** (squared error), or **number of patterns + 1** (Poisson,
   for the mean profile of step 1), at least 1 and at most ``max_count``.

Why not the textbook recipe
---------------------------
Horn's parallel analysis (every feature permuted across cells, the data's ``j``-th singular
value compared with the permuted data's) was measured first and failed on planted data:

- permuting raw counts mixes cells of different library sizes, which makes the permuted data
  noisier than the data's own noise (planted counts of 1000 x 2000: a null level of 86
  against the data's own noise edge of 76, so weak programs were missed);
- strong programs inflate the permuted data's noise level too ("shadowing", Dobriban and Owen
  2019); removing accepted patterns first (deflation) answers that;
- with the bare noise level as threshold every test sits at the edge of the noise spectrum,
  where the data's largest noise singular values and the null's differ by less than 1 %:
  pure Poisson noise gave 3 programs instead of 1 in 2 of 4 draws, planted data one too many
  in about half the draws; comparing each index with the null's value at the same index
  (Horn's original) over-counted more (a weak 6-program set gave 7 to 10).

The method is deflated parallel analysis with random sign flips (Hong, Sheng and Dobriban,
"Selecting the number of components in PCA via random signflips"; Dobriban and Owen,
"Deterministic parallel analysis", JRSS-B 2019) with Gavish and Donoho's threshold in place of
the bare noise level, in the spirit of Dobriban and Owen's DDPA+.

What it was designed and validated on
-------------------------------------
Designed on planted backgrounds: Poisson counts ``lib_i * sum_k w_ik P_k`` with 1, 3, 6 or 10
programs on partly overlapping gene sets, mixed (Dirichlet) or one-program-per-cell
memberships, log-normal library sizes, and Gaussian noise around a non-negative ``W H``.
Validated (``benchmarks/shared_count.py``) on fresh draws at three signal strengths, on the
same counts log-normalised with squared error, on the backgrounds of
:func:`bcnmf.datasets.make_contrastive_counts` (5 classes; 5 found for beta 4, 8 and 16) and
:func:`bcnmf.datasets.make_cell_type_counts` (6 cell types, negative binomial counts; 6 found
on counts).

Known limits:

- Programs that are detectable but weak are not counted: a program reaches the threshold at
  about 1.7 to 1.8 times the smallest signal that can be told from noise at all.  With such
  programs the count drops (10 planted programs at 1.4 times that limit: 3 to 7), to 1 when
  every program is that weak.
- After ``normalize_log1p`` the library size leaves a pattern of its own (the log of a
  normalised count depends on the depth), so log-normalised data usually show one pattern
  more than the planted programs (pure noise: 2).  At low counts the log also weakens
  programs next to the noise: 10 programs counted exactly on the counts gave 7 or 8 after
  ``normalize_log1p``.
- Data without a noise floor, whose structure decays slowly over many patterns (images of
  handwritten digits and natural scenes: 40 patterns in a 150-image, 784-pixel background),
  have no "number of programs": the count grows with the sample, up to ``max_count``.
- A program that lives only in low-variance features beyond the :data:`MAX_FEATURES` kept is
  not seen.

Cost: one truncated SVD of the sample (12 singular values, more only if all pass) and, per
round (usually 2 or 3), the largest singular value of :data:`N_DRAWS` sign-flipped
remainders; 0.3 s for 1000 x 2000, 1.6 s for 2000 x 3000 on one core.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds
from threadpoolctl import ThreadpoolController

__all__ = ["MAX_ROWS", "MAX_FEATURES", "N_DRAWS", "LOSSES", "SharedCount", "sample_rows",
           "shared_count", "optimal_threshold_ratio", "deflation_factor"]

#: the most background rows (cells) the count reads; :func:`sample_rows` picks them
MAX_ROWS = 2000
#: the most features the count keeps (those of largest variance, see the module docstring)
MAX_FEATURES = 4000
#: sign-flip draws per deflation round; the noise level is their largest singular value.
#: One is enough: the largest singular value of a sign-flipped remainder varies by about
#: 0.5 % between draws, the threshold sits at least 15 % above it
N_DRAWS = 1
#: singular values computed first; twice as many while all of them pass
FIRST_SVD = 12
#: the losses :func:`shared_count` knows
LOSSES = ("frobenius", "kullback-leibler")

_BLAS = []   # the threadpoolctl controller, made on first use

METHOD = "deflated sign-flip parallel analysis, Gavish-Donoho threshold"
#: dense SVD below this many entries (or when the matrix is narrow next to the components)
_DENSE_ENTRIES = 200_000


@dataclass(frozen=True, eq=False)
class SharedCount:
    """The result of :func:`shared_count`.

    Attributes
    ----------
    count : int
        The number of shared topics, ``1 <= count <= max_count``.
    components : int
        Patterns above the threshold (before the cap); ``count`` is ``components`` for
        squared error and ``components + 1`` for Poisson, capped at ``max_count``.
    loss : str
    method : str
    singular_values : ndarray of shape (m,)
        The largest singular values of the transformed sample, largest first.
    thresholds : ndarray of shape (m,)
        The threshold each singular value was compared with (the last round's threshold past
        the first value below it).
    noise_levels : ndarray of shape (rounds,)
        The noise level of each round: the largest singular value of the sign-flipped
        remainder times :func:`deflation_factor`.
    deflations : ndarray of shape (rounds,)
        How many patterns were removed before each round's noise level was measured.
    ratio : float
        Threshold over noise level in the first round, :func:`optimal_threshold_ratio` of the
        analysed shape (a round after removing ``k`` patterns uses the shape less ``k`` on
        each side).
    shape : tuple of int
        ``(cells, features)`` analysed, after dropping empty (Poisson) or constant (squared
        error) features and keeping at most :data:`MAX_FEATURES`.
    max_count : int
    """

    count: int
    components: int
    loss: str
    method: str
    singular_values: np.ndarray
    thresholds: np.ndarray
    noise_levels: np.ndarray
    deflations: np.ndarray
    ratio: float
    shape: tuple
    max_count: int

    def __repr__(self):
        return (f"SharedCount(count={self.count}, components={self.components}, "
                f"loss={self.loss!r}, shape={self.shape}, max_count={self.max_count})")


def _check_seed(random_state):
    if random_state is None:
        return 0
    if isinstance(random_state, bool) or not isinstance(random_state, Integral) \
            or random_state < 0:
        raise ValueError(f"random_state must be an int >= 0 or None, got {random_state!r}.")
    return int(random_state)


def sample_rows(n_rows, random_state=0):
    """The rows :func:`shared_count` reads out of ``n_rows``: all of them up to
    :data:`MAX_ROWS`, else :data:`MAX_ROWS` rows drawn without replacement from
    ``numpy.random.default_rng(random_state)``.  Sorted ``int64`` indices, the same for the
    same ``(n_rows, random_state)`` on every engine."""
    if isinstance(n_rows, bool) or not isinstance(n_rows, Integral) or n_rows < 0:
        raise ValueError(f"n_rows must be an int >= 0, got {n_rows!r}.")
    n_rows = int(n_rows)
    if n_rows <= MAX_ROWS:
        return np.arange(n_rows, dtype=np.int64)
    rng = np.random.default_rng(_check_seed(random_state))
    return np.sort(rng.choice(n_rows, MAX_ROWS, replace=False)).astype(np.int64)


def optimal_threshold_ratio(n_rows, n_cols):
    """Gavish and Donoho's (2014) optimal hard threshold for the singular values of an
    ``n_rows x n_cols`` matrix with white noise, divided by the noise's largest singular value
    (the bulk edge ``sqrt(n_rows) + sqrt(n_cols)`` times the noise level): ``lambda*(beta) /
    (1 + sqrt(beta))`` with ``beta = min / max`` and ``lambda*(beta) = sqrt(2 (beta + 1) +
    8 beta / (beta + 1 + sqrt(beta^2 + 14 beta + 1)))``.  4 / sqrt(3) / 2 = 1.155 for a square
    matrix, 1.10 to 1.16 for others."""
    b = min(n_rows, n_cols) / max(n_rows, n_cols)
    lam = np.sqrt(2.0 * (b + 1.0) + 8.0 * b / (b + 1.0 + np.sqrt(b * b + 14.0 * b + 1.0)))
    return float(lam / (1.0 + np.sqrt(b)))


# ------------------------------------------------------------------------------------------
# Input
# ------------------------------------------------------------------------------------------


def _check_sample(sample):
    if sp.issparse(sample):
        if sample.ndim != 2:
            raise ValueError(f"sample must be 2-D, got shape {sample.shape}.")
        A = sp.csr_matrix(sample, dtype=np.float64)
        if not A.has_canonical_format:   # summed on a copy: the caller's matrix is not touched
            A = A.copy()
            A.sum_duplicates()
        values = A.data
    else:
        arr = np.asarray(sample)
        if arr.ndim != 2:
            raise ValueError(f"sample must be a 2-D array (cells x features), got "
                             f"{arr.ndim} dimension(s).")
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) \
                or np.issubdtype(arr.dtype, np.complexfloating):
            raise ValueError(f"sample must be numeric, got dtype {arr.dtype}.")
        A = np.asarray(arr, dtype=np.float64)
        values = A
    if not np.isfinite(values).all():
        if np.isnan(values).any():
            raise ValueError("sample contains NaN; fill or drop missing entries before "
                             "counting shared topics.")
        raise ValueError("sample contains infinite values.")
    if values.size and values.min() < 0:
        raise ValueError(f"sample has negative entries (smallest {values.min():g}); NMF "
                         "needs non-negative data.")
    return A


def _check_args(loss, max_count):
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}.")
    if isinstance(max_count, bool) or not isinstance(max_count, Integral) or max_count < 1:
        raise ValueError(f"max_count must be an int >= 1, got {max_count!r}.")
    return int(max_count)


def _top_columns(score, limit):
    """Indices (sorted) of the ``limit`` largest scores, ties to the lower index."""
    if score.size <= limit:
        return np.arange(score.size)
    order = np.argsort(-score, kind="stable")[:limit]
    return np.sort(order)


def _weighted_column_squares(A, weights):
    """``sum_i weights_i * A_ij ** 2`` per column, without a full-size temporary."""
    if sp.issparse(A):
        return np.asarray(A.power(2).T @ weights).ravel()
    out = np.zeros(A.shape[1])
    for lo in range(0, A.shape[0], 256):
        block = A[lo:lo + 256]
        out += weights[lo:lo + 256] @ (block * block)
    return out


def _poisson_residuals(A):
    """Pearson residuals of the independence model as a dense matrix of at most
    :data:`MAX_FEATURES` columns (those of largest residual variance)."""
    rows = np.asarray(A.sum(axis=1)).ravel()
    if (rows <= 0).any():
        A = A[rows > 0]
        rows = rows[rows > 0]
    cols = np.asarray(A.sum(axis=0)).ravel()
    keep = np.flatnonzero(cols > 0)
    if A.shape[0] < 2 or keep.size < 2:
        return None
    total = rows.sum()
    # sum_i (y - E)^2 / E = total / c_j * sum_i y_ij^2 / r_i - c_j: no densifying
    score = total / cols[keep] * _weighted_column_squares(A, 1.0 / rows)[keep] - cols[keep]
    keep = keep[_top_columns(score, MAX_FEATURES)]
    Y = A[:, keep] if keep.size < A.shape[1] else A
    Y = Y.toarray() if sp.issparse(Y) else np.array(Y)
    E = np.outer(rows, cols[keep] / total)
    Y -= E
    Y /= np.sqrt(E)
    return Y


def _frobenius_matrix(A):
    """The data (not centred), at most :data:`MAX_FEATURES` columns: non-constant ones of
    largest variance."""
    n = A.shape[0]
    mean = np.asarray(A.sum(axis=0)).ravel() / n
    var = _weighted_column_squares(A, np.full(n, 1.0 / n)) - mean ** 2
    keep = np.flatnonzero(var > 1e-12 * np.maximum(mean, 1.0) ** 2)
    if n < 2 or keep.size < 2:
        return None
    keep = keep[_top_columns(var[keep], MAX_FEATURES)]
    Y = A[:, keep] if keep.size < A.shape[1] else A
    return Y.toarray() if sp.issparse(Y) else np.array(Y)


# ------------------------------------------------------------------------------------------
# Singular values
# ------------------------------------------------------------------------------------------


def _use_dense(R, k):
    return R.size <= _DENSE_ENTRIES or min(R.shape) <= 3 * k + 2


def _top_svd(R, k, rng):
    """The ``k`` largest singular triplets of ``R``, largest first (LAPACK when small, else
    ARPACK from a seeded start vector)."""
    if _use_dense(R, k):
        u, s, vt = np.linalg.svd(R, full_matrices=False)
        return u[:, :k], s[:k], vt[:k]
    v0 = rng.standard_normal(min(R.shape))
    u, s, vt = svds(R, k=k, v0=v0, tol=1e-4)
    order = np.argsort(s)[::-1]
    return u[:, order], s[order], vt[order]


def _largest_singular_value(R, rng):
    if _use_dense(R, 1):
        return float(np.linalg.svd(R, compute_uv=False)[0])
    v0 = rng.standard_normal(min(R.shape))
    return float(svds(R, k=1, v0=v0, tol=1e-4, return_singular_vectors=False)[0])


def deflation_factor(n_rows, n_cols, k):
    """Correction of the sign-flipped remainder's largest singular value after ``k`` patterns
    were removed: ``(1/sqrt(n-k) + 1/sqrt(F-k)) / (1/sqrt(n) + 1/sqrt(F))`` (1 at ``k = 0``).

    Removing ``k`` patterns also removes the noise of their ``k (n + F - k)`` degrees of
    freedom, so the remainder spread over ``n x F`` entries looks less noisy than the noise
    really is, while the data's next singular value is the largest of an ``(n - k) x (F - k)``
    noise.  Scaling the remainder's noise per entry back by ``nF / ((n - k)(F - k))`` and
    taking the edge of an ``(n - k) x (F - k)`` matrix gives this factor.  It matters only when
    ``k`` is not small next to ``n`` and ``F`` (0.2 % for 10 patterns in 2000 x 3000, 37 % for
    40 patterns in 2000 x 77): without it, pure noise deflated by many patterns would pass."""
    return float((1.0 / np.sqrt(n_rows - k) + 1.0 / np.sqrt(n_cols - k))
                 / (1.0 / np.sqrt(n_rows) + 1.0 / np.sqrt(n_cols)))


def _noise_level(R, u, s, vt, k, rng):
    """Largest singular value of the remainder ``R - (top k)`` with random signs (the largest
    over :data:`N_DRAWS` draws), times :func:`deflation_factor`."""
    D = R - (u[:, :k] * s[:k]) @ vt[:k] if k else R
    level = 0.0
    for _ in range(N_DRAWS):
        bits = np.frombuffer(rng.bytes((D.size + 7) // 8), dtype=np.uint8)
        flip = np.unpackbits(bits, count=D.size).reshape(D.shape).view(bool)
        N = np.negative(D, where=flip, out=D.copy())
        level = max(level, _largest_singular_value(N, rng))
    return level * deflation_factor(*R.shape, k)


def _count(R, need, k_svd, seed):
    """Steps 2 to 4 of the module docstring on the transformed matrix ``R`` with the
    ``k_svd`` largest singular values: ``(patterns, singular values, thresholds, noise
    levels, deflations)``; ``patterns == k_svd`` means more singular values are needed."""
    rng = np.random.default_rng(seed)
    u, s, vt = _top_svd(R, k_svd, rng)
    n, f = R.shape
    thresholds = np.full(s.size, np.nan)
    levels, deflations = [], []
    k = 0
    while True:
        level = _noise_level(R, u, s, vt, k, rng)
        levels.append(level)
        deflations.append(k)
        thr = level * optimal_threshold_ratio(n - k, f - k)
        j = k
        while j < min(s.size, need) and s[j] > thr:
            thresholds[j] = thr
            j += 1
        if j == k or j >= min(s.size, need):
            thresholds[j:] = thr
            return j, s, thresholds, levels, deflations
        k = j


# ------------------------------------------------------------------------------------------
# The count
# ------------------------------------------------------------------------------------------


def shared_count(sample, loss, max_count, random_state=0):
    """Count the programs of a background sample: the number of shared topics.

    Parameters
    ----------
    sample : ndarray or scipy.sparse matrix of shape (n_cells, n_features)
        Non-negative background data, cells as rows.  More than :data:`MAX_ROWS` rows are
        subsampled with :func:`sample_rows`.  Sparse input is densified only on the at most
        :data:`MAX_FEATURES` features kept.
    loss : {"frobenius", "kullback-leibler"}
        The fit's loss: squared error (log-normalised or other continuous non-negative data)
        or Poisson (raw counts).
    max_count : int
        The most shared topics to report, >= 1.
    random_state : int or None, default=0
        Seed of the row subsample, the sign flips and the SVD start vectors; the same seed
        gives the same count.

    Returns
    -------
    SharedCount
        ``count`` and the diagnostics (singular values, thresholds, noise levels).

    Raises
    ------
    ValueError
        For an unknown loss, ``max_count < 1``, a sample that is not 2-D, or that has NaN,
        infinite or negative entries.

    Notes
    -----
    The criterion is explained in the module docstring (:mod:`bcnmf.core.shared_count`).

    Examples
    --------
    Poisson counts of 300 cells, each a mixture of 4 programs over 500 genes:

    >>> import numpy as np
    >>> from bcnmf.core.shared_count import shared_count
    >>> rng = np.random.default_rng(0)
    >>> programs = rng.gamma(0.5, 1.0, (4, 500))
    >>> programs /= programs.sum(axis=1, keepdims=True)
    >>> weights = rng.dirichlet(np.ones(4), 300)
    >>> Y = rng.poisson(2000.0 * weights @ programs).astype(float)
    >>> result = shared_count(Y, "kullback-leibler", max_count=20)
    >>> result.count
    4
    >>> shared_count(Y, "frobenius", max_count=20).count
    4
    >>> shared_count(rng.poisson(5.0, (300, 500)).astype(float), "kullback-leibler", 20).count
    1
    """
    max_count = _check_args(loss, max_count)
    seed = _check_seed(random_state)
    A = _check_sample(sample)
    if A.shape[0] > MAX_ROWS:
        A = A[sample_rows(A.shape[0], seed)]
    offset = 1 if loss == "kullback-leibler" else 0

    def result(components, s=(), thr=(), levels=(), defl=(), ratio=float("nan"), shape=None):
        count = int(min(max(components + offset, 1), max_count))
        return SharedCount(
            count=count, components=int(components), loss=loss, method=METHOD,
            singular_values=np.asarray(s, dtype=np.float64),
            thresholds=np.asarray(thr, dtype=np.float64),
            noise_levels=np.asarray(levels, dtype=np.float64),
            deflations=np.asarray(defl, dtype=np.int64), ratio=float(ratio),
            shape=tuple(shape if shape is not None else (A.shape[0], 0)), max_count=max_count)

    if max_count == 1:
        return result(0)
    R = _poisson_residuals(A) if loss == "kullback-leibler" else _frobenius_matrix(A)
    if R is None:
        return result(0)
    n, f = R.shape
    # patterns needed to decide: count = components + offset is capped at max_count
    need = max_count - offset
    k_max = min(need + 2, min(n, f) - 1)
    if k_max < 1:
        return result(0, shape=R.shape)
    # singular values computed: a few past what can be accepted, more only when all pass.
    # BLAS on one thread: the SVDs are matrix-vector products, bound by memory, and a
    # multithreaded OpenBLAS on a busy machine was measured 10 s instead of 0.13 s here
    if not _BLAS:
        _BLAS.append(ThreadpoolController())
    with _BLAS[0].limit(limits=1, user_api="blas"):
        k_svd = min(FIRST_SVD, k_max)
        while True:
            k, s, thresholds, levels, deflations = _count(R, need, k_svd, seed)
            if k < k_svd or k >= need or k_svd == k_max:
                break
            k_svd = min(2 * k_svd, k_max)
    return result(k, s, thresholds, levels, deflations, optimal_threshold_ratio(n, f), R.shape)
