"""Input checks at the boundary: declared parameter constraints and data checks.

Every message names the offending argument and says what would be accepted.
Nothing here modifies the caller's arrays: conversions copy.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_array

from .core.init import INIT_METHODS
from .exceptions import InvalidParameterError

#: sparse formats accepted as they are; others (lil, dok) are converted to CSR
#: before their values are checked
ACCEPT_SPARSE = ("csr", "csc", "coo", "bsr", "dia")

LOSS_ALIASES = {
    "frobenius": "frobenius",
    "kullback-leibler": "kullback-leibler",
    "poisson": "kullback-leibler",
}


def _int_at_least(lo):
    def ok(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= lo
    return ok


def _real_in(lo, hi, lo_closed=True, hi_closed=True):
    def ok(v):
        if not isinstance(v, numbers.Real) or isinstance(v, bool) or not np.isfinite(v):
            return False
        return (v >= lo if lo_closed else v > lo) and (v <= hi if hi_closed else v < hi)
    return ok


def _one_of(*options):
    return lambda v: isinstance(v, str) and v in options


def _none_or(check):
    return lambda v: v is None or check(v)


def _random_state(v):
    return v is None or isinstance(v, (numbers.Integral, np.random.RandomState,
                                       np.random.Generator)) and not isinstance(v, bool)


#: name -> (predicate, what is accepted)
PARAMETER_CONSTRAINTS = {
    "n_components": (_none_or(_int_at_least(1)), "None or an int >= 1"),
    "alpha": (_real_in(0, np.inf, hi_closed=False), "a finite real >= 0"),
    "alpha_scale": (_none_or(_one_of("relative", "raw")), "None, 'relative' or 'raw'"),
    "beta_loss": (_one_of(*LOSS_ALIASES), "'frobenius', 'kullback-leibler' or 'poisson'"),
    "mode": (_one_of("stable", "reference"), "'stable' or 'reference'"),
    "init": (_none_or(_one_of(*INIT_METHODS)), "None, 'random' or 'uniform'"),
    "damping": (_none_or(_real_in(0, 1, lo_closed=False)), "None or a real in (0, 1]"),
    "smoothing": (_real_in(0, np.inf, hi_closed=False), "a finite real >= 0"),
    "max_iter": (_int_at_least(1), "an int >= 1"),
    "tol": (_real_in(0, np.inf, hi_closed=False), "a finite real >= 0"),
    "n_init": (_int_at_least(1), "an int >= 1"),
    "random_state": (_random_state, "None, an int, a numpy RandomState or Generator"),
    "transform_max_iter": (_int_at_least(1), "an int >= 1"),
    "verbose": (_int_at_least(0), "an int >= 0"),
    "block_size": (_none_or(_int_at_least(1)), "None or an int >= 1 (cells per block)"),
    "batch_size": (_int_at_least(1), "an int >= 1"),
    "forget_factor": (_real_in(0, 1), "a real in [0, 1]"),
    "fresh_restarts": (lambda v: isinstance(v, (bool, np.bool_)), "True or False"),
    "fresh_restarts_max_iter": (_int_at_least(1), "an int >= 1"),
    "max_no_improvement": (_none_or(_int_at_least(1)), "None or an int >= 1"),
}


def check_params(params: dict, owner: str = "BCNMF") -> None:
    """Raise :class:`InvalidParameterError` for the first bad parameter."""
    for name, value in params.items():
        check, accepted = PARAMETER_CONSTRAINTS[name]
        if not check(value):
            raise InvalidParameterError(
                f"The {name!r} parameter of {owner} must be {accepted}; got {value!r}.")


def reject_unsupported(A, name):
    """Clear errors for what is not a matrix of real numbers at all."""
    if A is None:
        raise ValueError(f"{name} is None; expected a 2-D array or sparse matrix "
                         "(cells x features).")
    if isinstance(A, (str, bytes)):
        raise TypeError(f"{name} is a string; expected a 2-D array or sparse matrix.")
    dtype = getattr(A, "dtype", None)
    if dtype is not None and np.issubdtype(np.dtype(dtype), np.complexfloating):
        raise ValueError(f"Complex data not supported: {name} has complex dtype {dtype}; "
                         "expected real, non-negative numbers.")


def as_supported_float(A):
    """float16 becomes float32 (numpy and sparse); other inputs are returned as is."""
    if getattr(A, "dtype", None) == np.float16:
        return A.astype(np.float32) if sp.issparse(A) else np.asarray(A, dtype=np.float32)
    return A


def converting(name: str, convert):
    """Run ``convert()`` and name ``name`` in a non-numeric conversion error."""
    try:
        return convert()
    except ValueError as err:
        if "could not convert" in str(err) or "invalid literal" in str(err):
            raise ValueError(f"{name} contains non-numeric values ({err}); expected a matrix "
                             "of non-negative numbers.") from None
        raise


def check_matrix(A, name: str, owner: str = "BCNMF"):
    """Validate one data matrix; return a float32/float64 ndarray or canonical CSR.

    Integer and boolean inputs become float64; float16 becomes float32.  Sparse
    input of any format becomes CSR; duplicates are summed on a copy.
    """
    reject_unsupported(A, name)
    A = as_supported_float(A)
    A = converting(name, lambda: check_array(
        A, accept_sparse=ACCEPT_SPARSE, dtype=[np.float64, np.float32], input_name=name,
        estimator=owner, ensure_min_samples=1, ensure_min_features=1))
    if sp.issparse(A):
        A = sp.csr_matrix(A)  # no copy when already CSR
        if not A.has_canonical_format:
            A = A.copy()
            A.sum_duplicates()
        values = A.data
    else:
        values = A
    if values.size and np.min(values) < 0:
        raise ValueError(f"Negative values in data passed to {owner} ({name}); bcNMF needs "
                         "non-negative data (counts, intensities, or log1p of them).")
    return A


def check_same_features(X, Y, x_names, y_names, owner: str = "BCNMF") -> None:
    """Target and background must describe the same features in the same order."""
    if X.shape[1] != Y.shape[1]:
        raise ValueError(
            f"X has {X.shape[1]} features but background has {Y.shape[1]}; {owner} needs "
            "the same features, in the same order, in both (arrays are cells x features).")
    if x_names is not None and y_names is not None and not np.array_equal(x_names, y_names):
        diff = np.flatnonzero(np.asarray(x_names) != np.asarray(y_names))
        first = diff[0]
        raise ValueError(
            f"Feature names of X and background differ at {diff.size} position(s), first at "
            f"column {first} ({x_names[first]!r} vs {y_names[first]!r}); reorder the "
            "background's columns to match X.")


def check_n_components(n_components, n_features: int, owner: str = "BCNMF") -> int:
    k = n_features if n_components is None else int(n_components)
    if k > n_features:
        raise ValueError(f"n_components={k} is larger than the number of features "
                         f"({n_features}); {owner} accepts 1 <= n_components <= n_features.")
    return k


def feature_names(A):
    """Column names of a pandas DataFrame, else None."""
    cols = getattr(A, "columns", None)
    if cols is None:
        return None
    names = np.asarray(cols, dtype=object)
    if not all(isinstance(c, str) for c in names):
        return None
    return names
