"""Topic statistics: enrichment with permutation p-values, top features, background correction."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

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
