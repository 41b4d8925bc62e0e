"""Tests of the scikit-learn estimator :class:`bcnmf.BCNMF` and its functional twin
:func:`bcnmf.factorize`.

Properties and equivalences only (STYLE.md, habits 5 and 10):

* the estimator passes scikit-learn's ``check_estimator`` (plain NMF, no background);
* ``factorize`` and ``BCNMF.fit_transform`` give bit-identical results from one seed;
* ``fit_transform`` agrees with ``fit`` then ``transform``, and ``transform`` reaches the
  codes that an exact, slow reference solver finds for the fitted basis;
* float32/float64 are preserved, sparse formats equal dense, the caller's arrays are
  never modified, outputs are finite and non-negative, seeds are reproducible;
* feature names, ``alpha_scale`` and the divergence path behave as documented.

Every random draw comes from a seeded local ``numpy.random.Generator``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import minimize, nnls
from sklearn.utils.estimator_checks import parametrize_with_checks

from bcnmf import BCNMF, CombinedBCNMF, FactorizationResult, MiniBatchBCNMF, factorize
from bcnmf.exceptions import DivergenceWarning

LOSSES = ("frobenius", "kullback-leibler")
MODES = ("stable", "reference")


# --------------------------------------------------------------------------------------------
# data and slow, obviously-correct references
# --------------------------------------------------------------------------------------------


def poisson_data(seed=0, n_x=40, n_y=30, n_features=10, lam=1.0):
    """Unstructured count matrices (target, background)."""
    rng = np.random.default_rng(seed)
    X = rng.poisson(lam, size=(n_x, n_features)).astype(np.float64)
    Y = rng.poisson(lam, size=(n_y, n_features)).astype(np.float64)
    return X, Y


def planted(seed=0, k=3, n_features=12, n_x=60, n_y=50):
    """Counts from a planted rank-k model; topic 0 is nearly absent from the background."""
    rng = np.random.default_rng(seed)
    basis = rng.gamma(0.5, 1.0, size=(k, n_features))
    basis /= basis.sum(axis=1, keepdims=True)
    cx = rng.gamma(1.0, 20.0, size=(n_x, k))
    cy = rng.gamma(1.0, 20.0, size=(n_y, k))
    cy[:, 0] *= 0.05
    X = rng.poisson(cx @ basis).astype(np.float64)
    Y = rng.poisson(cy @ basis).astype(np.float64)
    return X, Y


def exact_codes(A, basis, loss, offset=None):
    """Per-cell optimum of D(a | c B + offset) over c >= 0 with B fixed: scipy's NNLS for
    squared error, bound-constrained L-BFGS-B to machine tolerance for KL."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(basis, dtype=np.float64)
    if loss == "frobenius":
        return np.array([nnls(B.T, a)[0] for a in A])
    off = np.full(B.shape[1], 1e-12) if offset is None else offset + 1e-12
    out = []
    for a in A:
        def f(c, a=a):
            p = c @ B + off
            return float(np.sum(p - a * np.log(p)))

        def g(c, a=a):
            return B @ (1.0 - a / (c @ B + off))

        start = np.full(B.shape[0], a.sum() / B.shape[0] + 1e-3)
        res = minimize(f, start, jac=g, method="L-BFGS-B", bounds=[(0, None)] * B.shape[0],
                       options=dict(ftol=1e-15, gtol=1e-12, maxiter=10000))
        out.append(res.x)
    return np.array(out)


def rel_err(a, b):
    """Relative Frobenius distance ||a - b|| / ||b||."""
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(b))


def snapshot(A):
    """A deep copy to compare the caller's object with after a call."""
    if isinstance(A, pd.DataFrame):
        return A.copy(deep=True)
    if sp.issparse(A):
        return A.copy()
    return np.array(A, copy=True)


def assert_unchanged(before, after):
    if isinstance(before, pd.DataFrame):
        pd.testing.assert_frame_equal(after, before, check_exact=True)
        assert after.dtypes.equals(before.dtypes)
    elif sp.issparse(before):
        assert after.format == before.format and after.dtype == before.dtype
        assert_array_equal(after.data, before.data)
        assert_array_equal(after.indices, before.indices)
        assert_array_equal(after.indptr, before.indptr)
    else:
        assert after.dtype == before.dtype and after.flags.writeable == before.flags.writeable
        assert_array_equal(after, before)


# --------------------------------------------------------------------------------------------
# scikit-learn estimator contract
# --------------------------------------------------------------------------------------------


# tol=0 runs exactly max_iter sweeps (documented), so no ConvergenceWarning is raised on the
# checks' tiny data, and 2000 sweeps bring the fit's codes close enough to the optimum for
# the fitted basis that check_transformer_general's fit_transform == transform (atol 1e-2)
# holds with the default n_components (= n_features).  With tol > 0 the fit stops while a few
# codes that should be exactly zero are still ~0.1 away (multiplicative updates approach the
# boundary sublinearly), so that one check needs tol=0 here.
@parametrize_with_checks([BCNMF(max_iter=2000, tol=0, alpha=1.5)])
def test_sklearn_check_estimator(estimator, check):
    check(estimator)


class CombinedOnItself(CombinedBCNMF):
    """CombinedBCNMF needs a background, which scikit-learn's checks do not pass: here the
    target is its own background when none is given (a valid, degenerate problem: the
    target-specific parts have nothing to explain), so that the estimator contract is
    checked on the real fit.  The tied form only: the untied one needs
    ``n_target_components < n_components``, which the checks' one-feature data cannot
    meet."""

    def fit_transform(self, X, y=None, *, background=None):
        return super().fit_transform(X, background=X if background is None else background)


# 5000 sweeps at tol=0 for the same reason as BCNMF's (fit_transform == transform)
@parametrize_with_checks([CombinedOnItself(max_iter=5000, tol=0)])
def test_sklearn_check_estimator_combined(estimator, check):
    check(estimator)


# the checks' data fit in one batch, where every online step is the full-batch step: the
# settings and the reason for tol=0 are BCNMF's
@parametrize_with_checks([MiniBatchBCNMF(max_iter=2000, tol=0)])
def test_sklearn_check_estimator_minibatch(estimator, check):
    check(estimator)


def test_fit_returns_self_and_keyword_only_parameters():
    X, _ = poisson_data(1)
    model = BCNMF(2, alpha=1.0, max_iter=20, tol=0, random_state=0)
    assert model.fit(X) is model
    with pytest.raises(TypeError, match="positional argument"):
        BCNMF(2, 1.0, alpha=1.5)  # everything but n_components is keyword-only


# --------------------------------------------------------------------------------------------
# functional twin
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("mode", MODES)
def test_factorize_matches_estimator_exactly(loss, mode):
    X, Y = poisson_data(2)
    kw = dict(alpha=0.8, beta_loss=loss, mode=mode, max_iter=60, tol=0, n_init=2,
              random_state=7)
    res = factorize(X, 3, background=Y, **kw)
    model = BCNMF(3, **kw)
    codes = model.fit_transform(X, background=Y)

    assert isinstance(res, FactorizationResult)
    assert_array_equal(codes, res.codes)
    assert_array_equal(model.components_, res.components)
    assert_array_equal(model.background_codes_, res.background_codes)
    assert model.n_iter_ == res.n_iter == 60
    assert set(model.history_) == set(res.history) == {"iteration", "target", "background",
                                                       "objective"}
    for key in res.history:
        assert_array_equal(model.history_[key], res.history[key])
    assert model.alpha_raw_ == res.alpha_raw
    assert model.objective_ == res.objective
    assert_array_equal(model.restart_objectives_, res.restart_objectives)
    assert_array_equal(model.restart_agreement_, res.restart_agreement)


@pytest.mark.parametrize("loss", LOSSES)
def test_factorize_matches_estimator_with_stopping_rule(loss):
    """Stable mode stopping on the criterion (not at max_iter): same n_iter, same state."""
    X, Y = planted(3)
    kw = dict(alpha=0.5, beta_loss=loss, tol=1e-3, max_iter=3000, random_state=1)
    res = factorize(X, 3, background=Y, **kw)
    model = BCNMF(3, **kw)
    codes = model.fit_transform(X, background=Y)
    assert res.converged and res.n_iter < 3000
    assert model.n_iter_ == res.n_iter
    assert_array_equal(codes, res.codes)
    assert_array_equal(model.components_, res.components)
    assert_array_equal(model.background_codes_, res.background_codes)


def test_factorize_without_background():
    X, _ = poisson_data(3)
    res = factorize(X, 2, max_iter=30, tol=0, random_state=0, alpha=1.5)
    model = BCNMF(2, max_iter=30, tol=0, random_state=0, alpha=1.5)
    assert_array_equal(model.fit_transform(X), res.codes)
    assert res.background_codes is None and model.background_codes_ is None
    assert_array_equal(res.history["background"], np.zeros(31))
    assert_array_equal(res.history["objective"], res.history["target"])


# --------------------------------------------------------------------------------------------
# fit / transform / inverse_transform consistency
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("with_background", [False, True])
def test_fit_transform_matches_fit_then_transform(loss, with_background):
    """Default settings: the fit's codes are near-optimal for the final basis and transform
    re-solves them with the basis fixed, so the two agree to ~1 %."""
    X, Y = planted(0)
    background = Y if with_background else None
    kw = dict(alpha=0.5, beta_loss=loss, max_iter=2000, random_state=0)
    codes = BCNMF(3, **kw).fit_transform(X, background=background)
    model = BCNMF(3, **kw).fit(X, background=background)
    assert model.n_iter_ < 2000  # converged on the stopping rule
    again = model.transform(X)
    assert again.shape == codes.shape == (X.shape[0], 3)
    assert rel_err(again, codes) <= 2e-2


@pytest.mark.parametrize("with_background", [False, True])
def test_transform_reaches_exact_codes(with_background):
    """transform solves min_C ||X - C B||^2, C >= 0 with B = components_ fixed (and the
    shared topics, whose codes it drops); at default settings it should agree with scipy's
    NNLS (a slow exact reference) to ~1 %."""
    X, Y = planted(0)
    model = BCNMF(3, alpha=0.5, max_iter=2000, random_state=0)
    model.fit(X, background=Y if with_background else None)
    assert (model.n_shared_ > 0) == with_background
    basis = model.components_ if model.shared_components_ is None else np.vstack(
        [model.components_, model.shared_components_])
    reference = exact_codes(X, basis, "frobenius")[:, :3]
    assert rel_err(model.transform(X), reference) <= 2e-2


@pytest.mark.parametrize("loss", LOSSES)
def test_transform_of_background_matches_background_codes(loss):
    """Both are tolerance-stopped solves of the same problem, each about 1.5 % from the
    exact codes; their distance depends on the basis (from the random start they agree to
    2 %; from the contrastive start of squared error their errors point apart, 2.6 %), so
    the default start of squared error is checked against the exact codes."""
    X, Y = planted(0)
    model = BCNMF(3, alpha=0.5, beta_loss=loss, max_iter=2000, init="random",
                  random_state=0)
    model.fit(X, background=Y)
    codes_y = model.transform(Y, as_background=True)
    assert codes_y.shape == model.background_codes_.shape == (Y.shape[0], 3)
    assert rel_err(codes_y, model.background_codes_) <= 2e-2
    if loss != "frobenius":   # Poisson starts from random draws by default
        return
    default = BCNMF(3, alpha=0.5, max_iter=2000, random_state=0).fit(X, background=Y)
    basis = np.vstack([default.components_, default.shared_components_])
    exact = exact_codes(Y, basis, loss)[:, :3]
    assert rel_err(default.transform(Y, as_background=True), exact) <= 2e-2
    assert rel_err(default.background_codes_, exact) <= 2e-2


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_stable_poisson_transform_solves_the_fitted_model(smoothing):
    """Stable Poisson with a background models the target as C B + mu_X (mu_X =
    smoothing * column means of X) when it has no shared topics (those are checked in
    test_shared.py).  A fully converged transform of X must then return the fit's codes;
    with smoothing=0 (no offset) it does."""
    X, Y = planted(0)
    model = BCNMF(3, alpha=0.5, beta_loss="kullback-leibler", smoothing=smoothing,
                  max_iter=2000, random_state=0, n_shared=0)
    codes = model.fit_transform(X, background=Y)
    offset = smoothing * X.mean(axis=0)
    # the fit's codes are optimal for the model with the offset ...
    assert rel_err(codes, exact_codes(X, model.components_, "kullback-leibler", offset)) < 2e-2
    # ... and transform, run to convergence, must solve the same model
    model.set_params(tol=1e-10, transform_max_iter=20000)
    assert rel_err(model.transform(X), codes) < 2e-2


def test_inverse_transform_shapes_and_feature_names():
    X, Y = poisson_data(4, n_features=7)
    model = BCNMF(3, alpha=1.0, max_iter=40, tol=0, random_state=0)
    codes = model.fit_transform(X, background=Y)
    assert codes.shape == (X.shape[0], 3)
    assert model.components_.shape == (3, 7)
    assert model.background_codes_.shape == (Y.shape[0], 3)
    assert model.n_features_in_ == 7
    assert model.history_["objective"].shape == (41,)
    assert_array_equal(model.inverse_transform(codes), codes @ model.components_)
    new = np.random.default_rng(0).random((5, 3))
    assert_array_equal(model.inverse_transform(new), new @ model.components_)
    assert model.transform(X[:5]).shape == (5, 3)
    assert_array_equal(model.get_feature_names_out(),
                       np.array(["bcnmf0", "bcnmf1", "bcnmf2"], dtype=object))
    with pytest.raises(ValueError, match=r"codes of shape \(n_cells, 3\); got \(5, 2\)"):
        model.inverse_transform(np.ones((5, 2)))


def test_default_n_components_is_n_features():
    X, _ = poisson_data(5, n_features=4)
    model = BCNMF(max_iter=20, tol=0, random_state=0, alpha=1.5).fit(X)
    assert model.components_.shape == (4, 4)
    assert model.n_components_ == 4 and model.n_components is None
    assert len(model.get_feature_names_out()) == 4
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        BCNMF(3).n_components_


# --------------------------------------------------------------------------------------------
# dtypes and sparse input
# --------------------------------------------------------------------------------------------

CONTAINERS = {
    "dense": np.asarray,
    "csr": sp.csr_matrix,
    "csc": sp.csc_matrix,
    "coo": sp.coo_matrix,
    "csr_array": sp.csr_array,
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("container", list(CONTAINERS))
@pytest.mark.parametrize("with_background", [False, True])
def test_dtype_preserved(dtype, container, with_background):
    X, Y = poisson_data(6)
    to = CONTAINERS[container]
    background = to(Y.astype(dtype)) if with_background else None
    model = BCNMF(3, alpha=1.0, max_iter=20, tol=0, random_state=0)
    codes = model.fit_transform(to(X.astype(dtype)), background=background)
    assert codes.dtype == dtype
    assert model.components_.dtype == dtype
    assert model.transform(to(X.astype(dtype))).dtype == dtype
    if with_background:
        assert model.background_codes_.dtype == dtype
    res = factorize(to(X.astype(dtype)), 3, background=background, alpha=1.0, max_iter=20, tol=0,
                    random_state=0)
    assert res.codes.dtype == res.components.dtype == dtype


@pytest.mark.parametrize("container", ["dense", "csr"])
def test_float64_background_with_float32_target(container):
    X, Y = poisson_data(7)
    to = CONTAINERS[container]
    kw = dict(alpha=1.0, max_iter=30, tol=0, random_state=0)
    model = BCNMF(3, **kw)
    codes = model.fit_transform(to(X.astype(np.float32)), background=to(Y))  # Y is float64
    assert codes.dtype == model.components_.dtype == np.float32
    assert model.background_codes_.dtype == np.float32
    assert np.all(np.isfinite(codes)) and np.all(np.isfinite(model.background_codes_))
    # the same as passing the background already cast to float32
    same = BCNMF(3, **kw).fit_transform(to(X.astype(np.float32)),
                                        background=to(Y.astype(np.float32)))
    assert_array_equal(codes, same)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_input_equals_dense(loss, mode, fmt):
    X, Y = poisson_data(8)
    kw = dict(alpha=1.0, beta_loss=loss, mode=mode, max_iter=40, tol=0, random_state=3)
    dense = factorize(X, 3, background=Y, **kw)
    to = CONTAINERS[fmt]
    res = factorize(to(X), 3, background=to(Y), **kw)
    assert_allclose(res.components, dense.components, rtol=1e-9, atol=1e-12)
    assert_allclose(res.codes, dense.codes, rtol=1e-9, atol=1e-12)
    assert_allclose(res.background_codes, dense.background_codes, rtol=1e-9, atol=1e-12)
    assert_allclose(res.history["objective"], dense.history["objective"], rtol=1e-9)

    model = BCNMF(3, **kw)
    codes = model.fit_transform(to(X), background=to(Y))
    assert_allclose(codes, dense.codes, rtol=1e-9, atol=1e-12)
    assert_allclose(model.transform(to(X)), model.transform(X), rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------------------------
# the caller's arrays are never modified
# --------------------------------------------------------------------------------------------


def _make_inputs(kind, X, Y):
    if kind == "dense":
        return X, Y
    if kind == "dense_float32_fortran":
        return np.asfortranarray(X, dtype=np.float32), np.asfortranarray(Y, dtype=np.float32)
    if kind == "csr":
        return sp.csr_matrix(X), sp.csr_matrix(Y)
    if kind == "csr_unsorted_duplicates":
        # non-canonical CSR: duplicate entries and unsorted indices in row 0
        a = sp.csr_matrix(X)
        b = a.tolil()
        b[0, :] = 0
        b = sp.csr_matrix(b)
        data = np.concatenate([[1.0, 2.0, 3.0], b.data])
        indices = np.concatenate([[3, 1, 3], b.indices])
        indptr = np.concatenate([[0], b.indptr[1:] + 3])
        noncanon = sp.csr_matrix((data, indices, indptr), shape=X.shape)
        assert not noncanon.has_canonical_format
        return noncanon, sp.csr_matrix(Y)
    if kind == "dataframe":
        cols = [f"gene{j}" for j in range(X.shape[1])]
        return pd.DataFrame(X, columns=cols), pd.DataFrame(Y, columns=cols)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["dense", "dense_float32_fortran", "csr",
                                  "csr_unsorted_duplicates", "dataframe"])
@pytest.mark.parametrize("loss", LOSSES)
def test_inputs_never_modified(kind, loss):
    X, Y = poisson_data(9)
    Xi, Yi = _make_inputs(kind, X, Y)
    before_x, before_y = snapshot(Xi), snapshot(Yi)
    kw = dict(alpha=1.0, beta_loss=loss, max_iter=20, tol=0, random_state=0)

    model = BCNMF(3, **kw)
    model.fit(Xi, background=Yi)
    model.fit_transform(Xi, background=Yi)
    model.transform(Xi)
    model.transform(Yi)
    factorize(Xi, 3, background=Yi, **kw)
    assert_unchanged(before_x, Xi)
    assert_unchanged(before_y, Yi)


def test_init_factors_never_modified():
    X, Y = poisson_data(10)
    rng = np.random.default_rng(10)
    init = (rng.random((3, X.shape[1])), rng.random((X.shape[0], 3)),
            rng.random((Y.shape[0], 3)))
    before = [a.copy() for a in init]
    kw = dict(alpha=1.0, max_iter=20, tol=0)
    model = BCNMF(3, **kw)
    model.fit(X, background=Y, init_components=init[0], init_codes=init[1],
              init_background_codes=init[2])
    res = factorize(X, 3, background=Y, init_factors=init, **kw)
    for a, b in zip(init, before):
        assert_array_equal(a, b)
    # the same custom start gives the same fit through both doors
    assert_array_equal(model.components_, res.components)


# --------------------------------------------------------------------------------------------
# finiteness, restarts, determinism
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("with_background", [False, True])
def test_outputs_finite_nonnegative_with_restarts(loss, mode, with_background):
    X, Y = poisson_data(11)
    background = Y if with_background else None
    model = BCNMF(3, alpha=1.0, beta_loss=loss, mode=mode, n_init=3, max_iter=150, tol=0,
                  random_state=0)
    codes = model.fit_transform(X, background=background)
    factors = [codes, model.components_, model.transform(X)]
    if with_background:
        factors.append(model.background_codes_)
    for a in factors:
        assert np.all(np.isfinite(a))
        assert np.all(a >= 0)
    every = 1 if loss == "frobenius" else 10
    assert_array_equal(model.history_["iteration"],
                       np.r_[np.arange(0, model.n_iter_, every), model.n_iter_])
    for key, h in model.history_.items():
        assert h.shape == model.history_["iteration"].shape, key
        assert np.all(np.isfinite(h)), key
    assert model.restart_objectives_.shape == (3,)
    assert model.restart_agreement_.shape == (3,)
    assert np.all(np.isfinite(model.restart_objectives_))
    assert np.all(np.isfinite(model.restart_agreement_))
    assert np.all(model.restart_agreement_ <= 1 + 1e-12)
    assert np.isfinite(model.objective_)
    assert model.objective_ in model.restart_objectives_


@pytest.mark.parametrize("container", ["dense", "csr"])
@pytest.mark.parametrize("loss", LOSSES)
def test_same_seed_bit_identical_and_different_seeds_differ(container, loss):
    X, Y = poisson_data(12)
    to = CONTAINERS[container]
    kw = dict(alpha=1.0, beta_loss=loss, n_init=2, max_iter=40, tol=0)

    def fit(seed):
        model = BCNMF(3, random_state=seed, **kw)
        return model.fit_transform(to(X), background=to(Y)), model

    c1, m1 = fit(5)
    c2, m2 = fit(5)
    assert_array_equal(c1, c2)
    assert_array_equal(m1.components_, m2.components_)
    assert_array_equal(m1.background_codes_, m2.background_codes_)
    assert_array_equal(m1.history_["objective"], m2.history_["objective"])
    assert_array_equal(m1.restart_objectives_, m2.restart_objectives_)
    # a Generator seeded alike, and a RandomState seeded alike, are reproducible too
    for make in (np.random.default_rng, np.random.RandomState):
        a = BCNMF(3, random_state=make(5), **kw).fit(to(X), background=to(Y)).components_
        b = BCNMF(3, random_state=make(5), **kw).fit(to(X), background=to(Y)).components_
        assert_array_equal(a, b)
    c3, m3 = fit(6)
    assert not np.array_equal(m1.components_, m3.components_)
    assert not np.array_equal(c1, c3)


# --------------------------------------------------------------------------------------------
# feature names
# --------------------------------------------------------------------------------------------


def test_feature_names_from_dataframe():
    X, Y = poisson_data(13, n_features=5)
    cols = ["a", "b", "c", "d", "e"]
    dX, dY = pd.DataFrame(X, columns=cols), pd.DataFrame(Y, columns=cols)
    kw = dict(alpha=1.0, max_iter=30, tol=0, random_state=0)
    model = BCNMF(2, **kw)
    codes = model.fit_transform(dX, background=dY)
    assert_array_equal(model.feature_names_in_, np.array(cols, dtype=object))
    # DataFrames give the same numbers as the underlying arrays
    plain = BCNMF(2, **kw)
    assert_array_equal(codes, plain.fit_transform(X, background=Y))
    assert not hasattr(plain, "feature_names_in_")
    assert_array_equal(model.transform(dX), plain.transform(X))
    res = factorize(dX, 2, background=dY, **kw)
    assert_array_equal(res.codes, codes)


@pytest.mark.parametrize("which", ["estimator", "factorize"])
def test_background_with_different_column_names_raises(which):
    X, Y = poisson_data(14, n_features=5)
    dX = pd.DataFrame(X, columns=["a", "b", "c", "d", "e"])
    dY = pd.DataFrame(Y, columns=["a", "b", "x", "d", "y"])
    match = r"differ at 2 position\(s\), first at column 2 \('c' vs 'x'\)"
    with pytest.raises(ValueError, match=match):
        if which == "estimator":
            BCNMF(2, max_iter=5, tol=0, alpha=1.5).fit(dX, background=dY)
        else:
            factorize(dX, 2, background=dY, max_iter=5, tol=0, alpha=1.5)


def test_background_with_reordered_columns_raises():
    X, Y = poisson_data(15, n_features=3)
    dX = pd.DataFrame(X, columns=["a", "b", "c"])
    dY = pd.DataFrame(Y, columns=["b", "a", "c"])
    with pytest.raises(ValueError, match=r"first at column 0 \('a' vs 'b'\).*reorder"):
        BCNMF(2, max_iter=5, tol=0, alpha=1.5).fit(dX, background=dY)


# --------------------------------------------------------------------------------------------
# alpha scaling and loss alias
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("container", ["dense", "csr"])
def test_alpha_scale_relative(container):
    X, Y = poisson_data(16, n_x=35, n_y=25)
    Y = 3.0 * Y  # a background on another scale
    to = CONTAINERS[container]
    kw = dict(alpha=0.7, alpha_scale="relative", max_iter=5, tol=0, random_state=0)
    m = BCNMF(2, beta_loss="frobenius", **kw).fit(to(X), background=to(Y))
    assert m.alpha_raw_ == pytest.approx(0.7 * np.sum(X ** 2) / np.sum(Y ** 2), rel=1e-12)
    for loss in ("kullback-leibler", "poisson"):
        m = BCNMF(2, beta_loss=loss, **kw).fit(to(X), background=to(Y))
        assert m.alpha_raw_ == pytest.approx(0.7 * X.sum() / Y.sum(), rel=1e-12)
    res = factorize(to(X), 2, background=to(Y), beta_loss="poisson", **kw)
    assert res.alpha_raw == pytest.approx(0.7 * X.sum() / Y.sum(), rel=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("mode", MODES)
def test_alpha_scale_raw_and_defaults(loss, mode):
    X, Y = poisson_data(17)
    Y = 2.0 * Y
    kw = dict(alpha=0.3, beta_loss=loss, mode=mode, max_iter=5, tol=0, random_state=0)
    raw = BCNMF(2, alpha_scale="raw", **kw).fit(X, background=Y)
    assert raw.alpha_raw_ == 0.3
    default = BCNMF(2, **kw).fit(X, background=Y)
    if mode == "reference":  # reference defaults to the paper's raw weight
        assert default.alpha_raw_ == 0.3
        assert_array_equal(default.components_, raw.components_)
    else:  # stable defaults to the relative scale
        rel = BCNMF(2, alpha_scale="relative", **kw).fit(X, background=Y)
        assert default.alpha_raw_ == rel.alpha_raw_ != 0.3
        assert_array_equal(default.components_, rel.components_)
    # without a background the weight is the alpha given (nothing to scale by)
    assert BCNMF(2, alpha_scale="relative", **kw).fit(X).alpha_raw_ == 0.3


@pytest.mark.parametrize("mode", MODES)
def test_poisson_alias_equals_kullback_leibler(mode):
    X, Y = poisson_data(18)
    kw = dict(alpha=1.0, mode=mode, max_iter=40, tol=0, random_state=2, n_init=2)
    a = factorize(X, 3, background=Y, beta_loss="poisson", **kw)
    b = factorize(X, 3, background=Y, beta_loss="kullback-leibler", **kw)
    assert_array_equal(a.components, b.components)
    assert_array_equal(a.codes, b.codes)
    assert_array_equal(a.background_codes, b.background_codes)
    assert_array_equal(a.history["objective"], b.history["objective"])
    assert a.alpha_raw == b.alpha_raw


# --------------------------------------------------------------------------------------------
# divergence
# --------------------------------------------------------------------------------------------


def _overflowing_fit(mode, which):
    """float32 counts scaled to 1e15 with a raw contrast weight of 1e10: the alpha-weighted
    squared-error products overflow float32 (max ~3.4e38) in the first sweep, so the
    iterations produce non-finite values.  (Data whose own squared norm overflows the dtype,
    e.g. 1e20 in float32, are now rejected at the boundary: test_hostile.py.)"""
    X, Y = poisson_data(19, n_x=20, n_y=15, n_features=6)
    X32 = (X * 1e15).astype(np.float32)
    Y32 = (Y * 1e15).astype(np.float32)
    kw = dict(alpha=1e10, alpha_scale="raw", mode=mode, max_iter=20, random_state=0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        if which == "estimator":
            model = BCNMF(2, **kw)
            codes = model.fit_transform(X32, background=Y32)
            out = dict(codes=codes, components=model.components_,
                       background_codes=model.background_codes_, history=model.history_,
                       objective=model.objective_, n_iter=model.n_iter_)
        else:
            res = factorize(X32, 2, background=Y32, **kw)
            out = dict(codes=res.codes, components=res.components,
                       background_codes=res.background_codes, history=res.history,
                       objective=res.objective, n_iter=res.n_iter)
    return out, record


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("which", ["estimator", "factorize"])
def test_divergence_warns_and_returns_finite_factors(mode, which):
    out, record = _overflowing_fit(mode, which)
    divergence = [w for w in record if issubclass(w.category, DivergenceWarning)]
    assert len(divergence) == 1
    assert "non-finite values" in str(divergence[0].message)
    assert "last finite state" in str(divergence[0].message)
    assert out["n_iter"] < 20
    for name in ("codes", "components", "background_codes"):
        assert out[name].dtype == np.float32, name
        assert np.all(np.isfinite(out[name])), name
        assert np.all(out[name] >= 0), name


@pytest.mark.parametrize("mode", MODES)
def test_divergence_history_and_objective_are_finite(mode):
    """'returning the last finite state': the recorded history and objective_ of that
    state must be finite as well."""
    out, _ = _overflowing_fit(mode, "estimator")
    for key, h in out["history"].items():
        assert h.shape == (out["n_iter"] + 1,), key
        assert np.all(np.isfinite(h)), key
    assert np.isfinite(out["objective"])


@pytest.mark.parametrize("mode", MODES)
def test_divergence_reported_by_divergence_warning_only(mode):
    """The DivergenceWarning is the report; numpy's floating-point RuntimeWarnings
    ('overflow encountered in matmul', ...) from inside the solver must not leak to the
    caller (under warnings-as-errors they abort the fit before it can recover)."""
    _, record = _overflowing_fit(mode, "estimator")
    leaked = sorted({str(w.message) for w in record
                     if not issubclass(w.category, DivergenceWarning)})
    assert leaked == []
