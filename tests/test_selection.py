"""Label-free model selection: reproducibility, n_jobs equivalence, table, rule, plot."""

import numpy as np
import pytest

from bcnmf import BCNMF, SelectionResult, select_model
from bcnmf.selection import (CONTRAST_TIE, MIN_STABILITY, RULE, _auc, _placements, _split,
                             apply_rule, noise_columns, paired_contrast_se, selection_score)

GRID = dict(n_components=[2, 3], alpha=[0.5, 1.5])
FIT = dict(n_init=2, max_iter=300, tol=1e-3, refit=False)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    Y = rng.poisson(2.0, size=(80, 15)).astype(float)
    X = rng.poisson(2.0, size=(80, 15)).astype(float)
    X[:40, :3] += 6.0
    X[40:, 3:6] += 6.0
    return X, Y


@pytest.fixture(scope="module")
def result(data):
    X, Y = data
    return select_model(X, background=Y, **GRID, **FIT, random_state=0)


def _criteria(table):
    return table.drop(columns=["seconds"])


def test_table_columns_and_grid(result):
    table = result.table
    for col in ("n_components", "alpha", "score", "contrast", "stability", "stability_min",
                "consensus", "heldout_target", "heldout_background", "chosen"):
        assert col in table.columns
    assert len(table) == 4
    assert set(zip(table["n_components"], table["alpha"])) == {(2, 0.5), (2, 1.5), (3, 0.5),
                                                               (3, 1.5)}
    assert np.all((table["contrast"] >= 0) & (table["contrast"] <= 1))
    assert np.all((table["stability"] > 0) & (table["stability"] <= 1 + 1e-12))
    assert np.all((table["consensus"] >= 0) & (table["consensus"] <= 1 + 1e-12))
    # held-out fit is a fraction of the null divergence, and it falls as alpha grows
    assert np.all(table["heldout_target"] <= 1)
    for _, rows in table.groupby("n_components"):
        assert rows.sort_values("alpha")["heldout_target"].is_monotonic_decreasing


def test_rule_picks_one_grid_point(result):
    table = result.table
    assert table["chosen"].sum() == 1
    row = table[table["chosen"]].iloc[0]
    assert result.best == {"n_components": int(row["n_components"]),
                           "alpha": float(row["alpha"])}
    assert apply_rule(table) == int(np.flatnonzero(table["chosen"])[0])
    np.testing.assert_allclose(table["score"], selection_score(table))
    stable = table["stability"] >= MIN_STABILITY
    if stable.any():
        assert row["stability"] >= MIN_STABILITY
        # within the tie of every stable contrast at its K up to its alpha (the first peak)
        before = stable & (table["n_components"] == row["n_components"]) & \
            (table["alpha"] <= row["alpha"])
        assert row["contrast"] >= table.loc[before, "contrast"].max() - CONTRAST_TIE
    assert result.rule == RULE and "contrast" in RULE
    assert result.best_model is None
    assert isinstance(result, SelectionResult)


def test_rule_on_a_synthetic_table():
    import pandas as pd

    table = pd.DataFrame({"n_components": [2, 2, 3, 3], "alpha": [0.5, 1.0, 0.5, 1.0],
                          "contrast": [0.7, 0.99, 0.9, 0.9], "stability": [1, 0.1, 1, 1]})
    # the unstable point is not chosen; K = 3 has the best contrast; at K = 3 the contrasts
    # tie, so the larger alpha wins
    assert apply_rule(table) == 3
    table["contrast"] = [0.7, 0.99, 0.95, 0.9]
    assert apply_rule(table) == 2  # alpha 1.0 loses more than the tie allows
    table["contrast"] = [0.95, 0.99, 0.95, 0.9]
    assert apply_rule(table) == 0  # equal best contrasts: fewer topics
    table["stability"] = [0.1, 0.1, 0.1, 0.1]
    assert apply_rule(table) == 1  # nothing stable: stability is ignored


def test_rule_stops_at_the_first_peak_along_alpha():
    """Past the first clear fall of the contrast the rule does not look further: a later,
    higher contrast (collapsed fits that explain almost nothing of either data set) does not
    win.  A dip within the tie is not a fall."""
    import pandas as pd

    from bcnmf.selection import first_peak

    alpha = [0.25, 0.5, 1.0, 1.5, 2.0]
    table = pd.DataFrame({"n_components": [5] * 5 + [2] * 5, "alpha": alpha * 2,
                          "contrast": [0.970, 0.978, 0.968, 0.938, 0.990,
                                       0.943, 0.969, 0.957, 0.929, 0.985],
                          "stability": 1.0})
    # K = 5 peaks first at alpha 0.5 (0.978), K = 2 at 0.5 (0.969): K = 5, alpha 0.5, though
    # both reach higher contrasts at alpha 2 after falling
    assert apply_rule(table) == 1
    score = selection_score(table)
    assert first_peak(score, table["alpha"].to_numpy(), np.arange(5)) == (0.978, 1)
    # a dip of less than the tie does not end the search: the peak is then alpha 2
    table.loc[2, "contrast"] = 0.978 - CONTRAST_TIE / 2
    table.loc[3, "contrast"] = 0.975
    assert apply_rule(table) == 4
    # the same rows in another order give the same choice
    shuffled = table.iloc[::-1].reset_index(drop=True)
    assert shuffled.iloc[apply_rule(shuffled)].equals(table.iloc[4])
    # an unstable point is a fall (score 0): the peak before it is kept
    table.loc[2, "stability"] = MIN_STABILITY / 2
    assert apply_rule(table) == 1


def test_a_choice_at_the_edge_of_the_grid_is_flagged():
    import pandas as pd

    from bcnmf.selection import grid_edges

    table = pd.DataFrame({"n_components": [2, 2, 3, 3], "alpha": [0.5, 1.0, 0.5, 1.0],
                          "contrast": [0.7, 0.8, 0.6, 0.65], "stability": 1.0})
    messages = grid_edges(table, apply_rule(table))       # K = 2, alpha 1.0: still rising
    assert len(messages) == 1 and "largest alpha of the grid" in messages[0]
    assert "alpha = 1" in messages[0] and "n_components = 2" in messages[0]
    table["contrast"] = [0.7, 0.6, 0.9, 0.8]               # K = 3, alpha 0.5
    messages = grid_edges(table, apply_rule(table))
    assert len(messages) == 1 and "n_components = 3, the largest of the grid" in messages[0]
    table["contrast"] = [0.7, 0.6, 0.6, 0.65]              # K = 2, alpha 0.5: inside
    assert grid_edges(table, apply_rule(table)) == []
    one = table.iloc[[0, 2]]                               # one alpha only: no alpha edge
    assert all("alpha grid" not in m for m in grid_edges(one, apply_rule(one)))


def test_select_model_warns_at_the_edge(data):
    X, Y = data
    with pytest.warns(UserWarning, match="largest of the grid"):
        select_model(X, background=Y, n_components=[1, 2], alpha=[0.5], **FIT, n_splits=1)


@pytest.mark.filterwarnings("ignore:select_model chose:UserWarning")   # a grid edge
def test_splits_average_the_criteria(data, result):
    """n_splits independent hold-out splits, each with its own restarts: the criteria are
    averaged over them, the placements of all splits pooled; one split is the first split of
    several (same random stream)."""
    X, Y = data
    one = select_model(X, background=Y, **GRID, **FIT, random_state=0, n_splits=1)
    assert result.settings["n_splits"] == 3 and one.settings["n_splits"] == 1
    assert len(result.settings["seeds"]) == 3 and one.settings["seeds"] == \
        result.settings["seeds"][:1]
    n_held = len(one.placements[0][0])
    assert all(len(t) == 3 * n_held for t, _ in result.placements)
    for (t, b), (t1, b1) in zip(result.placements, one.placements):
        np.testing.assert_array_equal(t[:n_held], t1)   # the first split is the same
        np.testing.assert_array_equal(b[:len(b1)], b1)
    assert not np.allclose(result.table["contrast"], one.table["contrast"])
    # the contrast is the mean over the splits of each split's contrast (the mean of its
    # target placements), the other criteria likewise
    for (t, _), c in zip(result.placements, result.table["contrast"]):
        per_split = [np.nanmean(t[s * n_held:(s + 1) * n_held]) for s in range(3)]
        np.testing.assert_allclose(np.mean(per_split), c)


def test_placements_average_to_the_auc_with_ties_and_nan():
    rng = np.random.default_rng(3)
    a = np.round(rng.normal(0.5, 1.0, size=41), 1)   # rounding makes ties
    b = np.round(rng.normal(0.0, 1.0, size=23), 1)
    a[[2, 7]] = np.nan
    b[5] = np.inf
    va, vb = _placements(a, b)
    assert np.isnan(va[[2, 7]]).all() and np.isnan(vb[5])
    auc = _auc(a, b)
    np.testing.assert_allclose(np.nanmean(va), auc)
    np.testing.assert_allclose(np.nanmean(vb), auc)
    # brute force: fraction of the other sample below (ties half)
    fb = b[np.isfinite(b)]
    brute = [np.mean(fb < x) + 0.5 * np.mean(fb == x) for x in a[np.isfinite(a)]]
    np.testing.assert_allclose(va[np.isfinite(va)], brute)


def test_paired_se_matches_the_spread_of_auc_differences_over_samples():
    # two scorers of the same cells whose scores share most of their noise: the spread of the
    # difference of their AUCs over fresh samples is what the paired SE estimates, and it is
    # far below the spread of either AUC alone
    rng = np.random.default_rng(0)

    def sample(n_t=60, n_b=30):
        zt, zb = rng.normal(1.0, 1.0, n_t), rng.normal(0.0, 1.0, n_b)
        first = (zt + 0.2 * rng.normal(size=n_t), zb + 0.2 * rng.normal(size=n_b))
        second = (zt + 0.2 * rng.normal(size=n_t) + 0.1, zb + 0.2 * rng.normal(size=n_b))
        return first, second

    diffs, ses, aucs = [], [], []
    for _ in range(400):
        first, second = sample()
        diffs.append(_auc(*first) - _auc(*second))
        aucs.append(_auc(*first))
        ses.append(paired_contrast_se(_placements(*first), _placements(*second)))
    assert np.mean(ses) == pytest.approx(np.std(diffs), rel=0.2)
    assert np.std(diffs) < 0.5 * np.std(aucs)
    same = _placements(*sample()[0])
    assert paired_contrast_se(same, same) == 0.0


def test_noise_columns_on_hand_built_placements():
    import pandas as pd

    t = np.array([1.0, 0.9, 0.8, 0.7])
    b = np.array([0.2, 0.1, 0.0])
    placements = [(t, b), (t - 0.01, b + 0.01), (t[::-1] - 0.5, b[::-1] + 0.5)]
    table = pd.DataFrame({"contrast": [float(np.mean(p[0])) for p in placements]})
    gap, se, within = noise_columns(table, placements, 0)
    assert gap[0] == 0 and se[0] == 0 and within[0]
    # a constant shift has no spread: the difference is certain, not noise
    assert gap[1] == pytest.approx(0.01) and se[1] == pytest.approx(0.0, abs=1e-12)
    assert not within[1]
    assert se[2] > 0 and within[2] == (gap[2] <= se[2])


def test_noise_columns_in_the_table(result):
    table = result.table
    chosen = table[table["chosen"]].iloc[0]
    assert chosen["contrast_gap"] == 0 and chosen["contrast_gap_se"] == 0
    assert chosen["within_noise"]
    np.testing.assert_allclose(table["contrast_gap"],
                               chosen["contrast"] - table["contrast"])
    assert (table["contrast_gap_se"] >= 0).all()
    assert len(result.placements) == len(table)
    for (t, b), c in zip(result.placements, table["contrast"]):
        np.testing.assert_allclose(np.nanmean(t), c)
        np.testing.assert_allclose(np.nanmean(b), c)


def test_count_loss_null_is_the_shared_only_prediction():
    # stable Poisson with shared topics: the held-out null is the floor plus the shared
    # topics (codes solved), a special case of the full model, so the full model explains
    # a non-negative fraction of it; without shared topics there is no such null
    import warnings

    from bcnmf.datasets import make_contrastive_counts
    from bcnmf.selection import _heldout, _shared_null, _per_cell_divergence

    sim = make_contrastive_counts(8.0, n_genes=120, n_target=60, n_background=60,
                                  random_state=0)
    X, Y = np.asarray(sim.X, float), np.asarray(sim.Y, float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = BCNMF(2, alpha=1.0, beta_loss="poisson", max_iter=60, tol=1e-6,
                      random_state=0).fit(X[:40], background=Y[:40])
        plain = BCNMF(2, alpha=1.0, beta_loss="poisson", max_iter=60, n_shared=0,
                      random_state=0).fit(X[:40], background=Y[:40])
    basis = np.asarray(model.components_, dtype=np.float64)
    for A, as_bg in ((X[40:], False), (Y[40:], True)):
        null = _shared_null(model, A, as_bg)
        assert null.shape == (20,) and np.all(np.isfinite(null)) and np.all(null >= 0)
        _, pred = _heldout(model, A, basis, as_bg)
        full = _per_cell_divergence(A, pred, "kullback-leibler")[0]
        assert full.sum() <= null.sum() * (1 + 1e-6)
    assert _shared_null(plain, X[40:], False) is None


@pytest.mark.filterwarnings("ignore:select_model chose:UserWarning")   # a grid edge
def test_reproducible_for_a_fixed_random_state(data, result):
    X, Y = data
    again = select_model(X, background=Y, **GRID, **FIT, random_state=0)
    assert _criteria(again.table).equals(_criteria(result.table))
    other = select_model(X, background=Y, **GRID, **FIT, random_state=1)
    assert not _criteria(other.table).equals(_criteria(result.table))


def test_n_jobs_does_not_change_the_result(data, result):
    X, Y = data
    parallel = select_model(X, background=Y, **GRID, **FIT, random_state=0, n_jobs=2)
    assert _criteria(parallel.table).equals(_criteria(result.table))
    assert parallel.best == result.best


def test_refit_returns_the_chosen_consensus_model(data):
    X, Y = data
    res = select_model(X, background=Y, n_components=[2], alpha=[0.5], n_init=2, max_iter=2000,
                       tol=1e-5, random_state=0)
    model = res.best_model
    assert isinstance(model, BCNMF)
    assert model.n_components == 2 and model.alpha == 0.5 and model.consensus
    assert model.topic_stability_.shape == (2,)


def test_inputs_untouched_and_progress_text(data, capsys):
    X, Y = data
    X0, Y0 = X.copy(), Y.copy()
    select_model(X, background=Y, n_components=2, alpha=0.5, **FIT, progress=True)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(Y, Y0)
    err = capsys.readouterr().err
    assert "1/1" in err or "select_model" in err


def test_plot_returns_axes(result):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    ax = result.plot()
    assert isinstance(ax, Axes)
    fig, ax2 = plt.subplots()
    assert result.plot("contrast", ax=ax2) is ax2
    assert isinstance(result.plot("within_noise"), Axes)
    plt.close("all")


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_components=[0]), "n_components"),
    (dict(alpha=[-1.0]), "alpha"),
    (dict(alpha=[1.0, 1.0]), "repeated"),
    (dict(n_init=1), "n_init"),
    (dict(n_init=True), "n_init"),
    (dict(n_splits=0), "n_splits"),
    (dict(n_splits=True), "n_splits"),
    (dict(holdout=1.5), "holdout"),
    (dict(holdout=0.001), "holdout"),
    (dict(samples=np.arange(5)), "samples must be one label per cell"),
    (dict(background_samples=np.full(80, np.nan)), "background_samples has NaN"),
    (dict(samples=np.zeros(80)), "takes every sample of X"),
])
def test_bad_arguments_are_named(data, kwargs, match):
    X, Y = data
    args = dict(n_components=[2], alpha=[1.0], n_init=2, refit=False, max_iter=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        select_model(X, background=Y, **args)


def test_background_required_and_reserved_params(data):
    X, _ = data
    with pytest.raises(ValueError, match="background"):
        select_model(X, background=None)
    with pytest.raises(TypeError, match="consensus"):
        select_model(X, background=X, consensus=True)


def test_holdout_by_sample_keeps_samples_together(data):
    """With samples, whole samples are held out (never split between training and
    held-out cells), at least ``holdout`` of the cells; without, the split is a random
    permutation of the cells."""
    rng = np.random.default_rng(3)
    samples = rng.integers(0, 12, size=90)
    for seed in range(5):
        train, held = _split(90, 0.2, np.random.default_rng(seed), "X", samples)
        assert set(samples[train]).isdisjoint(samples[held])
        assert len(train) + len(held) == 90 and len(held) >= 18
        assert len(held) < 18 + np.bincount(samples).max()   # stops once past the fraction
    perm = np.random.default_rng(7).permutation(90)
    train, held = _split(90, 0.2, np.random.default_rng(7), "X")
    np.testing.assert_array_equal(held, np.sort(perm[:18]))
    np.testing.assert_array_equal(train, np.sort(perm[18:]))
    X, Y = data
    mice = np.repeat(np.arange(8), 10)
    res = select_model(X, background=Y, n_components=[2], alpha=[1.0], **FIT, samples=mice,
                       background_samples=mice, random_state=0)
    again = select_model(X, background=Y, n_components=[2], alpha=[1.0], **FIT, samples=mice,
                         background_samples=mice, random_state=0)
    assert res.settings["by_sample"] == (True, True)
    np.testing.assert_array_equal(_criteria(res.table), _criteria(again.table))


@pytest.mark.filterwarnings("ignore:select_model chose:UserWarning")   # a grid edge
def test_sparse_input_gives_the_dense_table(data):
    """CSR target and background: the same splits, fits and criteria as the dense arrays
    (the sparse kernels agree with the dense ones to rounding)."""
    import scipy.sparse as sp

    X, Y = data
    args = dict(n_components=[2], alpha=[0.5, 1.5], **FIT, n_splits=2, random_state=0)
    dense = select_model(X, background=Y, **args)
    sparse = select_model(sp.csr_matrix(X), background=sp.csr_matrix(Y), **args)
    for col in ("contrast", "stability", "heldout_target", "heldout_background",
                "fit_target", "fit_background"):
        np.testing.assert_allclose(sparse.table[col], dense.table[col], rtol=1e-6, atol=1e-9)
    assert sparse.best == dense.best
