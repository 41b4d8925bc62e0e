"""Topic statistics: enrichment with permutation p-values, top features, background correction."""

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from sklearn.base import BaseEstimator

from bcnmf import BCNMF, background_corrected, match_topics, top_features, topic_enrichment
from bcnmf._stats import bh_qvalues, permutation_pvalues, welch_ttest


# ---------------------------------------------------------------------------- helpers
def test_bh_matches_scipy_and_is_monotone():
    from scipy.stats import false_discovery_control

    rng = np.random.default_rng(0)
    p = rng.random(50) ** 3
    assert_allclose(bh_qvalues(p), false_discovery_control(p, method="bh"))
    q = bh_qvalues(np.r_[p, np.nan])
    assert np.isnan(q[-1])
    order = np.argsort(p)
    assert np.all(np.diff(q[:-1][order]) >= -1e-15)


def test_welch_matches_scipy_and_handles_constants():
    from scipy.stats import ttest_ind

    rng = np.random.default_rng(1)
    a, b = rng.normal(1, 1, (20, 3)), rng.normal(0, 2, (30, 3))
    t, p, signed = welch_ttest(a, b)
    ref = ttest_ind(a, b, equal_var=False)
    assert_allclose(t, ref.statistic)
    assert_allclose(p, ref.pvalue)
    assert_allclose(signed, np.sign(t) * -np.log10(p))
    t, p, _ = welch_ttest(np.ones((4, 2)), np.c_[np.ones(5), np.zeros(5)])
    assert np.isnan(t[0]) and p[1] == 0 and t[1] == np.inf


def test_permutation_pvalue_form():
    null = np.array([[0.0], [1.0], [2.0], [3.0]])
    assert_allclose(permutation_pvalues([2.0], null), [(1 + 2) / 5])
    assert_allclose(permutation_pvalues([10.0], null), [1 / 5])


# ---------------------------------------------------------------------------- planted data
@pytest.fixture(scope="module")
def planted():
    from bcnmf.datasets import make_contrastive_counts, normalize_log1p

    sim = make_contrastive_counts(1.0, n_genes=300, n_target=200, n_background=200,
                                  random_state=0)
    X = np.asarray(normalize_log1p(sim.X))
    Y = np.asarray(normalize_log1p(sim.Y))
    # seven topics, fitted without labels (alpha = 0 and no shared topics: plain NMF of the
    # target, whose topics are the five shared and the two target programs)
    model = BCNMF(7, alpha=0.0, n_shared=0, random_state=0, max_iter=1000).fit(X, background=Y)
    programs = np.vstack([sim.shared_programs, sim.target_programs])
    perm, similarity = match_topics(programs, model.components_)
    return sim, X, Y, model, perm, similarity


def test_target_programs_enriched_shared_ones_not(planted):
    sim, X, Y, model, perm, similarity = planted
    assert np.all(similarity > 0.6)  # the fit found the seven programs
    X0, Y0 = X.copy(), Y.copy()
    table = topic_enrichment(model, X, background=Y, n_permutations=1000, random_state=0)
    assert_allclose(X, X0)
    assert_allclose(Y, Y0)
    q = table["q_value"].to_numpy()[perm]
    enriched = table["enriched"].to_numpy()[perm]
    assert np.all(q[5:] < 0.01) and enriched[5:].all()
    assert not enriched[:5].any()
    assert np.all(table["effect_size"].to_numpy()[perm][5:] > 0.3)
    assert list(table.index) == [f"topic {k + 1}" for k in range(7)]
    # reproducible for a seed
    again = topic_enrichment(model, X, background=Y, n_permutations=1000, random_state=0)
    assert table.equals(again)


def test_group_welch_tests_find_the_subtypes(planted):
    sim, X, Y, model, perm, _ = planted
    table = topic_enrichment(model, X, background=Y, labels=sim.labels, n_permutations=50)
    signed = table["signed_log10_p[0]"].to_numpy()[perm]
    # target program j is used by subtype j: strongly positive for program 0, negative for 1
    assert signed[5] > 5 and signed[6] < -5
    assert_allclose(table["signed_log10_p[1]"], -table["signed_log10_p[0]"])


def test_top_features_tidy_table(planted):
    sim, X, Y, model, perm, _ = planted
    table = top_features(model, n_top=5, X=X, labels=sim.labels)
    assert list(table.columns[:6]) == ["topic", "rank", "feature", "feature_index", "loading",
                                       "weight"]
    assert len(table) == 7 * 5
    for _, rows in table.groupby("topic"):
        assert np.all(np.diff(rows["loading"].to_numpy()) <= 0)
    # the top features of target program 0's topic lie in its gene block and are higher in
    # subtype 0
    topic = f"topic {perm[5] + 1}"
    rows = table[table["topic"] == topic]
    block = set(sim.target_genes.tolist())
    inside = rows["feature_index"].isin(block).to_numpy()
    assert inside.sum() >= 4
    assert np.all(rows["signed_log10_p[0]"].to_numpy()[inside] > 0)


def test_ranked_features_orders_loadings_and_leaves_out_zeros():
    from bcnmf.topics import ranked_features

    basis = np.array([[0.2, 0.5, 0.0, 0.5, 0.1],
                      [0.0, 0.0, 0.3, 0.0, 0.0]])
    first, second = ranked_features(basis, 4)
    assert first.tolist() == [1, 3, 0, 4]           # ties in feature order
    assert second.tolist() == [2]                    # zero loadings are not features of it
    assert [r.tolist() for r in ranked_features(basis, 1)] == [[1], [2]]
    for bad in (0, 2.0, True, None):
        with pytest.raises(ValueError, match="n_top must be an int >= 1"):
            ranked_features(basis, bad)


def test_top_features_lists_only_non_zero_loadings_with_default_names():
    class Fitted(BaseEstimator):
        def fit(self, X):
            self.components_ = np.array([[0.2, 0.5, 0.0], [0.0, 0.0, 0.3]])
            return self

        def transform(self, X):
            return X

    table = top_features(Fitted().fit(None), n_top=3)
    assert table["topic"].tolist() == ["topic 1", "topic 1", "topic 2"]
    assert table["feature"].tolist() == ["feature_2", "feature_1", "feature_3"]
    assert_allclose(table["weight"], [0.5 / 0.7, 0.2 / 0.7, 1.0])


def test_background_corrected_splits_the_reconstruction(planted):
    sim, X, Y, model, perm, _ = planted
    res = background_corrected(model, X, background=Y, n_permutations=1000)
    assert sorted(res.topics.tolist()) == sorted(perm[5:].tolist())
    assert_allclose(res.corrected + res.shared, model.transform(X) @ model.components_,
                    rtol=1e-10, atol=1e-12)
    # the corrected data carry the target genes, not the shared ones
    genes = sim.target_genes
    assert res.corrected[:, genes].sum() > 5 * np.delete(res.corrected, genes, axis=1).sum() \
        / (X.shape[1] - genes.size) * genes.size
    explicit = background_corrected(model, X, topics=perm[5:])
    assert_allclose(explicit.corrected, res.corrected)
    # the enrichment table's labels and mask name the same topics
    assert_allclose(background_corrected(model, X, topics=res.enrichment.index[
        res.enrichment["enriched"]]).corrected, res.corrected)
    assert_allclose(background_corrected(model, X, topics=res.enrichment["enriched"]).corrected,
                    res.corrected)
    with pytest.raises(ValueError, match="topics"):
        background_corrected(model, X)


# ---------------------------------------------------------------------------- calibration
def _null_pvalues(seeds, n_cells=60, n_permutations=199):
    """p-values of a fixed model on fresh target and background drawn from one distribution."""
    rng = np.random.default_rng(1234)
    programs = rng.gamma(0.5, 1.0, size=(3, 20))

    def draw(r, n):
        return r.poisson(r.gamma(1.0, 1.0, size=(n, 3)) @ programs + 0.1).astype(float)

    fit_x, fit_y = draw(rng, 100), draw(rng, 100)
    model = BCNMF(3, alpha=0.5, random_state=0, max_iter=500, tol=1e-3).fit(
        fit_x, background=fit_y)
    out = []
    for seed in seeds:
        r = np.random.default_rng(seed)
        table = topic_enrichment(model, draw(r, n_cells), background=draw(r, n_cells),
                                 n_permutations=n_permutations, random_state=seed)
        out.extend(table["p_value"].tolist())
    return np.asarray(out)


def test_null_pvalues_roughly_uniform_quick():
    from scipy.stats import kstest

    p = _null_pvalues(range(12))
    assert np.all((p > 0) & (p <= 1))
    assert kstest(p, "uniform").pvalue > 1e-3
    assert 0.3 < p.mean() < 0.7


@pytest.mark.slow
def test_null_pvalues_uniform_over_many_seeds():
    from scipy.stats import kstest

    p = _null_pvalues(range(150), n_permutations=499)
    assert kstest(p, "uniform").pvalue > 1e-3
    assert abs(np.mean(p <= 0.05) - 0.05) < 0.03


def test_errors_name_the_problem(planted):
    _, X, Y, model, _, _ = planted
    with pytest.raises(ValueError, match="usage"):
        topic_enrichment(model, X, background=Y, usage="bad")
    with pytest.raises(ValueError, match="labels"):
        topic_enrichment(model, X, background=Y, labels=np.zeros(3))
    with pytest.raises(TypeError, match="fitted bcnmf model"):
        topic_enrichment(object(), X, background=Y)


# ---------------------------------------------------------------------------- samples
def _identity(k):
    """A stand-in fitted model whose codes are the data themselves (usage="codes" = X)."""
    model = _Identity(k)
    model.components_ = np.eye(k)
    return model


class _Identity(BaseEstimator):
    def __init__(self, k=1):
        self.k = k

    def fit(self, X, y=None):  # pragma: no cover - never called
        return self

    def transform(self, X, as_background=False):
        return np.array(X, dtype=np.float64)


def _brute_force_p(a, b):
    """Exact one-sided p-value by looping over every 0/1 labelling with len(a) ones."""
    import itertools

    pooled = np.vstack([a, b])
    n_a, n = len(a), len(a) + len(b)
    observed = a.mean(axis=0) - b.mean(axis=0)
    count, total = np.zeros(a.shape[1]), 0
    for mask in itertools.product([False, True], repeat=n):
        if sum(mask) != n_a:
            continue
        m = np.array(mask)
        stat = pooled[m].mean(axis=0) - pooled[~m].mean(axis=0)
        count += stat >= observed - 1e-12
        total += 1
    return count / total, total


def test_group_permutation_test_exact_equals_brute_force():
    from bcnmf._stats import group_permutation_test

    rng = np.random.default_rng(3)
    a, b = rng.normal(0.5, 1, (3, 4)), rng.normal(0, 1, (4, 4))
    a[:, 3] = 10.0  # the observed arrangement is the most extreme: p = 1 / C(7, 3)
    observed, p, n_arr, exact = group_permutation_test(a, b, n_permutations=10,
                                                       rng=np.random.default_rng(0))
    ref, total = _brute_force_p(a, b)
    assert exact and n_arr == total == 35
    assert_allclose(p, ref)
    assert p[3] == 1 / 35
    assert_allclose(observed, a.mean(axis=0) - b.mean(axis=0))
    # the larger group first (the enumeration runs over the smaller one)
    b2 = np.vstack([b, rng.normal(0, 1, (2, 4))])
    _, p2, n_arr2, _ = group_permutation_test(b2, a, n_permutations=10,
                                              rng=np.random.default_rng(0))
    ref2, total2 = _brute_force_p(b2, a)
    assert n_arr2 == total2 == 84
    assert_allclose(p2, ref2)


def test_group_permutation_test_monte_carlo_above_the_limit():
    from bcnmf._stats import group_permutation_test

    rng = np.random.default_rng(4)
    a, b = rng.normal(0.3, 1, (5, 3)), rng.normal(0, 1, (5, 3))
    exact = group_permutation_test(a, b, n_permutations=1, rng=rng)[1]
    _, p, n_arr, is_exact = group_permutation_test(
        a, b, n_permutations=4000, rng=np.random.default_rng(0), max_exact=100)
    assert not is_exact and n_arr == 252
    counts = p * 4001 - 1
    assert_allclose(counts, np.round(counts), atol=1e-9)  # (1 + #) / (1 + n)
    assert np.all(np.abs(p - exact) < 0.03)


def test_welch_greater_matches_scipy():
    from scipy.stats import ttest_ind

    from bcnmf._stats import welch_greater

    rng = np.random.default_rng(5)
    a, b = rng.normal(0.5, 1, (6, 3)), rng.normal(0, 2, (7, 3))
    t, p = welch_greater(a, b)
    ref = ttest_ind(a, b, equal_var=False, alternative="greater")
    assert_allclose(t, ref.statistic)
    assert_allclose(p, ref.pvalue)
    t, p = welch_greater(np.c_[np.ones(3), np.zeros(3), np.ones(3)],
                         np.c_[np.zeros(3), np.ones(3), np.ones(3)])
    assert_allclose(p[:2], [0.0, 1.0])
    assert np.isnan(p[2])


def _sampled_codes(rng, n_topics, n_samples=6, cells=40, sample_sd=1.0, cell_sd=0.3,
                   shift=0.0):
    """Codes of cells in samples: a sample mean per (sample, topic), cells around it."""
    def side(n, offset):
        means = rng.normal(offset + 5.0, sample_sd, size=(n, n_topics))
        codes = np.repeat(means, cells, axis=0) + rng.normal(0, cell_sd,
                                                             size=(n * cells, n_topics))
        return codes, np.repeat(np.arange(n), cells)

    X, sx = side(n_samples, shift)
    Y, sy = side(n_samples, 0.0)
    return X, Y, sx, sy + n_samples


def test_sample_level_test_is_calibrated_where_the_cell_level_one_is_not():
    """Null: every sample draws its own mean, no condition effect.  400 topics = 400
    independent tests in one call.  Cells shuffled between conditions mistake the samples'
    deviations for an effect; samples shuffled do not."""
    rng = np.random.default_rng(6)
    X, Y, sx, sy = _sampled_codes(rng, 400)
    model = _identity(400)
    cells = topic_enrichment(model, X, background=Y, usage="codes", n_permutations=199)
    samples = topic_enrichment(model, X, background=Y, usage="codes", samples=sx,
                               background_samples=sy)
    fpr_cells = np.mean(cells["p_value"] <= 0.05)
    fpr_samples = np.mean(samples["p_value"] <= 0.05)
    assert fpr_cells > 0.3
    assert fpr_samples <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 400)
    assert np.mean(samples["pseudobulk_p_value"] <= 0.05) <= 0.05 + 3 * np.sqrt(
        0.05 * 0.95 / 400)
    # exact p-values live on the grid k / 924
    grid = samples["p_value"].to_numpy() * 924
    assert_allclose(grid, np.round(grid), atol=1e-9)
    # and a shift of every target sample is found, at the smallest attainable p-value
    X2, Y2, sx2, sy2 = _sampled_codes(np.random.default_rng(7), 5, shift=20.0)
    shifted = topic_enrichment(_identity(5), X2, background=Y2, usage="codes", samples=sx2,
                               background_samples=sy2)
    assert_allclose(shifted["p_value"], 1 / 924)
    assert shifted["enriched"].all()


def test_sample_level_table_equals_a_reference(planted):
    """Per-sample means, exact p-values, Cohen's d and log2 fold change of the sample means
    and the pseudobulk Welch test, against a slow reference."""
    import pandas as pd
    from scipy.stats import ttest_ind

    from bcnmf.topics import topic_usage

    sim, X, Y, model, perm, _ = planted
    rng = np.random.default_rng(8)
    samples = rng.choice(["a", "b", "c", "d", "e"], size=X.shape[0])  # uneven sizes
    background_samples = rng.choice([10, 11, 12, 13], size=Y.shape[0])
    samples0, background_samples0 = samples.copy(), background_samples.copy()
    table = topic_enrichment(model, X, background=Y, samples=samples,
                             background_samples=background_samples)
    np.testing.assert_array_equal(samples, samples0)
    np.testing.assert_array_equal(background_samples, background_samples0)
    ux, uy = topic_usage(model, X), topic_usage(model, Y, as_background=True)
    sx = pd.DataFrame(ux).groupby(samples).mean().to_numpy()
    sy = pd.DataFrame(uy).groupby(background_samples).mean().to_numpy()
    p, total = _brute_force_p(sx, sy)
    assert total == 126
    assert_allclose(table["p_value"], p)
    assert_allclose(table["q_value"], bh_qvalues(p))
    assert_allclose(table["usage_target"], sx.mean(axis=0))
    assert_allclose(table["usage_background"], sy.mean(axis=0))
    sd = np.sqrt((4 * sx.var(axis=0, ddof=1) + 3 * sy.var(axis=0, ddof=1)) / 7)
    assert_allclose(table["effect_size"], (sx.mean(axis=0) - sy.mean(axis=0)) / sd)
    pseudo = 1e-3 * np.vstack([sx, sy]).mean(axis=0)
    assert_allclose(table["log2_fold_change"],
                    np.log2((sx.mean(axis=0) + pseudo) / (sy.mean(axis=0) + pseudo)))
    ref = ttest_ind(sx, sy, equal_var=False, alternative="greater")
    assert_allclose(table["pseudobulk_t"], ref.statistic)
    assert_allclose(table["pseudobulk_p_value"], ref.pvalue)
    assert (table["test"] == "samples").all()
    assert (table["n_samples_target"] == 5).all() and (table["n_samples_background"] == 4).all()
    # the target programs are used by every target sample: smallest attainable p-value
    assert_allclose(table["p_value"].to_numpy()[perm][5:], 1 / 126)
    # the cell-level table names its test and units
    cells = topic_enrichment(model, X, background=Y, n_permutations=50)
    assert (cells["test"] == "cells").all()
    assert (cells["n_samples_target"] == X.shape[0]).all()
    assert (cells["n_samples_background"] == Y.shape[0]).all()
    assert "pseudobulk_p_value" not in cells.columns
    # background_corrected finds the enriched topics by the same sample-level table
    res = background_corrected(model, X, background=Y, samples=samples,
                               background_samples=background_samples)
    pd.testing.assert_frame_equal(res.enrichment, table)
    assert sorted(res.topics.tolist()) == sorted(perm[5:].tolist())


def test_sample_level_test_ignores_cell_order_and_label_names():
    rng = np.random.default_rng(9)
    X, Y, sx, sy = _sampled_codes(rng, 4, cells=10)
    model = _identity(4)
    table = topic_enrichment(model, X, background=Y, usage="codes", samples=sx,
                             background_samples=sy)
    order = rng.permutation(X.shape[0])
    names = np.array([f"donor {s}" for s in range(20)], dtype=object)
    other = topic_enrichment(model, X[order], background=Y, usage="codes",
                             samples=names[sx[order]], background_samples=sy.astype(float))
    assert_allclose(other["p_value"], table["p_value"])
    assert_allclose(other["effect_size"], table["effect_size"])
    # more than 20,000 arrangements (10 + 10 samples): Monte Carlo, reproducible for a seed
    X, Y, sx, sy = _sampled_codes(rng, 4, n_samples=10, cells=3)
    mc = topic_enrichment(model, X, background=Y, usage="codes", samples=sx,
                          background_samples=sy, n_permutations=300, random_state=1)
    counts = mc["p_value"].to_numpy() * 301 - 1
    assert_allclose(counts, np.round(counts), atol=1e-9)
    again = topic_enrichment(model, X, background=Y, usage="codes", samples=sx,
                             background_samples=sy, n_permutations=300, random_state=1)
    assert mc.equals(again)


_BAD_SAMPLES = {
    "short": lambda ok: ok[:-1],
    "one": lambda ok: np.full(12, ok[0]),
    "overlap": lambda ok: np.r_[np.full(3, 1), ok[3:]],
    "none": lambda ok: np.array([0, 0, 0, None] + [1] * 8, dtype=object),
    "nan": lambda ok: np.r_[ok[:10].astype(float), np.nan, np.nan],
    "categorical": lambda ok: __import__("pandas").Categorical(["a"] * 5 + [np.nan]
                                                               + ["b"] * 6),
    "2d": lambda ok: ok[:, None],
}


@pytest.mark.parametrize("samples, background_samples, match", [
    ("short", "ok", r"one sample label per target cell \(12\); got 11 labels"),
    ("ok", "short", r"one sample label per background cell \(12\); got 11"),
    ("ok", None, "samples was given without background_samples"),
    (None, "ok", "background_samples was given without samples"),
    ("ok", "overlap", r"sample label\(s\) \[1\] occur in both"),
    ("one", "ok", r"samples holds 1 distinct sample \(\[0\]\).*at least 2 samples"),
    ("ok", "one", r"background_samples holds 1 distinct sample \(\[10\]\)"),
    ("none", "ok", r"samples has 1 missing label\(s\) \(None/NaN\), the first at target cell 3"),
    ("ok", "nan", r"background_samples has 2 missing label\(s\)"),
    ("categorical", "ok", r"samples has 1 missing label"),
    ("2d", "ok", r"one sample label per target cell \(12\); got shape \(12, 1\)"),
])
def test_sample_errors_name_the_problem(samples, background_samples, match):
    rng = np.random.default_rng(10)
    X, Y = rng.random((12, 2)), rng.random((12, 2))

    def build(kind, ok):
        return None if kind is None else ok if kind == "ok" else _BAD_SAMPLES[kind](ok)

    with pytest.raises(ValueError, match=match):
        topic_enrichment(_identity(2), X, background=Y, usage="codes",
                         samples=build(samples, np.repeat(np.arange(4), 3)),
                         background_samples=build(background_samples,
                                                  np.repeat(np.arange(10, 14), 3)))


def test_few_samples_warn_with_the_smallest_p_value():
    rng = np.random.default_rng(11)
    X, Y, sx, sy = _sampled_codes(rng, 2, n_samples=3, cells=4)
    with pytest.warns(UserWarning, match=r"3 target and 3 background samples.*"
                      r"1/C\(6, 3\) = 0\.05 \(20 arrangements"):
        table = topic_enrichment(_identity(2), X, background=Y, usage="codes", samples=sx,
                                 background_samples=sy)
    assert table["p_value"].min() >= 1 / 20
    X, Y, sx, sy = _sampled_codes(rng, 2, n_samples=2, cells=4)
    with pytest.warns(UserWarning, match=r"1/C\(4, 2\) = 0\.167.*above q_threshold=0\.05, "
                      "so no topic can be called enriched"):
        table = topic_enrichment(_identity(2), X, background=Y, usage="codes", samples=sx,
                                 background_samples=sy)
    assert not table["enriched"].any()


def test_topic_indices_accepts_indices_labels_and_masks():
    from bcnmf.topics import topic_indices

    assert topic_indices(None, 3) == [0, 1, 2]
    assert topic_indices([2, 0], 3) == [2, 0]                 # order kept
    assert topic_indices(np.array([1], dtype=np.int64), 3) == [1]
    assert topic_indices(["topic 3", "topic 1"], 3) == [2, 0]
    assert topic_indices(pd.Index(["topic 2"]), 3) == [1]
    assert topic_indices(np.array([True, False, True]), 3) == [0, 2]
    assert topic_indices(pd.Series([False, True, False]), 3) == [1]
    for bad, what in [([3], "0-based indices below 3"), (["topic 4"], "topic 4"),
                      ([1.0], "1.0"), ([True], "mask of shape"), (np.ones((2, 2), int), "shape"),
                      (np.array([True, False]), "mask of shape"),
                      (np.zeros(3, bool), "selects no topic"), ([], "selects no topic")]:
        with pytest.raises(ValueError, match=what):
            topic_indices(bad, 3)
