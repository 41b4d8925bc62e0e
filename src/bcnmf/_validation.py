"""Input checks at the boundary: declared parameter constraints and data checks.

Every message names the offending argument and says what would be accepted.
Nothing here modifies the caller's arrays: conversions copy.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_array

from .core.init import CONTRAST_INIT_METHODS, INIT_METHODS
from .core.torch_arrays import loaded_torch
from .exceptions import InvalidParameterError, TransformedDataWarning

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


def _device(v):
    torch = loaded_torch()   # a torch.device exists only once torch is imported
    return v is None or isinstance(v, str) or (torch is not None and isinstance(v, torch.device))


#: ``alpha`` of the estimators that choose it (``"auto"``) or take a number
INIT_OR_CONTRASTIVE = (_none_or(_one_of(*CONTRAST_INIT_METHODS)),
                       "None, 'contrastive', 'random' or 'uniform'")
ALPHA_OR_AUTO = (lambda v: v == "auto" if isinstance(v, str)
                 else _real_in(0, np.inf, hi_closed=False)(v),
                 "'auto' or a finite real >= 0")

#: ``n_components`` of the estimators that can choose it (``"auto"``)
K_OR_AUTO = (lambda v: v == "auto" if isinstance(v, str) else _none_or(_int_at_least(1))(v),
             "None, 'auto' or an int >= 1")

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
    "n_shared": (lambda v: v == "auto" if isinstance(v, str) else _int_at_least(0)(v),
                 "'auto' or an int >= 0"),
    "max_iter": (_int_at_least(1), "an int >= 1"),
    "tol": (_real_in(0, np.inf, hi_closed=False), "a finite real >= 0"),
    "n_init": (_int_at_least(1), "an int >= 1"),
    "consensus": (lambda v: isinstance(v, (bool, np.bool_)), "True or False"),
    "random_state": (_random_state, "None, an int, a numpy RandomState or Generator"),
    "transform_max_iter": (_int_at_least(1), "an int >= 1"),
    "block_size": (_none_or(_int_at_least(1)), "None or an int >= 1 (cells per block)"),
    "batch_size": (_int_at_least(1), "an int >= 1"),
    "forget_factor": (_real_in(0, 1), "a real in [0, 1]"),
    "fresh_restarts": (lambda v: isinstance(v, (bool, np.bool_)), "True or False"),
    "fresh_restarts_max_iter": (_int_at_least(1), "an int >= 1"),
    "max_no_improvement": (_none_or(_int_at_least(1)), "None or an int >= 1"),
    "penalty": (_real_in(0, np.inf, hi_closed=False), "a finite real >= 0"),
    "weights": (lambda v: v is None or (v == "balanced" if isinstance(v, str)
                                        else np.ndim(v) == 1),
                "'balanced', None or one positive number per modality"),
    "device": (_device, "None, 'cpu', 'cuda', 'cuda:N' or a torch.device"),
    "engine": (_none_or(_one_of("local", "dask")), "None, 'local' or 'dask'"),
    "progress": (lambda v: isinstance(v, (bool, np.bool_)), "True or False"),
}


def constraints(*names) -> dict:
    """The constraints of the parameters ``names`` (an estimator class's
    ``_parameter_constraints`` is built from them)."""
    return {name: PARAMETER_CONSTRAINTS[name] for name in names}


def check_params(params: dict, owner: str = "BCNMF", table: dict | None = None) -> None:
    """Raise :class:`InvalidParameterError` for the first bad parameter, by
    the constraints of ``table`` (default: the library's)."""
    table = PARAMETER_CONSTRAINTS if table is None else table
    for name, value in params.items():
        check, accepted = table[name]
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
    except OverflowError as err:  # e.g. a Python int beyond float64 in an object array
        raise ValueError(f"{name} contains a number too large for float64 ({err}); expected "
                         "a matrix of finite, non-negative numbers.") from None
    except ValueError as err:
        if "could not convert" in str(err) or "invalid literal" in str(err):
            raise ValueError(f"{name} contains non-numeric values ({err}); expected a matrix "
                             "of non-negative numbers.") from None
        raise


def _positions(A, flat):
    """(row, column) of entries ``flat`` of a dense array or of ``A.data`` (CSR)."""
    if sp.issparse(A):
        rows = np.searchsorted(A.indptr, flat, side="right") - 1
        return rows, A.indices[flat]
    return np.unravel_index(flat, A.shape)


def check_finite(A, name: str, owner: str = "BCNMF", allow_nan: bool = False) -> None:
    """NaN and Inf are rejected with their count and first position.

    With ``allow_nan`` (dense input to :class:`~bcnmf.BCNMF` and
    :func:`~bcnmf.factorize`, which fit around missing values), NaN marks a
    missing entry and only Inf is rejected; sparse input with NaN is refused
    with the alternatives, and so is a matrix without any observed entry.
    Elsewhere the NaN message says how many there are, where, how many rows
    (cells) and columns (features) are entirely missing, and what to do.
    """
    values = A.data if sp.issparse(A) else A
    with np.errstate(over="ignore", invalid="ignore"):
        total = values.sum(dtype=np.float64)
    if values.size == 0 or np.isfinite(total):
        return  # fast path: a finite sum means no NaN and no Inf
    for bad, what in ((np.isnan(values), "NaN"), (np.isinf(values), "infinity")):
        flat = np.flatnonzero(bad)
        if flat.size == 0:
            continue
        rows, cols = _positions(A, flat)
        where = (f"{flat.size} {what} value(s), the first at row {rows[0]}, column "
                 f"{cols[0]}")
        if what == "NaN" and allow_nan:
            if sp.issparse(A):
                raise ValueError(
                    f"Input {name} is sparse and contains NaN: {where}. {owner} fits around "
                    "missing values (NaN) in dense input only; pass a dense array "
                    f"({name}.toarray(), NaN marking the missing entries) if it fits in "
                    "memory, or impute them, or drop the affected cells or features.")
            if flat.size == values.size:
                raise ValueError(f"Input {name} has no observed values: all {flat.size} "
                                 "entries are missing (NaN or masked).")
            continue
        if what == "NaN":
            full_rows = int(np.sum(np.bincount(rows, minlength=A.shape[0]) == A.shape[1]))
            full_cols = int(np.sum(np.bincount(cols, minlength=A.shape[1]) == A.shape[0]))
            if full_rows or full_cols:
                where += (f"; {full_rows} row(s) and {full_cols} column(s) are entirely "
                          "missing")
            raise ValueError(
                f"Input {name} contains NaN: {where}. {owner} does not support missing "
                "values; impute them, or drop the affected cells or features (BCNMF and "
                "factorize fit around NaN in dense input).")
        raise ValueError(
            f"Input {name} contains infinity: {where}. {owner} needs finite, non-negative "
            "values.")


def check_mask(mask, A, name: str, owner: str = "BCNMF") -> np.ndarray:
    """An observation mask (True = observed) of ``A``'s shape, as a bool array."""
    mname = "mask" if name == "X" else f"{name}_mask"
    m = np.asarray(mask)
    if m.shape != A.shape:
        raise ValueError(f"{mname} must have the shape of {name}, {A.shape}; got {m.shape}.")
    if m.dtype != np.bool_:
        raise ValueError(f"{mname} must be a boolean array (True = observed, False = "
                         f"missing); got dtype {m.dtype}.")
    if sp.issparse(A):
        raise ValueError(f"{mname} was given with a sparse {name}; {owner} fits around missing "
                         f"values in dense input only: pass {name}.toarray() if it fits in "
                         "memory, or impute the missing entries.")
    return m


def check_matrix(A, name: str, owner: str = "BCNMF", allow_nan: bool = False, mask=None):
    """Validate one data matrix; return a float32/float64 ndarray or canonical CSR.

    Integer and boolean inputs become float64; float16 becomes float32.  Sparse
    input of any format becomes CSR; duplicates are summed on a copy.  With
    ``allow_nan``, NaN marks missing entries of dense input; ``mask`` (True =
    observed) marks more, on a copy with NaN there (values under a False
    mask are ignored, whatever they are).
    """
    reject_unsupported(A, name)
    A = as_supported_float(A)
    A = converting(name, lambda: check_array(
        A, accept_sparse=ACCEPT_SPARSE, dtype=[np.float64, np.float32], input_name=name,
        estimator=owner, ensure_min_samples=1, ensure_min_features=1,
        ensure_all_finite=False))
    if mask is not None:
        A = np.where(check_mask(mask, A, name, owner), A, np.nan).astype(A.dtype, copy=False)
    if sp.issparse(A):
        A = sp.csr_matrix(A)  # no copy when already CSR
        if not A.has_canonical_format:
            A = A.copy()
            A.sum_duplicates()
        values = A.data
    else:
        values = A
    check_finite(A, name, owner, allow_nan)
    if values.size and np.nanmin(values) < 0:
        flat = np.flatnonzero(values < 0)
        low = flat[np.argmin(values.ravel()[flat])]
        rows, cols = _positions(A, np.array([low]))
        raise ValueError(
            f"Negative values in data passed to {owner} ({name}); bcNMF needs non-negative "
            f"data (counts, intensities, or log1p of them): {flat.size} negative value(s), "
            f"the smallest {values.ravel()[low]:.4g} at row {rows[0]}, column {cols[0]}.")
    return A


def check_torch_matrix(A, name: str, owner: str = "BCNMF"):
    """Validate a torch matrix (dense tensor, sparse COO/CSR/CSC tensor or
    :class:`~bcnmf.core._torch_sparse.TorchCSR`) on its own device.

    Returns a contiguous float32/float64 dense tensor or a canonical TorchCSR,
    with the conversions of :func:`check_matrix` (integers and booleans become
    float64, float16/bfloat16 float32).  The values are checked on a host copy
    with the numpy checks, so the messages are the same (for CUDA tensors this
    copies the data to the host once).
    """
    from .core._torch_sparse import TorchCSR
    from .core.backend import to_numpy, torch_module

    torch = torch_module()
    if not isinstance(A, TorchCSR):
        if A.dim() != 2:
            raise ValueError(f"{name} must be 2-D (cells x features); got a tensor of shape "
                             f"{tuple(A.shape)}.")
        if A.is_complex():
            raise ValueError(f"Complex data not supported: {name} has complex dtype "
                             f"{A.dtype}; expected real, non-negative numbers.")
        A = TorchCSR.from_torch(A.detach()) if A.layout != torch.strided else A.detach()
    if A.shape[0] < 1 or A.shape[1] < 1:
        raise ValueError(f"{name} has shape {tuple(A.shape)}; {owner} needs at least one "
                         "cell and one feature.")
    if A.dtype in (torch.float16, torch.bfloat16):
        A = A.to(dtype=torch.float32)
    elif A.dtype not in (torch.float32, torch.float64):
        A = A.to(dtype=torch.float64)
    if not isinstance(A, TorchCSR):
        A = A.contiguous()
    check_matrix(to_numpy(A), name, owner)
    return A


def check_same_features(X, Y, x_names, y_names, owner: str = "BCNMF") -> None:
    """Target and background must describe the same features in the same order."""
    if X.shape[1] != Y.shape[1]:
        hint = ""
        if Y.shape[0] == X.shape[1]:
            hint = (f" The background has {Y.shape[0]} rows, as many as X has features: if it "
                    "is features x cells, pass its transpose.")
        elif X.shape[0] == Y.shape[1]:
            hint = (f" X has {X.shape[0]} rows, as many as the background has features: if X "
                    "is features x cells, pass its transpose.")
        raise ValueError(
            f"X has {X.shape[1]} features but background has {Y.shape[1]}; {owner} needs "
            "the same features, in the same order, in both (arrays are cells x features)."
            + hint)
    if x_names is not None and y_names is not None and not np.array_equal(x_names, y_names):
        diff = np.flatnonzero(np.asarray(x_names) != np.asarray(y_names))
        first = diff[0]
        missing = [n for n in x_names if n not in set(y_names)]
        if missing:
            fix = (f"{len(missing)} feature(s) of X are not in the background (e.g. "
                   f"{missing[0]!r}); select the shared features in both, in the same order")
        else:
            fix = ("they are the same features in another order; reorder the background's "
                   "columns to match X (background[X.columns])")
        raise ValueError(
            f"Feature names of X and background differ at {diff.size} position(s), first at "
            f"column {first} ({x_names[first]!r} vs {y_names[first]!r}): {fix}.")


def _labels(A, axis: str):
    """String labels of a DataFrame's ``columns`` or ``index`` as a set, else None."""
    labels = getattr(A, axis, None)
    if labels is None or not hasattr(A, "iloc"):
        return None
    labels = list(labels)
    if not labels or not all(isinstance(v, str) for v in labels):
        return None
    return set(labels)


def check_orientation(X, background, owner: str = "BCNMF") -> None:
    """Detect a DataFrame passed as features x cells from the other's feature names.

    Arrays are cells x features.  When one side's row labels (``index``) are
    exactly the other side's feature names (``columns``) while the two
    ``columns`` disagree, that side was passed transposed.
    """
    if background is None:
        return
    x_cols, y_cols = _labels(X, "columns"), _labels(background, "columns")
    x_rows, y_rows = _labels(X, "index"), _labels(background, "index")
    for name, rows, cols, other_cols in (("background", y_rows, y_cols, x_cols),
                                         ("X", x_rows, x_cols, y_cols)):
        if rows is not None and other_cols is not None and rows == other_cols \
                and cols != other_cols:
            other = "X" if name == "background" else "the background"
            raise ValueError(
                f"{name} looks transposed: its row labels are the feature names (columns) "
                f"of {other}. {owner} expects cells x features in both; pass {name}.T.")


#: data whose squared norm (squared error) or total (KL) exceeds this fraction
#: of the dtype's largest number overflow inside the sweeps
OVERFLOW_MARGIN = 1e-4


def _scale(values, loss: str) -> float:
    """``sum(a ** 2)`` (squared error) or ``sum(a)`` (KL), in float64, overflow to inf."""
    v = values.ravel().astype(np.float64, copy=False)
    with np.errstate(over="ignore"):
        return float(v @ v) if loss == "frobenius" else float(v.sum())


def check_data_scale(A, name: str, loss: str, owner: str = "BCNMF") -> None:
    """Reject data the loss cannot represent in its dtype, before any sweep.

    Squared error works with ``sum(a ** 2)`` and KL with ``sum(a)``; both must
    stay a safe margin below the largest number of the dtype (float32:
    3.4e38), and the squares of non-zero data must not underflow to zero.
    """
    values = A.data if sp.issparse(A) else A
    if values.size == 0:
        return
    vmax = float(np.max(values))
    if vmax == 0:
        return
    dtype = values.dtype
    big = float(np.finfo(dtype).max) * OVERFLOW_MARGIN
    size = _scale(values, loss)
    what = "squared Frobenius norm" if loss == "frobenius" else "total"
    if not size <= big:
        raise ValueError(
            f"{name} is too large for the {loss} loss in {dtype}: its {what} ({size:.3g}) "
            f"exceeds {big:.3g}, so {owner}'s sweeps would overflow. Divide X and the "
            "background by a common factor (e.g. X.max()), or pass float64 data.")
    if size < float(np.finfo(np.float64).tiny):
        raise ValueError(
            f"{name} is too small for the {loss} loss: its {what} underflows to "
            f"{size:.3g} although its largest value is {vmax:.3g}. Multiply X and the "
            "background by a common factor.")


#: at least this many stored values must be examined before calling data log-transformed
_LOG_MIN_VALUES = 10


def looks_log_transformed(A) -> bool:
    """True when non-integer data look like ``log1p`` or ``log2(1 + x)`` of counts.

    Per cell, ``expm1`` (or ``2 ** a - 1``) of the stored values must be
    multiples of 1/m of the cell's smallest one (m <= 4) -- the signature of
    log-transformed counts, also after per-cell total normalisation -- in every
    examined cell (the first 200 with at least two non-zero values).
    """
    values = A.data if sp.issparse(A) else A
    if values.size == 0 or np.all(values == np.round(values)) or np.max(values) > 50:
        return False
    rows = A[:200]
    rows = rows.toarray() if sp.issparse(rows) else np.asarray(rows)
    rows = rows.astype(np.float64)
    tol = 1e-3 if values.dtype == np.float64 else 2e-2

    def multiples_of_a_unit(inverse) -> bool:
        n_checked = 0
        for row in rows:
            v = inverse(row[row > 0])
            if v.size < 2:
                continue
            ratio = v / v.min()
            if ratio.max() > 1e4 or not any(
                    np.all(np.abs(ratio * m - np.round(ratio * m)) <= tol * m)
                    for m in (1, 2, 3, 4)):
                return False
            n_checked += v.size
        return n_checked >= _LOG_MIN_VALUES

    if multiples_of_a_unit(lambda a: a):
        # scaled counts (proportions, tiny units): expm1 is the identity near 0, so the
        # exponential test below would pass too; these are not log-transformed
        return False
    return any(multiples_of_a_unit(inverse)
               for inverse in (np.expm1, lambda a: np.exp2(a) - 1.0))


def check_for_loss(A, name: str, loss: str, owner: str = "BCNMF") -> None:
    """Checks that depend on the loss: the data's scale, and (KL) a warning for
    log-transformed counts."""
    if A is None:
        return
    from .core.backend import is_torch, to_numpy

    if is_torch(A):   # checked on a host copy
        A = to_numpy(A)

    if isinstance(A, np.ndarray) and np.isnan(A).any():   # missing: checked as zeros
        A = np.where(np.isnan(A), 0, A)
    check_data_scale(A, name, loss, owner)
    if loss == "kullback-leibler" and looks_log_transformed(A):
        warnings.warn(
            f"{name} looks log-transformed (log1p or log2(1 + x) of counts: non-integer values "
            f"whose exponentials are multiples of a per-cell unit), but {owner} is fitting the "
            "Poisson (kullback-leibler) loss, which models raw counts. Pass the raw counts, or "
            "use beta_loss='frobenius' for log-transformed data.",
            TransformedDataWarning, stacklevel=4)


def check_n_components(n_components, n_features: int, owner: str = "BCNMF") -> int:
    k = n_features if n_components is None else int(n_components)
    if k > n_features:
        raise ValueError(f"n_components={k} is larger than the number of features "
                         f"({n_features}); {owner} accepts 1 <= n_components <= n_features.")
    return k


def feature_names(A):
    """Column names of a pandas DataFrame when all are strings, else None.

    Mixed string and non-string names are rejected, as scikit-learn's
    ``validate_data`` rejects them for the estimator's X.
    """
    cols = getattr(A, "columns", None)
    if cols is None:
        return None
    names = np.asarray(cols, dtype=object)
    is_str = [isinstance(c, str) for c in names]
    if any(is_str) and not all(is_str):
        kinds = sorted({type(c).__name__ for c in names})
        raise TypeError(
            "Feature names are only supported if all input features have string names, but "
            f"a DataFrame passed to bcnmf has {kinds} as column name types; convert them "
            "with df.columns = df.columns.astype(str).")
    if not all(is_str):
        return None
    return names
