"""bcnmf.pl: conventions (first argument, keyword-only options, ax=, returns Axes) and what
each plot draws, with hand-built inputs where the tables come from elsewhere."""

import inspect
import warnings

import numpy as np
import pandas as pd
import pytest

import bcnmf
from bcnmf import BCNMF

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

ad = pytest.importorskip("anndata")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def fitted(contrast_fit):
    X, Y, model, codes = contrast_fit
    obs = pd.DataFrame({"condition": ["treated"] * 40 + ["control"] * 30},
                       index=[f"c{i}" for i in range(70)])
    adata = ad.AnnData(np.vstack([X, Y]), obs=obs,
                       var=pd.DataFrame(index=[f"gene{j}" for j in range(12)]))
    bcnmf.tl.bcnmf(adata, "condition", background="control", n_components=3, alpha=1.0,
                   max_iter=80, tol=0)
    return model, codes, adata


ENRICHMENT = pd.DataFrame({
    "mean_target": [2.0, 1.0, 0.5, 1.1], "mean_background": [0.5, 1.0, 1.5, 1.0],
    "log2_fold_change": [2.0, 0.0, -1.58, 0.14], "effect_size": [1.5, 0.0, -0.8, 0.1],
    "p_value": [1e-4, 0.9, 0.01, 0.04], "q_value": [4e-4, 0.9, 0.02, 0.053],
    "enriched": [True, False, False, False]}, index=pd.Index([0, 1, 2, 3], name="topic"))
SELECTION = pd.DataFrame({"n_components": [2, 2, 3, 3, 4, 4], "alpha": [0.5, 1.5] * 3,
                          "score": [0.1, 0.4, 0.3, 0.9, 0.2, 0.5]})
GENE_SETS = pd.DataFrame({
    "topic": ["topic 1"] * 3 + ["topic 2"] * 3 + ["topic 3"] * 3,
    "gene_set": ["A", "B", "C"] * 3,
    "effect": [0.9, 0.55, 0.3, 0.5, 0.8, 0.5, 0.45, 0.5, 0.52],
    "q_value": [1e-6, 0.04, 0.9, 0.8, 1e-3, 0.8, 0.9, 0.9, 0.7]})
PATH = {"alpha": np.array([0.25, 0.5, 1.0, 2.0]), "contrast": np.array([0.6, 0.7, 0.72, 0.4]),
        "counted": np.array([True, True, True, False]),
        "chosen": np.array([False, False, True, False])}


def _calls(fitted):
    model, codes, adata = fitted
    return {
        "loss_history": (model, {}),
        "loadings": (adata, {"n_top": 3}),
        "topic_usage": (adata, {}),
        "enrichment_volcano": (ENRICHMENT, {}),
        "selection_grid": (SELECTION, {"best": {"n_components": 3, "alpha": 1.5}}),
        "alpha_path": (PATH, {}),
        "gene_sets": (GENE_SETS, {}),
    }


def test_signature_conventions(fitted):
    """Every plot in bcnmf.pl.__all__: one positional argument (what is plotted), keyword-only
    options including ax=None, and it returns the Axes it drew on (given or new)."""
    calls = _calls(fitted)
    assert set(bcnmf.pl.__all__) == set(calls), "add a call for each new plot"
    for name in bcnmf.pl.__all__:
        func = getattr(bcnmf.pl, name)
        params = list(inspect.signature(func).parameters.values())
        assert params[0].kind == params[0].POSITIONAL_OR_KEYWORD, name
        assert all(p.kind == p.KEYWORD_ONLY for p in params[1:]), name
        assert inspect.signature(func).parameters["ax"].default is None, name
        data, kwargs = calls[name]
        _, ax = plt.subplots()
        assert func(data, ax=ax, **kwargs) is ax, name
        assert isinstance(func(data, **kwargs), Axes), name


def test_loss_history_draws_the_history(fitted):
    model, _, adata = fitted
    ax = bcnmf.pl.loss_history(model)
    lines = {line.get_label(): line.get_ydata() for line in ax.get_lines()}
    assert set(lines) == {"objective", "target", "background"}
    np.testing.assert_array_equal(lines["objective"], model.history_["objective"])
    ax = bcnmf.pl.loss_history(adata, terms=("target",), logy=True)
    assert [line.get_label() for line in ax.get_lines()] == ["target"]
    assert ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="terms"):
        bcnmf.pl.loss_history(model, terms=("loss",))
    with pytest.raises(TypeError, match="history"):
        bcnmf.pl.loss_history(42)
    with pytest.raises(KeyError, match="tl.bcnmf"):
        bcnmf.pl.loss_history(adata, key="other")


def test_loadings_rows_are_the_top_features():
    comps = np.array([[0.5, 0.3, 0.1, 0.0, 0.1],
                      [0.0, 0.1, 0.2, 0.6, 0.1]])
    names = ["a", "b", "c", "d", "e"]
    ax = bcnmf.pl.loadings(comps, feature_names=names, n_top=2)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "d", "c"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["topic 1", "topic 2"]
    image = ax.get_images()[0].get_array()
    np.testing.assert_allclose(image[:, 0], [1.0, 0.6, 0.0, 0.2])  # scaled by topic max
    ax = bcnmf.pl.loadings(comps, feature_names=names, n_top=1, topics=[1], scale="none")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["d"]
    np.testing.assert_allclose(ax.get_images()[0].get_array(), [[0.6]])
    by_label = bcnmf.pl.loadings(comps, feature_names=names, n_top=1, topics=["topic 2"],
                                 scale="none")
    assert [t.get_text() for t in by_label.get_yticklabels()] == ["d"]
    with pytest.raises(ValueError, match="topics"):
        bcnmf.pl.loadings(comps, topics=[2])
    with pytest.raises(ValueError, match="n_top"):
        bcnmf.pl.loadings(comps, n_top=0)
    with pytest.raises(ValueError, match="Every loading of the topics shown is zero"):
        bcnmf.pl.loadings(np.zeros((2, 3)))
    # without names, the features are named as in every table (bcnmf.top_features)
    unnamed = bcnmf.pl.loadings(comps, n_top=1, scale="none")
    assert [t.get_text() for t in unnamed.get_yticklabels()] == ["feature_1", "feature_4"]


def test_loadings_from_anndata_use_var_names(fitted):
    _, _, adata = fitted
    ax = bcnmf.pl.loadings(adata, n_top=1)
    top = np.asarray(adata.var_names)[np.argmax(adata.varm["bcnmf"], axis=0)]
    assert set(t.get_text() for t in ax.get_yticklabels()) == set(top)


def test_topic_usage_splits_cells_like_the_fit(fitted):
    model, codes, adata = fitted
    ax = bcnmf.pl.topic_usage(adata, kind="box")
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["target (n=40)", "background (n=30)"]
    assert len(ax.patches) == 6  # 3 topics x (target, background) boxes
    ax = bcnmf.pl.topic_usage(codes, background=model.background_codes_, topics=[0, 2])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["topic 1", "topic 3"]
    with pytest.raises(ValueError, match="kind"):
        bcnmf.pl.topic_usage(adata, kind="bar")
    with pytest.raises(ValueError, match="background codes"):
        bcnmf.pl.topic_usage(codes)


def test_topic_usage_two_object_fit():
    rng = np.random.default_rng(1)
    var = pd.DataFrame(index=[f"g{j}" for j in range(8)])
    t = ad.AnnData(rng.poisson(2.0, (20, 8)).astype(float), var=var)
    b = ad.AnnData(rng.poisson(2.0, (15, 8)).astype(float), var=var)
    # a fixed alpha: both are drawn alike, so alpha="auto" would warn that nothing separates them
    bcnmf.tl.bcnmf(t, background=b, n_components=2, alpha=1.0, max_iter=30, tol=0)
    ax = bcnmf.pl.topic_usage(t, background=b)
    assert [x.get_text() for x in ax.get_legend().get_texts()] == ["target (n=20)",
                                                                   "background (n=15)"]
    with pytest.raises(ValueError, match="separate background AnnData"):
        bcnmf.pl.topic_usage(t)


def test_constant_codes_do_not_break_the_violins():
    target = np.zeros((10, 2))
    target[:, 1] = np.arange(10)
    ax = bcnmf.pl.topic_usage(target, background=np.ones((5, 2)))
    assert isinstance(ax, Axes)


def test_enrichment_volcano_marks_the_enriched_topics():
    ax = bcnmf.pl.enrichment_volcano(ENRICHMENT)
    points = {c.get_label(): c.get_offsets() for c in ax.collections
              if isinstance(c, PathCollection)}
    np.testing.assert_allclose(points["enriched"], [[1.5, -np.log10(4e-4)]])
    assert len(points["not enriched"]) == 3
    assert sorted(t.get_text() for t in ax.texts) == ["0", "1", "2", "3"]
    no_flag = ENRICHMENT.drop(columns="enriched")
    ax = bcnmf.pl.enrichment_volcano(no_flag, q_threshold=0.06, label=False)
    points = {c.get_label(): c.get_offsets() for c in ax.collections
              if isinstance(c, PathCollection)}
    assert len(points["enriched"]) == 2 and not ax.texts  # q <= 0.06 and effect > 0
    with pytest.raises(KeyError, match="lacks column"):
        bcnmf.pl.enrichment_volcano(ENRICHMENT.drop(columns="q_value"))
    with pytest.raises(TypeError, match="DataFrame"):
        bcnmf.pl.enrichment_volcano({"q_value": [0.1]})
    with pytest.raises(ValueError, match="probabilities"):
        bcnmf.pl.enrichment_volcano(ENRICHMENT.assign(q_value=2.0))


def test_selection_grid_pivots_and_outlines_the_best():
    ax = bcnmf.pl.selection_grid(SELECTION, best={"n_components": 3, "alpha": 1.5})
    grid = ax.get_images()[0].get_array()
    np.testing.assert_allclose(grid, [[0.1, 0.4], [0.3, 0.9], [0.2, 0.5]])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["2", "3", "4"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.5", "1.5"]
    outline = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(outline) == 1 and outline[0].get_xy() == (0.5, 0.5)
    assert len(ax.texts) == 6
    from bcnmf.selection import SelectionResult

    result = SelectionResult(table=SELECTION, best={"n_components": 4, "alpha": 0.5},
                             best_model=None, rule="", settings={})
    ax = bcnmf.pl.selection_grid(result)  # its table, and its best outlined
    np.testing.assert_allclose(ax.get_images()[0].get_array(), grid)
    outline = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(outline) == 1 and outline[0].get_xy() == (-0.5, 1.5)
    with pytest.raises(ValueError, match="not a candidate"):
        bcnmf.pl.selection_grid(SELECTION, best={"n_components": 9, "alpha": 1.5})
    with pytest.raises(KeyError, match="lacks column"):
        bcnmf.pl.selection_grid(SELECTION, value="bic")


def test_plots_of_a_torch_fit_equal_those_of_the_numpy_fit(contrast_fit):
    """A model fitted with device="cpu" holds torch tensors; the plots take them (and the
    codes) and draw what the numpy fit draws."""
    pytest.importorskip("torch")
    X, Y, model, codes = contrast_fit
    on_torch = BCNMF(3, alpha=1.0, random_state=0, max_iter=80, tol=0, device="cpu")
    torch_codes = on_torch.fit_transform(X, background=Y)
    assert type(on_torch.components_).__module__.startswith("torch")
    np.testing.assert_allclose(bcnmf.pl.loadings(on_torch).get_images()[0].get_array(),
                               bcnmf.pl.loadings(model).get_images()[0].get_array(),
                               rtol=1e-6, atol=1e-9)
    drawn = bcnmf.pl.loss_history(on_torch).get_lines()[0].get_ydata()
    np.testing.assert_allclose(drawn, model.history_["objective"], rtol=1e-6)
    ax = bcnmf.pl.topic_usage(torch_codes, background=on_torch.background_codes_, kind="box")
    ref = bcnmf.pl.topic_usage(codes, background=model.background_codes_, kind="box")
    assert len(ax.patches) == len(ref.patches) == 6
    for drawn, expected in zip(ax.lines, ref.lines, strict=True):  # whiskers, caps, medians
        np.testing.assert_allclose(drawn.get_ydata(), expected.get_ydata(), rtol=1e-6,
                                   atol=1e-9)


# ---------------------------------------------------------------------------------------------
# alpha_path: how alpha="auto" chose alpha
# ---------------------------------------------------------------------------------------------

def _auto_fit(X, Y, n_components=2):
    with warnings.catch_warnings():  # short fits stop at max_iter: not what is tested here
        warnings.simplefilter("ignore", ConvergenceWarning)
        return BCNMF(n_components, random_state=0, max_iter=100).fit(X, background=Y)


@pytest.fixture(scope="module")
def auto_model(contrast_fit):
    X, Y, _, _ = contrast_fit
    return _auto_fit(X, Y)


def _curves(ax):
    """{label: (x, y)} of the contrast lines (not the chance line)."""
    return {line.get_label(): (line.get_xdata(), line.get_ydata()) for line in ax.get_lines()
            if line.get_linestyle() == "-"}


def _chosen(ax):
    stars = [c for c in ax.collections if c.get_label().startswith("chosen")]
    assert len(stars) == 1
    return stars[0]


def _hollow(ax):
    """Offsets of the points drawn hollow (white face): the alphas that were not counted."""
    found = [c.get_offsets() for c in ax.collections if not c.get_label().startswith("chosen")
             and len(c.get_offsets()) and np.allclose(c.get_facecolors()[:, :3], 1.0)]
    return np.vstack(found) if found else np.zeros((0, 2))


def test_alpha_path_of_a_fitted_model(auto_model):
    path = auto_model.alpha_path_
    ax = bcnmf.pl.alpha_path(auto_model)
    assert ax.get_xscale() == "log"
    (label, (x, y)), = _curves(ax).items()  # one K: one line
    assert label == "contrast"
    order = np.argsort(path["alpha"])
    np.testing.assert_allclose(x, path["alpha"][order])
    np.testing.assert_allclose(y, path["contrast"][order])
    i = int(np.flatnonzero(path["chosen"])[0])
    assert path["alpha"][i] == auto_model.alpha_
    np.testing.assert_allclose(_chosen(ax).get_offsets(), [[auto_model.alpha_,
                                                            path["contrast"][i]]])
    assert _chosen(ax).get_label() == f"chosen: alpha = {auto_model.alpha_:g}"
    chance = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(chance) == 1 and list(chance[0].get_ydata()) == [0.5, 0.5]
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"{a:g}" for a in
                                                            np.unique(path["alpha"])]
    assert len(_hollow(ax)) == (~path["counted"]).sum()


def test_alpha_path_from_the_csv_and_a_dict(auto_model, tmp_path):
    """The table as a run folder holds it (alpha_path.csv read back by pandas) and as a dict
    draw what the model draws; uncounted alphas are hollow; stability goes on a twin axis."""
    pd.DataFrame(auto_model.alpha_path_).to_csv(tmp_path / "alpha_path.csv", index=False)
    table = pd.read_csv(tmp_path / "alpha_path.csv")
    expected = _curves(bcnmf.pl.alpha_path(auto_model))
    for data in (table, {k: list(v) for k, v in auto_model.alpha_path_.items()}):
        _, ax = plt.subplots()
        assert bcnmf.pl.alpha_path(data, ax=ax) is ax
        drawn = _curves(ax)
        assert drawn.keys() == expected.keys()
        for key in drawn:
            np.testing.assert_allclose(drawn[key], expected[key])
        assert _chosen(ax).get_label() == f"chosen: alpha = {auto_model.alpha_:g}"
    collapsed = table.assign(counted=[j not in (0, 1) for j in range(len(table))])
    ax = bcnmf.pl.alpha_path(collapsed)
    first = table.sort_values("alpha").iloc[:2]
    np.testing.assert_allclose(np.sort(_hollow(ax), axis=0),
                               np.sort(first[["alpha", "contrast"]].to_numpy(), axis=0))
    assert "collapsed, not counted" in [t.get_text() for t in ax.get_legend().get_texts()]
    ax = bcnmf.pl.alpha_path(table, stability=True)
    assert len(ax.figure.axes) == 2
    twin = next(a for a in ax.figure.axes if a is not ax)
    np.testing.assert_allclose(twin.get_lines()[0].get_ydata(),
                               table.sort_values("alpha")["stability"])
    with pytest.raises(KeyError, match="stability"):
        bcnmf.pl.alpha_path(PATH, stability=True)
    with pytest.raises(KeyError, match="lacks column"):
        bcnmf.pl.alpha_path(table.drop(columns="contrast"))
    with pytest.raises(TypeError, match="alpha='auto'"):
        bcnmf.pl.alpha_path(42)


def test_alpha_path_of_a_fixed_alpha_fit_says_nothing_was_chosen(fitted):
    model, _, adata = fitted  # both fitted with alpha=1.0
    with pytest.raises(ValueError, match="fitted with a fixed alpha.*nothing was chosen"):
        bcnmf.pl.alpha_path(model)
    with pytest.raises(ValueError, match="fixed alpha, nothing was chosen"):
        bcnmf.pl.alpha_path(adata)
    with pytest.raises(ValueError, match="not fitted"):
        bcnmf.pl.alpha_path(BCNMF(2))


def test_alpha_path_draws_one_line_per_n_components(contrast_fit):
    from bcnmf.core.alpha_path import K_GRID

    X, Y, _, _ = contrast_fit
    model = _auto_fit(X, Y, n_components="auto")
    path = model.alpha_path_
    assert len(np.unique(path["n_components"])) > 1
    ax = bcnmf.pl.alpha_path(model)
    curves = _curves(ax)
    assert list(curves) == [f"K = {k}" for k in K_GRID]
    for k in K_GRID:
        rows = path["n_components"] == k
        np.testing.assert_allclose(curves[f"K = {k}"][1],
                                   path["contrast"][rows][np.argsort(path["alpha"][rows])])
    i = int(np.flatnonzero(path["chosen"])[0])
    assert model.components_.shape[0] == path["n_components"][i]
    assert _chosen(ax).get_label() == (f"chosen: alpha = {model.alpha_:g}, "
                                       f"K = {path['n_components'][i]}")


def test_gene_sets_dots_are_the_top_sets_of_each_topic():
    """Rows: the n_top sets with q <= q_threshold of each topic, in the order of the first
    topic that shows them; a dot per (topic, row); area grows with -log10 q, colour is the
    effect, a black edge marks q <= q_threshold."""
    ax = bcnmf.pl.gene_sets(GENE_SETS, n_top=1)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["topic 1", "topic 2", "topic 3"]
    dots = [c for c in ax.collections if isinstance(c, PathCollection)][0]
    xy = dots.get_offsets()
    assert len(xy) == 6  # 3 topics x 2 sets
    shown = GENE_SETS[GENE_SETS["gene_set"].isin(["A", "B"])]
    np.testing.assert_array_equal(xy[:, 0], [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(xy[:, 1], [0, 1, 0, 1, 0, 1])
    height = -np.log10(shown["q_value"].to_numpy())
    sizes = dots.get_sizes()
    assert np.all(np.diff(sizes[np.argsort(height)]) >= 0)
    assert sizes.max() > 10 * sizes.min()
    np.testing.assert_allclose(dots.get_array(), shown["effect"].to_numpy())
    assert dots.norm(0.5) == pytest.approx(0.5)  # no enrichment in the middle of the map
    edges = dots.get_edgecolors()[:, 3]
    np.testing.assert_array_equal(edges > 0, shown["q_value"].to_numpy() <= 0.05)
    ax = bcnmf.pl.gene_sets(GENE_SETS, n_top=2)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B"]  # C is never below q
    ax = bcnmf.pl.gene_sets(GENE_SETS, n_top=3, q_threshold=1.0)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B", "C"]


def test_gene_sets_without_a_significant_set_shows_the_best_and_says_so():
    table = GENE_SETS.assign(q_value=np.linspace(0.2, 1.0, 9))
    ax = bcnmf.pl.gene_sets(table, n_top=1)
    assert "none at q <= 0.05" in ax.get_title()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A"]


def test_gene_sets_reads_the_csv_of_a_run(tmp_path):
    from bcnmf.gene_sets import COLUMNS

    rng = np.random.default_rng(0)
    genes = [f"g{j}" for j in range(80)]
    loadings = rng.gamma(0.5, 1.0, size=(3, 80))
    sets = {f"S{i}": list(rng.choice(genes, 10, replace=False)) for i in range(6)}
    table = bcnmf.topic_gene_sets(loadings, sets, feature_names=genes)
    table.to_csv(tmp_path / "gene_sets.csv", index=False)
    again = pd.read_csv(tmp_path / "gene_sets.csv")
    assert tuple(again.columns) == COLUMNS
    ax = bcnmf.pl.gene_sets(again)
    assert len(ax.get_yticklabels()) >= 1


def test_gene_sets_refuses_bad_tables():
    with pytest.raises(KeyError, match=r"lacks column\(s\) \['effect'\]"):
        bcnmf.pl.gene_sets(GENE_SETS.drop(columns="effect"))
    with pytest.raises(TypeError, match="DataFrame"):
        bcnmf.pl.gene_sets({"topic": []})
    with pytest.raises(ValueError, match="n_top"):
        bcnmf.pl.gene_sets(GENE_SETS, n_top=0)
    with pytest.raises(ValueError, match="q_threshold"):
        bcnmf.pl.gene_sets(GENE_SETS, q_threshold=0)
    with pytest.raises(ValueError, match="q_value"):
        bcnmf.pl.gene_sets(GENE_SETS.assign(q_value=np.nan))
    with pytest.raises(ValueError, match="AUC"):
        bcnmf.pl.gene_sets(GENE_SETS.assign(effect=2.0))
    with pytest.raises(ValueError, match="empty"):
        bcnmf.pl.gene_sets(GENE_SETS.iloc[:0])
