"""Stable Poisson nuisance topics (core/fit.py ``nuisance_basis``; docs/design.md).

With a background, stable Poisson predicts ``C B + D G + mu`` for target and background,
``G`` a fixed KL NMF of the background, ``D`` free codes, and only ``B`` contrastive.
Checked here: the basis split of the contrastive rows is the gradient of the contrast with
the nuisance in both predictions; the fixed rows never move; the records are the
divergences of the full model; the contrast stays bounded; ``transform`` solves the full
model; the squared-error path and the fits without a background are unchanged.
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
from bcnmf.core.updates import KL, StepPolicy, basis_step, make_block, sweep_block, view_basis
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
def test_contrastive_basis_split_is_gradient_with_nuisance(alpha, monkeypatch,
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

    def f(b):   # the contrast as a function of the contrastive rows, nuisance included
        return (kl(X, cx[:, :k] @ b + cx[:, k:] @ g + ox)
                - alpha * kl(Y, cy[:, :k] @ b + cy[:, k:] @ g + oy))

    numeric = central_gradient(f, basis[:k].copy())
    assert_allclose(denom - numer, numeric, rtol=1e-5, atol=1e-6 * np.abs(numeric).max())


def test_nuisance_code_split_is_gradient_of_block_divergence(central_gradient):
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
    """A sweep that holds the nuisance codes: the prediction of the fixed rows at the
    stored entries is an entry offset, the free codes take one multiplicative step of
    the full model and the parts are those of the free rows with the new codes."""
    k = 2
    X, _, basis, cx, _, ox, _ = tiny(4, k, kb=3)
    policy = StepPolicy(eps=1e-16)
    block = make_block(sp.csr_matrix(X) if sparse else X, KL, ox)
    codes = cx.copy()
    entries = updates.entry_predictions(block, codes, k, np.ascontiguousarray(basis[k:].T))
    _, parts = sweep_block(block, codes, view_basis(basis[:k], KL), KL, policy,
                           want_div=False, entry_offset=entries)
    b, g, d = basis[:k], basis[k:], cx[:, k:]
    ratio = np.where(X > 0, X / (cx[:, :k] @ b + d @ g + ox + policy.eps), 0.0)
    new = cx[:, :k] * (ratio @ b.T) / (b.sum(axis=1) + policy.eps)
    assert_allclose(codes[:, :k], new, rtol=1e-12)
    assert_array_equal(codes[:, k:], d)
    ratio = np.where(X > 0, X / (new @ b + d @ g + ox + policy.eps), 0.0)
    assert_allclose(parts.cross, new.T @ ratio, rtol=1e-12)
    assert_allclose(parts.second, new.sum(axis=0), rtol=1e-12)
    with pytest.raises(ValueError, match=r"an entry offset needs a KL sweep .* without the "
                                         r"divergence \(want_div=False\)"):
        sweep_block(block, codes, view_basis(b, KL), KL, policy, entry_offset=entries)


def test_nuisance_codes_move_only_every_nuisance_every_sweeps(monkeypatch):
    """The schedule: full sweeps at multiples of ``nuisance_every`` and at evaluations,
    held sweeps (free codes only) in between."""
    from bcnmf.core import executor as executor_module
    k = 2
    X, Y, basis, cx, cy, ox, oy = tiny(5, k)
    basis[k:] /= basis[k:].sum(axis=1, keepdims=True)
    seen = []
    original = executor_module.sweep_block

    def spy(block, codes, view, *args, entry_offset=None, **kw):
        before = codes[:, k:].copy()
        out = original(block, codes, view, *args, entry_offset=entry_offset, **kw)
        seen.append((entry_offset is not None, view.basis.shape[0],
                     np.array_equal(codes[:, k:], before)))
        return out

    monkeypatch.setattr(executor_module, "sweep_block", spy)
    opts = SolverOptions(loss=KL, alpha=0.8, policy=StepPolicy(eps=1e-16, basis_floor=1e-12),
                         normalize=True, max_iter=12, tol=0.0, n_free=k, eval_every=4,
                         nuisance_every=3)
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
    s = _settings(2, X.shape[1], BCNMF(2, beta_loss="poisson", nuisance_topics=4,
                                        max_iter=25, tol=0, n_init=1).get_params())
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
    res, diag = _fit(conv(X), conv(Y), nuisance_topics=4, max_iter=40, tol=0)
    (mu_x, g), (mu_y, g_y) = (split_offset(o) for o in diag["offsets"])
    assert g.shape == (4, X.shape[1]) and g_y is not None
    assert_array_equal(g, g_y)
    assert_allclose(g.sum(axis=1), 1.0, rtol=1e-9)
    assert_allclose(mu_x, 0.1 * X.mean(axis=0))
    dx, dy = diag["nuisance_codes"]
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
    model = BCNMF(2, alpha=1.5, beta_loss="poisson", random_state=0, nuisance_topics=3,
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
    ("frobenius", True, "stable"), ("poisson", False, "stable"), ("poisson", True, "reference")])
def test_fits_without_the_nuisance_are_unchanged(loss, background, mode):
    """Squared error, no background and reference mode are bit-identical whatever
    nuisance_topics says (stable Poisson with smoothing=0 too)."""
    _, X, Y = small_sim()
    kw = dict(alpha=1.5, beta_loss=loss, mode=mode, max_iter=20, tol=0, random_state=0)
    Y = Y if background else None
    a = factorize(X, 2, background=Y, nuisance_topics=0, **kw)
    b = factorize(X, 2, background=Y, nuisance_topics=10, **kw)
    assert_array_equal(a.components, b.components)
    assert_array_equal(a.codes, b.codes)
    c = factorize(X, 2, background=Y, nuisance_topics=0, smoothing=0.0, **kw)
    d = factorize(X, 2, background=Y, nuisance_topics=10, smoothing=0.0, **kw)
    assert_array_equal(c.components, d.components)


def test_persistence_keeps_the_nuisance(tmp_path):
    from bcnmf.persistence import load_model

    _, X, Y = small_sim()
    model = BCNMF(2, beta_loss="poisson", max_iter=30, tol=0, random_state=0).fit(
        X, background=Y)
    assert split_offset(model.fit_state_.offsets[0])[1] is not None
    model.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert_array_equal(back.transform(X), model.transform(X))


def test_nuisance_topics_is_validated():
    _, X, Y = small_sim()
    with pytest.raises(InvalidParameterError, match="'nuisance_topics' parameter of BCNMF "
                                                    "must be an int >= 0; got -1"):
        BCNMF(2, beta_loss="poisson", nuisance_topics=-1).fit(X, background=Y)


@pytest.mark.slow
def test_recovers_the_target_subtypes_at_beta_8():
    """The raw-count simulation of MODEL.md 7 at beta = 8 (docs/benchmarks.md): without the
    nuisance topics the stable fit clustered at ARI ~0.2 (normalised codes)."""
    from bcnmf.metrics import cluster_ari

    sim = make_contrastive_counts(8.0, random_state=0)
    codes = BCNMF(2, beta_loss="poisson", random_state=0).fit_transform(
        sp.csr_matrix(sim.X), background=sp.csr_matrix(sim.Y))
    assert cluster_ari(codes, sim.labels, normalize=True) >= 0.9
