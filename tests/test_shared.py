"""Shared topics (core/fit.py ``shared_basis``; docs/model.md).

With a background, stable mode predicts ``C B + D G`` (plus the floor ``mu`` of stable
Poisson) for target and background, ``G`` a fixed NMF of the background, ``D`` free codes,
and only ``B`` contrastive.
Checked here: for both losses the basis split of the contrastive rows is the gradient of
the contrast with the shared topics in both predictions; held sweeps are the steps of the
full model; the fixed rows never move; the records are the divergences of the full model;
the contrast stays bounded; ``transform`` solves the full model; reference mode and the fits
without a background are unchanged; the count is validated.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import minimize

from bcnmf import BCNMF, factorize
from bcnmf.core import updates
from bcnmf.core.fit import split_offset
from bcnmf.core.executor import InMemory
from bcnmf.core.solver import Contrast, SolverOptions, solve
from bcnmf.core.updates import (FROBENIUS, KL, Held, StepPolicy, basis_step, make_block,
                                sweep_block, view_basis)
from bcnmf.datasets import make_contrastive_counts
from bcnmf.exceptions import InvalidParameterError


def kl(A, P):
    A = np.asarray(A, dtype=np.float64)
    pos = A > 0
    return float(np.sum(A[pos] * np.log(A[pos] / P[pos])) - A.sum() + P.sum())


def tiny(seed, k=2, kb=2, f=7):
    rng = np.random.default_rng(seed)
    X = rng.random((5, f)) * (rng.random((5, f)) > 0.25) * 2.0
    Y = rng.random((4, f)) * (rng.random((4, f)) > 0.25) * 2.0
    basis = rng.random((k + kb, f)) + 0.2
    cx = rng.random((5, k + kb)) + 0.2
    cy = rng.random((4, k + kb)) + 0.2
    return X, Y, basis, cx, cy, rng.random(f) * 0.3 + 0.05, rng.random(f) * 0.3 + 0.05


@pytest.mark.parametrize("alpha", [0.0, 0.7, 3.0])
def test_contrastive_basis_split_is_gradient_with_shared(alpha, monkeypatch,
                                                           central_gradient):
    k = 2
    X, Y, basis, cx, cy, ox, oy = tiny(1, k)
    g = basis[k:].copy()
    policy = StepPolicy(eps=1e-16)
    calls = []
    original = updates.mu_step

    def spy(x, num, den, *args, **kwargs):
        calls.append((np.array(num), np.broadcast_to(den, x.shape).astype(np.float64)))
        return original(x, num, den, *args, **kwargs)

    monkeypatch.setattr(updates, "mu_step", spy)
    view = view_basis(basis, KL)
    _, px = sweep_block(make_block(X, KL, ox), cx.copy(), view, KL, policy, update=False)
    _, py = sweep_block(make_block(Y, KL, oy), cy.copy(), view, KL, policy, update=False)
    calls.clear()
    basis_step(basis.copy()[:k], px.head(k), py.head(k), alpha, KL, policy)
    (numer, denom), = calls

    def f(b):   # the contrast as a function of the contrastive rows, shared included
        return (kl(X, cx[:, :k] @ b + cx[:, k:] @ g + ox)
                - alpha * kl(Y, cy[:, :k] @ b + cy[:, k:] @ g + oy))

    numeric = central_gradient(f, basis[:k].copy())
    assert_allclose(denom - numer, numeric, rtol=1e-5, atol=1e-6 * np.abs(numeric).max())


@pytest.mark.parametrize("alpha", [0.0, 0.7, 3.0])
def test_squared_error_basis_split_is_gradient_with_shared(alpha, monkeypatch,
                                                           central_gradient):
    """Squared error: the free rows' step multiplies C_head^T C by the whole basis, so its
    split is the gradient of the contrast with the shared topics in both predictions."""
    k = 2
    X, Y, basis, cx, cy, _, _ = tiny(7, k)
    g = basis[k:].copy()
    policy = StepPolicy(eps=1e-16)
    calls = []
    original = updates.mu_step

    def spy(x, num, den, *args, **kwargs):
        calls.append((np.array(num), np.array(den, dtype=np.float64)))
        return original(x, num, den, *args, **kwargs)

    monkeypatch.setattr(updates, "mu_step", spy)
    view = view_basis(basis, FROBENIUS)
    _, px = sweep_block(make_block(X, FROBENIUS, None), cx.copy(), view, FROBENIUS, policy,
                        update=False)
    _, py = sweep_block(make_block(Y, FROBENIUS, None), cy.copy(), view, FROBENIUS, policy,
                        update=False)
    calls.clear()
    work = basis.copy()
    basis_step(work[:k], px.head(k), py.head(k), alpha, FROBENIUS, policy, full=work)
    (numer, denom), = calls

    def f(b):
        return (np.sum((X - cx[:, :k] @ b - cx[:, k:] @ g) ** 2)
                - alpha * np.sum((Y - cy[:, :k] @ b - cy[:, k:] @ g) ** 2))

    numeric = central_gradient(f, basis[:k].copy())
    assert_allclose(2.0 * (denom - numer), numeric, rtol=1e-5,
                    atol=1e-6 * np.abs(numeric).max())


def test_shared_code_split_is_gradient_of_block_divergence(central_gradient):
    X, _, basis, cx, _, ox, _ = tiny(2)
    policy = StepPolicy(eps=1e-16)
    view = view_basis(basis, KL)
    updated = cx.copy()
    sweep_block(make_block(X, KL, ox), updated, view, KL, policy, want_parts=False)
    den = np.broadcast_to(view.rowsum, cx.shape)
    num = updated / cx * (den + policy.eps)

    def f(c):
        return kl(X, c @ basis + ox)

    numeric = central_gradient(f, cx.copy())
    assert_allclose(den - num, numeric, rtol=1e-5, atol=1e-6 * np.abs(numeric).max())


def run_contrast(target, background, basis, opts):
    """The loop on the in-memory executor with the contrastive model."""
    return solve(InMemory(target, background, opts.loss, opts.policy),
                 Contrast(basis, opts, bool(background)), opts)


def test_solver_moves_only_the_contrastive_rows():
    k = 2
    X, Y, basis, cx, cy, ox, oy = tiny(3, k)
    basis[k:] /= basis[k:].sum(axis=1, keepdims=True)
    fixed = basis[k:].copy()
    dx0, dy0 = cx[:, k:].copy(), cy[:, k:].copy()
    opts = SolverOptions(loss=KL, alpha=0.8, policy=StepPolicy(eps=1e-16, basis_floor=1e-12),
                         normalize=True, max_iter=15, tol=0.0, n_free=k)
    out = run_contrast([(make_block(X, KL, ox), cx)], [(make_block(Y, KL, oy), cy)], basis,
                       opts)
    assert_array_equal(out.basis[k:], fixed)
    assert_allclose(out.basis[:k].sum(axis=1), 1.0, rtol=1e-12)
    assert not np.allclose(cx[:, k:], dx0) and not np.allclose(cy[:, k:], dy0)
    assert np.all(np.isfinite(out.history["objective"]))


@pytest.mark.parametrize("sparse", [False, True])
def test_held_sweep_is_the_block_coordinate_step(sparse):
    """A sweep that holds the shared codes: the prediction of the fixed rows at the
    stored entries is an entry offset, the free codes take one multiplicative step of
    the full model and the parts are those of the free rows with the new codes."""
    k = 2
    X, _, basis, cx, _, ox, _ = tiny(4, k, kb=3)
    policy = StepPolicy(eps=1e-16)
    block = make_block(sp.csr_matrix(X) if sparse else X, KL, ox)
    codes = cx.copy()
    tail_t = np.ascontiguousarray(basis[k:].T)
    held = Held(tail_t, k, updates.held_products(block, codes, k, tail_t, KL))
    _, parts = sweep_block(block, codes, view_basis(basis[:k], KL), KL, policy,
                           want_div=False, held=held)
    b, g, d = basis[:k], basis[k:], cx[:, k:]
    ratio = np.where(X > 0, X / (cx[:, :k] @ b + d @ g + ox + policy.eps), 0.0)
    new = cx[:, :k] * (ratio @ b.T) / (b.sum(axis=1) + policy.eps)
    assert_allclose(codes[:, :k], new, rtol=1e-12)
    assert_array_equal(codes[:, k:], d)
    ratio = np.where(X > 0, X / (new @ b + d @ g + ox + policy.eps), 0.0)
    assert_allclose(parts.cross, new.T @ ratio, rtol=1e-12)
    assert_allclose(parts.second, new.sum(axis=0), rtol=1e-12)
    with pytest.raises(ValueError, match=r"a held sweep needs a block without missing values "
                                         r"\(and, for KL, no divergence: want_div=False\)"):
        sweep_block(block, codes, view_basis(b, KL), KL, policy, held=held)


@pytest.mark.parametrize("storage", ["dense", "csr"])
def test_held_squared_error_sweep_is_the_full_sweep(storage):
    """Squared error holds the fixed rows' products with the data, not their codes: a held
    sweep is the sweep of every row (codes, divergence and the free rows' parts with
    every column of C^T C) at the cost of the free rows."""
    k = 2
    X, _, basis, cx, _, _, _ = tiny(6, k, kb=3)
    policy = StepPolicy(eps=1e-12, code_floor=1e-15)
    data = sp.csr_matrix(X) if storage == "csr" else X
    block = make_block(data, FROBENIUS, None)
    full_codes, held_codes = cx.copy(), cx.copy()
    d_full, p_full = sweep_block(block, full_codes, view_basis(basis, FROBENIUS), FROBENIUS,
                                 policy)
    tail_t = np.ascontiguousarray(basis[k:].T)
    held = Held(tail_t, k, updates.held_products(block, held_codes, k, tail_t, FROBENIUS))
    d_held, p_held = sweep_block(block, held_codes, view_basis(basis[:k], FROBENIUS),
                                 FROBENIUS, policy, held=held)
    assert_allclose(held_codes, full_codes, rtol=1e-12)
    assert not np.allclose(held_codes[:, k:], cx[:, k:])   # the fixed rows' codes moved
    assert_allclose(d_held, d_full, rtol=1e-10)
    assert_allclose(d_full, np.sum((X - cx @ basis) ** 2), rtol=1e-10)
    assert_allclose(p_held.cross, p_full.head(k).cross, rtol=1e-12)
    assert_allclose(p_held.second, p_full.head(k).second, rtol=1e-12)
    assert p_held.second.shape == (k, basis.shape[0])


def test_shared_codes_move_only_every_shared_every_sweeps(monkeypatch):
    """The schedule: full sweeps at multiples of ``shared_every`` and at evaluations,
    held sweeps (free codes only) in between."""
    from bcnmf.core import executor as executor_module
    k = 2
    X, Y, basis, cx, cy, ox, oy = tiny(5, k)
    basis[k:] /= basis[k:].sum(axis=1, keepdims=True)
    seen = []
    original = executor_module.sweep_block

    def spy(block, codes, view, *args, held=None, **kw):
        before = codes[:, k:].copy()
        out = original(block, codes, view, *args, held=held, **kw)
        seen.append((held is not None, view.basis.shape[0],
                     np.array_equal(codes[:, k:], before)))
        return out

    monkeypatch.setattr(executor_module, "sweep_block", spy)
    opts = SolverOptions(loss=KL, alpha=0.8, policy=StepPolicy(eps=1e-16, basis_floor=1e-12),
                         normalize=True, max_iter=12, tol=0.0, n_free=k, eval_every=4,
                         shared_every=3)
    run_contrast([(make_block(X, KL, ox), cx)], [(make_block(Y, KL, oy), cy)], basis, opts)
    sweeps = [seen[2 * i:2 * i + 2] for i in range(12)]   # target, background per sweep
    full = {0, 3, 4, 6, 8, 9}
    for it, calls in enumerate(sweeps):
        for held, rows, unchanged in calls:
            assert held == (it not in full), it
            assert rows == (k if held else basis.shape[0])
            assert unchanged == held, it


def test_resume_at_a_held_sweep_is_bit_identical(tmp_path, monkeypatch):
    """Interrupted inside a stretch of held sweeps, the fit resumes (recomputing the
    entry predictions from the saved codes) to the uninterrupted result."""
    from bcnmf.core import executor as executor_module
    from bcnmf.core.fit import fit_factors
    from bcnmf._inputs import resolve_settings as _settings

    _, X, Y = small_sim()
    s = _settings(2, X.shape[1], BCNMF(2, beta_loss="poisson", n_shared=4,
                                        max_iter=25, tol=0, n_init=1, alpha=1.5).get_params())
    ref, _ = fit_factors(X, Y, s, 0)
    path = tmp_path / "fit.ckpt.npz"
    calls = []
    original = executor_module.InMemory._sweep_held

    def interrupting(*args):
        calls.append(1)
        if len(calls) == 2 * 12 + 1:   # the target half of sweep 14 (held: 1-9, 11-13)
            raise KeyboardInterrupt
        return original(*args)

    monkeypatch.setattr(executor_module.InMemory, "_sweep_held", interrupting)
    with pytest.raises(KeyboardInterrupt, match="after 14 complete sweeps"):
        fit_factors(X, Y, s, 0, checkpoint=path)
    monkeypatch.setattr(executor_module.InMemory, "_sweep_held", original)
    res, _ = fit_factors(X, Y, s, 0, resume=path)
    for name in ("components", "codes", "background_codes"):
        assert_array_equal(getattr(res, name), getattr(ref, name), err_msg=name)


def small_sim(beta=8.0, seed=0):
    sim = make_contrastive_counts(beta, n_genes=240, n_target=80, n_background=80,
                                  random_state=seed)
    return sim, sim.X, sim.Y


@pytest.mark.parametrize("sparse", [False, True])
def test_records_are_the_divergences_of_the_full_model(sparse):
    _, X, Y = small_sim()
    conv = sp.csr_matrix if sparse else np.asarray
    res, diag = _fit(conv(X), conv(Y), n_shared=4, max_iter=40, tol=0)
    (mu_x, g), (mu_y, g_y) = (split_offset(o) for o in diag["offsets"])
    assert g.shape == (4, X.shape[1]) and g_y is not None
    assert_array_equal(g, g_y)
    assert_allclose(g.sum(axis=1), 1.0, rtol=1e-9)
    assert_allclose(mu_x, 0.1 * X.mean(axis=0))
    dx, dy = diag["shared_codes"]
    for a in (res.components, res.codes, res.background_codes, dx, dy):
        assert np.all(np.isfinite(a)) and np.all(a >= 0)
    assert res.components.shape == (2, X.shape[1]) and res.codes.shape == (X.shape[0], 2)
    h = res.history
    assert_allclose(h["target"][-1], kl(X, res.codes @ res.components + dx @ g + mu_x),
                    rtol=1e-8)
    assert_allclose(h["background"][-1],
                    kl(Y, res.background_codes @ res.components + dy @ g + mu_y), rtol=1e-8)


def _fit(X, Y, alpha=1.5, **kw):
    from bcnmf.core.fit import fit_factors
    from bcnmf._inputs import resolve_settings as _settings

    p = BCNMF(2, alpha=alpha, beta_loss="poisson", **kw).get_params()
    return fit_factors(X, Y, _settings(2, X.shape[1], p), random_state=0)


@pytest.mark.parametrize("alpha", [2.0, 20.0])
def test_contrast_stays_bounded(alpha):
    """min over the background's codes of D(Y | C B + D G + mu_Y) is at most D(Y | mu_Y)
    (all codes 0), so the objective never falls below -alpha_raw D(Y | mu_Y)."""
    _, X, Y = small_sim()
    model = BCNMF(2, alpha=alpha, beta_loss="poisson", max_iter=300, tol=0, random_state=0)
    model.fit(X, background=Y)
    d_mu = kl(Y, np.broadcast_to(0.1 * Y.mean(axis=0), Y.shape))
    assert model.history_["background"][-1] <= d_mu * (1 + 1e-6)
    assert model.objective_ >= -model.alpha_raw_ * d_mu * (1 + 1e-6)
    assert model.history_["background"][-1] / Y.sum() < 10   # no runaway


def exact_codes(a, basis, offset):
    def f(c):
        p = c @ basis + offset
        return float(np.sum(p - a * np.log(p)))

    def grad(c):
        return basis @ (1.0 - a / (c @ basis + offset))

    c0 = np.full(basis.shape[0], a.sum() / basis.shape[0])
    return minimize(f, c0, jac=grad, method="L-BFGS-B", bounds=[(0, None)] * len(c0),
                    options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000}).x


def test_transform_solves_the_full_model():
    _, X, Y = small_sim()
    model = BCNMF(2, alpha=1.5, beta_loss="poisson", random_state=0, n_shared=3,
                  max_iter=3000)
    model.fit(X, background=Y)
    model.set_params(tol=1e-10, transform_max_iter=20000)
    floor, g = split_offset(model.fit_state_.offsets[0])
    full = np.vstack([model.components_, g])
    rows = range(0, X.shape[0], 8)
    exact = np.array([exact_codes(X[i], full, floor) for i in rows])[:, :2]
    codes = model.transform(X[list(rows)])
    assert codes.shape == exact.shape
    assert np.abs(codes - exact).sum() / np.abs(exact).sum() < 1e-2


@pytest.mark.filterwarnings("ignore:factorize. the Poisson contrast is running away")
@pytest.mark.parametrize("loss,background,mode", [
    ("frobenius", False, "stable"), ("poisson", False, "stable"),
    ("frobenius", True, "reference"), ("poisson", True, "reference")])
def test_fits_without_shared_topics_are_unchanged(loss, background, mode):
    """No background and reference mode are bit-identical whatever n_shared says (stable
    Poisson with smoothing=0 too: the authors' unbounded contrast has none)."""
    _, X, Y = small_sim()
    kw = dict(alpha=1.5, beta_loss=loss, mode=mode, max_iter=20, tol=0, random_state=0)
    Y = Y if background else None
    a = factorize(X, 2, background=Y, n_shared=0, **kw)
    for n_shared in (10, "auto"):
        b = factorize(X, 2, background=Y, n_shared=n_shared, **kw)
        assert_array_equal(a.components, b.components)
        assert_array_equal(a.codes, b.codes)
    if loss == "poisson" and background:
        kw["mode"] = "stable"
        c = factorize(X, 2, background=Y, n_shared=0, smoothing=0.0, **kw)
        d = factorize(X, 2, background=Y, n_shared="auto", smoothing=0.0, **kw)
        assert_array_equal(c.components, d.components)


@pytest.mark.parametrize("loss", ["frobenius", "poisson"])
def test_both_losses_fit_shared_topics(loss):
    """Stable mode with a background fits shared topics for either loss: fixed rows of
    unit L1 norm (fitted on the background only: the same for any target), reported as
    n_shared_ and shared_components_; n_shared=0 fits none."""
    _, X, Y = small_sim()
    model = BCNMF(2, beta_loss=loss, n_shared=3, max_iter=40, tol=0, random_state=0, alpha=1.5)
    model.fit(X, background=Y)
    assert model.n_shared_ == 3
    g = model.shared_components_
    assert g.shape == (3, X.shape[1]) and np.all(g >= 0)
    assert_allclose(g.sum(axis=1), 1.0, rtol=1e-9)
    other = BCNMF(2, beta_loss=loss, n_shared=3, max_iter=40, tol=0, random_state=1, alpha=1.5)
    other.fit(X[::-1], background=Y)
    assert_allclose(other.shared_components_, g, rtol=1e-10)
    none = BCNMF(2, beta_loss=loss, n_shared=0, max_iter=40, tol=0, random_state=0, alpha=1.5)
    none.fit(X, background=Y)
    assert none.n_shared_ == 0 and none.shared_components_ is None
    assert not np.allclose(none.components_, model.components_)


def test_persistence_keeps_the_shared_topics(tmp_path):
    from bcnmf.persistence import load_model

    _, X, Y = small_sim()
    model = BCNMF(2, beta_loss="poisson", max_iter=30, tol=0, random_state=0, alpha=1.5).fit(
        X, background=Y)
    assert split_offset(model.fit_state_.offsets[0])[1] is not None
    model.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert_array_equal(back.transform(X), model.transform(X))


def test_n_shared_is_validated():
    _, X, Y = small_sim()
    for bad in (-1, "many", 2.5, True):
        with pytest.raises(InvalidParameterError, match="'n_shared' parameter of BCNMF "
                                                        "must be 'auto' or an int >= 0; got"):
            BCNMF(2, beta_loss="poisson", n_shared=bad, alpha=1.5).fit(X, background=Y)


@pytest.mark.slow
def test_recovers_the_target_subtypes_at_beta_8():
    """The raw-count simulation (``make_contrastive_counts``) at beta = 8: without the shared
    topics the stable fit clusters at ARI ~0.2 (normalised codes)."""
    from bcnmf.metrics import cluster_ari

    sim = make_contrastive_counts(8.0, random_state=0)
    codes = BCNMF(2, beta_loss="poisson", random_state=0, alpha=1.5).fit_transform(
        sp.csr_matrix(sim.X), background=sp.csr_matrix(sim.Y))
    assert cluster_ari(codes, sim.labels, normalize=True) >= 0.9
