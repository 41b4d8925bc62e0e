"""bcnmf.tl: scanpy conventions, results written where scanpy users look for them, the
two-object form's feature alignment, and refusal of log-transformed input for Poisson."""

import inspect
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import bcnmf
from bcnmf import BCNMF
from bcnmf._prep import align_features, log_transform_evidence
from bcnmf.exceptions import FeatureAlignmentWarning

ad = pytest.importorskip("anndata")

FIT = dict(n_components=2, alpha=1.0, max_iter=200, tol=0.0)  # tol=0: no ConvergenceWarning


def _counts(n_target=40, n_background=30, n_genes=12, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.poisson(2.0, size=(n_target, n_genes)).astype(np.float64)
    X[: n_target // 2, :3] += rng.poisson(6.0, size=(n_target // 2, 3))
    Y = rng.poisson(2.0, size=(n_background, n_genes)).astype(np.float64)
    return X, Y


def _one_object(X, Y, dtype=np.float32, sparse=False):
    M = np.vstack([X, Y]).astype(dtype)
    obs = pd.DataFrame({"condition": ["treated"] * len(X) + ["control"] * len(Y)},
                       index=[f"cell{i}" for i in range(len(M))])
    var = pd.DataFrame(index=[f"gene{j}" for j in range(M.shape[1])])
    return ad.AnnData(sp.csr_matrix(M) if sparse else M, obs=obs, var=var)


def _named(M, genes, prefix):
    return ad.AnnData(M, obs=pd.DataFrame(index=[f"{prefix}{i}" for i in range(len(M))]),
                      var=pd.DataFrame(index=list(genes)))


# ---------------------------------------------------------------------------------------------
# conventions
# ---------------------------------------------------------------------------------------------

def _public_functions(module):
    """Public functions defined in ``module`` (not imported into it)."""
    return {name for name, f in inspect.getmembers(module, inspect.isfunction)
            if not name.startswith("_") and f.__module__ == module.__name__}


def test_every_public_tool_and_plot_is_exported_and_checked():
    """Every public function of bcnmf.tl and bcnmf.pl is in __all__, so the convention tests
    (here and in test_pl.py) see it."""
    import bcnmf.pl

    for module in (bcnmf.tl, bcnmf.pl):
        assert _public_functions(module) == set(module.__all__), module.__name__


def test_signature_conventions():
    """scanpy's rules for tools: adata first, few positionals, keyword-only options with
    key_added and copy=False; a new tool in __all__ is checked automatically."""
    assert bcnmf.tl.__all__, "bcnmf.tl exports no tools"
    for name in bcnmf.tl.__all__:
        params = list(inspect.signature(getattr(bcnmf.tl, name)).parameters.values())
        assert params[0].name == "adata", name
        positional = [p for p in params if p.kind == p.POSITIONAL_OR_KEYWORD]
        assert len(positional) <= 3, (name, [p.name for p in positional])
        keyword_only = {p.name: p for p in params if p.kind == p.KEYWORD_ONLY}
        assert keyword_only["copy"].default is False, name
        assert keyword_only["key_added"].default is None, name
        assert "n_components" in keyword_only and "layer" in keyword_only, name


def test_results_match_the_estimator_and_go_to_the_scanpy_slots():
    X, Y = _counts()
    adata = _one_object(X, Y, dtype=np.float64)
    before = adata.X.copy()
    assert bcnmf.tl.bcnmf(adata, "condition", background="control", **FIT) is None
    model = BCNMF(2, alpha=1.0, max_iter=200, tol=0.0, random_state=0)
    codes = model.fit_transform(X, background=Y)
    np.testing.assert_array_equal(adata.obsm["X_bcnmf"][: len(X)], codes)
    np.testing.assert_array_equal(adata.obsm["X_bcnmf"][len(X):], model.background_codes_)
    np.testing.assert_array_equal(adata.varm["bcnmf"], model.components_.T)
    rec = adata.uns["bcnmf"]
    assert rec["params"]["n_components"] == 2 and rec["params"]["alpha"] == 1.0
    assert rec["groupby"] == "condition" and list(rec["background"]) == ["control"]
    assert rec["n_target"] == len(X) and rec["n_background"] == len(Y)
    assert rec["alpha_raw"] == model.alpha_raw_ and rec["n_iter"] == model.n_iter_
    np.testing.assert_array_equal(rec["history"]["objective"], model.history_["objective"])
    np.testing.assert_array_equal(adata.X, before)  # data untouched


def test_background_cells_need_not_be_contiguous():
    X, Y = _counts()
    adata = _one_object(X, Y, dtype=np.float64)
    adata = adata[np.random.default_rng(1).permutation(adata.n_obs)].copy()
    bcnmf.tl.bcnmf(adata, "condition", background=["control"], **FIT)
    is_bg = (adata.obs["condition"] == "control").to_numpy()
    model = BCNMF(2, alpha=1.0, max_iter=200, tol=0.0, random_state=0)
    codes = model.fit_transform(adata.X[~is_bg], background=adata.X[is_bg])
    np.testing.assert_array_equal(adata.obsm["X_bcnmf"][~is_bg], codes)
    np.testing.assert_array_equal(adata.obsm["X_bcnmf"][is_bg], model.background_codes_)


def test_copy_returns_a_new_object_and_leaves_the_input_alone():
    X, Y = _counts()
    adata = _one_object(X, Y)
    out = bcnmf.tl.bcnmf(adata, "condition", background="control", copy=True, **FIT)
    assert out is not adata and "X_bcnmf" in out.obsm and "bcnmf" in out.uns
    assert "X_bcnmf" not in adata.obsm and "bcnmf" not in adata.varm and "bcnmf" not in adata.uns


def test_key_added_and_float32():
    X, Y = _counts()
    adata = _one_object(X, Y, dtype=np.float32)
    bcnmf.tl.bcnmf(adata, "condition", background="control", key_added="contrast", **FIT)
    assert adata.obsm["X_contrast"].dtype == np.float32
    assert adata.varm["contrast"].shape == (12, 2) and "contrast" in adata.uns
    assert "X_bcnmf" not in adata.obsm


def test_sparse_stays_sparse(monkeypatch):
    X, Y = _counts()
    adata = _one_object(X, Y, sparse=True)
    seen = []

    class Recording(BCNMF):
        def fit_transform(self, X, y=None, *, background=None, **kw):
            seen.append((sp.issparse(X), sp.issparse(background)))
            return super().fit_transform(X, background=background, **kw)

    monkeypatch.setattr(bcnmf.tl, "BCNMF", Recording)
    bcnmf.tl.bcnmf(adata, "condition", background="control", **FIT)
    assert seen == [(True, True)]
    assert sp.issparse(adata.X)
    dense = _one_object(X, Y)
    bcnmf.tl.bcnmf(dense, "condition", background="control", **FIT)
    np.testing.assert_allclose(adata.obsm["X_bcnmf"], dense.obsm["X_bcnmf"], rtol=1e-3,
                               atol=1e-3 * dense.obsm["X_bcnmf"].max())


def test_mask_var_leaves_zero_loadings_for_unused_genes():
    X, Y = _counts()
    adata = _one_object(X, Y)
    adata.var["use"] = np.arange(12) % 3 != 0
    bcnmf.tl.bcnmf(adata, "condition", background="control", mask_var="use", **FIT)
    L = adata.varm["bcnmf"]
    assert L.shape == (12, 2)
    assert np.all(L[~adata.var["use"].to_numpy()] == 0)
    assert np.all(L[adata.var["use"].to_numpy()].sum(axis=1) > 0)
    assert adata.uns["bcnmf"]["n_features_used"] == 8
    with pytest.raises(ValueError, match="mask_var"):
        bcnmf.tl.bcnmf(adata, "condition", background="control", mask_var=np.ones(3, bool), **FIT)


def test_results_can_be_written_to_h5ad(tmp_path):
    X, Y = _counts()
    adata = _one_object(X, Y)
    bcnmf.tl.bcnmf(adata, "condition", background="control", **FIT)
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    np.testing.assert_array_equal(back.obsm["X_bcnmf"], adata.obsm["X_bcnmf"])
    assert back.uns["bcnmf"]["params"]["beta_loss"] == "frobenius"


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(groupby="missing", background="control"), KeyError, "not a column"),
    (dict(groupby="condition", background="nope"), ValueError, "not found"),
    (dict(groupby="condition", background=["control", "treated"]), ValueError,
     "no target cells"),
    (dict(groupby="condition"), TypeError, "background="),
    (dict(groupby="condition", background="control", beta_loss="l2"), ValueError,
     "beta_loss"),
    (dict(groupby="condition", background="control", layer="counts"), KeyError, "layer"),
    (dict(groupby="condition", background="control", use_raw=True), ValueError, "raw"),
])
def test_bad_arguments(kwargs, error, match):
    X, Y = _counts()
    with pytest.raises(error, match=match):
        bcnmf.tl.bcnmf(_one_object(X, Y), **{**FIT, **kwargs})


def test_not_anndata():
    with pytest.raises(TypeError, match="AnnData"):
        bcnmf.tl.bcnmf(np.ones((3, 3)), "a", background="b", alpha=1.5)


def test_backed_anndata_is_refused_and_the_streaming_route_works(tmp_path):
    """tl needs the data in memory (it selects cells and genes): a backed AnnData, in either
    role, is refused with a message naming to_memory() and the estimator's streaming route,
    and that route (BCNMF on the backed X of two files) fits the same model."""
    X, Y = _counts()
    _one_object(X, Y).write_h5ad(tmp_path / "one.h5ad")
    backed = ad.read_h5ad(tmp_path / "one.h5ad", backed="r")
    with pytest.raises(ValueError, match=r"backed.*to_memory\(\)"):
        bcnmf.tl.bcnmf(backed, "condition", background="control", **FIT)
    genes = [f"g{j}" for j in range(X.shape[1])]
    _named(X, genes, "t").write_h5ad(tmp_path / "t.h5ad")
    _named(Y, genes, "b").write_h5ad(tmp_path / "b.h5ad")
    t_backed = ad.read_h5ad(tmp_path / "t.h5ad", backed="r")
    b_backed = ad.read_h5ad(tmp_path / "b.h5ad", backed="r")
    with pytest.raises(ValueError, match="background is backed"):
        bcnmf.tl.bcnmf(_named(X, genes, "t"), background=b_backed, **FIT)
    with pytest.raises(ValueError, match=r"BCNMF\(\.\.\.\)\.fit\(target\.X"):
        bcnmf.tl.bcnmf(t_backed, background=b_backed, **FIT)
    streamed = BCNMF(2, alpha=1.0, max_iter=30, tol=0, random_state=0)
    streamed.fit(t_backed.X, background=b_backed.X)
    in_memory = BCNMF(2, alpha=1.0, max_iter=30, tol=0, random_state=0).fit(X, background=Y)
    np.testing.assert_allclose(streamed.components_, in_memory.components_, rtol=1e-10)
    t_backed.file.close()
    b_backed.file.close()
    backed.file.close()


def test_torch_device_fit_writes_numpy_results_equal_to_the_numpy_fit(tmp_path):
    """device="cpu" (torch backend): obsm/varm/uns hold numpy arrays (h5ad-writable,
    scanpy-plottable) equal to the numpy fit's."""
    pytest.importorskip("torch")
    X, Y = _counts()
    on_numpy, on_torch = _one_object(X, Y, np.float64), _one_object(X, Y, np.float64)
    bcnmf.tl.bcnmf(on_numpy, "condition", background="control", n_permutations=50, **FIT)
    bcnmf.tl.bcnmf(on_torch, "condition", background="control", n_permutations=50,
                   device="cpu", **FIT)
    for key, slot in (("X_bcnmf", on_torch.obsm), ("bcnmf", on_torch.varm)):
        assert type(slot[key]) is np.ndarray and slot[key].dtype == np.float64, key
    np.testing.assert_allclose(on_torch.obsm["X_bcnmf"], on_numpy.obsm["X_bcnmf"], rtol=1e-6,
                               atol=1e-9)
    np.testing.assert_allclose(on_torch.varm["bcnmf"], on_numpy.varm["bcnmf"], rtol=1e-6,
                               atol=1e-9)
    assert on_torch.uns["bcnmf"]["params"]["device"] == "cpu"
    on_torch.write_h5ad(tmp_path / "torch.h5ad")
    back = ad.read_h5ad(tmp_path / "torch.h5ad")
    np.testing.assert_array_equal(back.obsm["X_bcnmf"], on_torch.obsm["X_bcnmf"])
    genes = [f"g{j}" for j in range(X.shape[1])]
    t, b = _named(X, genes, "t"), _named(Y, genes, "b")
    bcnmf.tl.bcnmf(t, background=b, enrichment=False, device="cpu", **FIT)
    assert type(b.obsm["X_bcnmf"]) is np.ndarray and b.obsm["X_bcnmf"].shape == (len(Y), 2)


# ---------------------------------------------------------------------------------------------
# two objects: alignment by var_names
# ---------------------------------------------------------------------------------------------

def test_two_objects_with_shuffled_var_names_equal_the_aligned_fit():
    X, Y = _counts()
    genes = np.array([f"g{j}" for j in range(12)])
    perm = np.random.default_rng(3).permutation(12)
    target = _named(X, genes, "t")
    background = _named(Y[:, perm], genes[perm], "b")  # same genes, other order
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # full overlap: no alignment warning
        bcnmf.tl.bcnmf(target, background=background, **FIT)
    model = BCNMF(2, alpha=1.0, max_iter=200, tol=0.0, random_state=0)
    codes = model.fit_transform(X, background=Y)
    np.testing.assert_array_equal(target.obsm["X_bcnmf"], codes)
    np.testing.assert_array_equal(background.obsm["X_bcnmf"], model.background_codes_)
    np.testing.assert_array_equal(target.varm["bcnmf"], model.components_.T)
    np.testing.assert_array_equal(background.varm["bcnmf"], model.components_.T[perm])
    assert target.uns["bcnmf"]["role"] == "target"
    assert background.uns["bcnmf"]["role"] == "background"


def test_two_objects_partly_overlapping_warns_with_counts_and_zeroes_dropped_genes():
    X, Y = _counts(n_genes=14)
    t_genes = [f"g{j}" for j in range(12)] + ["only_t0", "only_t1"]
    b_genes = [f"g{j}" for j in range(12)][::-1] + ["only_b0", "only_b1"]
    b_order = [11 - j for j in range(12)] + [12, 13]
    target, background = _named(X, t_genes, "t"), _named(Y[:, b_order], b_genes, "b")
    with pytest.warns(FeatureAlignmentWarning,
                      match=r"12 shared features: dropped 2 .* target and 2 .* background"):
        out_t, out_b = bcnmf.tl.bcnmf(target, background=background, copy=True, **FIT)
    assert np.all(out_t.varm["bcnmf"][12:] == 0) and np.all(out_b.varm["bcnmf"][12:] == 0)
    # the shared genes carry the same loadings in both objects
    np.testing.assert_array_equal(out_t.varm["bcnmf"][:12], out_b.varm["bcnmf"][:12][::-1])
    model = BCNMF(2, alpha=1.0, max_iter=200, tol=0.0, random_state=0)
    np.testing.assert_array_equal(out_t.obsm["X_bcnmf"],
                                  model.fit_transform(X[:, :12], background=Y[:, :12]))
    assert "X_bcnmf" not in target.obsm  # copy=True left the inputs alone


def test_two_objects_too_little_or_no_overlap_is_an_error():
    X, Y = _counts()
    target = _named(X, [f"g{j}" for j in range(12)], "t")
    few = _named(Y, [f"g{j}" for j in range(3)] + [f"x{j}" for j in range(9)], "b")
    none = _named(Y, [f"x{j}" for j in range(12)], "b")
    with pytest.raises(ValueError, match="share only 3 feature"):
        bcnmf.tl.bcnmf(target, background=few, **FIT)
    with pytest.raises(ValueError, match="share no feature names"):
        bcnmf.tl.bcnmf(target, background=none, **FIT)
    with pytest.warns(FeatureAlignmentWarning, match="dropped 9"):
        bcnmf.tl.bcnmf(target, background=few, min_overlap=3, **FIT)
    with pytest.raises(TypeError, match="groupby"):
        bcnmf.tl.bcnmf(target, "condition", background=few, **FIT)


def test_align_features_units():
    with pytest.warns(FeatureAlignmentWarning, match="dropped 2 .* and 1 "):
        t, b, names = align_features(["a", "b", "c", "d"], ["d", "x", "b"], min_overlap=2)
    assert names.tolist() == ["b", "d"] and t.tolist() == [1, 3] and b.tolist() == [2, 0]
    with pytest.raises(ValueError, match="not unique"):
        align_features(["a", "a"], ["a"])
    with pytest.raises(ValueError, match="min_overlap"):
        align_features(["a"], ["a"], min_overlap=0)
    with pytest.raises(ValueError, match="at least 3"):
        align_features(["a", "b"], ["a", "b"], min_features=3)


# ---------------------------------------------------------------------------------------------
# Poisson needs counts
# ---------------------------------------------------------------------------------------------

def test_log_transform_fingerprints():
    X, _ = _counts()
    norm = X / X.sum(axis=1, keepdims=True) * 1e4
    assert log_transform_evidence(X) is None
    assert "log1p of counts" in log_transform_evidence(np.log1p(X))
    assert "log2" in log_transform_evidence(np.log2(X + 1))
    assert "normalize_total" in log_transform_evidence(np.log1p(norm))
    assert "uns['log1p']" in log_transform_evidence(X, log1p_recorded=True)
    # intensities that are not whole numbers but were never log-transformed are accepted
    intensities = np.random.default_rng(0).gamma(2.0, 0.7, size=(50, 10))
    assert log_transform_evidence(intensities) is None
    assert log_transform_evidence(sp.csr_matrix(np.log1p(X))) is not None


def test_poisson_refuses_scanpy_log1p_and_points_to_counts():
    sc = pytest.importorskip("scanpy")
    X, Y = _counts()
    adata = _one_object(X, Y)
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    with pytest.raises(ValueError, match=r"looks log-transformed.*layer=.*counts"):
        bcnmf.tl.bcnmf(adata, "condition", background="control", beta_loss="poisson", **FIT)
    bcnmf.tl.bcnmf(adata, "condition", background="control", beta_loss="poisson",
                   layer="counts", **FIT)
    assert adata.uns["bcnmf"]["source"] == "layers['counts']"
    # without scanpy's record the normalize_total + log1p fingerprint is still recognised
    del adata.uns["log1p"]
    with pytest.raises(ValueError, match="normalize_total"):
        bcnmf.tl.bcnmf(adata, "condition", background="control", beta_loss="poisson", **FIT)
    # Frobenius on log-normalised data is the intended use: accepted
    bcnmf.tl.bcnmf(adata, "condition", background="control", **FIT)


def test_poisson_from_raw():
    X, Y = _counts()
    adata = _one_object(X, Y)
    adata.raw = adata.copy()
    adata.X = np.log1p(adata.X)
    with pytest.raises(ValueError, match="use_raw=True"):
        bcnmf.tl.bcnmf(adata, "condition", background="control", beta_loss="poisson", **FIT)
    bcnmf.tl.bcnmf(adata, "condition", background="control", beta_loss="poisson",
                   use_raw=True, **FIT)
    assert adata.uns["bcnmf"]["source"] == "raw"


# scanpy 1.11's embedding plot calls Colormap.set_bad, which matplotlib >= 3.11 marks for
# deprecation: third-party and unavoidable here, so ignored for this one test only.
@pytest.mark.filterwarnings("ignore:The set_bad function will be deprecated"
                            ":PendingDeprecationWarning")
def test_scanpy_embedding_plots_the_codes():
    sc = pytest.importorskip("scanpy")
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X, Y = _counts()
    adata = _one_object(X, Y)
    bcnmf.tl.bcnmf(adata, "condition", background="control", **FIT)
    ax = sc.pl.embedding(adata, basis="bcnmf", color="condition", show=False)
    assert ax.get_xlabel() == "bcnmf1" and ax.get_ylabel() == "bcnmf2"
    plt.close("all")


# ---------------------------------------------------------------------------------------------
# topic statistics (issue 3)
# ---------------------------------------------------------------------------------------------

def test_enrichment_table_in_uns_equals_topic_enrichment(tmp_path):
    X, Y = _counts()
    adata = _one_object(X, Y, dtype=np.float64)
    bcnmf.tl.bcnmf(adata, "condition", background="control", n_permutations=200, **FIT)
    table = adata.uns["bcnmf"]["enrichment"]
    model = BCNMF(2, alpha=1.0, max_iter=200, tol=0.0, random_state=0).fit(X, background=Y)
    expected = bcnmf.topic_enrichment(model, X, background=Y, n_permutations=200,
                                      random_state=0)
    assert list(table.index) == ["topic 1", "topic 2"]
    pd.testing.assert_frame_equal(table, expected, check_names=False)
    adata.write_h5ad(tmp_path / "e.h5ad")
    back = ad.read_h5ad(tmp_path / "e.h5ad").uns["bcnmf"]["enrichment"]
    np.testing.assert_allclose(back["q_value"].to_numpy(), table["q_value"].to_numpy())
    plain = _one_object(X, Y, dtype=np.float64)
    bcnmf.tl.bcnmf(plain, "condition", background="control", enrichment=False, **FIT)
    assert "enrichment" not in plain.uns["bcnmf"]


def test_two_objects_both_get_the_enrichment_table():
    X, Y = _counts()
    genes = [f"g{j}" for j in range(X.shape[1])]
    target, background = _named(X, genes, "t"), _named(Y, genes, "b")
    bcnmf.tl.bcnmf(target, background=background, n_permutations=50, **FIT)
    t = target.uns["bcnmf"]["enrichment"]
    b = background.uns["bcnmf"]["enrichment"]
    pd.testing.assert_frame_equal(t, b)
    assert {"p_value", "q_value", "effect_size", "enriched"} <= set(t.columns)


# ---------------------------------------------------------------------------------------------
# sample-level enrichment (sample_key)
# ---------------------------------------------------------------------------------------------

def _with_samples(X, Y, n_target_samples=4, n_background_samples=4):
    adata = _one_object(X, Y, dtype=np.float64)
    donors = np.r_[np.arange(len(X)) % n_target_samples,
                   10 + np.arange(len(Y)) % n_background_samples]
    adata.obs["donor"] = pd.Categorical([f"d{v}" for v in donors])
    return adata


def test_sample_key_gives_the_sample_level_table(tmp_path):
    X, Y = _counts()
    adata = _with_samples(X, Y)
    bcnmf.tl.bcnmf(adata, "condition", background="control", sample_key="donor", **FIT)
    table = adata.uns["bcnmf"]["enrichment"]
    assert adata.uns["bcnmf"]["sample_key"] == "donor"
    model = BCNMF(2, alpha=1.0, max_iter=200, tol=0.0, random_state=0).fit(X, background=Y)
    donors = adata.obs["donor"].to_numpy()
    expected = bcnmf.topic_enrichment(model, X, background=Y, samples=donors[: len(X)],
                                      background_samples=donors[len(X):], random_state=0)
    pd.testing.assert_frame_equal(table, expected, check_names=False)
    assert (table["test"] == "samples").all()
    assert (table["n_samples_target"] == 4).all() and (table["n_samples_background"] == 4).all()
    adata.write_h5ad(tmp_path / "s.h5ad")
    back = ad.read_h5ad(tmp_path / "s.h5ad").uns["bcnmf"]
    assert back["sample_key"] == "donor"
    assert list(back["enrichment"]["test"]) == ["samples", "samples"]
    plain = _one_object(X, Y, dtype=np.float64)
    bcnmf.tl.bcnmf(plain, "condition", background="control", n_permutations=50, **FIT)
    assert "sample_key" not in plain.uns["bcnmf"]
    assert (plain.uns["bcnmf"]["enrichment"]["test"] == "cells").all()


def test_sample_key_in_the_two_object_form():
    X, Y = _counts()
    genes = [f"g{j}" for j in range(X.shape[1])]
    target, background = _named(X, genes, "t"), _named(Y, genes, "b")
    target.obs["mouse"] = np.arange(len(X)) % 4
    background.obs["mouse"] = 100 + np.arange(len(Y)) % 5
    bcnmf.tl.bcnmf(target, background=background, sample_key="mouse", **FIT)
    t, b = target.uns["bcnmf"]["enrichment"], background.uns["bcnmf"]["enrichment"]
    pd.testing.assert_frame_equal(t, b)
    assert (t["test"] == "samples").all() and (t["n_samples_background"] == 5).all()
    assert target.uns["bcnmf"]["sample_key"] == background.uns["bcnmf"]["sample_key"] == "mouse"
    del background.obs["mouse"]
    with pytest.raises(KeyError, match=r"sample_key='mouse' is not a column of "
                       r"background\.obs; columns: \[\]"):
        bcnmf.tl.bcnmf(target, background=background, sample_key="mouse", **FIT)


def test_bad_sample_key_is_refused_before_the_fit(monkeypatch):
    X, Y = _counts()
    adata = _with_samples(X, Y)
    before = adata.copy()

    def no_fit(*args, **kwargs):  # the checks come before any fitting
        raise AssertionError("fitted")

    monkeypatch.setattr(BCNMF, "fit_transform", no_fit)
    with pytest.raises(KeyError, match=r"sample_key='mouse' is not a column of adata\.obs; "
                       r"columns: \['condition', 'donor'\]"):
        bcnmf.tl.bcnmf(adata, "condition", background="control", sample_key="mouse", **FIT)
    with pytest.raises(TypeError, match="sample_key must be the name of a column"):
        bcnmf.tl.bcnmf(adata, "condition", background="control", sample_key=3, **FIT)
    adata.obs["shared"] = "d0"  # one sample on both sides
    with pytest.raises(ValueError, match=r"\['d0'\] occur in both"):
        bcnmf.tl.bcnmf(adata, "condition", background="control", sample_key="shared", **FIT)
    adata.obs["gap"] = adata.obs["donor"].astype(object)
    adata.obs.loc[adata.obs_names[0], "gap"] = np.nan
    with pytest.raises(ValueError, match="missing label"):
        bcnmf.tl.bcnmf(adata, "condition", background="control", sample_key="gap", **FIT)
    pd.testing.assert_frame_equal(adata.obs[["condition", "donor"]], before.obs)
    assert not adata.uns and not adata.obsm
