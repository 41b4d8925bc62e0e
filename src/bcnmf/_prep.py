"""Input preparation shared by the AnnData tools (:mod:`bcnmf.tl`) and the command line:
aligning two feature sets by name, and refusing log-transformed input for the Poisson loss.

Functions of arrays and names only; nothing here reads files or imports anndata.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import scipy.sparse as sp

from .exceptions import FeatureAlignmentWarning

#: rows inspected by the log-transform fingerprints (enough to be sure, cheap on big data)
_FINGERPRINT_ROWS = 500


def _unique_names(names, what):
    names = np.array([str(n) for n in names], dtype=object)
    uniq, counts = np.unique(names.astype(str), return_counts=True)
    if np.any(counts > 1):
        dup = uniq[counts > 1]
        raise ValueError(
            f"The {what} feature names are not unique ({dup.size} repeated, e.g. "
            f"{str(dup[0])!r}); "
            "make them unique first (AnnData: adata.var_names_make_unique()).")
    return names


def _overlap_count(min_overlap):
    """``min_overlap`` -> function of the smaller feature count giving the minimum shared."""
    if isinstance(min_overlap, numbers.Integral) and not isinstance(min_overlap, bool) \
            and min_overlap >= 1:
        return lambda smaller: int(min_overlap)
    if isinstance(min_overlap, numbers.Real) and not isinstance(min_overlap, bool) \
            and 0 < min_overlap <= 1:
        return lambda smaller: int(np.ceil(min_overlap * smaller))
    raise ValueError(f"min_overlap must be a fraction in (0, 1] or an int >= 1 (a count); "
                     f"got {min_overlap!r}.")


def align_features(target_names, background_names, *, min_overlap=0.5, min_features=1):
    """Positions of the features shared by target and background, in the target's order.

    Parameters
    ----------
    target_names, background_names : sequence of str
        Feature names (unique within each).
    min_overlap : float in (0, 1] or int >= 1, default=0.5
        Smallest acceptable number of shared features: a fraction of the smaller of the two
        feature sets, or an absolute count.
    min_features : int, default=1
        Hard lower bound on the number of shared features (e.g. ``n_components``).

    Returns
    -------
    target_idx, background_idx : ndarray of int
        Column positions in the target and in the background of the shared features.
    names : ndarray of str
        The shared feature names (target order).

    Raises
    ------
    ValueError
        When no feature, or fewer than the accepted minimum, is shared.

    Warns
    -----
    FeatureAlignmentWarning
        When features present in only one of the two are dropped (says how many).

    Examples
    --------
    >>> t, b, names = align_features(["a", "b", "c"], ["c", "b", "a"])
    >>> t.tolist(), b.tolist(), names.tolist()
    ([0, 1, 2], [2, 1, 0], ['a', 'b', 'c'])
    """
    needed = _overlap_count(min_overlap)
    t = _unique_names(target_names, "target")
    b = _unique_names(background_names, "background")
    if t.size == 0 or b.size == 0:
        raise ValueError(f"Cannot align features: the target has {t.size} and the background "
                         f"{b.size}.")
    position = {name: i for i, name in enumerate(b)}
    t_idx = np.array([i for i, name in enumerate(t) if name in position], dtype=np.intp)
    names = t[t_idx]
    b_idx = np.array([position[name] for name in names], dtype=np.intp)
    n = names.size
    if n == 0:
        raise ValueError(
            f"Target and background share no feature names (target has {t.size}, e.g. "
            f"{t[0]!r}; background has {b.size}, e.g. {b[0]!r}); check that both use the same "
            "identifiers (gene symbols vs ids, case, version suffixes).")
    needed = max(needed(min(t.size, b.size)), int(min_features))
    if n < needed:
        raise ValueError(
            f"Target and background share only {n} feature(s) (target has {t.size}, background "
            f"{b.size}); at least {needed} are needed (min_overlap={min_overlap!r}, "
            f"n_components={min_features}). Check the feature identifiers, or lower "
            "min_overlap if so small an overlap is intended.")
    dropped_t, dropped_b = t.size - n, b.size - n
    if dropped_t or dropped_b:
        warnings.warn(
            f"Aligned target and background on their {n} shared features: dropped "
            f"{dropped_t} feature(s) found only in the target and {dropped_b} found only in "
            "the background.", FeatureAlignmentWarning, stacklevel=3)
    return t_idx, b_idx, names


def take_columns(A, idx):
    """``A[:, idx]``, or ``A`` itself (no copy) when ``idx`` selects every column in order."""
    idx = np.asarray(idx)
    if idx.size == A.shape[1] and np.array_equal(idx, np.arange(idx.size)):
        return A
    return A[:, idx]


def same_kind(X, Y):
    """Target and background as the same kind of matrix: both CSR if either is sparse."""
    if Y is not None and sp.issparse(X) != sp.issparse(Y):
        return sp.csr_matrix(X), sp.csr_matrix(Y)
    return X, Y


def _head_rows(A, n):
    A = A[:n]
    return A.toarray() if sp.issparse(A) else np.asarray(A)


def log_transform_evidence(A, *, log1p_recorded=False):
    """Why ``A`` looks log-transformed, as a phrase, or None when it does not.

    Fingerprints (checked on the first rows): values that are not whole numbers although
    ``expm1`` (or ``2**x - 1``) of them are; rows whose ``expm1`` sums are all equal
    (``normalize_total`` followed by ``log1p``); or scanpy's ``uns["log1p"]`` record
    (``log1p_recorded``).  Non-integer data without these fingerprints (intensities,
    normalised values) are not flagged.

    Examples
    --------
    >>> import numpy as np
    >>> counts = np.array([[0., 3., 10.], [1., 0., 2.]])
    >>> log_transform_evidence(counts) is None
    True
    >>> log_transform_evidence(np.log1p(counts))
    'its values are not whole numbers but expm1 of them are (log1p of counts)'
    """
    if log1p_recorded:
        return "it carries scanpy's log1p record (uns['log1p'])"
    block = _head_rows(A, _FINGERPRINT_ROWS).astype(np.float64, copy=False)
    values = block[block > 0]
    if values.size == 0 or np.all(values == np.round(values)):
        return None
    for inverse, undo, name in ((np.expm1, "expm1", "log1p"),
                                (lambda v: np.exp2(v) - 1, "2**x - 1", "log2(x + 1)")):
        with np.errstate(over="ignore"):
            back = inverse(values)
        if np.all(np.isfinite(back)) and np.allclose(back, np.round(back), rtol=1e-5,
                                                     atol=1e-4):
            return f"its values are not whole numbers but {undo} of them are ({name} of counts)"
    with np.errstate(over="ignore"):
        sums = np.expm1(block).sum(axis=1)
    sums = sums[sums > 0]
    if sums.size >= 3 and np.isfinite(sums).all() and np.ptp(sums) <= 1e-3 * sums.max():
        return (f"expm1 of every cell sums to {sums[0]:.6g} (normalize_total followed by "
                "log1p)")
    return None


def check_poisson_input(A, name, *, log1p_recorded=False, hint=""):
    """Refuse obviously log-transformed data for the Poisson loss with a clear message."""
    reason = log_transform_evidence(A, log1p_recorded=log1p_recorded)
    if reason is not None:
        raise ValueError(
            f"{name} looks log-transformed: {reason}. The Poisson loss models raw counts"
            f"{hint}; or use beta_loss='frobenius' for log-normalised data.")
