"""Input adaptation of the estimators, decided once per call: parameters
resolved into :class:`~bcnmf.core.fit.FitSettings` (the one place where
aliases and defaults are resolved), the target and background validated as
numpy, scipy.sparse, torch, out-of-core (streamed) or Dask data, with missing
values where the class takes them, moved to the computing device, and the
engine's diagnostics turned into warnings.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.utils.validation import validate_data

from ._validation import (ACCEPT_SPARSE, LOSS_ALIASES, as_supported_float, check_matrix,
                          check_n_components, check_same_features, check_torch_matrix,
                          converting, feature_names, reject_unsupported)
from .core.backend import all_finite, is_torch, to_device, to_numpy
from .core.fit import FitSettings
from .core.result import FactorizationResult
from .core.source import OnDevice, is_out_of_core
from .exceptions import ConvergenceWarning, DivergenceWarning, InvalidParameterError


def resolve_settings(n_components, n_features, p, owner="BCNMF",
                     contrastive=False) -> FitSettings:
    """The fit's settings from validated parameters ``p``.  ``contrastive``: the
    owner can start from the contrast's relaxation (:class:`~bcnmf.BCNMF` on every
    engine, :class:`~bcnmf.MiniBatchBCNMF`), which is then the default ``init``
    of stable squared error (``init="contrastive"``)."""
    reference = p["mode"] == "reference"
    loss = LOSS_ALIASES[p["beta_loss"]]
    auto = p["alpha"] == "auto" if isinstance(p["alpha"], str) else False
    if auto and p["alpha_scale"] == "raw":
        raise InvalidParameterError(
            f"alpha='auto' of {owner} chooses alpha on the relative scale; pass "
            "alpha_scale=None (or 'relative') with it, or a number as alpha with "
            "alpha_scale='raw'.")
    return FitSettings(
        n_components="auto" if isinstance(n_components, str) and n_components == "auto"
        else check_n_components(n_components, n_features, owner),
        loss=loss,
        alpha="auto" if auto else float(p["alpha"]),
        alpha_scale=p["alpha_scale"] or ("raw" if reference and not auto else "relative"),
        mode=p["mode"],
        init=p["init"] or ("uniform" if reference else "contrastive"
                           if contrastive and loss == "frobenius" else "random"),
        damping=p["damping"],
        smoothing=float(p["smoothing"]),
        max_iter=int(p["max_iter"]),
        tol=float(p["tol"]),
        n_init=int(p["n_init"]),
        code_max_iter=int(p["transform_max_iter"]),
        n_shared=_shared_setting(p.get("n_shared", 0)))


def _shared_setting(value):
    """``"auto"`` or the number of shared topics as an int."""
    return value if value == "auto" else int(value)


def check_out_of_core(A, name, owner="BCNMF"):
    """Shape and dtype checks of a streamed matrix (its values are checked
    block by block when the fit first reads them)."""
    shape = tuple(A.shape)
    dtype = np.dtype(A.dtype)
    if len(shape) != 2:
        raise ValueError(f"{name} must be 2-D (cells x features); got shape {shape}.")
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)
            or dtype == np.bool_):
        raise ValueError(f"{name} has dtype {dtype}; {owner} streams real numbers only "
                         "(float, integer or boolean).")
    return A


def check_background(background, X, x_names, owner="BCNMF", mask=None, allow_nan=False):
    if background is None:
        return None
    if is_torch(background) or is_torch(X):
        Y = (check_torch_matrix(background, "background", owner) if is_torch(background)
             else check_matrix(background, "background", owner))
        check_same_features(X, Y, x_names, None if is_torch(background)
                            else feature_names(background), owner)
        return Y
    if is_out_of_core(background) or is_out_of_core(X):
        if mask is not None:
            raise ValueError("background_mask was given with out-of-core data; missing values "
                             "are fitted around in in-memory dense input only.")
        Y = (check_out_of_core(background, "background", owner) if is_out_of_core(background)
             else check_matrix(background, "background", owner))
        check_same_features(X, Y, x_names, None, owner)
        return Y
    Y = check_matrix(background, "background", owner, allow_nan=allow_nan, mask=mask)
    check_same_features(X, Y, x_names, feature_names(background), owner)
    if Y.dtype != X.dtype:
        Y = Y.astype(X.dtype)
    return Y


def check_init(init_factors, X, Y, k, basis_only=False):
    """Validated ``(basis, codes, background_codes)`` or None.  With
    ``basis_only`` (the Dask engine) the codes may both be omitted, and codes
    given as dask arrays are checked for shape only (their values stay on the
    cluster)."""
    if init_factors is None or all(a is None for a in init_factors):
        return None
    basis, cx, cy = init_factors
    if basis_only and basis is not None and cx is None and cy is None:
        init_factors = (basis,)
    expected = [("init_components", basis, (k, X.shape[1])),
                ("init_codes", cx, (X.shape[0], k))]
    if Y is not None:
        expected.append(("init_background_codes", cy, (Y.shape[0], k)))
    if len(init_factors) == 1:
        expected = expected[:1]
    for name, a, shape in expected:
        if basis_only and is_dask(a):
            if tuple(a.shape) != shape:
                raise ValueError(f"{name} must have shape {shape}; got shape {a.shape}.")
            continue
        if a is None:
            raise ValueError(f"{name} is missing: pass all of init_components, init_codes"
                             " and (with a background) init_background_codes, or none.")
        a = np.asarray(to_numpy(a))
        if a.shape != shape:
            raise ValueError(f"{name} must have shape {shape}; got shape {a.shape}.")
        if not np.issubdtype(a.dtype, np.number) or not np.all(np.isfinite(a)):
            raise ValueError(f"{name} must contain finite numbers only.")
        if np.any(a < 0):
            raise ValueError(f"{name} must be non-negative; its smallest entry is "
                             f"{a.min():.3g}.")
    return basis, cx, (cy if Y is not None else None)


def is_dask(A) -> bool:
    """Whether ``A`` is a dask array (dask is not imported to find out)."""
    from .dask_engine import is_dask_array

    return is_dask_array(A)


def use_dask(engine, *arrays) -> bool:
    if engine not in (None, "dask", "local"):
        raise InvalidParameterError(
            f"The 'engine' parameter of BCNMF must be None, 'local' or 'dask'; got {engine!r}.")
    if engine == "dask":
        return True
    dask_in = any(is_dask(A) for A in arrays if A is not None)
    if dask_in and engine == "local":
        raise ValueError("engine='local' cannot fit dask arrays; use engine='dask' (or None), "
                         "or pass X.compute().")
    return dask_in


def checkpointing(checkpoint, checkpoint_every, resume) -> dict:
    """Keyword arguments of :func:`fit_factors` for checkpoints (none when unused)."""
    if checkpoint is None and resume is None:
        return {}
    if not isinstance(checkpoint_every, (int, np.integer)) or isinstance(checkpoint_every, bool) \
            or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be an int >= 1; got {checkpoint_every!r}.")
    return {"checkpoint": checkpoint, "checkpoint_every": int(checkpoint_every),
            "resume": resume}


def report(diag, s: FitSettings, result: FactorizationResult, owner="BCNMF"):
    """Turn the engine's diagnostics into warnings (or an error when nothing finite exists)."""
    finite = all(all_finite(a) for a in
                 (result.components, result.codes, result.background_codes) if a is not None)
    if not finite or not np.isfinite(result.objective):
        raise FloatingPointError(
            f"{owner} could not reach a finite state: the data overflow the working precision "
            "from the start (check the data's scale, e.g. use float64 or rescale X and the "
            "background).")
    if diag["diverged"]:
        warnings.warn(
            f"{owner} diverged: the iterations produced non-finite values; returning the last "
            f"finite state (after {result.n_iter} sweeps). Lower alpha, use mode='stable', or "
            "damping < 1.", DivergenceWarning, stacklevel=3)
    elif diag["runaway"] is not None:
        warnings.warn(
            f"{owner}: the Poisson contrast is running away to minus infinity: the background "
            f"divergence reached {diag['runaway']:.3g} nats per count because basis entries of "
            "background features collapse toward zero (the unbounded objective of the paper). "
            "The result depends on max_iter, damping and the start; use mode='stable' with "
            "smoothing > 0, or a lower alpha.", DivergenceWarning, stacklevel=3)
    if not diag["diverged"] and s.mode == "stable" and s.tol > 0 and not diag["converged"]:
        warnings.warn(
            f"Maximum number of iterations {s.max_iter} reached before convergence "
            f"(tol={s.tol}); increase max_iter or tol.", ConvergenceWarning, stacklevel=3)


def on_device(X, Y, device):
    """Put validated ``X`` and ``Y`` on one backend: unchanged (numpy) when
    ``device`` is None and neither is a tensor; else torch on ``device``
    (default: the device of the tensor given), ``Y`` cast to ``X``'s dtype."""
    if device is None and not is_torch(X) and not is_torch(Y):
        return X, Y
    if device is None:
        device = X.device if is_torch(X) else Y.device
    # out-of-core matrices stay where they are; their blocks move as they are read
    move = lambda A: OnDevice(A, device) if is_out_of_core(A) else to_device(A, device)  # noqa
    X = move(X)
    if Y is not None:
        Y = move(Y)
        if Y.dtype != X.dtype and not isinstance(Y, OnDevice):
            Y = Y.to(dtype=X.dtype)
    return X, Y


def validate_target(estimator, X, reset: bool, mask=None, allow_nan=None):
    """Validate X through scikit-learn (feature names, n_features_in_) and then
    through bcnmf's own checks, with bcnmf's messages for non-matrices.
    Out-of-core matrices are checked for shape and dtype only, and streamed;
    torch tensors by :func:`~bcnmf._validation.check_torch_matrix`."""
    if is_torch(X) and not estimator._takes_torch:
        raise NotImplementedError(
            f"{type(estimator).__name__} fits numpy arrays and scipy.sparse matrices; torch "
            "tensors are supported by the estimators with a device parameter (BCNMF, "
            "factorize). Pass tensor.cpu().numpy().")
    if (is_out_of_core(X) or is_torch(X)) and mask is not None:
        raise ValueError("mask was given with an out-of-core or torch X; missing values are "
                         "fitted around in in-memory dense numpy input only: load X, or impute.")
    if is_out_of_core(X) or is_torch(X):
        X = (check_torch_matrix(X, "X", type(estimator).__name__) if is_torch(X)
             else check_out_of_core(X, "X"))
        if reset:
            estimator.n_features_in_ = X.shape[1]
            estimator.__dict__.pop("feature_names_in_", None)
        elif X.shape[1] != estimator.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(estimator).__name__} "
                             "is expecting "
                             f"{estimator.n_features_in_} features as input.")
        return X
    reject_unsupported(X, "X")
    X = as_supported_float(X)
    X = converting("X", lambda: validate_data(
        estimator, X, accept_sparse=ACCEPT_SPARSE, dtype=[np.float64, np.float32],
        reset=reset, ensure_all_finite=False))  # NaN/Inf: check_matrix says where
    if allow_nan is None:   # fitting around missing values: classes that declare it
        allow_nan = estimator._fits_missing
    return check_matrix(X, "X", type(estimator).__name__ if not allow_nan else "BCNMF",
                        allow_nan=allow_nan, mask=mask)
