"""Missing values: weighted multiplicative updates over the observed
entries (core/masked.py), NaN or ``mask=`` (True = observed)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import linear_sum_assignment

from bcnmf import BCNMF, factorize
from bcnmf.core import masked
from bcnmf.core.fit import FitSettings, fit_factors, transform_codes
from bcnmf.core.updates import (FROBENIUS, KL, StepPolicy, basis_step, basis_terms, make_block,
                                sweep_block, view_basis)

LOSSES = [FROBENIUS, KL]
RNG = np.random.default_rng(0)
X = RNG.poisson(3.0, (40, 12)).astype(np.float64)
Y = RNG.poisson(3.0, (30, 12)).astype(np.float64)


def settings(loss, mode="stable", max_iter=40, tol=0.0, n_init=1):
    return FitSettings(n_components=3, loss=loss, alpha=1.0,
                       alpha_scale="raw" if mode == "reference" else "relative", mode=mode,
                       init="uniform" if mode == "reference" else "random", damping=None,
                       smoothing=0.1, max_iter=max_iter, tol=tol, n_init=n_init)


def random_mask(shape, frac, seed):
    return np.random.default_rng(seed).random(shape) >= frac


# --------------------------------------------------------------------------------------------
# the kernel: an all-True mask is the unmasked sweep
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("gamma", [1.0, 0.5])
def test_all_true_mask_sweep_equals_unmasked(loss, gamma):
    rng = np.random.default_rng(1)
    basis = rng.random((3, 12)) + 0.1
    policy = StepPolicy(eps=1e-12, gamma=gamma, code_floor=1e-14)
    offset = rng.random(12) * 0.1 if loss == KL else None
    c0 = rng.random((40, 3)) + 0.1
    c1 = c0.copy()
    plain = make_block(X, loss, offset)
    mblock = masked.MaskedBlock(plain, np.ones(X.shape, bool))
    view = view_basis(basis, loss)
    d0, p0 = sweep_block(plain, c0, view, loss, policy)
    d1, p1 = sweep_block(mblock, c1, view, loss, policy)
    assert isinstance(p1, masked.MaskedParts)
    assert_allclose(d1, d0, rtol=1e-12)
    assert_allclose(c1, c0, rtol=1e-12)
    assert_allclose(p1.cross, p0.cross, rtol=1e-12)
    n0, e0 = basis_terms(basis, p0, p0, 0.7, loss)
    n1, e1 = basis_terms(basis, p1, p0, 0.7, loss)     # a masked target, a plain background
    assert_allclose(n1, n0, rtol=1e-12)
    assert_allclose(e1, e0, rtol=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("mode", ["stable", "reference"])
@pytest.mark.parametrize("block_rows", [None, 7])
def test_all_true_mask_fit_equals_unmasked_fit(loss, mode, block_rows):
    s = settings(loss, mode)
    ref, _ = fit_factors(X, Y, s, 0, block_rows=block_rows)
    res, _ = fit_factors(X, Y, s, 0, block_rows=block_rows, mask=np.ones(X.shape, bool),
                         background_mask=np.ones(Y.shape, bool))
    assert_allclose(res.components, ref.components, rtol=1e-9, atol=1e-14)
    assert_allclose(res.codes, ref.codes, rtol=1e-9, atol=1e-12 * ref.codes.max())
    assert_allclose(res.history["objective"], ref.history["objective"], rtol=1e-9)


def test_no_missing_value_runs_the_unmasked_engine_bit_for_bit():
    model = BCNMF(3, max_iter=30, tol=0, random_state=0, alpha=1.5)
    a = model.fit_transform(X, background=Y, mask=np.ones(X.shape, bool))
    assert_array_equal(a, factorize(X, 3, background=Y, max_iter=30, tol=0,
                                    random_state=0, alpha=1.5).codes)


# --------------------------------------------------------------------------------------------
# properties of the masked steps
# --------------------------------------------------------------------------------------------


def masked_divergence(A, M, P, loss):
    if loss == FROBENIUS:
        return float(np.sum(M * (A - P) ** 2))
    pos = M & (A > 0)
    return float(np.sum(A[pos] * np.log(A[pos] / P[pos])) - np.sum(A[M]) + np.sum(P[M]))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("seed", range(4))
def test_masked_steps_are_monotone_and_report_the_masked_divergence(loss, seed):
    """Code steps (basis fixed) and basis steps (codes fixed, alpha = 0) never increase the
    divergence over the observed entries, and the sweep reports exactly that divergence."""
    rng = np.random.default_rng(seed)
    A = rng.gamma(1.0, 2.0, (25, 10))
    M = rng.random(A.shape) > 0.3
    A0 = np.where(M, A, 0.0)
    basis, codes = rng.random((3, 10)) + 0.05, rng.random((25, 3)) + 0.05
    policy = StepPolicy(eps=1e-16)
    block = masked.MaskedBlock(make_block(A0, loss), M)
    prev = np.inf
    for _ in range(15):
        view = view_basis(basis, loss)
        before = masked_divergence(A, M, codes @ basis, loss)
        div, parts = sweep_block(block, codes, view, loss, policy)
        assert_allclose(div, before, rtol=1e-10)
        after_codes = masked_divergence(A, M, codes @ basis, loss)
        assert after_codes <= before * (1 + 1e-12)
        basis_step(basis, parts, None, 0.0, loss, policy)
        after_basis = masked_divergence(A, M, codes @ basis, loss)
        assert after_basis <= after_codes * (1 + 1e-12)
        assert after_basis <= prev * (1 + 1e-12)
        prev = after_basis


@pytest.mark.parametrize("loss", LOSSES)
def test_values_under_a_false_mask_are_ignored(loss):
    """NaN, a mask, or any value (even negative or infinite) under a False mask: the same
    fit, bit for bit; the caller's arrays are not modified."""
    M = random_mask(X.shape, 0.2, 3)
    as_nan = np.where(M, X, np.nan)
    junk = np.where(M, X, -7.0)
    junk[~M & (np.arange(12) % 2 == 0)] = np.inf
    before = junk.copy()
    kw = dict(beta_loss=loss, max_iter=25, tol=0, random_state=0, alpha=1.5)
    ref = factorize(as_nan, 3, background=Y, **kw)
    assert_array_equal(factorize(junk, 3, background=Y, mask=M, **kw).codes, ref.codes)
    assert_array_equal(factorize(X, 3, background=Y, mask=M, **kw).components, ref.components)
    assert_array_equal(junk, before)
    both = factorize(as_nan, 3, background=Y, mask=random_mask(X.shape, 0.1, 4),
                     **kw)   # NaN and mask
    assert np.all(np.isfinite(both.codes))


def test_transform_solves_codes_on_the_observed_entries():
    """A cell's codes with missing features are the codes of the same cell restricted to its
    observed features under the restricted basis (the same convex problem)."""
    model = BCNMF(3, max_iter=60, tol=0, random_state=0, n_shared=0, alpha=1.5).fit(X, background=Y)
    cell = X[:1].copy()
    miss = np.array([1, 4, 5])
    cell[0, miss] = np.nan
    got = model.transform(cell)
    keep = np.setdiff1d(np.arange(12), miss)
    want, _ = transform_codes(X[:1, keep], np.ascontiguousarray(model.components_[:, keep]),
                              model.fit_state_.settings, model.fit_state_.policy, None, model.transform_max_iter,
                              model.tol)
    assert_allclose(got, want, rtol=1e-10)
    assert_array_equal(model.transform(X[:1], mask=~np.isnan(cell)), got)


# --------------------------------------------------------------------------------------------
# planted data: missing entries do not bias the basis; zero-filling does
# --------------------------------------------------------------------------------------------


def matched_cosine(a, b):
    ua = a / np.linalg.norm(a, axis=1, keepdims=True)
    ub = b / np.linalg.norm(b, axis=1, keepdims=True)
    c = ua @ ub.T
    r, q = linear_sum_assignment(-c)
    return c[r, q], q


@pytest.mark.parametrize("loss", LOSSES)
def test_planted_basis_is_recovered_despite_missing_entries(loss):
    """Exact low-rank data; features 0-5 (topic 0's block) are missing in 60% of cells.
    The masked fit finds the planted topics, gives the partly missing features the weight a
    fit of the complete data gives them, and predicts the missing entries; zero-filling
    shrinks those weights (it fits the zeros) and predicts about zero there."""
    rng = np.random.default_rng(7)
    k, f, n = 3, 18, 300
    W = np.zeros((k, f))
    for t in range(k):
        W[t, 6 * t:6 * t + 6] = 1.0 + rng.random(6)
    H = rng.gamma(2.0, 1.0, (n, k))
    A = H @ W * (50.0 if loss == KL else 1.0)
    M = np.ones(A.shape, bool)
    M[:, :6] = rng.random((n, 6)) > 0.6
    kw = dict(beta_loss=loss, max_iter=500, tol=0, random_state=0, alpha=1.5)
    full = factorize(A, k, **kw)
    fit = factorize(np.where(M, A, np.nan), k, **kw)
    zero = factorize(np.where(M, A, 0.0), k, **kw)
    truth = W / W.sum(axis=1, keepdims=True)
    mass = {}
    for name, res in (("full", full), ("masked", fit), ("zero", zero)):
        cos, q = matched_cosine(truth, res.components)
        assert cos.min() > (0.99 if name != "zero" else 0.9)
        mass[name] = res.components[q[0], :6].sum()   # topic 0 on its partly missing block
    assert abs(mass["masked"] / mass["full"] - 1) < 0.05
    assert mass["zero"] / mass["full"] < 0.93          # zero-filling: biased toward the zeros
    assert abs(mass["masked"] - mass["full"]) < abs(mass["zero"] - mass["full"]) / 3
    # the missing entries are predicted, not zeros
    err = {name: np.abs((res.codes @ res.components)[~M] - A[~M]).mean() / A.mean()
           for name, res in (("masked", fit), ("zero", zero))}
    assert err["masked"] < 0.25 and err["zero"] > 0.5


def test_planted_contrast_with_missing_background_entries():
    """With a background, missing background entries are left out of the contrast term: the
    target-specific topic is still found."""
    rng = np.random.default_rng(3)
    f, n = 12, 200
    shared = np.zeros((2, f))
    shared[0, :4], shared[1, 4:8] = 1.0, 1.0
    specific = np.zeros(f)
    specific[8:] = 1.0
    hx = rng.gamma(2.0, 1.0, (n, 2))
    label = rng.random(n) < 0.5
    Xp = hx @ shared + np.outer(label * 3.0, specific) + 0.01
    Yp = rng.gamma(2.0, 1.0, (n, 2)) @ shared + 0.01
    My = rng.random(Yp.shape) > 0.3
    res = factorize(Xp, 2, background=np.where(My, Yp, np.nan), alpha=1.0, max_iter=300, tol=0,
                    random_state=0)
    top = res.components.argmax(axis=0)[8:]
    topic = np.bincount(top).argmax()
    score = res.codes[:, topic]
    assert score[label].mean() > 3 * score[~label].mean()


# --------------------------------------------------------------------------------------------
# boundary: masks are validated
# --------------------------------------------------------------------------------------------


def test_mask_errors():
    with pytest.raises(ValueError, match=r"mask must have the shape of X, \(40, 12\); got "
                                         r"\(40, 11\)"):
        factorize(X, 2, background=Y, mask=np.ones((40, 11), bool), alpha=1.5)
    with pytest.raises(ValueError, match=r"background_mask must be a boolean array \(True = "
                                         r"observed, False = missing\); got dtype float64"):
        factorize(X, 2, background=Y, background_mask=np.ones(Y.shape), alpha=1.5)
    with pytest.raises(ValueError, match=r"mask was given with a sparse X; .* dense input "
                                         r"only: pass X\.toarray\(\)"):
        BCNMF(2, alpha=1.5).fit(sp.csr_matrix(X), mask=np.ones(X.shape, bool))
    with pytest.raises(ValueError, match=r"Input X has no observed values"):
        factorize(X, 2, background=Y, mask=np.zeros(X.shape, bool), alpha=1.5)


def test_masked_data_keep_their_dtype_and_are_not_modified():
    X32 = np.where(random_mask(X.shape, 0.2, 5), X, np.nan).astype(np.float32)
    before = X32.copy()
    res = factorize(X32, 3, background=Y.astype(np.float32), max_iter=20, tol=0,
                    random_state=0, alpha=1.5)
    assert res.codes.dtype == np.float32 and np.all(np.isfinite(res.codes))
    assert_array_equal(X32, before)


# --------------------------------------------------------------------------------------------
# the prior at missing entries (fits): pseudo-observations of the cell-scaled feature mean
# with weight lambda_j = sigma_j^2 / (sigma_j^2 + tau_j^2)
# --------------------------------------------------------------------------------------------


def prior_block(A, M, loss=FROBENIUS, offset=None):
    A0 = np.where(M, A, 0.0)
    return masked.MaskedBlock(make_block(A0, loss, offset), M, masked.missing_prior(A0, M))


def cell_scaled_means(A, M):
    mean = np.nanmean(np.where(M, A, np.nan), axis=0)
    scale = np.nansum(np.where(M, A, np.nan), axis=1) / (M @ mean)
    return mean, scale[:, None] * mean[None, :]


@pytest.mark.parametrize("loss", LOSSES)
def test_prior_weights_are_the_variance_ratio(loss):
    """lambda_j is the model's mean squared residual on feature j's observed entries over
    that plus the entries' spread around the cell-scaled means: in [0, 1], recomputed
    here independently; 0 where the model is exact."""
    rng = np.random.default_rng(11)
    A = rng.gamma(1.0, 2.0, (30, 9))
    M = rng.random(A.shape) > 0.25
    offset = rng.random(9) * 0.1 if loss == KL else None
    block = prior_block(A, M, loss, offset)
    basis, codes = rng.random((3, 9)) + 0.05, rng.random((30, 3)) + 0.05
    mean_lam, lam = masked.prior_weights(block, codes, view_basis(basis, loss))
    pred = codes @ basis + (0 if offset is None else offset)
    mean, mu = cell_scaled_means(A, M)
    sigma2 = np.nanmean(np.where(M, (A - pred) ** 2, np.nan), axis=0)
    tau2 = np.nanmean(np.where(M, (A - mu) ** 2, np.nan), axis=0)
    assert_allclose(lam, sigma2 / (sigma2 + tau2), rtol=1e-10)
    assert_allclose(mean_lam, mean * lam, rtol=1e-10)
    assert np.all((lam >= 0) & (lam <= 1))
    # an exact model: no weight on the prior, the missing entries are left out
    exact = prior_block(codes @ basis, M)
    assert_array_equal(masked.prior_weights(exact, codes, view_basis(basis, FROBENIUS))[1], 0)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("seed", range(3))
def test_steps_with_the_prior_are_monotone_on_the_penalised_divergence(loss, seed):
    """With lambda fixed at the state entering the sweep, the code step and the basis step
    (alpha = 0) never increase the divergence over the observed entries plus lambda times
    the divergence of the pseudo-observations; the sweep reports the observed part."""
    rng = np.random.default_rng(seed)
    A = rng.gamma(1.0, 2.0, (25, 10))
    M = rng.random(A.shape) > 0.3
    M[:3, :7] = False                        # cells missing most features
    block = prior_block(A, M, loss)
    _, mu = cell_scaled_means(A, M)
    basis, codes = rng.random((3, 10)) + 0.05, rng.random((25, 3)) + 0.05
    policy = StepPolicy(eps=1e-16)
    for _ in range(10):
        view = view_basis(basis, loss)
        lam = masked.prior_weights(block, codes, view)[1]

        def penalised(P):
            if loss == KL:   # lambda * D(mu | P) at the missing entries
                return (masked_divergence(A, M, P, loss)
                        + masked_divergence(mu * lam, ~M, P * lam, loss))
            return masked_divergence(A, M, P, loss) + float(np.sum(~M * lam * (mu - P) ** 2))

        entering = codes @ basis
        before = penalised(entering)
        div, parts = sweep_block(block, codes, view, loss, policy)
        assert_allclose(div, masked_divergence(A, M, entering, loss), rtol=1e-10)
        after_codes = penalised(codes @ basis)
        assert after_codes <= before * (1 + 1e-12)
        basis_step(basis, parts, None, 0.0, loss, policy)
        assert penalised(codes @ basis) <= after_codes * (1 + 1e-12)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("seed", [0, 2])
def test_prior_keeps_the_codes_of_near_empty_cells_in_range(seed, loss, monkeypatch):
    """Noisy Poisson data with a contrast; 6 cells miss 13 of 20 features.  Their code totals
    (gauge-free: unit-L1 basis) and the predictions at their missing entries stay near those
    of the fit of the complete data with the prior; without it (only left out) the codes of
    those cells are ill-posed and drift (measured over 6 seeds: total errors 0.06-0.53 with
    the prior, up to 4.5 (squared error) and 29 (KL) without)."""
    rng = np.random.default_rng(seed)
    n, f, k = 80, 20, 3
    W = rng.gamma(0.5, 1.0, (k, f))
    A = rng.poisson(rng.gamma(2.0, 1.0, (n, k)) @ W * 3).astype(float)
    B = rng.poisson(rng.gamma(2.0, 1.0, (n, k - 1)) @ W[:k - 1] * 3).astype(float)
    M = np.ones(A.shape, bool)
    M[:6, :13] = False
    # n_shared=0: the predictions below are codes @ components (no shared part)
    kw = dict(alpha=1.0, max_iter=300, tol=0, random_state=0, beta_loss=loss,
              n_shared=0)
    full = factorize(A, k, background=B, **kw)
    err = {}
    for prior in (True, False):
        monkeypatch.setattr(masked, "PRIOR", prior)
        res = factorize(np.where(M, A, np.nan), k, background=B, **kw)
        totals = np.abs(res.codes[:6].sum(axis=1) / full.codes[:6].sum(axis=1) - 1).mean()
        pred = (res.codes @ res.components)[~M]
        err[prior] = totals, np.sqrt(np.mean((pred - A[~M]) ** 2) / np.mean(A[~M] ** 2))
    assert err[True][0] < 0.3 and err[True][1] < (0.8 if loss == FROBENIUS else 1.0)
    assert err[True][0] < err[False][0] and err[True][1] < err[False][1]


@pytest.mark.parametrize("loss", LOSSES)
def test_masked_fit_with_the_prior_is_scale_equivariant(loss):
    """The prior's weights are a ratio of variances and its values scale with the data, so
    the stable masked fit of 8 X is the fit of X with codes times 8 (stable mode is
    scale-equivariant, tests/test_hostile.py)."""
    Xm = np.where(random_mask(X.shape, 0.2, 6), X, np.nan)
    kw = dict(beta_loss=loss, max_iter=40, tol=0, random_state=0, alpha=1.5)
    a = factorize(Xm, 3, background=Y, **kw)
    b = factorize(8.0 * Xm, 3, background=8.0 * Y, **kw)
    assert_allclose(b.codes, 8.0 * a.codes, rtol=1e-9, atol=1e-12 * b.codes.max())
    assert_allclose(b.components, a.components, rtol=1e-9, atol=1e-14)


def test_prior_means_spreads_and_cell_scales():
    """The prior's means and spreads are those of the observed entries of the whole matrix
    (independent recomputation); a complete cell at the feature means has s_i = 1; a cell
    with nothing observed has s_i = 0 (no pseudo-observations)."""
    A = RNG.gamma(1.0, 2.0, (20, 6))
    M = random_mask(A.shape, 0.3, 8)
    M[4] = False
    A0 = np.where(M, A, 0.0)
    p = masked.missing_prior(A0, M)
    ok = np.arange(20) != 4
    mean, mu = cell_scaled_means(A[ok], M[ok])
    assert_allclose(p.mean, mean, rtol=1e-12)
    assert_allclose(p.tau2, np.nanmean(np.where(M[ok], (A[ok] - mu) ** 2, np.nan), axis=0),
                    rtol=1e-12)
    scale = masked.row_scale(A0, M, p.mean)
    assert scale[4] == 0
    assert_allclose(scale[ok, None] * p.mean[None, :], mu, rtol=1e-12)
    assert_allclose(masked.row_scale(p.mean[None, :], np.ones((1, 6), bool), p.mean), [1.0])


@pytest.mark.filterwarnings("ignore:Maximum number of iterations")
@pytest.mark.parametrize("loss", LOSSES)
def test_transform_reuses_the_fits_prior(loss, tmp_path):
    """A model fitted on data with missing entries keeps its prior (the means and spreads
    of the training data; lambda from the transformed cells' residuals): ``transform`` of
    the training data gives the fit's codes (measured: the largest difference 1.1 % of the
    largest code from the default start, 0.4 % from a random start; both are
    tolerance-stopped solves; without the prior they differed by 150-1900 %), and a saved
    and loaded model transforms identically."""
    import bcnmf

    Xm = np.where(random_mask(X.shape, 0.2, 9), X, np.nan)
    model = BCNMF(3, beta_loss=loss, max_iter=300, tol=1e-6, random_state=0, alpha=1.5)
    codes = model.fit_transform(Xm, background=Y)
    again = model.transform(Xm)
    assert_allclose(again, codes, rtol=0, atol=0.02 * codes.max())
    assert model.fit_state_.missing_prior[0] is not None and model.fit_state_.missing_prior[1] is None
    model.save(tmp_path / "m.bcnmf")
    loaded = bcnmf.load(tmp_path / "m.bcnmf")
    assert_array_equal(loaded.transform(Xm), again)
