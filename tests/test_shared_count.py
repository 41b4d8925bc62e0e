"""The number of shared topics counted from the background's data (bcnmf.core.shared_count).

Planted backgrounds are generated here: Poisson counts ``lib_i * sum_k w_ik P_k`` with ``P``
programs on partly overlapping gene sets (mixed or discrete memberships), and Gaussian noise
around a non-negative ``W H`` for squared error.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from bcnmf.core.shared_count import (LOSSES, MAX_ROWS, SharedCount, optimal_threshold_ratio,
                                     sample_rows, shared_count)

KL, FRO = "kullback-leibler", "frobenius"


def planted_counts(n_programs, *, strength=1.0, n_cells=400, n_genes=600, depth=1500.0,
                   mixed=True, seed=0):
    """Poisson counts of ``n_programs`` programs: each multiplies a block of 1.5 / (P + 2) of
    the genes (overlapping the next program's block by half) of a common base profile by
    ``1 + strength * Gamma(2, 1)``; memberships Dirichlet(0.3) or one program per cell;
    log-normal library sizes."""
    rng = np.random.default_rng(seed)
    base = rng.gamma(0.5, 1.0, n_genes)
    base /= base.sum()
    block = n_genes // (n_programs + 2)
    programs = np.empty((n_programs, n_genes))
    for k in range(n_programs):
        profile = base.copy()
        genes = np.arange(k * block, k * block + int(1.5 * block)) % n_genes
        profile[genes] *= 1.0 + strength * rng.gamma(2.0, 1.0, genes.size)
        programs[k] = profile / profile.sum()
    if mixed:
        weights = rng.dirichlet(np.full(n_programs, 0.3), n_cells)
    else:
        weights = np.eye(n_programs)[rng.integers(0, n_programs, n_cells)]
    library = depth * rng.lognormal(0.0, 0.4, n_cells)
    return rng.poisson(library[:, None] * (weights @ programs)).astype(np.float64)


def planted_dense(n_programs, *, strength=1.0, n_cells=400, n_features=200, noise=1.0,
                  mixed=True, seed=0):
    """``max(W H + noise * N(0, 1), 0)`` with ``H ~ strength * Gamma(1, 1) + 3 noise``."""
    rng = np.random.default_rng(seed)
    H = strength * rng.gamma(1.0, 1.0, (n_programs, n_features)) + 3.0 * noise
    if mixed:
        W = rng.dirichlet(np.full(n_programs, 0.3), n_cells)
    else:
        W = np.eye(n_programs)[rng.integers(0, n_programs, n_cells)]
    return np.maximum(W @ H + noise * rng.standard_normal((n_cells, n_features)), 0.0)


def planted(loss, n_programs, **kwargs):
    return (planted_counts if loss == KL else planted_dense)(n_programs, **kwargs)


# ------------------------------------------------------------------------------------------
# Recovery of the planted number
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("n_programs", [3, 6])
@pytest.mark.parametrize("mixed", [True, False])
def test_planted_number_is_recovered(loss, n_programs, mixed):
    for seed in (0, 1):
        result = shared_count(planted(loss, n_programs, mixed=mixed, seed=seed), loss, 12)
        assert abs(result.count - n_programs) <= 1, (seed, result)


def test_planted_number_exact_on_clear_data():
    """On clearly separated programs the count is the planted number itself."""
    assert shared_count(planted_counts(4, seed=3), KL, 12).count == 4
    assert shared_count(planted_dense(4, seed=3), FRO, 12).count == 4


def test_squared_error_counts_a_baseline_as_a_program():
    """Squared error does not centre: programs with free (non-compositional) intensities and
    no baseline give P, a baseline profile shared by every cell adds one."""
    rng = np.random.default_rng(5)
    H = rng.gamma(1.0, 1.0, (3, 150))
    W = rng.gamma(1.0, 1.0, (300, 3))
    noise = 0.3 * rng.standard_normal((300, 150))
    free = np.maximum(W @ H + noise, 0.0)
    assert shared_count(free, FRO, 10).count == 3
    baseline = rng.gamma(1.0, 1.0, 150)
    assert shared_count(np.maximum(W @ H + baseline + noise, 0.0), FRO, 10).count == 4


@pytest.mark.parametrize("loss", LOSSES)
def test_pure_noise_gives_one(loss):
    for seed in (0, 1):
        data = planted(loss, 1, seed=seed)
        assert shared_count(data, loss, 12).count == 1


# ------------------------------------------------------------------------------------------
# Negative controls
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
def test_programs_below_noise_are_not_reported(loss):
    """Six programs whose signal is far below the noise: no program counted."""
    data = planted(loss, 6, strength=0.05, seed=0)
    assert shared_count(data, loss, 12).count <= 2


def test_noise_level_comes_from_the_data_not_from_a_model():
    """Overdispersed counts of one profile (negative binomial, very uneven library sizes):
    the residuals are far noisier than Poisson, so a rule that assumed Poisson noise (white
    noise of variance 1: largest singular value sqrt(n) + sqrt(F)) would report many programs.
    The sign-flip noise level follows the data's own noise and reports one."""
    rng = np.random.default_rng(0)
    n, f = 400, 300
    profile = rng.gamma(0.5, 1.0, f)
    profile /= profile.sum()
    library = 3000.0 * rng.lognormal(0.0, 1.0, n)
    rates = library[:, None] * profile * rng.gamma(2.0, 0.5, (n, f))
    counts = rng.poisson(rates).astype(np.float64)
    result = shared_count(counts, KL, 20)
    poisson_threshold = (np.sqrt(n) + np.sqrt(f)) * optimal_threshold_ratio(n, f)
    assert (result.singular_values[:10] > poisson_threshold).all()
    assert result.count == 1


def test_deflation_undoes_shadowing():
    """Two very strong programs (cell types 20x over baseline on their genes) and three
    moderate ones: the strong ones inflate the first round's noise level above the moderate
    ones; once removed, the noise level falls and all five are counted."""
    rng = np.random.default_rng(1)
    base = rng.gamma(0.5, 1.0, 600)
    programs = np.tile(base, (5, 1))
    for k, strength in enumerate([20.0, 20.0, 1.0, 1.0, 1.0]):
        programs[k, 85 * k:85 * (k + 1)] *= 1.0 + strength * rng.gamma(2.0, 1.0, 85)
    programs /= programs.sum(axis=1, keepdims=True)
    types = rng.integers(0, 5, 400)
    library = 1500.0 * rng.lognormal(0.0, 0.4, 400)
    counts = rng.poisson(library[:, None] * programs[types]).astype(np.float64)
    result = shared_count(counts, KL, 12)
    assert result.count == 5
    assert result.deflations[0] == 0 and result.deflations[-1] == result.components
    assert result.noise_levels[0] > 3 * result.noise_levels[-1]
    # the first round alone (no deflation) counts fewer patterns
    first_threshold = result.noise_levels[0] * result.ratio
    assert (result.singular_values > first_threshold).sum() < result.components


# ------------------------------------------------------------------------------------------
# Contract
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
def test_never_exceeds_max_count(loss):
    data = planted(loss, 6, seed=0)
    for max_count in (1, 2, 3):
        result = shared_count(data, loss, max_count)
        assert result.count == max_count
    assert shared_count(data, loss, 30).count <= 30


@pytest.mark.parametrize("loss", LOSSES)
def test_dense_and_csr_agree(loss):
    data = planted(loss, 4, seed=1)
    dense = shared_count(data, loss, 12)
    sparse = shared_count(sp.csr_matrix(data), loss, 12)
    assert dense.count == sparse.count
    np.testing.assert_allclose(dense.singular_values, sparse.singular_values, rtol=1e-8)
    np.testing.assert_allclose(dense.noise_levels, sparse.noise_levels, rtol=1e-8)


@pytest.mark.parametrize("loss", LOSSES)
def test_deterministic_for_a_seed(loss):
    data = planted(loss, 3, seed=4)
    a, b = shared_count(data, loss, 12, random_state=7), shared_count(data, loss, 12,
                                                                     random_state=7)
    assert a.count == b.count
    np.testing.assert_array_equal(a.singular_values, b.singular_values)
    np.testing.assert_array_equal(a.noise_levels, b.noise_levels)
    assert shared_count(data, loss, 12, random_state=8).count == a.count


def test_diagnostics_are_consistent():
    result = shared_count(planted_counts(3, seed=0), KL, 12)
    assert isinstance(result, SharedCount)
    assert result.singular_values.shape == result.thresholds.shape
    assert np.all(np.diff(result.singular_values) <= 0)
    passed = result.singular_values > result.thresholds
    assert passed[:result.components].all() and not passed[result.components]
    assert result.count == result.components + 1
    assert result.shape[0] == 400 and result.shape[1] <= 600 and result.max_count == 12
    assert result.ratio == optimal_threshold_ratio(*result.shape)
    assert "sign-flip" in result.method
    assert "count=3" in repr(result)


def test_optimal_threshold_ratio():
    assert optimal_threshold_ratio(100, 100) == pytest.approx(4 / np.sqrt(3) / 2)
    assert optimal_threshold_ratio(100, 400) == optimal_threshold_ratio(400, 100)
    # thinner matrices: a larger margin over the noise edge, up to sqrt(2)
    assert optimal_threshold_ratio(100, 100) < optimal_threshold_ratio(100, 1000) \
        < optimal_threshold_ratio(10, 10_000) < np.sqrt(2)


def test_sample_rows():
    np.testing.assert_array_equal(sample_rows(5), np.arange(5))
    np.testing.assert_array_equal(sample_rows(MAX_ROWS), np.arange(MAX_ROWS))
    rows = sample_rows(10 * MAX_ROWS, random_state=3)
    assert rows.dtype == np.int64 and rows.size == MAX_ROWS
    assert np.all(np.diff(rows) > 0) and rows[0] >= 0 and rows[-1] < 10 * MAX_ROWS
    np.testing.assert_array_equal(rows, sample_rows(10 * MAX_ROWS, random_state=3))
    assert not np.array_equal(rows, sample_rows(10 * MAX_ROWS, random_state=4))
    with pytest.raises(ValueError, match="n_rows"):
        sample_rows(-1)


def test_more_rows_than_max_rows_are_subsampled():
    rng = np.random.default_rng(0)
    data = rng.poisson(2.0, (MAX_ROWS + 300, 20)).astype(np.float64)
    result = shared_count(data, KL, 5)
    assert result.shape[0] == MAX_ROWS and result.count == 1


@pytest.mark.parametrize("loss", LOSSES)
def test_degenerate_samples(loss):
    assert shared_count(np.zeros((10, 8)), loss, 5).count == 1
    assert shared_count(np.ones((1, 8)), loss, 5).count == 1
    assert shared_count(np.ones((10, 1)), loss, 5).count == 1
    assert shared_count(np.random.default_rng(0).poisson(3.0, (6, 4)).astype(float), loss,
                        5).count >= 1
    assert shared_count(sp.csr_matrix((30, 12)), loss, 5).count == 1


@pytest.mark.parametrize("bad, match", [
    (np.array([[1.0, -1.0], [2.0, 3.0]]), "negative"),
    (np.array([[1.0, np.nan], [2.0, 3.0]]), "NaN"),
    (np.array([[1.0, np.inf], [2.0, 3.0]]), "infinite"),
    (sp.csr_matrix(np.array([[1.0, -2.0], [0.0, 3.0]])), "negative"),
    (sp.csr_matrix(np.array([[1.0, np.nan], [0.0, 3.0]])), "NaN"),
    (np.ones(5), "2-D"),
    (np.ones((2, 2, 2)), "2-D"),
    (np.array([["a", "b"]]), "numeric"),
])
def test_bad_samples(bad, match):
    with pytest.raises(ValueError, match=match):
        shared_count(bad, KL, 5)


@pytest.mark.parametrize("kwargs, match", [
    ({"loss": "poisson"}, "loss must be one of"),
    ({"loss": None}, "loss must be one of"),
    ({"max_count": 0}, "max_count must be an int >= 1"),
    ({"max_count": 2.5}, "max_count"),
    ({"max_count": True}, "max_count"),
    ({"random_state": -1}, "random_state"),
    ({"random_state": 1.5}, "random_state"),
])
def test_bad_arguments(kwargs, match):
    args = {"loss": FRO, "max_count": 5, "random_state": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        shared_count(np.ones((4, 4)), **args)
