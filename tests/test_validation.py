"""Tests of the boundary checks (``bcnmf._validation`` and their use by :class:`BCNMF`
and :func:`factorize`).

Every rejected input is asserted with ``pytest.raises(ErrType, match=...)`` on its
message, through both doors: the estimator and the functional twin must raise the same
kind of error (STYLE.md habit 2: validate once, at the boundary; errors name the bad value
and say what would be accepted).  Accepted edge cases (integer and boolean data, empty
rows and columns, one cell, one feature) must fit and give finite output.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from numpy.testing import assert_array_equal
from sklearn.exceptions import NotFittedError

from bcnmf import BCNMF, factorize
from bcnmf.exceptions import InvalidParameterError

FAST = dict(max_iter=5, tol=0, alpha=1.0)


def data(seed=0, n_x=10, n_y=8, n_features=4):
    rng = np.random.default_rng(seed)
    return rng.random((n_x, n_features)), rng.random((n_y, n_features))


def fit_estimator(X, Y=None, n_components=None, fit_kw=None, **params):
    BCNMF(n_components, **{**FAST, **params}).fit(X, background=Y, **(fit_kw or {}))


def fit_function(X, Y=None, n_components=None, **params):
    factorize(X, n_components, background=Y, **{**FAST, **params})


def raises_through_both(err, match, X, Y=None, n_components=None, **params):
    """The estimator and factorize both raise ``err`` with a message matching ``match``."""
    with pytest.raises(err, match=match):
        fit_estimator(X, Y, n_components, **params)
    with pytest.raises(err, match=match):
        fit_function(X, Y, n_components, **params)


# --------------------------------------------------------------------------------------------
# data errors
# --------------------------------------------------------------------------------------------


def _with(a, i, j, value):
    a = np.array(a, dtype=np.float64, copy=True)
    a[i, j] = value
    return a


X0, Y0 = data()

DATA_ERRORS = {
    # id: (X, Y, error type, message pattern)
    "negative X": (_with(X0, 1, 2, -0.5), None, ValueError,
                   r"Negative values in data passed to \w+ \(X\); bcNMF needs non-negative"),
    "negative background": (X0, _with(Y0, 0, 0, -1.0), ValueError,
                            r"Negative values in data passed to \w+ \(background\)"),
    # NaN in dense input is a missing value (masked fitting): tests/test_masked.py
    "Inf X": (_with(X0, 0, 3, np.inf), None, ValueError, r"Input X contains infinity"),
    "Inf background": (X0, _with(Y0, 0, 3, np.inf), ValueError,
                       r"Input background contains infinity"),
    "-Inf X": (_with(X0, 0, 3, -np.inf), None, ValueError, r"Input X contains infinity"),
    "feature count mismatch": (X0, Y0[:, :3], ValueError,
                               r"X has 4 features but background has 3; \w+ needs the same "
                               r"features, in the same order"),
    "empty X": (np.zeros((0, 4)), None, ValueError,
                r"Found array with 0 sample\(s\) \(shape=\(0, 4\)\) while a minimum of 1"),
    "empty background": (X0, np.zeros((0, 4)), ValueError, r"Found array with 0 sample\(s\)"),
    "0 features": (np.zeros((3, 0)), None, ValueError,
                   r"Found array with 0 feature\(s\) \(shape=\(3, 0\)\) while a minimum of 1"),
    "1-D X": (X0[0], None, ValueError, r"Expected 2D array, got 1D array instead"),
    "1-D background": (X0, Y0[0], ValueError, r"Expected 2D array, got 1D array instead"),
    "3-D X": (X0[None], None, ValueError, r"Found array with dim 3"),
    "3-D background": (X0, Y0[None], ValueError, r"Found array with dim 3"),
    "object X with strings": (np.array([[1.0, "a"], [2.0, 3.0]], dtype=object), None,
                              ValueError, r"could not convert string to float: 'a'"),
    "object background with strings": (X0[:, :2], np.array([[1.0, "b"]], dtype=object),
                                       ValueError, r"could not convert string to float: 'b'"),
    # the library's own checks (_validation._reject_unsupported) give these clear messages
    "None X": (None, None, ValueError,
               r"X is None; expected a 2-D array or sparse matrix \(cells x features\)"),
    "string X": ("counts.csv", None, TypeError,
                 r"X is a string; expected a 2-D array or sparse matrix"),
    "string background": (X0, "background.csv", TypeError,
                          r"background is a string; expected a 2-D array or sparse matrix"),
    # complex: scikit-learn's contract (check_complex_data) is ValueError("Complex data not
    # supported"); the message should also name the argument, as _reject_unsupported does
    "complex X": (X0.astype(np.complex128), None, ValueError,
                  r"(?s)[Cc]omplex.*\bX\b|\bX\b.*complex"),
    "complex background": (X0, Y0.astype(np.complex64), ValueError,
                           r"(?s)[Cc]omplex.*background|background.*complex"),
}


@pytest.mark.parametrize("case", list(DATA_ERRORS))
def test_data_errors(case):
    X, Y, err, match = DATA_ERRORS[case]
    raises_through_both(err, match, X, Y, n_components=1)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "lil", "dok", "bsr", "dia"])
@pytest.mark.parametrize("bad,match", [(np.nan, "contains NaN"),
                                       (np.inf, "contains infinity"),
                                       (-1.0, "Negative values")])
@pytest.mark.parametrize("where", ["X", "background"])
def test_sparse_data_errors_every_format(fmt, bad, match, where):
    """Every accepted sparse format is checked for NaN, Inf and negatives."""
    X, Y = _with(X0, 2, 1, bad), Y0
    if where == "background":
        X, Y = X0, _with(Y0, 2, 1, bad)
    Xs = sp.csr_matrix(X).asformat(fmt)
    Ys = sp.csr_matrix(Y).asformat(fmt)
    raises_through_both(ValueError, match, Xs, Ys, n_components=2)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "lil", "dok", "bsr", "dia"])
def test_every_sparse_format_accepted_without_warnings(fmt):
    """(pyproject turns warnings into errors.)"""
    Xs, Ys = sp.csr_matrix(X0).asformat(fmt), sp.csr_matrix(Y0).asformat(fmt)
    dense = factorize(X0, 2, background=Y0, random_state=0, **FAST)
    res = factorize(Xs, 2, background=Ys, random_state=0, **FAST)
    np.testing.assert_allclose(res.components, dense.components, rtol=1e-9)
    model = BCNMF(2, random_state=0, **FAST)
    np.testing.assert_allclose(model.fit_transform(Xs, background=Ys), dense.codes,
                               rtol=1e-9)


def test_feature_name_mismatch():
    dX = pd.DataFrame(X0, columns=["g0", "g1", "g2", "g3"])
    dY = pd.DataFrame(Y0, columns=["g0", "g1", "g2", "G3"])
    raises_through_both(ValueError,
                        r"Feature names of X and background differ at 1 position\(s\), "
                        r"first at column 3 \('g3' vs 'G3'\)", dX, dY, n_components=2)


def test_object_dtype_message_names_the_argument():
    """'could not convert string to float' does not say whether X or the background is at
    fault; the message should name the argument, as the other data errors do."""
    bad = np.array([[1.0, "b"], [0.0, 2.0]], dtype=object)
    raises_through_both(ValueError, r"background", X0[:, :2], bad, n_components=1)


def test_negative_init_message_does_not_blame_the_shape():
    """A correctly-shaped init factor with a negative entry is rejected with '... of shape
    (2, 4); got shape (2, 4)', which points at the shape rather than the sign."""
    rng = np.random.default_rng(1)
    init = [rng.random((2, 4)), rng.random((10, 2)), rng.random((8, 2))]
    init[0][0, 0] = -1.0
    with pytest.raises(ValueError, match="init_components") as info:
        fit_estimator(X0, Y0, 2, fit_kw=dict(init_components=init[0], init_codes=init[1],
                                             init_background_codes=init[2]))
    assert "got shape (2, 4)" not in str(info.value)


def test_transform_checks():
    model = BCNMF(2, random_state=0, **FAST)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        model.transform(X0)
    model.fit(X0)
    with pytest.raises(ValueError, match=r"X has 3 features, but BCNMF is expecting 4"):
        model.transform(X0[:, :3])
    with pytest.raises(ValueError, match=r"Negative values in data passed to BCNMF \(X\)"):
        model.transform(_with(X0, 0, 0, -1.0))


# --------------------------------------------------------------------------------------------
# parameter errors
# --------------------------------------------------------------------------------------------

PARAM_ERRORS = {
    # id: (params, error type, message pattern)
    "n_components=0": (dict(n_components=0), InvalidParameterError,
                       r"'n_components' parameter of \w+ must be None(, 'auto')? or an int >= 1;"
                       r" got 0"),
    "n_components=True": (dict(n_components=True), InvalidParameterError,
                          r"'n_components' parameter .* got True"),
    "n_components=2.0": (dict(n_components=2.0), InvalidParameterError,
                         r"'n_components' parameter .* got 2\.0"),
    "n_components > n_features": (dict(n_components=5), ValueError,
                                  r"n_components=5 is larger than the number of features "
                                  r"\(4\); \w+ accepts 1 <= n_components <= n_features"),
    "alpha<0": (dict(alpha=-0.1), InvalidParameterError,
                r"'alpha' parameter of \w+ must be ('auto' or )?a finite real >= 0; got -0\.1"),
    "alpha=nan": (dict(alpha=float("nan")), InvalidParameterError,
                  r"'alpha' parameter .* finite real >= 0; got nan"),
    "alpha=inf": (dict(alpha=float("inf")), InvalidParameterError,
                  r"'alpha' parameter .* got inf"),
    "beta_loss": (dict(beta_loss="itakura-saito"), InvalidParameterError,
                  r"'beta_loss' parameter of \w+ must be 'frobenius', 'kullback-leibler' or "
                  r"'poisson'; got 'itakura-saito'"),
    "mode": (dict(mode="fast"), InvalidParameterError,
             r"'mode' parameter of \w+ must be 'stable' or 'reference'; got 'fast'"),
    "alpha_scale": (dict(alpha_scale="log"), InvalidParameterError,
                    r"'alpha_scale' parameter .* None, 'relative' or 'raw'; got 'log'"),
    "init": (dict(init="nndsvd"), InvalidParameterError,
             r"'init' parameter .* None, 'contrastive', 'random' or 'uniform'; got 'nndsvd'"),
    "damping=0": (dict(damping=0), InvalidParameterError,
                  r"'damping' parameter of \w+ must be None or a real in \(0, 1\]; got 0"),
    "damping=1.5": (dict(damping=1.5), InvalidParameterError,
                    r"'damping' parameter .* in \(0, 1\]; got 1\.5"),
    "smoothing<0": (dict(smoothing=-1.0), InvalidParameterError,
                    r"'smoothing' parameter .* finite real >= 0; got -1\.0"),
    "max_iter=0": (dict(max_iter=0), InvalidParameterError,
                   r"'max_iter' parameter of \w+ must be an int >= 1; got 0"),
    "max_iter=10.0": (dict(max_iter=10.0), InvalidParameterError,
                      r"'max_iter' parameter .* int >= 1; got 10\.0"),
    "n_init=0": (dict(n_init=0), InvalidParameterError,
                 r"'n_init' parameter of \w+ must be an int >= 1; got 0"),
    "tol<0": (dict(tol=-1e-4), InvalidParameterError,
              r"'tol' parameter of \w+ must be a finite real >= 0; got -0\.0001"),
    "random_state": (dict(random_state="seed"), InvalidParameterError,
                     r"'random_state' parameter .* got 'seed'"),
    "random_state=True": (dict(random_state=True), InvalidParameterError,
                          r"'random_state' parameter .* got True"),
}


@pytest.mark.parametrize("case", list(PARAM_ERRORS))
def test_parameter_errors(case):
    params, err, match = PARAM_ERRORS[case]
    params = dict(params)
    k = params.pop("n_components", 2)
    raises_through_both(err, match, X0, Y0, n_components=k, **params)


def test_invalid_parameter_error_is_value_and_type_error():
    with pytest.raises(ValueError, match="'max_iter'"):
        fit_estimator(X0, n_components=1, max_iter=0)
    with pytest.raises(TypeError, match="'max_iter'"):
        fit_estimator(X0, n_components=1, max_iter=0)


def test_transform_max_iter_validated():
    with pytest.raises(InvalidParameterError,
                       match=r"'transform_max_iter' parameter of BCNMF must be an int >= 1"):
        BCNMF(1, transform_max_iter=0, **FAST).fit(X0)


def test_parameters_validated_at_fit_not_in_init():
    """scikit-learn contract: __init__ stores, fit validates (before touching the data)."""
    model = BCNMF(0, mode="bogus")
    assert model.n_components == 0 and model.mode == "bogus"
    with pytest.raises(InvalidParameterError, match="'mode' parameter"):
        model.fit(None)  # the bad parameter is reported, not the bad data
    model.set_params(mode="stable")
    with pytest.raises(InvalidParameterError, match="'n_components' parameter"):
        model.fit(X0)


@pytest.mark.parametrize("owner,call", [
    ("BCNMF", lambda: fit_estimator(X0, n_components=5)),
    ("factorize", lambda: fit_function(X0, n_components=5)),
])
def test_n_components_too_large_names_the_caller(owner, call):
    """Every other message names the function the user called."""
    with pytest.raises(ValueError, match=rf"n_components=5 is larger .*; {owner} accepts"):
        call()


# --------------------------------------------------------------------------------------------
# custom initial factors
# --------------------------------------------------------------------------------------------


def _init(k=2, n_x=10, n_y=8, f=4, seed=3):
    rng = np.random.default_rng(seed)
    return rng.random((k, f)), rng.random((n_x, k)), rng.random((n_y, k))


INIT_ERRORS = {
    "wrong-shaped init_components": (
        lambda b, cx, cy: (b[:, :3], cx, cy),
        r"init_components must have shape \(2, 4\); got shape \(2, 3\)"),
    "wrong-shaped init_codes": (
        lambda b, cx, cy: (b, cx[:9], cy),
        r"init_codes must have shape \(10, 2\); got shape \(9, 2\)"),
    "wrong-shaped init_background_codes": (
        lambda b, cx, cy: (b, cx, np.ones((8, 3))),
        r"init_background_codes must have shape \(8, 2\); got shape \(8, 3\)"),
    "only init_components": (
        lambda b, cx, cy: (b, None, None),
        r"init_codes is missing: pass all of init_components, init_codes and \(with a "
        r"background\) init_background_codes, or none"),
    "only codes": (
        lambda b, cx, cy: (None, cx, cy),
        r"init_components is missing"),
    "background codes missing": (
        lambda b, cx, cy: (b, cx, None),
        r"init_background_codes is missing"),
    "NaN in init_codes": (
        lambda b, cx, cy: (b, _with(cx, 0, 0, np.nan), cy),
        r"init_codes must contain finite numbers only"),
}


@pytest.mark.parametrize("case", list(INIT_ERRORS))
def test_init_factor_errors(case):
    make, match = INIT_ERRORS[case]
    b, cx, cy = make(*_init())
    with pytest.raises(ValueError, match=match):
        fit_estimator(X0, Y0, 2, fit_kw=dict(init_components=b, init_codes=cx,
                                             init_background_codes=cy))
    with pytest.raises(ValueError, match=match):
        fit_function(X0, Y0, 2, init_factors=(b, cx, cy))


def test_init_factors_accepted_and_used():
    b, cx, cy = _init()
    model = BCNMF(2, **FAST)
    model.fit(X0, background=Y0, init_components=b, init_codes=cx, init_background_codes=cy)
    res = factorize(X0, 2, background=Y0, init_factors=(b, cx, cy), **FAST)
    assert_array_equal(model.components_, res.components)
    # without a background the background codes may be omitted
    res = factorize(X0, 2, init_factors=(b, cx, None), **FAST)
    assert res.background_codes is None


# --------------------------------------------------------------------------------------------
# all-zero background with a relative alpha
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["frobenius", "kullback-leibler"])
@pytest.mark.parametrize("container", [np.asarray, sp.csr_matrix])
def test_all_zero_background_relative_scale(loss, container):
    zeros = container(np.zeros((8, 4)))
    raises_through_both(ValueError,
                        r"The background is all zeros, so alpha_scale='relative' is "
                        r"undefined; pass a non-zero background or alpha_scale='raw'",
                        container(X0), zeros, n_components=2, beta_loss=loss,
                        alpha_scale="relative")
    # the stable default is relative too
    raises_through_both(ValueError, r"background is all zeros", container(X0), zeros,
                        n_components=2, beta_loss=loss)


@pytest.mark.parametrize("loss", ["frobenius", "kullback-leibler"])
@pytest.mark.parametrize("mode", ["stable", "reference"])
def test_all_zero_background_raw_scale_accepted(loss, mode):
    """With alpha_scale='raw' an all-zero background is a valid (if useless) input: the
    fit is plain NMF plus a zero contrast and must not warn (warnings are errors here)."""
    zeros = np.zeros((8, 4))
    res = factorize(X0, 2, background=zeros, beta_loss=loss, mode=mode, alpha_scale="raw",
                    random_state=0, **FAST)
    assert np.all(np.isfinite(res.components)) and np.all(np.isfinite(res.codes))
    assert np.all(np.isfinite(res.background_codes))


# --------------------------------------------------------------------------------------------
# accepted edge cases
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
@pytest.mark.parametrize("sparse", [False, True])
def test_integer_and_boolean_input_become_float64(dtype, sparse):
    rng = np.random.default_rng(4)
    X = (rng.random((12, 5)) > 0.4) if dtype is np.bool_ else rng.integers(0, 6, (12, 5))
    Y = (rng.random((9, 5)) > 0.4) if dtype is np.bool_ else rng.integers(0, 6, (9, 5))
    X, Y = X.astype(dtype), Y.astype(dtype)
    Xi, Yi = (sp.csr_matrix(X), sp.csr_matrix(Y)) if sparse else (X, Y)
    model = BCNMF(2, random_state=0, **FAST)
    codes = model.fit_transform(Xi, background=Yi)
    assert codes.dtype == model.components_.dtype == np.float64
    assert model.background_codes_.dtype == np.float64
    assert model.transform(Xi).dtype == np.float64
    # identical to passing float64 yourself
    ref = factorize(X.astype(np.float64), 2, background=Y.astype(np.float64), random_state=0,
                    **FAST)
    assert_array_equal(codes, ref.codes)
    res = factorize(Xi, 2, background=Yi, random_state=0, **FAST)
    assert res.codes.dtype == np.float64
    assert_array_equal(res.codes, ref.codes)


@pytest.mark.parametrize("which", ["estimator", "factorize"])
def test_float16_becomes_float32(which):
    """check_matrix documents float16 -> float32; both doors must agree."""
    X16, Y16 = X0.astype(np.float16), Y0.astype(np.float16)
    if which == "factorize":
        res = factorize(X16, 2, background=Y16, random_state=0, **FAST)
        assert res.codes.dtype == res.components.dtype == np.float32
    else:
        model = BCNMF(2, random_state=0, **FAST)
        codes = model.fit_transform(X16, background=Y16)
        assert codes.dtype == model.components_.dtype == np.float32


@pytest.mark.parametrize("loss", ["frobenius", "kullback-leibler"])
@pytest.mark.parametrize("mode", ["stable", "reference"])
@pytest.mark.parametrize("sparse", [False, True])
def test_all_zero_rows_and_columns(loss, mode, sparse):
    rng = np.random.default_rng(5)
    X, Y = rng.poisson(1.0, (15, 6)).astype(float), rng.poisson(1.0, (12, 6)).astype(float)
    X[[0, 7]] = 0.0      # empty cells in the target
    Y[3] = 0.0           # an empty cell in the background
    X[:, 2] = 0.0        # a feature absent from the target
    Y[:, 4] = 0.0        # a feature absent from the background
    X[:, 5] = Y[:, 5] = 0.0  # a feature absent from both
    Xi, Yi = (sp.csr_matrix(X), sp.csr_matrix(Y)) if sparse else (X, Y)
    model = BCNMF(3, beta_loss=loss, mode=mode, n_init=2, random_state=0, max_iter=50,
                  tol=0, alpha=1.0)
    codes = model.fit_transform(Xi, background=Yi)
    new = model.transform(Xi)
    for a in (codes, model.components_, model.background_codes_, new,
              *model.history_.values()):
        assert np.all(np.isfinite(a))
    for a in (codes, model.components_, model.background_codes_, new):
        assert np.all(a >= 0)
    # an empty cell is explained by (near) nothing
    assert np.all(new[[0, 7]] <= 1e-6)
    res = factorize(Xi, 3, background=Yi, beta_loss=loss, mode=mode, random_state=0, max_iter=50,
                    tol=0, alpha=1.0, n_init=2)
    assert_array_equal(res.codes, codes)


@pytest.mark.parametrize("loss", ["frobenius", "kullback-leibler"])
@pytest.mark.parametrize("mode", ["stable", "reference"])
def test_one_cell_and_one_feature(loss, mode):
    rng = np.random.default_rng(6)
    kw = dict(beta_loss=loss, mode=mode, random_state=0, max_iter=30, tol=0, alpha=0.5)
    one_cell = rng.random((1, 5)) + 0.1
    model = BCNMF(2, **kw)
    codes = model.fit_transform(one_cell, background=rng.random((1, 5)) + 0.1)
    assert codes.shape == (1, 2) and model.components_.shape == (2, 5)
    assert np.all(np.isfinite(codes)) and np.all(np.isfinite(model.components_))
    assert model.transform(one_cell).shape == (1, 2)

    one_feature = rng.random((9, 1)) + 0.1
    model = BCNMF(**kw)  # n_components defaults to n_features = 1
    codes = model.fit_transform(one_feature, background=rng.random((6, 1)) + 0.1)
    assert codes.shape == (9, 1) and model.components_.shape == (1, 1)
    assert np.all(np.isfinite(codes)) and np.all(np.isfinite(model.components_))
    res = factorize(one_feature, 1, **kw)
    assert res.codes.shape == (9, 1) and np.all(np.isfinite(res.codes))


def test_dataframe_target_with_array_background():
    """Names cannot be compared when only X has them: accepted, names kept from X."""
    dX = pd.DataFrame(X0, columns=["a", "b", "c", "d"])
    model = BCNMF(2, random_state=0, **FAST).fit(dX, background=Y0)
    assert_array_equal(model.feature_names_in_, np.array(["a", "b", "c", "d"], dtype=object))
    res = factorize(dX, 2, background=Y0, random_state=0, **FAST)
    assert_array_equal(res.components, model.components_)
