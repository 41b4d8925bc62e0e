"""Tests of the numerical core: kernel, basis step, solver and fitting pipeline.

Everything here is a property or an equivalence (STYLE.md, habit 10):

* the authors' algorithm (``mode="reference"``) equals a slow dense transcription of the
  paper's multiplicative update rules (docs/model.md), written below in the paper's
  orientation (features x cells) with explicit all-ones matrices;
* every positive/negative split used by a multiplicative step is the gradient of the
  objective (central finite differences);
* one basis step with the codes fixed never increases D_X - alpha D_Y;
* alpha = 0 is scikit-learn's multiplicative-update NMF from the same start;
* sparse equals dense, float32 agrees with float64, the CSR kernel equals the dense one;
* solver outputs, history and stopping rule behave as documented.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.decomposition import NMF

from bcnmf import BCNMF, factorize
from bcnmf.core import updates
from bcnmf.core.fit import EVAL_EVERY, _restart_seeds
from bcnmf.core.init import initial_factors
from bcnmf.core.updates import (FROBENIUS, KL, StepPolicy, basis_step, make_block,
                                sweep_block, view_basis)
from bcnmf.exceptions import ConvergenceWarning

LOSSES = (FROBENIUS, KL)
#: the authors' constants (added to denominators and to Poisson predictions)
AUTHORS_EPS = {FROBENIUS: 1e-10, KL: 1e-16}

#: the CSR squared-error kernel's "no denominator offset"
NO_DEN_OFFSET = np.empty((0, 0))


# --------------------------------------------------------------------------------------------
# slow, obviously-correct dense references
# --------------------------------------------------------------------------------------------


def dense(a):
    return a.toarray() if sp.issparse(a) else np.asarray(a, dtype=np.float64)


def divergence(A, P, loss, eps=0.0):
    """D(A | P): squared Frobenius distance or generalised KL, summed over all entries.
    ``eps`` (KL only) is added to P inside the logarithm, as the library does, so that
    the value stays finite where P underflows to 0 while A > 0."""
    A = dense(A)
    if loss == FROBENIUS:
        return float(np.sum((A - P) ** 2))
    pos = A > 0
    return float(np.sum(A[pos] * np.log(A[pos] / (P[pos] + eps))) - A.sum() + P.sum())


def reference_updates(X, Y, W, HX, HY, alpha, loss, gamma, n_iter):
    """The paper's update rules (docs/model.md), paper orientation: X (M x N_X),
    Y (M x N_Y), W (M x K), HX (K x N_X), HY (K x N_Y).  Order: HX, HY, then W with the new codes.  Damping:
    every ratio r becomes max(r, eps) ** gamma."""
    eps = AUTHORS_EPS[loss]
    X, Y = dense(X), dense(Y)
    W, HX, HY = W.copy(), HX.copy(), HY.copy()
    one_x, one_y = np.ones_like(X), np.ones_like(Y)

    def damp(r):
        return r if gamma == 1.0 else np.maximum(r, eps) ** gamma

    for _ in range(n_iter):
        if loss == FROBENIUS:
            HX = HX * damp((W.T @ X) / (W.T @ W @ HX + eps))
            HY = HY * damp((W.T @ Y) / (W.T @ W @ HY + eps))
            W = W * damp((X @ HX.T + alpha * W @ HY @ HY.T)
                         / (W @ HX @ HX.T + alpha * Y @ HY.T + eps))
        else:
            HX = HX * damp((W.T @ (X / (W @ HX + eps))) / (W.T @ one_x + eps))
            HY = HY * damp((W.T @ (Y / (W @ HY + eps))) / (W.T @ one_y + eps))
            W = W * damp(((X / (W @ HX + eps)) @ HX.T + alpha * one_y @ HY.T)
                         / (one_x @ HX.T + alpha * (Y / (W @ HY + eps)) @ HY.T + eps))
    return W, HX, HY


def problem(rng, n_x=9, n_y=6, n_features=7, k=3, zeros=0.3):
    """Non-negative target/background (cells x features) with some exact zeros, and
    positive initial factors (sample-major: basis K x F, codes n x K)."""
    X = rng.random((n_x, n_features)) * (rng.random((n_x, n_features)) > zeros) * 3.0
    Y = rng.random((n_y, n_features)) * (rng.random((n_y, n_features)) > zeros) * 2.0
    basis = rng.random((k, n_features)) + 0.1
    cx = rng.random((n_x, k)) + 0.1
    cy = rng.random((n_y, k)) + 0.1
    return X, Y, basis, cx, cy


# --------------------------------------------------------------------------------------------
# 1. reference mode equals the dense transcription of the paper's rules
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("damping", [None, 0.5])
@pytest.mark.parametrize("sparse", [False, True])
def test_reference_mode_equals_dense_transcription(loss, damping, sparse):
    rng = np.random.default_rng(0)
    X, Y, basis0, cx0, cy0 = problem(rng)
    alpha, n_iter = 0.5, 25
    Xin, Yin = (sp.csr_matrix(X), sp.csr_matrix(Y)) if sparse else (X, Y)
    model = BCNMF(3, alpha=alpha, beta_loss=loss, mode="reference", alpha_scale="raw",
                  damping=damping, max_iter=n_iter)
    codes = model.fit_transform(Xin, background=Yin, init_components=basis0,
                                init_codes=cx0, init_background_codes=cy0)

    W, HX, HY = reference_updates(X.T, Y.T, basis0.T, cx0.T, cy0.T, alpha, loss,
                                  1.0 if damping is None else damping, n_iter)
    np.testing.assert_allclose(model.components_, W.T, rtol=1e-8)
    np.testing.assert_allclose(codes, HX.T, rtol=1e-8)
    np.testing.assert_allclose(model.background_codes_, HY.T, rtol=1e-8)
    assert model.n_iter_ == n_iter

    dx = divergence(X.T, W @ HX, loss)
    dy = divergence(Y.T, W @ HY, loss)
    np.testing.assert_allclose(model.history_["target"][-1], dx, rtol=1e-8)
    np.testing.assert_allclose(model.history_["background"][-1], dy, rtol=1e-8)
    np.testing.assert_allclose(model.history_["objective"][-1], dx - alpha * dy, rtol=1e-8)
    np.testing.assert_allclose(model.objective_, dx - alpha * dy, rtol=1e-8)

    # the first record is the initial state
    np.testing.assert_allclose(model.history_["target"][0],
                               divergence(X, cx0 @ basis0, loss), rtol=1e-8)
    np.testing.assert_allclose(model.history_["background"][0],
                               divergence(Y, cy0 @ basis0, loss), rtol=1e-8)


@pytest.mark.parametrize("loss", LOSSES)
def test_reference_multistart_keeps_lowest_final_objective(loss):
    rng = np.random.default_rng(1)
    X, Y, *_ = problem(rng, zeros=0.0)
    alpha, n_iter, n_init, seed = 0.5, 25, 3, 7

    model = BCNMF(3, alpha=alpha, beta_loss=loss, mode="reference", alpha_scale="raw",
                  max_iter=n_iter, n_init=n_init, random_state=seed).fit(X, background=Y)
    assert model.restart_objectives_.shape == (n_init,)
    np.testing.assert_allclose(model.objective_, model.restart_objectives_.min(), rtol=0)

    # every restart objective is the dense reference's final objective from that
    # restart's initial factors, and the returned factors are those of the argmin
    res = factorize(X, 3, background=Y, alpha=alpha, beta_loss=loss, mode="reference",
                    alpha_scale="raw", max_iter=n_iter, n_init=n_init, random_state=seed)
    assert res.best_restart == int(np.argmin(res.restart_objectives))
    np.testing.assert_allclose(res.components, model.components_, rtol=0)
    expected = []
    finals = []
    for s in _restart_seeds(seed, n_init):
        b0, c0, d0 = initial_factors(X, Y, 3, "uniform", np.random.default_rng(s),
                                     np.float64)
        W, HX, HY = reference_updates(X.T, Y.T, b0.T, c0.T, d0.T, alpha, loss, 1.0, n_iter)
        expected.append(divergence(X.T, W @ HX, loss) - alpha * divergence(Y.T, W @ HY, loss))
        finals.append(W.T)
    np.testing.assert_allclose(res.restart_objectives, expected, rtol=1e-8)
    np.testing.assert_allclose(res.components, finals[int(np.argmin(expected))], rtol=1e-8)


# --------------------------------------------------------------------------------------------
# 2. finite-difference checks of the positive/negative splits
# --------------------------------------------------------------------------------------------
#
# The split is read from the kernel itself: every multiplicative step goes through
# ``updates.mu_step(x, num, den, policy, floor)``, so a spy on it (monkeypatched in the
# module namespace, where ``sweep_block`` and ``basis_step`` look it up) records the
# numerator and denominator exactly as the kernel built them.  The gradient of the
# minimised function is then ``c (den - num)`` with ``c = 2`` for the squared error
# (the kernel drops the common factor 2 of ``d||A - CB||^2``) and ``c = 1`` for KL.

GRAD_FACTOR = {FROBENIUS: 2.0, KL: 1.0}


@pytest.fixture
def split_spy(monkeypatch):
    calls = []
    original = updates.mu_step

    def spy(x, num, den, *args, **kwargs):
        calls.append((np.array(num, dtype=np.float64),
                      np.broadcast_to(den, x.shape).astype(np.float64)))
        return original(x, num, den, *args, **kwargs)

    monkeypatch.setattr(updates, "mu_step", spy)
    return calls


def assert_gradient(analytic, numeric):
    scale = np.max(np.abs(numeric))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-6 * scale)


def tiny_problem(seed):
    rng = np.random.default_rng(seed)
    X = rng.random((5, 6)) * (rng.random((5, 6)) > 0.25) * 2.0
    Y = rng.random((4, 6)) * (rng.random((4, 6)) > 0.25) * 2.0
    basis = rng.random((2, 6)) + 0.2
    cx = rng.random((5, 2)) + 0.2
    cy = rng.random((4, 2)) + 0.2
    off_x = rng.random(6) * 0.3 + 0.05
    off_y = rng.random(6) * 0.3 + 0.05
    return X, Y, basis, cx, cy, off_x, off_y


LOSS_OFFSET = [(FROBENIUS, False), (KL, False), (KL, True)]


@pytest.mark.parametrize("loss,with_offset", LOSS_OFFSET)
def test_code_split_is_gradient_of_block_divergence(loss, with_offset, central_gradient):
    X, Y, basis, cx, cy, off_x, off_y = tiny_problem(2)
    policy = StepPolicy(eps=AUTHORS_EPS[loss])
    view = view_basis(basis, loss)
    for A, codes, off in ((X, cx, off_x), (Y, cy, off_y)):
        offset = off if with_offset else None
        shift = 0.0 if offset is None else offset[None, :]
        block = make_block(A, loss, offset)
        # the kernel's numerator, recovered from its undamped, unfloored update ratio
        # c_new / c = num / (den + eps), with the denominator of the rule:
        # C G (squared error, G = B B^T) or the row sums of B broadcast (KL)
        updated = codes.copy()
        div, _ = sweep_block(block, updated, view, loss, policy, want_parts=False)
        den = codes @ view.gram if loss == FROBENIUS else np.broadcast_to(view.rowsum, codes.shape)
        num = updated / codes * (den + policy.eps)
        assert np.all(num >= 0) and np.all(den > 0)

        def f(c):
            return divergence(A, c @ basis + shift, loss)

        np.testing.assert_allclose(div, f(codes), rtol=1e-10)
        assert_gradient(GRAD_FACTOR[loss] * (den - num), central_gradient(f, codes))


@pytest.mark.parametrize("loss,with_offset", LOSS_OFFSET)
@pytest.mark.parametrize("alpha", [0.0, 0.7, 3.0])
def test_basis_split_is_gradient_of_contrast(loss, with_offset, alpha, split_spy,
                                             central_gradient):
    X, Y, basis, cx, cy, off_x, off_y = tiny_problem(3)
    policy = StepPolicy(eps=AUTHORS_EPS[loss])
    ox, oy = (off_x, off_y) if with_offset else (None, None)
    sx = 0.0 if ox is None else ox[None, :]
    sy = 0.0 if oy is None else oy[None, :]
    view = view_basis(basis, loss)
    # parts at the given codes (no code update), then one basis step
    _, px = sweep_block(make_block(X, loss, ox), cx.copy(), view, loss, policy, update=False)
    _, py = sweep_block(make_block(Y, loss, oy), cy.copy(), view, loss, policy, update=False)
    split_spy.clear()
    basis_step(basis.copy(), px, py, alpha, loss, policy)
    assert len(split_spy) == 1
    numer, denom = split_spy[0]
    assert np.all(numer >= 0) and np.all(denom > 0)

    def f(b):
        return (divergence(X, cx @ b + sx, loss)
                - alpha * divergence(Y, cy @ b + sy, loss))

    assert_gradient(GRAD_FACTOR[loss] * (denom - numer), central_gradient(f, basis))


# --------------------------------------------------------------------------------------------
# 3. fixed-codes monotonicity of the basis step
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss,with_offset", LOSS_OFFSET)
@pytest.mark.parametrize("alpha", [0.0, 0.5, 2.0, 10.0])
@pytest.mark.parametrize("gamma", [1.0, 0.5])
def test_basis_step_never_increases_contrast(loss, with_offset, alpha, gamma):
    policy = StepPolicy(eps=AUTHORS_EPS[loss], gamma=gamma)
    for seed in range(8):
        rng = np.random.default_rng(100 + seed)
        X = rng.random((12, 9)) * 2.0
        Y = rng.random((10, 9)) * 2.0
        basis = rng.random((3, 9)) + 0.05
        cx = rng.random((12, 3)) + 0.05
        cy = rng.random((10, 3)) + 0.05
        ox = rng.random(9) * 0.3 if with_offset else None
        oy = rng.random(9) * 0.3 if with_offset else None
        sx = 0.0 if ox is None else ox[None, :]
        sy = 0.0 if oy is None else oy[None, :]

        def f(b):
            dx = divergence(X, cx @ b + sx, loss)
            dy = divergence(Y, cy @ b + sy, loss)
            return dx - alpha * dy, dx + alpha * dy

        view = view_basis(basis, loss)
        _, px = sweep_block(make_block(X, loss, ox), cx.copy(), view, loss, policy,
                            update=False)
        _, py = sweep_block(make_block(Y, loss, oy), cy.copy(), view, loss, policy,
                            update=False)
        new = basis.copy()
        basis_step(new, px, py, alpha, loss, policy)
        before, size = f(basis)
        after, _ = f(new)
        assert np.all(np.isfinite(new)) and np.all(new >= 0)
        assert after <= before + 1e-12 * size, (seed, before, after)


# --------------------------------------------------------------------------------------------
# 4. alpha = 0 is scikit-learn's multiplicative-update NMF
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
def test_alpha_zero_equals_sklearn_mu(loss):
    rng = np.random.default_rng(4)
    X = rng.random((20, 8)) * 2.0 + 0.05
    basis0 = rng.random((3, 8)) + 0.1
    codes0 = rng.random((20, 3)) + 0.1
    n_iter = 60

    sk = NMF(n_components=3, solver="mu", beta_loss=loss, init="custom",
             max_iter=n_iter, tol=0)
    sk_codes = sk.fit_transform(X, W=codes0.copy(), H=basis0.copy())

    model = BCNMF(3, alpha=0, beta_loss=loss, mode="stable", smoothing=0, tol=0,
                  max_iter=n_iter)
    codes = model.fit_transform(X, init_components=basis0, init_codes=codes0)
    assert model.n_iter_ == n_iter

    # stable mode normalises the basis; the updates are gauge-equivariant, so the
    # products agree (the only differences are the 1e-10 / 1e-16 epsilons and floors)
    np.testing.assert_allclose(codes @ model.components_, sk_codes @ sk.components_,
                               rtol=1e-6)
    unit = sk.components_ / sk.components_.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.components_, unit, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# 5. sparse = dense, float32 ~ float64, CSR kernel = dense kernel
# --------------------------------------------------------------------------------------------


def _fit(X, Y, loss, mode, **kw):
    model = BCNMF(3, alpha=0.5, beta_loss=loss, mode=mode, tol=0, max_iter=30,
                  random_state=0, **kw)
    codes = model.fit_transform(X, background=Y)
    return model, codes


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("mode", ["stable", "reference"])
@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_equals_dense(loss, mode, fmt):
    rng = np.random.default_rng(5)
    X, Y, *_ = problem(rng, n_x=15, n_y=12, n_features=10, zeros=0.4)
    md, cd = _fit(X, Y, loss, mode)
    ms, cs = _fit(sp.csr_matrix(X).asformat(fmt), sp.csr_matrix(Y).asformat(fmt), loss, mode)
    np.testing.assert_allclose(ms.components_, md.components_, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(cs, cd, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(ms.background_codes_, md.background_codes_, rtol=1e-8,
                               atol=1e-14)
    for key in ("target", "background", "objective"):
        np.testing.assert_allclose(ms.history_[key], md.history_[key], rtol=1e-8)


def test_view_basis_gram_on_one_blas_thread_is_the_same():
    """The Gram product runs on one BLAS thread (no waiting for BLAS workers
    after a parallel sweep); it equals the multithreaded product bit for bit."""
    from threadpoolctl import threadpool_limits
    basis = np.random.default_rng(3).random((20, 10_000))
    with threadpool_limits(2, user_api="blas"):
        expected = basis @ basis.T
        view = updates.view_basis(basis, FROBENIUS)
    np.testing.assert_array_equal(view.gram, expected)


@pytest.mark.parametrize("loss, per_entry", [(FROBENIUS, False), (KL, False), (KL, True)])
@pytest.mark.parametrize("want_div", [False, True])
def test_feature_tiles_change_no_bit(loss, want_div, per_entry):
    """The CSR kernels sweep features tile by tile (cache blocking); every
    row's entries and every feature's rows are still summed in storage
    order, so any tile width gives bit-identical codes, parts and divergence
    (with and without a per-entry prediction offset)."""
    from bcnmf.core import _csr_kernels
    rng = np.random.default_rng(5)
    k, f = 4, 700
    a = sp.random(600, f, density=0.08, format="csr", random_state=rng) * 10
    entry = rng.random(a.nnz) if per_entry else np.empty(0)
    basis = rng.random((k, f)) + 0.1
    codes0 = rng.random((a.shape[0], k)) + 0.1
    view = updates.view_basis(basis, loss)
    kernel = _csr_kernels.kernel(loss, False, 0)
    results = []
    # (f, "rows"): the untiled KL flavour used when all features fit in one tile
    for tile in (f, 1, 64, 333, (f, "rows")):
        kernel = _csr_kernels.kernel(loss, False, 0, tiled=not isinstance(tile, tuple))
        tile = tile[0] if isinstance(tile, tuple) else tile
        codes = codes0.copy()
        cross = np.zeros((1, f, k))
        if loss == FROBENIUS:
            cgram = np.zeros((1, k, k))
            div = kernel(a.data, a.indices, a.indptr, codes, view.basis_t, view.gram, 1e-10,
                         0.5, 1e-9, True, True, cross, cgram, 1, tile, NO_DEN_OFFSET)
            div = np.array(div)
        else:
            div = kernel(a.data, a.indices, a.indptr, codes, view.basis_t, view.rowsum,
                         np.full(f, 0.01), 1e-16, 0.5, 1e-9, True, True, want_div,
                         cross, 1, tile, entry)
            div, cgram = np.array(div), None
        results.append((div, codes, cross, cgram))
    for other in results[1:]:
        for x, y in zip(results[0], other):
            if x is not None:
                np.testing.assert_array_equal(y, x)
    assert _csr_kernels.tile_features(10_000, 20, 8) < 10_000   # large F is tiled
    assert _csr_kernels.tile_features(300, 20, 8) == 300


@pytest.mark.parametrize("k", [3, 10])
@pytest.mark.parametrize("loss, tiled", [(KL, True), (KL, False), (FROBENIUS, True)])
def test_unrolled_kernel_agrees_with_the_generic_one(loss, tiled, k):
    """Kernels specialised on K hold a row's codes and numerators in scalar
    locals (templates expanded per K); they add the same terms in the same
    order as the generic kernel, so codes, parts and divergence terms agree
    to rounding (the compiler may fuse multiply-adds differently), with and
    without a per-entry offset (KL); so do the entry dot products."""
    from bcnmf.core import _csr_kernels
    rng = np.random.default_rng(8)
    f = 300
    a = sp.random(200, f, density=0.1, format="csr", random_state=rng) * 10
    basis = rng.random((k, f)) + 0.1
    codes0 = rng.random((a.shape[0], k)) + 0.1
    view = updates.view_basis(basis, loss)
    entries = (np.empty(0), rng.random(a.nnz)) if loss == KL else (None,)
    for entry in entries:
        results = []
        for spec in (0, k):
            kernel = _csr_kernels.kernel(loss, False, spec, tiled=tiled)
            codes = codes0.copy()
            cross, cgram = np.zeros((1, f, k)), np.zeros((1, k, k))
            if loss == KL:
                div = kernel(a.data, a.indices, a.indptr, codes, view.basis_t, view.rowsum,
                             np.full(f, 0.01), 1e-16, 0.5, 1e-9, True, True, True, cross, 1,
                             64 if tiled else f, entry)
            else:
                div = kernel(a.data, a.indices, a.indptr, codes, view.basis_t, view.gram,
                             1e-10, 0.5, 1e-9, True, True, cross, cgram, 1, 64,
                             NO_DEN_OFFSET)
            results.append((np.array(div), codes, cross, cgram))
        for x, y in zip(*results):
            np.testing.assert_allclose(y, x, rtol=1e-13)
        assert np.all(results[0][0] != 0.0)
    dots = []
    for parallel in (False, True):
        out = np.empty(a.nnz)
        _csr_kernels.entry_dots(a.indices, a.indptr, codes0, 1, view.basis_t[:, 1:].copy(),
                                out, parallel=parallel)
        dots.append(out)
    np.testing.assert_allclose(dots[1], dots[0], rtol=1e-13)
    expected = (codes0[:, 1:] @ basis[1:])[a.nonzero()]
    np.testing.assert_allclose(dots[0], expected, rtol=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("k", [3, 5])
def test_specialised_parallel_kernel_equals_generic_serial_kernel(loss, k):
    """Blocks above the work threshold run a kernel compiled for their K in
    parallel chunks; it must compute what the generic serial kernel does."""
    from bcnmf.core import _csr_kernels
    rng = np.random.default_rng(12)
    n = updates._PARALLEL_MIN_WORK // (k * 40) + 50   # ~40 nonzeros per row
    a = sp.random(n, 400, density=0.1, format="csr", random_state=rng) * 10
    assert a.nnz * k >= updates._PARALLEL_MIN_WORK
    basis = rng.random((k, 400)) + 0.1
    codes0 = rng.random((n, k)) + 0.1
    offset = rng.random(400) * 0.01
    view = updates.view_basis(basis, loss)
    results = []
    for parallel, spec, chunks, tile in [(False, 0, 1, 400), (True, k, 2, 64),
                                         (True, k, 3, 150)]:
        kernel = _csr_kernels.kernel(loss, parallel, spec)
        codes = codes0.copy()
        cross = np.zeros((chunks, 400, k))
        if loss == FROBENIUS:
            cgram = np.zeros((chunks, k, k))
            div = kernel(a.data, a.indices, a.indptr, codes, view.basis_t, view.gram, 1e-10,
                         1.0, 0.0, True, True, cross, cgram, chunks, tile, NO_DEN_OFFSET)
            second = cgram.sum(axis=0)
        else:
            div = kernel(a.data, a.indices, a.indptr, codes, view.basis_t, view.rowsum,
                         offset, 1e-16, 1.0, 0.0, True, True, True, cross, chunks, tile,
                         np.empty(0))
            second = None
        results.append((np.asarray(div), codes, cross.sum(axis=0), second))
    for other in results[1:]:
        for x, y in zip(results[0], other):
            if x is not None:
                np.testing.assert_allclose(y, x, rtol=1e-12)
    # and the block path picks the specialised kernel for this block
    kernel, _ = updates._kernel_for(loss, a, k)
    assert kernel is _csr_kernels.kernel(loss, True, k)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("mode", ["stable", "reference"])
@pytest.mark.parametrize("sparse", [False, True])
def test_float32_agrees_with_float64(loss, mode, sparse):
    rng = np.random.default_rng(6)
    X, Y, *_ = problem(rng, n_x=15, n_y=12, n_features=10, zeros=0.2)
    conv = sp.csr_matrix if sparse else np.asarray
    m64, c64 = _fit(conv(X), conv(Y), loss, mode)
    m32, c32 = _fit(conv(X.astype(np.float32)), conv(Y.astype(np.float32)), loss, mode)
    for a in (m32.components_, c32, m32.background_codes_):
        assert a.dtype == np.float32
    for a in (m64.components_, c64, m64.background_codes_):
        assert a.dtype == np.float64
    rx64 = c64 @ m64.components_
    ry64 = m64.background_codes_ @ m64.components_
    np.testing.assert_allclose(c32 @ m32.components_, rx64, rtol=1e-3,
                               atol=1e-3 * np.abs(rx64).max())
    np.testing.assert_allclose(m32.background_codes_ @ m32.components_, ry64, rtol=1e-3,
                               atol=1e-3 * np.abs(ry64).max())


@pytest.mark.parametrize("loss,with_offset", LOSS_OFFSET)
@pytest.mark.parametrize("gamma", [1.0, 0.5])
@pytest.mark.parametrize("code_floor", [0.0, 1e-3])
def test_csr_kernel_equals_dense_kernel(loss, with_offset, gamma, code_floor):
    rng = np.random.default_rng(7)
    A = rng.random((40, 11)) * (rng.random((40, 11)) > 0.5) * 3.0
    A[3] = 0.0          # an empty row
    A[:, 5] = 0.0       # an empty column
    basis = rng.random((3, 11)) + 0.05
    codes = rng.random((40, 3)) + 0.05
    codes[7, 1] = 1e-6  # a code that the floor lifts
    offset = rng.random(11) * 0.2 if with_offset else None
    policy = StepPolicy(eps=AUTHORS_EPS[loss], gamma=gamma, code_floor=code_floor)
    view = view_basis(basis, loss)

    cd, cs = codes.copy(), codes.copy()
    dd, pd_ = sweep_block(make_block(A, loss, offset), cd, view, loss, policy)
    ds, ps = sweep_block(make_block(sp.csr_matrix(A), loss, offset), cs, view, loss, policy)
    np.testing.assert_allclose(ds, dd, rtol=1e-10)
    np.testing.assert_allclose(cs, cd, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(ps.cross, pd_.cross, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(ps.second, pd_.second, rtol=1e-10)
    # the divergence is that of the state entering the sweep
    shift = 0.0 if offset is None else offset[None, :]
    np.testing.assert_allclose(dd, divergence(A, codes @ basis + shift, loss), rtol=1e-10)


# --------------------------------------------------------------------------------------------
# 6. solver properties
# --------------------------------------------------------------------------------------------


def _with_empty_rows_and_columns(rng):
    X = rng.random((14, 9)) * (rng.random((14, 9)) > 0.3) * 4.0
    Y = rng.random((11, 9)) * (rng.random((11, 9)) > 0.3) * 4.0
    X[[2, 9]] = 0.0
    Y[[0, 5]] = 0.0
    X[:, 1] = 0.0       # empty in the target only
    Y[:, 4] = 0.0       # empty in the background only
    X[:, 7] = Y[:, 7] = 0.0   # empty in both
    return X, Y


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("mode", ["stable", "reference"])
@pytest.mark.parametrize("sparse", [False, True])
def test_outputs_finite_nonnegative_with_empty_rows_and_columns(loss, mode, sparse):
    rng = np.random.default_rng(8)
    X, Y = _with_empty_rows_and_columns(rng)
    conv = sp.csr_matrix if sparse else np.asarray
    # n_shared=0: the check below rebuilds the prediction from the returned factors
    # (the shared path's records are checked in test_shared.py)
    model = BCNMF(3, alpha=0.5, beta_loss=loss, mode=mode, tol=0, max_iter=60,
                  random_state=0, n_shared=0)
    codes = model.fit_transform(conv(X), background=conv(Y))
    for a in (model.components_, codes, model.background_codes_):
        assert np.all(np.isfinite(a)) and np.all(a >= 0)
    h = model.history_
    assert model.n_iter_ == 60
    assert_recorded_sweeps(h, model.n_iter_, loss)
    for key in ("target", "background", "objective"):
        assert np.all(np.isfinite(h[key]))
    np.testing.assert_allclose(h["objective"], h["target"] - model.alpha_raw_ * h["background"],
                               rtol=1e-12, atol=1e-12 * np.abs(h["target"]).max())
    if mode == "stable":
        np.testing.assert_allclose(model.components_.sum(axis=1), 1.0, rtol=1e-9)
    # the final record is the divergence at the returned factors.  Reference Poisson
    # drives basis entries of background-only features to exactly 0 (docs/model.md), so
    # D(Y | W H_Y) is infinite; the library reports it with the predictions offset by
    # eps inside the log (as the authors' code), and so does the check.
    if loss == KL and mode == "stable":   # stable Poisson predicts codes B + smoothing*mean
        sx, sy = 0.1 * X.mean(axis=0), 0.1 * Y.mean(axis=0)
    else:
        sx = sy = 0.0
    eps = AUTHORS_EPS[loss]
    np.testing.assert_allclose(
        h["target"][-1], divergence(X, codes @ model.components_ + sx, loss, eps),
        rtol=1e-8)
    np.testing.assert_allclose(
        h["background"][-1],
        divergence(Y, model.background_codes_ @ model.components_ + sy, loss, eps),
        rtol=1e-8)


def assert_recorded_sweeps(history, n_iter, loss):
    """The history records the state entering every ``EVAL_EVERY[loss]``-th
    sweep and the final state, and nothing else."""
    expected = np.unique(np.r_[np.arange(0, n_iter, EVAL_EVERY[loss]), n_iter])
    np.testing.assert_array_equal(history["iteration"], expected)
    for key in ("target", "background", "objective"):
        assert history[key].shape == expected.shape, key


def test_history_is_recorded_every_sweep_for_squared_error_every_tenth_for_kl():
    assert EVAL_EVERY == {FROBENIUS: 1, KL: 10}
    X = _planted(np.random.default_rng(3))
    for loss in LOSSES:
        model = BCNMF(2, beta_loss=loss, max_iter=25, tol=0, random_state=0, alpha=1.5).fit(X)
        iters = model.history_["iteration"]
        expected = np.arange(26) if loss == FROBENIUS else np.array([0, 10, 20, 25])
        np.testing.assert_array_equal(iters, expected)


def _planted(rng):
    """Exact rank-2 non-negative target with disjoint topic supports."""
    basis = np.zeros((2, 12))
    basis[0, :6] = rng.random(6) + 0.5
    basis[1, 6:] = rng.random(6) + 0.5
    codes = rng.random((40, 2)) + 0.1
    return codes @ basis


@pytest.mark.parametrize("loss", LOSSES)
def test_stopping_rule_fires_on_planted_problem(loss):
    X = _planted(np.random.default_rng(9))
    max_iter = 2000
    model = BCNMF(2, beta_loss=loss, max_iter=max_iter, random_state=0, alpha=1.5).fit(X)
    assert model.n_iter_ < max_iter
    assert_recorded_sweeps(model.history_, model.n_iter_, loss)
    np.testing.assert_allclose(model.components_.sum(axis=1), 1.0, rtol=1e-9)
    # it stopped because the topics converged: a near-exact fit of the planted target
    fit = model.transform(X) @ model.components_
    assert np.linalg.norm(fit - X) <= 1e-2 * np.linalg.norm(X)


@pytest.mark.parametrize("loss", LOSSES)
def test_convergence_warning_at_max_iter(loss):
    X = _planted(np.random.default_rng(10))
    with pytest.warns(ConvergenceWarning):
        model = BCNMF(2, beta_loss=loss, max_iter=2, random_state=0, alpha=1.5).fit(X)
    assert model.n_iter_ == 2
    assert_recorded_sweeps(model.history_, 2, loss)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("sparse", [False, True])
def test_refine_block_treats_cells_as_independent_problems(loss, sparse):
    """The polish sweeps each cell until its own step is at most tol and then freezes it;
    gathering the cells still moving into smaller blocks changes no cell's result: each
    equals the cell refined alone, and the sweep count is the slowest cell's."""
    from bcnmf.core.solver import refine_block
    rng = np.random.default_rng(21)
    k, f = 3, 30
    a = sp.random(40, f, density=0.4, format="csr", random_state=rng) * 10
    a = a if sparse else a.toarray()
    basis = rng.random((k, f)) + 0.05
    codes0 = rng.random((40, k)) + 0.1
    policy = StepPolicy(eps=1e-12)
    view = updates.view_basis(basis, loss)
    tol = 1e-4
    offset = np.full(f, 0.01) if loss == KL else None
    codes = codes0.copy()
    n = refine_block(make_block(a, loss, offset), codes, view, loss, policy, 3000, tol)
    alone, counts = np.empty_like(codes0), []
    for i in range(40):
        c = codes0[i:i + 1].copy()
        counts.append(refine_block(make_block(a[i:i + 1], loss, offset), c, view, loss,
                                   policy, 3000, tol))
        alone[i] = c[0]
    np.testing.assert_allclose(codes, alone, rtol=1e-12)
    assert n == max(counts) < 3000 and min(counts) < n   # cells finish at different sweeps
