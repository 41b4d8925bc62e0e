"""bcnmf.topic_gene_sets: the rank test against scipy's Mann-Whitney test, its calibration
on random sets, the three forms of gene sets, the feature names, and every refused input."""

import gzip

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bcnmf
from bcnmf import BCNMF, topic_gene_sets
from bcnmf.gene_sets import COLUMNS, read_gmt

GENES = [f"G{j}" for j in range(60)]


def _loadings(seed=0, k=3, ties=True):
    rng = np.random.default_rng(seed)
    values = rng.gamma(0.5, 1.0, size=(k, len(GENES)))
    if ties:  # NMF loadings have exact zeros and repeated values
        values = np.round(values, 1)
        values[:, :10] = 0.0
    return pd.DataFrame(values, index=[f"topic {t + 1}" for t in range(k)], columns=GENES)


SETS = {"A": GENES[0:12], "B": GENES[5:25], "C": GENES[30:38] + ["NOT_A_GENE"],
        "D": GENES[40:60:2]}


def test_returns_the_documented_columns():
    table = topic_gene_sets(_loadings(), SETS)
    assert tuple(table.columns) == COLUMNS
    assert len(table) == 3 * len(SETS)
    assert list(pd.unique(table["topic"])) == ["topic 1", "topic 2", "topic 3"]
    for _, part in table.groupby("topic"):
        assert np.all(np.diff(part["p_value"].to_numpy()) >= 0)  # sorted by p within topic


def test_matches_scipy_mann_whitney_with_ties():
    """statistic, effect and p_value equal scipy's asymptotic one-sided test of the set's
    loadings against the other genes' (continuity and tie corrected)."""
    loadings = _loadings()
    table = topic_gene_sets(loadings, SETS, min_size=3)
    assert len(table) == 12
    for row in table.itertuples():
        values = loadings.loc[row.topic].to_numpy()
        inside = np.isin(GENES, SETS[row.gene_set])
        res = stats.mannwhitneyu(values[inside], values[~inside], alternative="greater",
                                 method="asymptotic")
        n1, n2 = inside.sum(), (~inside).sum()
        assert row.n_genes == n1
        assert row.effect == pytest.approx(res.statistic / (n1 * n2), rel=1e-12)
        assert row.p_value == pytest.approx(res.pvalue, rel=1e-9, abs=1e-15)
        assert row.statistic == pytest.approx(stats.norm.isf(res.pvalue), rel=1e-7, abs=1e-9)


def test_q_values_are_bh_within_each_topic():
    table = topic_gene_sets(_loadings(), SETS)
    for _, part in table.groupby("topic"):
        expected = stats.false_discovery_control(part["p_value"].to_numpy(), method="bh")
        np.testing.assert_allclose(part["q_value"].to_numpy(), expected, rtol=1e-12)


def test_a_planted_set_comes_first_and_random_sets_are_calibrated():
    """Negative control and positive control on the same loadings: 400 random sets of 20
    of 500 genes are significant at about the nominal rate; the set of the 20 top genes
    comes first with a tiny q."""
    rng = np.random.default_rng(1)
    genes = [f"g{j}" for j in range(500)]
    loadings = rng.gamma(0.7, 1.0, size=(2, 500))
    sets = {f"random{i}": list(rng.choice(genes, 20, replace=False)) for i in range(400)}
    sets["planted"] = [genes[j] for j in np.argsort(-loadings[0])[:40:2]]
    table = topic_gene_sets(loadings, sets, feature_names=genes)
    first = table[table["topic"] == "topic 1"].iloc[0]
    assert first["gene_set"] == "planted" and first["q_value"] < 1e-6
    assert first["effect"] > 0.95
    random = table[table["gene_set"] != "planted"]
    rate = float((random["p_value"] < 0.05).mean())
    assert 0.02 <= rate <= 0.08, rate
    assert float((random["q_value"] < 0.05).mean()) < 0.01


def test_permutation_p_values_follow_the_normal_approximation():
    loadings = _loadings(ties=False)
    normal = topic_gene_sets(loadings, SETS)
    perm = topic_gene_sets(loadings, SETS, n_permutations=4000, random_state=3)
    merged = normal.merge(perm, on=["topic", "gene_set"], suffixes=("", "_perm"))
    np.testing.assert_allclose(merged["statistic"], merged["statistic_perm"])
    np.testing.assert_allclose(merged["p_value_perm"], merged["p_value"], atol=0.03)
    assert (merged["p_value_perm"] >= 1 / 4001).all()
    again = topic_gene_sets(loadings, SETS, n_permutations=4000, random_state=3)
    pd.testing.assert_frame_equal(perm, again)


def test_permutation_p_values_against_a_slow_reference():
    loadings = _loadings(ties=False, k=1)
    table = topic_gene_sets(loadings, {"A": GENES[:8]}, n_permutations=300, random_state=5)
    # the same draws, one permutation at a time
    rng = np.random.default_rng(5)
    ranks = stats.rankdata(loadings.to_numpy()[0])
    observed = ranks[:8].sum()
    null = []
    for lo in range(0, 300, 64):
        hi = min(lo + 64, 300)
        idx = rng.permuted(np.broadcast_to(np.arange(60), (hi - lo, 60)), axis=1)[:, :8]
        null.extend(ranks[i].sum() for i in idx)
    expected = (1 + np.sum(np.asarray(null) >= observed - 1e-12 * observed)) / 301
    assert table["p_value"].iloc[0] == pytest.approx(expected)


def test_leading_genes_are_the_sets_genes_among_the_top():
    values = np.linspace(1.0, 0.0, 60)[None, :]
    table = topic_gene_sets(values, {"S": ["G7", "G2", "G40", "G5", "G59"]},
                            feature_names=GENES, n_top=6, min_size=2)
    assert table["leading_genes"].iloc[0] == "G2,G5"
    zeros = np.zeros((1, 60))
    zeros[0, :3] = [3.0, 2.0, 1.0]
    table = topic_gene_sets(zeros, {"S": ["G1", "G30", "G31"]}, feature_names=GENES,
                            n_top=10, min_size=2)
    assert table["leading_genes"].iloc[0] == "G1"  # genes at the floor never lead


def test_a_constant_topic_gives_p_one():
    values = np.vstack([np.ones(60), np.arange(60.0)])
    table = topic_gene_sets(values, {"S": GENES[50:]}, feature_names=GENES)
    flat = table[table["topic"] == "topic 1"].iloc[0]
    assert (flat["statistic"], flat["effect"], flat["p_value"]) == (0.0, 0.5, 1.0)
    assert np.isfinite(table[["statistic", "effect", "p_value", "q_value"]].to_numpy()).all()


def _write_gmt(path, sets):
    path.write_text("".join(f"{name}\tdescription of {name}\t" + "\t".join(genes) + "\n"
                            for name, genes in sets.items()))
    return path


def test_dict_gmt_and_long_table_give_the_same_table(tmp_path):
    loadings = _loadings()
    expected = topic_gene_sets(loadings, SETS)
    gmt = _write_gmt(tmp_path / "sets.gmt", SETS)
    pd.testing.assert_frame_equal(topic_gene_sets(loadings, gmt), expected)
    pd.testing.assert_frame_equal(topic_gene_sets(loadings, str(gmt)), expected)
    long = pd.DataFrame([(s, g, 1.0) for s, genes in SETS.items() for g in genes],
                        columns=["source", "target", "weight"])
    pd.testing.assert_frame_equal(topic_gene_sets(loadings, long), expected)
    pd.testing.assert_frame_equal(topic_gene_sets(loadings, long.drop(columns="weight")),
                                  expected)
    packed = tmp_path / "sets.gmt.gz"
    with gzip.open(packed, "wt") as handle:
        handle.write(gmt.read_text())
    pd.testing.assert_frame_equal(topic_gene_sets(loadings, packed), expected)


def test_set_size_and_overlap_report_unknown_genes():
    table = topic_gene_sets(_loadings(), SETS)
    row = table[table["gene_set"] == "C"].iloc[0]
    assert (row["n_genes"], row["set_size"]) == (8, 9)


def test_sets_outside_the_bounds_are_skipped_with_the_reason():
    sets = dict(SETS, tiny=GENES[:2], half=GENES[:6] + [f"X{i}" for i in range(10)])
    table = topic_gene_sets(_loadings(), sets, max_size=15, min_overlap=0.5)
    assert set(table["gene_set"]) == {"A", "C", "D"}
    skipped = table.attrs["skipped"]
    assert set(skipped) == {"B", "tiny", "half"}
    assert "2 of its 2 genes" in skipped["tiny"] and "min_size=5" in skipped["tiny"]
    assert "max_size=15" in skipped["B"]
    assert "6 of its 16 genes" in skipped["half"] and "min_overlap=0.5" in skipped["half"]


def test_no_set_to_test_is_an_error_with_the_numbers():
    sets = {"human": ["TP53", "MYC", "G1", "G2"], "other": ["ACTB", "G3"]}
    with pytest.raises(ValueError, match=r"60 features: of 2 set\(s\), 2 have fewer than "
                                         r"min_size=5.*largest overlap is 2 of 4 genes "
                                         r"\(set 'human'\).*'TP53'.*'G0'"):
        topic_gene_sets(_loadings(), sets)
    with pytest.raises(ValueError, match="1 keep a fraction of their genes below "
                                         "min_overlap=0.9"):
        topic_gene_sets(_loadings(), {"S": GENES[:6] + ["X1"]}, min_overlap=0.9)


def test_a_fitted_model_gives_its_feature_names():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.poisson(2.0, size=(40, 60)).astype(float), columns=GENES)
    X.iloc[:20, :8] += 6
    Y = pd.DataFrame(rng.poisson(2.0, size=(30, 60)).astype(float), columns=GENES)
    model = BCNMF(2, alpha=1.5, random_state=0, max_iter=50, tol=0).fit(X, background=Y)
    table = topic_gene_sets(model, SETS)
    expected = topic_gene_sets(pd.DataFrame(model.components_,
                                            index=["topic 1", "topic 2"], columns=GENES),
                               SETS)
    pd.testing.assert_frame_equal(table, expected)
    pd.testing.assert_frame_equal(topic_gene_sets(model, SETS, feature_names=GENES), expected)
    with pytest.raises(ValueError, match="differ from the model's feature_names_in_"):
        topic_gene_sets(model, SETS, feature_names=GENES[::-1])
    plain = BCNMF(2, alpha=1.5, random_state=0, max_iter=50, tol=0).fit(
        X.to_numpy(), background=Y.to_numpy())
    with pytest.raises(ValueError, match="needs feature names.*feature_names="):
        topic_gene_sets(plain, SETS)
    assert len(topic_gene_sets(plain, SETS, feature_names=GENES)) == 8
    with pytest.raises(Exception, match="not fitted"):
        topic_gene_sets(BCNMF(2), SETS, feature_names=GENES)


def test_inputs_are_not_modified(tmp_path):
    loadings = _loadings()
    sets = {k: list(v) for k, v in SETS.items()}
    long = pd.DataFrame([(s, g) for s, genes in SETS.items() for g in genes],
                        columns=["source", "target"])
    before = (loadings.copy(), {k: list(v) for k, v in sets.items()}, long.copy())
    topic_gene_sets(loadings, sets)
    topic_gene_sets(loadings.to_numpy(), long, feature_names=GENES, n_permutations=10)
    pd.testing.assert_frame_equal(loadings, before[0])
    assert sets == before[1]
    pd.testing.assert_frame_equal(long, before[2])


@pytest.mark.parametrize("sets, error, message", [
    ({"E": []}, ValueError, "gene set 'E' is empty"),
    ({"N": ["G1", 7]}, TypeError, r"gene set 'N' holds genes that are not strings: 7 \(int\)"),
    ({"N": ["G1", None]}, TypeError, "not strings: None"),
    ({"S": "G1"}, TypeError, "gene set 'S' is a single string"),
    ({"S": ["G1", ""]}, ValueError, "empty gene name"),
    ({3: GENES[:6]}, TypeError, r"names must be str; got 3 \(int\)"),
    ({}, ValueError, "holds no gene set"),
    (["G1", "G2"], TypeError, "dict .* GMT file .* DataFrame"),
    (pd.DataFrame({"set": ["A"], "gene": ["G1"]}), ValueError,
     r"'source'.*'target'.*lacks \['source', 'target'\]"),
    (pd.DataFrame({"source": ["A"], "gene": ["G1"]}), ValueError, r"lacks \['target'\]"),
    (pd.DataFrame({"source": ["A", "A"], "target": ["G1", np.nan]}), TypeError,
     "Column 'target' .* not strings: nan"),
    (pd.DataFrame({"source": ["A"], "target": ["G1"], "weight": [-1.0]}), ValueError,
     "finite and positive.*split a signed set"),
    (pd.DataFrame({"source": [], "target": []}), ValueError, "no rows"),
])
def test_bad_gene_sets_are_refused(sets, error, message):
    with pytest.raises(error, match=message):
        topic_gene_sets(_loadings(), sets)


@pytest.mark.parametrize("text, message", [
    ("A\tdesc\tG1\tG2\nB\tdesc\n", "line 2: expected at least 3 tab-separated fields"),
    ("A desc G1 G2\n", r"found 1 \(fields must be separated by tabs"),
    ("A\tdesc\tG1\n\nA\tagain\tG2\n", "line 3: gene set 'A' is already defined on line 1"),
    ("\tdesc\tG1\n", "line 1: the gene set name"),
    ("A\tdesc\tG1\t\tG2\n", "line 1: gene set 'A' has an empty gene field"),
    ("\n\n", "holds no gene set"),
])
def test_gmt_errors_name_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.gmt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        read_gmt(path)
    assert "bad.gmt" in str(info.value)
    with pytest.raises(ValueError, match=message):
        topic_gene_sets(_loadings(), path)


def test_gmt_reader_tolerates_trailing_tabs_and_crlf(tmp_path):
    path = tmp_path / "ok.gmt"
    path.write_bytes(b"A\t\tG1\tG2\tG1\t\r\nB\tdesc\tG3\r\n")
    assert read_gmt(path) == {"A": ["G1", "G2"], "B": ["G3"]}
    with pytest.raises(FileNotFoundError, match="missing.gmt"):
        read_gmt(tmp_path / "missing.gmt")
    binary = tmp_path / "binary.gmt"
    binary.write_bytes(b"A\tdesc\t\xff\xfe\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_gmt(binary)


@pytest.mark.parametrize("kwargs, message", [
    ({"min_size": 0}, "min_size must be an int >= 1"),
    ({"min_size": 2.5}, "min_size"),
    ({"max_size": 3}, "max_size must be None or an int >= min_size"),
    ({"min_overlap": 1.5}, r"min_overlap must be a fraction in \[0, 1\]"),
    ({"n_permutations": 0}, "n_permutations must be None or an int >= 1"),
    ({"n_top": 0}, "n_top must be an int >= 1"),
])
def test_bad_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        topic_gene_sets(_loadings(), SETS, **kwargs)


def test_bad_loadings_are_refused():
    values = _loadings().to_numpy()
    with pytest.raises(ValueError, match="needs feature_names"):
        topic_gene_sets(values, SETS)
    with pytest.raises(ValueError, match="59 feature names for 60 features"):
        topic_gene_sets(values, SETS, feature_names=GENES[:59])
    with pytest.raises(ValueError, match="unique.*1 repeat.*'G0'"):
        topic_gene_sets(values, SETS, feature_names=GENES[:59] + ["G0"])
    with pytest.raises(TypeError, match="feature names must be str"):
        topic_gene_sets(values, SETS, feature_names=list(range(60)))
    bad = values.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite value.*'topic 2'"):
        topic_gene_sets(bad, SETS, feature_names=GENES)
    with pytest.raises(ValueError, match=r"shape \(n_topics, n_features\)"):
        topic_gene_sets(values[0], SETS, feature_names=GENES)
    with pytest.raises(ValueError, match="do not pass feature_names"):
        topic_gene_sets(_loadings(), SETS, feature_names=GENES)
    import scipy.sparse as sp

    with pytest.raises(TypeError, match="sparse"):
        topic_gene_sets(sp.csr_matrix(values), SETS, feature_names=GENES)
    with pytest.raises(ValueError, match="labels must be unique"):
        topic_gene_sets(_loadings().set_axis(["t", "t", "u"]), SETS)
    with pytest.raises(TypeError, match="model must be a fitted bcnmf model"):
        topic_gene_sets("loadings.csv", SETS, feature_names=GENES)


def test_an_anndata_is_refused_with_what_to_pass():
    ad = pytest.importorskip("anndata")
    adata = ad.AnnData(np.ones((4, 60)), var=pd.DataFrame(index=GENES))
    adata.varm["bcnmf"] = _loadings().to_numpy().T
    with pytest.raises(TypeError, match=r"adata.varm\['bcnmf'\]\[mask\].T"):
        topic_gene_sets(adata, SETS)


def test_exported_lazily():
    assert "topic_gene_sets" in bcnmf.__all__
    assert bcnmf.topic_gene_sets is topic_gene_sets
