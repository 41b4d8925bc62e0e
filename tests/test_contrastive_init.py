"""The contrastive start (``init="contrastive"``, the default of stable squared error):
an oracle on planted data, determinism, restarts, every engine, and refusals."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal

from bcnmf import BCNMF, CombinedBCNMF
from bcnmf.core.init import contrastive_basis
from bcnmf.exceptions import InvalidParameterError


def _planted(seed=0, n_features=40, n_x=120, n_y=100):
    """Target and background share two strong programs on features 0-19; the target
    alone has a weak program on features 30-35 in half of its cells."""
    rng = np.random.default_rng(seed)
    shared = np.zeros((2, n_features))
    shared[0, :10], shared[1, 10:20] = 1.0, 1.0
    own = np.zeros(n_features)
    own[30:36] = 1.0
    Y = rng.gamma(2.0, 5.0, (n_y, 2)) @ shared + rng.random((n_y, n_features)) * 0.5
    X = rng.gamma(2.0, 5.0, (n_x, 2)) @ shared + rng.random((n_x, n_features)) * 0.5
    X[: n_x // 2] += rng.gamma(2.0, 1.5, (n_x // 2, 1)) * own
    return X, Y


def _quiet(model, X, Y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X, background=Y, **kw)


def test_oracle_the_top_topic_is_the_target_only_program():
    X, Y = _planted()
    # relative alpha 2: at 1 the shared programs' chance excess in this draw of the target
    # competes with the planted one
    weight = 2.0 * (X**2).sum() / (Y**2).sum()
    basis = contrastive_basis(X, Y, 1, weight, "frobenius")
    assert basis.shape == (1, X.shape[1]) and (basis > 0).all()
    assert_allclose(basis.sum(axis=1), 1.0)
    # most of the topic's weight sits on the planted features
    assert basis[0, 30:36].sum() > 0.5
    # negative control: without the contrast (weight 0) the top direction is shared
    plain = contrastive_basis(X, Y, 1, 0.0, "frobenius")
    assert plain[0, 30:36].sum() < 0.2


def test_shared_topics_are_projected_out():
    """With a shared program among the shared topics and no contrast, the start leaves
    that program's span: the top direction is no longer the shared one."""
    X, Y = _planted()
    shared = np.zeros((2, X.shape[1]))
    shared[0, :10], shared[1, 10:20] = 0.1, 0.1
    basis = contrastive_basis(X, Y, 1, 0.0, "frobenius", shared)
    assert basis[0, :20].sum() < 0.5
    assert basis[0, 30:36].sum() > 0.3


def test_sparse_and_dense_give_the_same_start_for_both_losses():
    X, Y = _planted()
    X, Y = np.round(X), np.round(Y)
    for loss in ("frobenius", "kullback-leibler"):
        dense = contrastive_basis(X, Y, 2, 1.0, loss)
        csr = contrastive_basis(sp.csr_matrix(X), sp.csr_matrix(Y), 2, 1.0, loss)
        assert_allclose(csr, dense, rtol=1e-8, atol=1e-12)


def test_lanczos_and_the_dense_solver_agree(monkeypatch):
    from bcnmf.core import init

    X, Y = _planted(n_features=40)
    dense = contrastive_basis(X, Y, 2, 1.0, "frobenius")
    monkeypatch.setattr(init, "DENSE_EIGEN_FEATURES", 0)
    lanczos = contrastive_basis(X, Y, 2, 1.0, "frobenius")
    assert_allclose(lanczos, dense, rtol=1e-6, atol=1e-9)


def test_default_start_of_squared_error_is_contrastive_and_seed_free():
    X, Y = _planted()
    a = _quiet(BCNMF(2, alpha=1.0, random_state=0, max_iter=80), X, Y)
    b = _quiet(BCNMF(2, alpha=1.0, random_state=1, max_iter=80), X, Y)
    c = _quiet(BCNMF(2, alpha=1.0, init="contrastive", random_state=5, max_iter=80), X, Y)
    assert_array_equal(a.components_, b.components_)
    assert_array_equal(a.components_, c.components_)
    # negative control: random starts depend on the seed
    r0 = _quiet(BCNMF(2, alpha=1.0, init="random", random_state=0, max_iter=80), X, Y)
    r1 = _quiet(BCNMF(2, alpha=1.0, init="random", random_state=1, max_iter=80), X, Y)
    assert not np.allclose(r0.components_, r1.components_)
    assert not np.allclose(a.components_, r0.components_)


def test_poisson_defaults_to_random_and_accepts_contrastive():
    X, Y = _planted()
    X, Y = np.round(X), np.round(Y)
    r0 = _quiet(BCNMF(2, alpha=1.0, beta_loss="poisson", random_state=0, max_iter=40), X, Y)
    r1 = _quiet(BCNMF(2, alpha=1.0, beta_loss="poisson", random_state=1, max_iter=40), X, Y)
    assert not np.allclose(r0.components_, r1.components_)
    c0 = _quiet(BCNMF(2, alpha=1.0, beta_loss="poisson", init="contrastive", random_state=0,
                      max_iter=40), X, Y)
    c1 = _quiet(BCNMF(2, alpha=1.0, beta_loss="poisson", init="contrastive", random_state=1,
                      max_iter=40), X, Y)
    assert_array_equal(c0.components_, c1.components_)
    assert np.isfinite(c0.components_).all() and (c0.components_ >= 0).all()


def test_restarts_after_the_first_are_drawn():
    X, Y = _planted()
    one = _quiet(BCNMF(2, alpha=1.0, max_iter=60, tol=0, random_state=0), X, Y)
    three = _quiet(BCNMF(2, alpha=1.0, max_iter=60, tol=0, n_init=3, random_state=0), X, Y)
    objectives = three.restart_objectives_
    assert objectives[0] == pytest.approx(one.objective_, rel=1e-12)
    assert len(set(np.round(objectives, 6))) == 3


def test_every_in_process_engine_starts_alike(tmp_path):
    X, Y = _planted()
    kw = dict(alpha=1.0, max_iter=30, tol=0)
    dense = _quiet(BCNMF(2, **kw), X, Y)
    csr = _quiet(BCNMF(2, **kw), sp.csr_matrix(X), sp.csr_matrix(Y))
    xm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", shape=X.shape)
    ym = np.lib.format.open_memmap(tmp_path / "y.npy", mode="w+", shape=Y.shape)
    xm[:], ym[:] = X, Y
    blocks = _quiet(BCNMF(2, block_size=25, **kw), xm, ym)
    for other in (csr, blocks):
        assert_allclose(other.components_, dense.components_, rtol=1e-7, atol=1e-12)


def test_missing_values_start_from_the_relaxation_too():
    """With missing entries (NaN or a mask) the start is computed with every missing entry
    at its feature's observed mean and the codes on the observed entries: seed-free, and it
    still finds the planted program."""
    X, Y = _planted()
    rng = np.random.default_rng(7)
    Xn, Yn = X.copy(), Y.copy()
    Xn[rng.random(X.shape) < 0.1] = np.nan
    Yn[rng.random(Y.shape) < 0.1] = np.nan
    kw = dict(alpha=2.0, max_iter=1, tol=0, n_shared=0)
    a = _quiet(BCNMF(1, random_state=0, **kw), Xn, Yn)
    b = _quiet(BCNMF(1, random_state=1, **kw), Xn, Yn)
    assert_array_equal(a.components_, b.components_)
    top = a.components_[0] / a.components_[0].sum()
    assert top[30:36].sum() > 0.5
    # a mask with junk under False starts alike
    mask, bg = ~np.isnan(Xn), ~np.isnan(Yn)
    m = _quiet(BCNMF(1, random_state=3, **kw), np.where(mask, X, -1.0), np.where(bg, Y, -1.0),
               mask=mask, background_mask=bg)
    assert_allclose(m.components_, a.components_, rtol=1e-10)
    # negative control: random starts with missing values depend on the seed
    r0 = _quiet(BCNMF(1, init="random", random_state=0, **kw), Xn, Yn)
    r1 = _quiet(BCNMF(1, init="random", random_state=1, **kw), Xn, Yn)
    assert not np.allclose(r0.components_, r1.components_)


def test_without_background_the_start_is_drawn():
    X, _ = _planted()
    a = _quiet(BCNMF(2, max_iter=30, random_state=0), X, None)
    b = _quiet(BCNMF(2, max_iter=30, random_state=1), X, None)
    assert not np.allclose(a.components_, b.components_)


def test_estimators_without_the_contrastive_start_refuse_it():
    X, Y = _planted()
    with pytest.raises(InvalidParameterError, match="init"):
        CombinedBCNMF(2, init="contrastive").fit(X, background=Y)
    with pytest.raises(InvalidParameterError, match="'contrastive'"):
        BCNMF(2, init="svd").fit(X, background=Y)


def test_input_is_not_modified():
    X, Y = _planted()
    X0, Y0 = X.copy(), Y.copy()
    Xs = sp.csr_matrix(np.round(X))
    data0 = Xs.data.copy()
    contrastive_basis(X, Y, 2, 1.0, "frobenius")
    contrastive_basis(Xs, sp.csr_matrix(np.round(Y)), 2, 1.0, "kullback-leibler")
    assert_array_equal(X, X0) and assert_array_equal(Y, Y0)
    assert_array_equal(Xs.data, data0)
