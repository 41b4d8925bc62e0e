"""bcnmf.pl: conventions (first argument, keyword-only options, ax=, returns Axes) and what
each plot draws, with hand-built inputs where the tables come from elsewhere."""

import inspect

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


def _calls(fitted):
    model, codes, adata = fitted
    return {
        "loss_history": (model, {}),
        "loadings": (adata, {"n_top": 3}),
        "topic_usage": (adata, {}),
        "enrichment_volcano": (ENRICHMENT, {}),
        "selection_grid": (SELECTION, {"best": {"n_components": 3, "alpha": 1.5}}),
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
    with pytest.raises(ValueError, match="topics"):
        bcnmf.pl.loadings(comps, topics=[2])
    with pytest.raises(ValueError, match="n_top"):
        bcnmf.pl.loadings(comps, n_top=0)


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
    bcnmf.tl.bcnmf(t, background=b, n_components=2, max_iter=30, tol=0)
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
