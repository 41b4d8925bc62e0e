"""The ``bcnmf`` command line, in-process (``bcnmf.cli.main``) and as a subprocess on real
files (.h5ad written by anndata, .csv, 10x-style .mtx)."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

import bcnmf
from bcnmf.cli import main

SRC = str(Path(bcnmf.__file__).resolve().parents[1])
GENES = [f"gene{j}" for j in range(10)]
K = ["-k", "2", "--max-iter", "60", "--tol", "0"]


def _counts(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.poisson(2.0, size=(30, 10)).astype(float)
    X[:15, :3] += 5
    Y = rng.poisson(2.0, size=(20, 10)).astype(float)
    return X, Y


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    X, Y = _counts()
    pd.DataFrame(X, index=[f"t{i}" for i in range(30)], columns=GENES).to_csv(d / "target.csv")
    # background: genes in another order, as features x samples, tab-separated
    pd.DataFrame(Y[:, ::-1], index=[f"b{i}" for i in range(20)],
                 columns=GENES[::-1]).T.to_csv(d / "background.tsv", sep="\t")
    tenx = d / "10x"
    tenx.mkdir()
    scipy.io.mmwrite(tenx / "matrix.mtx", sp.coo_matrix(X.T))
    pd.DataFrame({"id": GENES, "name": GENES}).to_csv(tenx / "features.tsv", sep="\t",
                                                      header=False, index=False)
    pd.Series([f"t{i}" for i in range(30)]).to_csv(tenx / "barcodes.tsv", sep="\t",
                                                    header=False, index=False)
    return d, X, Y


@pytest.fixture(scope="module")
def h5ad(tmp_path_factory):
    ad = pytest.importorskip("anndata")
    d = tmp_path_factory.mktemp("h5ad")
    X, Y = _counts()
    obs = pd.DataFrame({"condition": ["treated"] * 30 + ["control"] * 20},
                       index=[f"c{i}" for i in range(50)])
    adata = ad.AnnData(sp.csr_matrix(np.vstack([X, Y])), obs=obs,
                       var=pd.DataFrame(index=GENES))
    adata.layers["counts"] = adata.X.copy()
    adata.X = sp.csr_matrix(np.log1p(adata.X.toarray()))
    adata.uns["log1p"] = {"base": None}
    adata.write_h5ad(d / "cells.h5ad")
    return d / "cells.h5ad", X, Y


@pytest.fixture(scope="module")
def mice_h5ad(h5ad, tmp_path_factory):
    """The cells of ``h5ad`` with ``obs["mouse"]``: five consecutive cells per mouse (6 target
    and 4 background mice); ``(path, X, Y, adata)``."""
    ad = pytest.importorskip("anndata")
    path, X, Y = h5ad
    adata = ad.read_h5ad(path)
    adata.obs["mouse"] = [f"m{i // 5}" for i in range(adata.n_obs)]
    cells = tmp_path_factory.mktemp("mice") / "mice.h5ad"
    adata.write_h5ad(cells)
    return cells, X, Y, adata


def _run(*argv, env_extra=None):
    """``python -m bcnmf ARGV`` in a fresh process (stdout not a terminal)."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "bcnmf", *map(str, argv)],
                          capture_output=True, text=True, timeout=300, env=env)


# ---------------------------------------------------------------------------------------------
# in-process
# ---------------------------------------------------------------------------------------------

def test_fit_transform_report_in_process(files, tmp_path, capsys):
    d, X, Y = files
    out = tmp_path / "run"
    code = main(["fit", str(d / "target.csv"), "--background", str(d / "background.tsv"),
                 "--background-rows", "features", *K, "--alpha", "1", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    for name in ("model.npz", "components.csv", "target_codes.csv", "background_codes.csv",
                 "history.csv", "params.json"):
        assert (out / name).is_file() and str(out / name) in captured.out
    assert captured.err == ""  # no progress output when stderr is not a terminal
    # the fit is the library's fit of the same data (background columns matched by name)
    model = bcnmf.BCNMF(2, alpha=1.0, max_iter=60, tol=0, random_state=0)
    codes = model.fit_transform(X, background=Y)
    saved = pd.read_csv(out / "target_codes.csv", index_col=0)
    np.testing.assert_allclose(saved.to_numpy(), codes, rtol=1e-12)
    assert list(saved.index[:2]) == ["t0", "t1"] and list(saved.columns) == ["topic_1",
                                                                          "topic_2"]
    comps = pd.read_csv(out / "components.csv", index_col=0)
    assert list(comps.columns) == GENES
    params = json.loads((out / "params.json").read_text())
    assert params["n_components"] == 2 and params["n_iter_"] == 60
    assert params["inputs"]["background"].endswith("background.tsv")
    # transform with the saved model, features matched by name
    shuffled = tmp_path / "new.csv"
    pd.DataFrame(X[:, ::-1], index=[f"n{i}" for i in range(30)],
                 columns=GENES[::-1]).to_csv(shuffled)
    assert main(["transform", str(out / "model.npz"), str(shuffled), "-o",
                 str(tmp_path / "codes.tsv")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "codes.tsv")
    new = pd.read_csv(tmp_path / "codes.tsv", sep="\t", index_col=0,
                      float_precision="round_trip")
    np.testing.assert_array_equal(new.to_numpy(), model.transform(X))
    assert main(["report", str(out), "-q"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "report.html")
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_progress_can_be_forced_on(files, tmp_path, capsys):
    d, _, _ = files
    assert main(["fit", str(d / "target.csv"), *K, "-o", str(tmp_path / "r"),
                 "--progress"]) == 0
    err = capsys.readouterr().err
    assert "reading" in err and "fitting bcNMF" in err and "done in" in err
    assert "no background given" in err


def test_dropped_features_are_reported_and_recorded(files, tmp_path, capsys):
    d, X, Y = files
    extra = pd.DataFrame(np.hstack([Y, Y[:, :2]]), index=[f"b{i}" for i in range(20)],
                         columns=GENES + ["bg_only0", "bg_only1"])
    extra.to_csv(tmp_path / "bg.csv")
    assert main(["fit", str(d / "target.csv"), "--background", str(tmp_path / "bg.csv"), *K,
                 "-o", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "bcnmf: warning: FeatureAlignmentWarning" in err and "dropped 0" in err
    params = json.loads((tmp_path / "r" / "params.json").read_text())
    assert any("found only in the background" in w for w in params["warnings"])
    assert main(["fit", str(d / "target.csv"), *K, "-o", str(tmp_path / "r2"), "-q"]) == 0
    assert capsys.readouterr().err == ""  # quiet: nothing but the paths


def test_fit_chooses_alpha_by_default(files, tmp_path, capsys):
    """`bcnmf fit` without --alpha chooses it (the library's default), prints how and writes
    alpha_path.csv; the fit is the library's automatic fit of the same data."""
    d, X, Y = files
    out = tmp_path / "run"
    code = main(["fit", str(d / "target.csv"), "--background", str(d / "background.tsv"),
                 "--background-rows", "features", *K, "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "alpha chosen without labels" in captured.out and "<- chosen" in captured.out
    path = pd.read_csv(out / "alpha_path.csv")
    params = json.loads((out / "params.json").read_text())
    assert params["alpha"] == "auto" and path["chosen"].sum() == 1
    assert path.loc[path["chosen"], "alpha"].item() == params["alpha_"]
    model = bcnmf.BCNMF(2, max_iter=60, tol=0, random_state=0)
    codes = model.fit_transform(X, background=Y)
    assert model.alpha_ == params["alpha_"]
    np.testing.assert_allclose(pd.read_csv(out / "target_codes.csv", index_col=0).to_numpy(),
                               codes, rtol=1e-12)


def test_fit_chooses_k_on_request(files, tmp_path, capsys):
    d, X, Y = files
    out = tmp_path / "run"
    code = main(["fit", str(d / "target.csv"), "--background", str(d / "background.tsv"),
                 "--background-rows", "features", "-k", "auto", "--max-iter", "60", "--tol",
                 "0", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    path = pd.read_csv(out / "alpha_path.csv")
    k = len(pd.read_csv(out / "components.csv", index_col=0))
    assert path.loc[path["chosen"], "n_components"].item() == k
    assert len(set(path["n_components"])) > 1
    assert json.loads((out / "params.json").read_text())["n_components"] == "auto"


@pytest.mark.parametrize("argv, message", [
    (["fit", "t.csv", "-o", "x", "--background", "b.csv", "--groupby", "g",
      "--background-value", "v"], "either --background or --groupby"),
    (["fit", "t.csv", "-o", "x", "--groupby", "g"], "needs --background-value"),
    (["fit", "t.csv", "-o", "x", "--background-value", "v"], "needs --groupby"),
    (["fit", "t.csv", "-o", "x", "--groupby", "g", "--background-value", "v"],
     "needs an .h5ad TARGET"),
    (["fit", "t.csv", "-o", "x", "-k", "0"], "whole number >= 1"),
    (["fit", "t.csv", "-o", "x", "-k", "many"], "expected 'auto' or a whole number >= 1"),
    (["fit", "t.csv", "--alpha", "-1", "-o", "x"], "number >= 0"),
    (["fit", "t.csv", "--alpha", "best", "-o", "x"], "expected 'auto' or a finite number"),
    (["fit", "t.csv"], "required: -o/--out"),
    (["fit", "t.csv", "-o", "x", "--beta-loss", "l1"], "invalid choice"),
    (["fit", "t.csv", "-o", "x", "--write-h5ad"], "--write-h5ad needs an .h5ad TARGET"),
    (["select", "t.csv", "-o", "x", "-k", "2,x"], "invalid"),
    (["select", "t.csv", "-o", "x", "--holdout", "1.5"], "--holdout"),
    (["select", "t.csv", "-o", "x", "--background", "b.csv", "--groupby", "g",
      "--background-value", "v"], "either --background or --groupby"),
    (["frobnicate"], "invalid choice"),
    ([], "required: COMMAND"),
])
def test_usage_errors_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_runtime_errors_exit_1_with_one_line(files, tmp_path, capsys):
    d, _, _ = files
    assert main(["fit", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bcnmf: error: No such file")
    bad = tmp_path / "model.npz"
    bad.write_bytes(b"garbage")
    assert main(["transform", str(bad), str(d / "target.csv"), "-o", str(tmp_path / "c.csv")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a readable bcnmf model" in err
    assert main(["transform", str(bad), str(d / "target.csv"), "-o", str(tmp_path / "c.csv"),
                 "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ModelFormatError" in err
    assert main(["report", str(tmp_path)]) == 1
    assert "not a bcnmf run folder" in capsys.readouterr().err


def test_help_reads_well(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("fit", "transform", "report", "demo"):
        assert command in out
    assert "Typical use" in out and ".h5ad" in out
    assert main(["fit", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--background-value" in out and "--rows {samples,features}" in out
    assert main(["--version"]) == 0
    assert bcnmf.__version__ in capsys.readouterr().out


def test_console_script_is_declared():
    tomllib = pytest.importorskip("tomllib")
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    scripts = tomllib.loads(pyproject.read_text())["project"]["scripts"]
    module, func = scripts["bcnmf"].split(":")
    assert module == "bcnmf.cli" and callable(getattr(bcnmf.cli, func))


# ---------------------------------------------------------------------------------------------
# subprocess on real files
# ---------------------------------------------------------------------------------------------

def test_subprocess_h5ad_groupby_poisson(h5ad, tmp_path):
    path, X, Y = h5ad
    out = tmp_path / "run"
    proc = _run("fit", path, "--groupby", "condition", "--background-value", "control",
                "--beta-loss", "poisson", *K, "-o", out)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "looks log-transformed" in proc.stderr
    assert "--layer" in proc.stderr
    proc = _run("fit", path, "--groupby", "condition", "--background-value", "control",
                "--beta-loss", "poisson", "--layer", "counts", *K, "-o", out, "--report")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # not a terminal: no progress
    codes = pd.read_csv(out / "target_codes.csv", index_col=0)
    assert codes.shape == (30, 2) and codes.index[0] == "c0"
    assert pd.read_csv(out / "background_codes.csv", index_col=0).index[0] == "c30"
    assert (out / "report.html").is_file()
    model = bcnmf.BCNMF(2, beta_loss="poisson", max_iter=60, tol=0, random_state=0)
    np.testing.assert_allclose(codes.to_numpy(), model.fit_transform(X, background=Y),
                               rtol=1e-6)
    proc = _run("transform", out / "model.npz", path, "--layer", "counts", "-o",
                tmp_path / "all.npz")
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "all.npz") as npz:
        assert npz["X"].shape == (50, 2) and npz["obs_names"][0] == "c0"


def test_subprocess_mtx_against_csv(files, tmp_path):
    d, X, Y = files
    out = tmp_path / "run"
    proc = _run("fit", d / "10x" / "matrix.mtx", "--rows", "features", "--background",
                d / "background.tsv", *K, "-o", out, "--progress")
    # --rows applies to both inputs unless --background-rows: the tsv is features x samples
    assert proc.returncode == 0, proc.stderr
    assert "fitting bcNMF" in proc.stderr and "done in" in proc.stderr
    codes = pd.read_csv(out / "target_codes.csv", index_col=0)
    model = bcnmf.BCNMF(2, max_iter=60, tol=0, random_state=0)
    np.testing.assert_allclose(codes.to_numpy(), model.fit_transform(X, background=Y),
                               rtol=1e-6)
    proc = _run("report", out)
    assert proc.returncode == 0 and proc.stdout.strip() == str(out / "report.html")


def test_subprocess_exit_codes(files, tmp_path):
    d, _, _ = files
    proc = _run("fit", d / "target.csv", "-o", tmp_path / "x", "-k", "zero")
    assert proc.returncode == 2 and "whole number" in proc.stderr
    proc = _run("fit", tmp_path / "missing.h5ad", "-o", tmp_path / "x")
    assert proc.returncode == 1 and proc.stderr.startswith("bcnmf: error:")
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------
# topic statistics and model selection (issue 3)
# ---------------------------------------------------------------------------------------------

def test_fit_writes_the_enrichment_table(files, tmp_path, capsys):
    d, X, Y = files
    out = tmp_path / "run"
    code = main(["fit", str(d / "target.csv"), "--background", str(d / "background.tsv"),
                 "--background-rows", "features", *K, "--alpha", "1", "--n-permutations",
                 "200", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert str(out / "enrichment.csv") in captured.out
    table = pd.read_csv(out / "enrichment.csv", index_col=0)
    model = bcnmf.load(out / "model.npz")
    expected = bcnmf.topic_enrichment(model, X, background=Y, n_permutations=200,
                                      random_state=0)
    np.testing.assert_allclose(table["p_value"].to_numpy(), expected["p_value"].to_numpy())
    assert list(table.index) == list(expected.index)
    assert main(["report", str(out), "-q"]) == 0
    assert "Topics, enriched first" in (out / "report.html").read_text()


@pytest.mark.filterwarnings("ignore:select_model chose:UserWarning")   # a grid edge
def test_select_writes_table_and_choice(files, tmp_path, capsys):
    d, X, Y = files
    out = tmp_path / "sel"
    argv = ["select", str(d / "target.csv"), "--background", str(d / "background.tsv"),
            "--background-rows", "features", "-k", "2,3", "--alpha", "0.5,1.5",
            "--n-init", "2", "--n-splits", "2", "--max-iter", "100", "--tol", "0",
            "-o", str(out)]
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert str(out / "selection.csv") in captured.out
    table = pd.read_csv(out / "selection.csv")
    assert len(table) == 4 and {"contrast", "stability", "score"} <= set(table.columns)
    record = json.loads((out / "selection.json").read_text())
    assert set(record["best"]) == {"n_components", "alpha"} and "contrast" in record["rule"]
    library = bcnmf.select_model(X, [2, 3], background=Y, alpha=[0.5, 1.5], n_init=2,
                                 n_splits=2, max_iter=100, tol=0, random_state=0, refit=False)
    assert record["best"] == library.best and record["settings"]["n_splits"] == 2
    np.testing.assert_allclose(table["contrast"], library.table["contrast"])


def test_select_usage_errors(files, capsys):
    d, _, _ = files
    assert main(["select", str(d / "target.csv"), "--n-init", "1", "-o", "x"]) == 2
    assert "--n-init" in capsys.readouterr().err


def test_select_into_the_run_folder_puts_the_selection_in_the_report(files, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    d, _, _ = files
    out = tmp_path / "run"
    data = [str(d / "target.csv"), "--background", str(d / "background.tsv"),
            "--background-rows", "features"]
    assert main(["fit", *data, *K, "--n-permutations", "50", "-o", str(out), "-q"]) == 0
    assert main(["select", *data, "-k", "2,3", "--alpha", "0.5,1.5", "--n-init", "2",
                 "--max-iter", "60", "--tol", "0", "-o", str(out), "-q"]) == 0
    assert main(["report", str(out), "-q"]) == 0
    capsys.readouterr()
    text = (out / "report.html").read_text(encoding="utf-8")
    best = json.loads((out / "selection.json").read_text())["best"]
    assert '<table id="selection">' in text and "<h2>Model selection</h2>" in text
    assert f"Chosen: n_components = {best['n_components']}" in text
    table = text.split('<table id="selection">')[1].split("</table>")[0]
    assert table.count("<tr") == 1 + 4  # header + one row per grid point
    assert table.count('<tr class="chosen">') == 1


def test_select_progress_and_errors(files, tmp_path, capsys):
    """select: progress only when asked (stderr is not a terminal here), exit 1 with one line
    for a runtime error, the traceback with --debug."""
    d, _, _ = files
    argv = ["select", str(d / "target.csv"), "--background", str(d / "background.tsv"),
            "--background-rows", "features", "-k", "2", "--alpha", "0.5,1", "--n-init",
            "2", "--max-iter", "30", "--tol", "0"]
    def lines(err):   # stderr without the warning lines (a choice at the grid's edge)
        return [line for line in err.splitlines() if not line.startswith("bcnmf: warning")]

    assert main([*argv, "-o", str(tmp_path / "a")]) == 0
    assert lines(capsys.readouterr().err) == []
    assert main([*argv, "-o", str(tmp_path / "b"), "--progress"]) == 0
    err = capsys.readouterr().err
    assert "reading" in err and "select_model" in err and "6/6" in err   # 2 points x 3 splits
    assert main([*argv, "-o", str(tmp_path / "c"), "--no-progress"]) == 0
    assert lines(capsys.readouterr().err) == []
    missing = ["select", str(tmp_path / "missing.csv"), "--background", str(d / "target.csv"),
               "-o", str(tmp_path / "d")]
    assert main(missing) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bcnmf: error: No such file")
    assert main([*missing, "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_subprocess_select_exit_codes(h5ad, tmp_path):
    path, _, _ = h5ad
    proc = _run("select", path, "--groupby", "condition", "--background-value", "nope",
                "-o", tmp_path / "s")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("bcnmf: error: --background-value ['nope'] not found")
    proc = _run("select", path, "--groupby", "condition", "-o", tmp_path / "s")
    assert proc.returncode == 2 and "needs --background-value" in proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------
# --write-h5ad: the annotated AnnData
# ---------------------------------------------------------------------------------------------

def test_write_h5ad_equals_tl_bcnmf(h5ad, tmp_path, capsys):
    """`bcnmf fit cells.h5ad --groupby ... --write-h5ad` writes what bcnmf.tl.bcnmf writes
    into the same AnnData with the same settings (X, layers and obs kept)."""
    ad = pytest.importorskip("anndata")
    path, _, _ = h5ad
    out = tmp_path / "run"
    assert main(["fit", str(path), "--groupby", "condition", "--background-value", "control",
                 "--beta-loss", "poisson", "--layer", "counts", *K, "--n-permutations", "50",
                 "-o", str(out), "--write-h5ad"]) == 0
    assert str(out / "annotated.h5ad") in capsys.readouterr().out
    written = ad.read_h5ad(out / "annotated.h5ad")
    expected = ad.read_h5ad(path)
    bcnmf.tl.bcnmf(expected, "condition", background="control", n_components=2,
                   beta_loss="poisson", layer="counts", max_iter=60, tol=0, n_permutations=50)
    np.testing.assert_allclose(written.obsm["X_bcnmf"], expected.obsm["X_bcnmf"], rtol=1e-12)
    np.testing.assert_allclose(written.varm["bcnmf"], expected.varm["bcnmf"], rtol=1e-12)
    got, want = written.uns["bcnmf"], expected.uns["bcnmf"]
    for key in ("alpha", "alpha_raw", "n_iter", "objective", "n_target", "n_background",
                "n_features_used", "groupby", "source", "form"):
        assert np.all(got[key] == want[key]), key
    assert list(got["background"]) == list(want["background"])
    np.testing.assert_allclose(got["history"]["objective"], want["history"]["objective"])
    pd.testing.assert_frame_equal(got["enrichment"], want["enrichment"], check_names=False)
    assert got["params"]["beta_loss"] == "poisson" and got["params"]["n_components"] == 2
    assert (written.layers["counts"] != expected.layers["counts"]).nnz == 0
    assert list(written.obs["condition"]) == list(expected.obs["condition"])


def test_write_h5ad_with_a_background_file(h5ad, files, tmp_path, capsys):
    """Target .h5ad against a background file with fewer genes: the target's cells get
    their codes and the genes missing from the background zero loadings."""
    ad = pytest.importorskip("anndata")
    path, _, _ = h5ad
    d, X, Y = files
    background = pd.DataFrame(Y[:, :8], index=[f"b{i}" for i in range(20)], columns=GENES[:8])
    background.to_csv(tmp_path / "bg.csv")
    out = tmp_path / "run"
    assert main(["fit", str(path), "--layer", "counts", "--background",
                 str(tmp_path / "bg.csv"), *K, "--n-permutations", "20", "-o", str(out),
                 "--write-h5ad", "-q"]) == 0
    capsys.readouterr()
    written = ad.read_h5ad(out / "annotated.h5ad")
    codes = pd.read_csv(out / "target_codes.csv", index_col=0)
    np.testing.assert_allclose(written.obsm["X_bcnmf"], codes.to_numpy(), rtol=1e-12)
    comps = pd.read_csv(out / "components.csv", index_col=0)
    loadings = pd.DataFrame(written.varm["bcnmf"], index=written.var_names)
    np.testing.assert_allclose(loadings.loc[GENES[:8]].to_numpy(), comps.to_numpy().T,
                               rtol=1e-12)
    assert not loadings.loc[GENES[8:]].to_numpy().any()
    assert written.uns["bcnmf"]["form"] == "two objects"
    assert written.uns["bcnmf"]["n_features_used"] == 8


# ---------------------------------------------------------------------------------------------
# one vocabulary: every library parameter has the flag of its name
# ---------------------------------------------------------------------------------------------

def _flags(command):
    from bcnmf.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return {flag: action for action in sub._actions for flag in action.option_strings}


def _flag(name):
    return "--" + name.replace("_", "-")


#: ``BCNMF.fit`` keywords that cannot come from a command line, and why
FIT_ONLY_IN_PYTHON = {
    "init_components": "a starting array",
    "init_codes": "a starting array",
    "init_background_codes": "a starting array",
    "mask": "a boolean array (missing values in the input files are read as NaN instead)",
    "background_mask": "a boolean array (as mask)",
}


def test_fit_has_a_flag_for_every_estimator_parameter():
    """Every BCNMF constructor parameter and every BCNMF.fit keyword (but arrays) is an
    option of ``bcnmf fit`` named after it."""
    import inspect

    flags = _flags("fit")
    params = list(bcnmf.BCNMF().get_params())
    params += [p for p in inspect.signature(bcnmf.BCNMF.fit).parameters
               if p not in ("self", "X", "y") and p not in FIT_ONLY_IN_PYTHON]
    missing = [p for p in params if _flag(p) not in flags]
    assert not missing, missing


#: ``select_model`` parameters that ``bcnmf select`` gives under another form, and why
SELECT_FORMS = {
    "X": "TARGET (positional)",
    "samples": "--sample-key (an obs column of the .h5ad inputs) or --samples FILE",
    "background_samples": "--sample-key (the same column of the background's obs) or "
                          "--background-samples FILE",
    "refit": "not offered: select writes the table; `bcnmf fit` fits the chosen point",
}
#: ``BCNMF`` parameters that ``bcnmf select`` does not pass on, and why
SELECT_NOT_PASSED = {
    "consensus": "select_model sets it (its refit is the consensus of the restarts)",
    "device": "the held-out criteria are computed with numpy",
}


def test_select_has_a_flag_for_every_select_model_parameter():
    """Every select_model parameter and every BCNMF parameter it passes on is an option of
    ``bcnmf select`` named after it."""
    import inspect

    flags = _flags("select")
    params = [p for p, v in inspect.signature(bcnmf.select_model).parameters.items()
              if v.kind != v.VAR_KEYWORD and p not in SELECT_FORMS]
    params += [p for p in bcnmf.BCNMF().get_params() if p not in SELECT_NOT_PASSED]
    missing = [p for p in params if _flag(p) not in flags]
    assert not missing, missing
    assert {"--sample-key", "--samples", "--background-samples"} <= set(flags)


#: CLI defaults that differ from the library's, by the rules of docs/vocabulary.md
CLI_DEFAULTS = {"n_components": 10, "random_state": 0}


@pytest.mark.parametrize("command", ["fit", "select"])
def test_cli_defaults_are_the_library_defaults(command):
    """The options' defaults are BCNMF's (and select_model's), but for the documented
    command-line defaults (n_components=10, random_state=0, the functions' rule)."""
    import inspect

    flags = _flags(command)
    defaults = dict(bcnmf.BCNMF().get_params())
    if command == "select":
        defaults.update({p: v.default for p, v in
                         inspect.signature(bcnmf.select_model).parameters.items()
                         if v.default is not inspect.Parameter.empty})
        defaults["n_components"] = list(defaults["n_components"])
        defaults["alpha"] = list(defaults["alpha"])
    else:
        defaults.update(CLI_DEFAULTS)
        defaults.update({p: v.default for p, v in
                         inspect.signature(bcnmf.BCNMF.fit).parameters.items()
                         if v.default is not inspect.Parameter.empty})
    for name, value in defaults.items():
        action = flags.get(_flag(name))
        if action is None or name in ("consensus", "progress"):   # store_true / -q options
            continue
        assert action.default == value, (name, action.default, value)


def test_fit_passes_every_option_to_the_estimator(files, tmp_path, capsys):
    d, X, Y = files
    out = tmp_path / "run"
    code = main(["fit", str(d / "target.csv"), "--background", str(d / "background.tsv"),
                 "--background-rows", "features", "-k", "2", "--alpha", "1",
                 "--beta-loss", "kullback-leibler", "--alpha-scale", "raw", "--init", "uniform",
                 "--damping", "0.5", "--smoothing", "0.2", "--n-shared", "2",
                 "--max-iter", "40", "--tol", "0", "--n-init", "2", "--consensus",
                 "--random-state", "3", "--transform-max-iter", "50", "--block-size", "7",
                 "--engine", "local", "--checkpoint", str(tmp_path / "state.npz"),
                 "--checkpoint-every", "20", "--n-permutations", "20", "--q-threshold", "0.1",
                 "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    params = json.loads((out / "params.json").read_text())
    expected = dict(n_components=2, alpha=1.0, beta_loss="kullback-leibler", alpha_scale="raw",
                    init="uniform", damping=0.5, smoothing=0.2, n_shared=2, max_iter=40,
                    tol=0.0, n_init=2, consensus=True, random_state=3, transform_max_iter=50,
                    block_size=7, engine="local", mode="stable", device=None)
    assert {k: params[k] for k in expected} == expected
    assert (tmp_path / "state.npz").is_file()


@pytest.mark.filterwarnings("ignore:select_model chose:UserWarning")   # a grid edge
def test_select_sample_key_holds_out_whole_samples(mice_h5ad, tmp_path, capsys):
    cells, X, Y, adata = mice_h5ad
    out = tmp_path / "sel"
    code = main(["select", str(cells), "--groupby", "condition", "--background-value",
                 "control", "--sample-key", "mouse", "-k", "2", "--alpha", "0.5,1",
                 "--n-init", "2", "--n-splits", "1", "--max-iter", "30", "--tol", "0",
                 "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "selection.json").read_text())
    assert record["settings"]["by_sample"] == [True, True]
    mice = adata.obs["mouse"].to_numpy()
    library = bcnmf.select_model(sp.csr_matrix(np.log1p(X)), 2,
                                 background=sp.csr_matrix(np.log1p(Y)), alpha=[0.5, 1],
                                 n_init=2, n_splits=1, max_iter=30, tol=0, samples=mice[:30],
                                 background_samples=mice[30:], refit=False)
    table = pd.read_csv(out / "selection.csv")
    np.testing.assert_allclose(table["contrast"], library.table["contrast"])
    assert main(["select", str(cells), "--groupby", "condition", "--background-value",
                 "control", "--sample-key", "donor", "-k", "2", "-o", str(out)]) == 1
    assert "no obs column 'donor'" in capsys.readouterr().err


def test_n_shared_takes_auto_or_a_count(capsys):
    """``--n-shared`` reads ``auto`` (any case) or a whole number >= 0, and refuses anything
    else by naming what it accepts."""
    from bcnmf.cli import _auto_or_count

    assert _auto_or_count("auto") == _auto_or_count("AUTO") == "auto"
    assert _auto_or_count("0") == 0 and _auto_or_count("7") == 7
    for bad in ("-1", "2.5", "many", ""):
        with pytest.raises(argparse.ArgumentTypeError,
                           match=r"expected 'auto' or a whole number >= 0, got"):
            _auto_or_count(bad)
    assert main(["fit", "x.csv", "--background", "y.csv", "--n-shared", "some"]) == 2
    assert "expected 'auto' or a whole number >= 0, got 'some'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# gene sets and sample labels
# ---------------------------------------------------------------------------------------------

GMT = ("planted\tthe target-only genes\tgene0\tgene1\tgene2\n"
       "rest\t\tgene5\tgene6\tgene7\tgene8\tgene9\n"
       "unknown\tnot measured\tXYZ\tgene3\n")


def _fit_argv(d, out, *extra):
    return ["fit", str(d / "target.csv"), "--background", str(d / "background.tsv"),
            "--background-rows", "features", *K, "--alpha", "1", "--n-permutations", "50",
            "-o", str(out), *extra]


def test_fit_writes_the_gene_set_table(files, tmp_path, capsys):
    """gene_sets.csv holds topic_gene_sets of the fitted model with the file's sets and the
    input's feature names; a GMT file and a source/target table give the same table."""
    from bcnmf.gene_sets import COLUMNS, read_gmt

    d, X, Y = files
    gmt = tmp_path / "sets.gmt"
    gmt.write_text(GMT)
    out = tmp_path / "run"
    code = main(_fit_argv(d, out, "--gene-sets", str(gmt), "--gene-set-min-size", "2"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert str(out / "gene_sets.csv") in captured.out
    assert "gene sets: 2 of 3 tested; 1 skipped" in captured.out
    table = pd.read_csv(out / "gene_sets.csv", keep_default_na=False)
    assert tuple(table.columns) == COLUMNS
    model = bcnmf.load(out / "model.npz")
    expected = bcnmf.topic_gene_sets(model, str(gmt), feature_names=GENES, min_size=2)
    assert list(table["gene_set"]) == list(expected["gene_set"])
    assert list(table["leading_genes"]) == list(expected["leading_genes"])
    np.testing.assert_allclose(table["p_value"], expected["p_value"], rtol=1e-12)
    np.testing.assert_allclose(table["effect"], expected["effect"], rtol=1e-12)
    assert json.loads((out / "params.json").read_text())["inputs"]["gene_sets"] == str(gmt)

    long = tmp_path / "sets.csv"
    pd.DataFrame([(s, g) for s, genes in read_gmt(gmt).items() for g in genes],
                 columns=["source", "target"]).to_csv(long, index=False)
    again = tmp_path / "again"
    assert main(_fit_argv(d, again, "--gene-sets", str(long), "--gene-set-min-size", "2",
                          "-q")) == 0
    pd.testing.assert_frame_equal(pd.read_csv(again / "gene_sets.csv"),
                                  pd.read_csv(out / "gene_sets.csv"))


def test_bad_gene_set_files_fail_before_the_fit(files, tmp_path, capsys):
    d, _, _ = files
    bad = tmp_path / "bad.gmt"
    bad.write_text("planted\tdesc\tgene0\tgene1\nbroken\tdesc\n")
    out = tmp_path / "run"
    assert main(_fit_argv(d, out, "--gene-sets", str(bad))) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "bad.gmt, line 2: expected at least 3 tab-separated fields" in err
    assert not (out / "model.npz").exists()
    human = tmp_path / "human.gmt"
    human.write_text("P53\tdesc\tTP53\tMDM2\tCDKN1A\tBAX\tgene1\n")
    assert main(_fit_argv(d, out, "--gene-sets", str(human))) == 1
    err = capsys.readouterr().err
    assert "No gene set can be tested against the model's 10 features" in err
    assert "largest overlap is 1 of 5 genes" in err
    assert not (out / "model.npz").exists()
    assert main(_fit_argv(d, out, "--gene-sets", str(tmp_path / "none.gmt"))) == 1
    assert "none.gmt" in capsys.readouterr().err
    assert main(_fit_argv(d, out, "--gene-sets", str(human), "--gene-set-min-size", "6",
                          "--gene-set-max-size", "5")) == 2
    assert "--gene-set-max-size (5) is below --gene-set-min-size (6)" in \
        capsys.readouterr().err


def _sample_files(tmp_path):
    target = tmp_path / "target_samples.csv"
    pd.DataFrame({"cell": [f"t{i}" for i in range(30)][::-1],
                  "mouse": [f"m{i // 5}" for i in range(30)][::-1]}).to_csv(target, index=False)
    background = tmp_path / "background_samples.tsv"
    pd.DataFrame({"cell": [f"b{i}" for i in range(20)],
                  "mouse": [f"c{i // 5}" for i in range(20)]}).to_csv(background, sep="\t",
                                                                      index=False)
    return target, background


def test_fit_sample_files_make_the_enrichment_test_compare_samples(files, tmp_path, capsys):
    d, X, Y = files
    target, background = _sample_files(tmp_path)
    out = tmp_path / "run"
    code = main(_fit_argv(d, out, "--samples", str(target), "--background-samples",
                          str(background)))
    assert code == 0, capsys.readouterr().err
    table = pd.read_csv(out / "enrichment.csv", index_col=0)
    assert set(table["test"]) == {"samples"}
    assert set(table["n_samples_target"]) == {6} and set(table["n_samples_background"]) == {4}
    model = bcnmf.load(out / "model.npz")
    expected = bcnmf.topic_enrichment(
        model, X, background=Y, samples=[f"m{i // 5}" for i in range(30)],
        background_samples=[f"c{i // 5}" for i in range(20)], n_permutations=50,
        random_state=0)
    np.testing.assert_allclose(table["p_value"], expected["p_value"])
    inputs = json.loads((out / "params.json").read_text())["inputs"]
    assert inputs["samples"] == str(target) and inputs["background_samples"] == str(background)


def test_fit_sample_key_on_h5ad(mice_h5ad, tmp_path, capsys):
    cells, X, Y, adata = mice_h5ad
    out = tmp_path / "run"
    code = main(["fit", str(cells), "--groupby", "condition", "--background-value", "control",
                 "--layer", "counts", *K, "--alpha", "1", "--n-permutations", "50",
                 "--sample-key", "mouse", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    table = pd.read_csv(out / "enrichment.csv", index_col=0)
    assert set(table["test"]) == {"samples"}
    assert set(table["n_samples_target"]) == {6} and set(table["n_samples_background"]) == {4}
    mice = adata.obs["mouse"].to_numpy()
    model = bcnmf.load(out / "model.npz")
    expected = bcnmf.topic_enrichment(model, X, background=Y, samples=mice[:30],
                                      background_samples=mice[30:], n_permutations=50,
                                      random_state=0)
    np.testing.assert_allclose(table["p_value"], expected["p_value"])
    # the same samples from a file that covers every cell (target and background)
    mapping = tmp_path / "mice.csv"
    pd.DataFrame({"cell": adata.obs_names, "mouse": mice}).to_csv(mapping, index=False)
    again = tmp_path / "again"
    assert main(["fit", str(cells), "--groupby", "condition", "--background-value", "control",
                 "--layer", "counts", *K, "--alpha", "1", "--n-permutations", "50",
                 "--samples", str(mapping), "-o", str(again), "-q"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(again / "enrichment.csv", index_col=0), table)


@pytest.mark.filterwarnings("ignore:select_model chose:UserWarning")   # a grid edge
def test_select_sample_files_hold_out_whole_samples(files, tmp_path, capsys):
    d, X, Y = files
    target, background = _sample_files(tmp_path)
    out = tmp_path / "sel"
    code = main(["select", str(d / "target.csv"), "--background", str(d / "background.tsv"),
                 "--background-rows", "features", "--samples", str(target), "-k", "2",
                 "--alpha", "0.5,1", "--n-init", "2", "--n-splits", "1", "--max-iter", "30",
                 "--tol", "0", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "selection.json").read_text())
    assert record["settings"]["by_sample"] == [True, False]
    library = bcnmf.select_model(X, 2, background=Y, alpha=[0.5, 1], n_init=2, n_splits=1,
                                 max_iter=30, tol=0, samples=[f"m{i // 5}" for i in range(30)],
                                 refit=False)
    np.testing.assert_allclose(pd.read_csv(out / "selection.csv")["contrast"],
                               library.table["contrast"])


@pytest.mark.parametrize("extra, message", [
    (["--samples", "s.csv"], "--samples and --background-samples go together"),
    (["--background-samples", "s.csv"], "--samples and --background-samples go together"),
    (["--sample-key", "mouse", "--samples", "s.csv"], "either --sample-key"),
])
def test_sample_option_usage_errors(files, tmp_path, extra, message, capsys):
    d, _, _ = files
    assert main(_fit_argv(d, tmp_path / "run", *extra)) == 2
    assert message in capsys.readouterr().err
    assert main(["fit", str(d / "target.csv"), "--samples", "s.csv", "-o", "x"]) == 2
    assert "sample labels need a background" in capsys.readouterr().err
    assert main(["fit", "cells.h5ad", "--groupby", "g", "--background-value", "v",
                 "--background-samples", "s.csv", "-o", "x"]) == 2
    assert "--samples covers every cell" in capsys.readouterr().err


def test_bad_sample_files_are_errors_that_say_why(files, tmp_path, capsys):
    d, _, _ = files
    target, background = _sample_files(tmp_path)
    short = tmp_path / "short.csv"
    pd.read_csv(target).iloc[:25].to_csv(short, index=False)
    assert main(_fit_argv(d, tmp_path / "run", "--samples", str(short),
                          "--background-samples", str(background))) == 1
    err = capsys.readouterr().err
    assert "short.csv gives no sample for 5 of the 30 cells (e.g. 't0', 't1', 't2')" in err
    one = tmp_path / "one.csv"
    pd.read_csv(target).to_csv(one, sep="\t", index=False)
    assert main(_fit_argv(d, tmp_path / "run", "--samples", str(one),
                          "--background-samples", str(background))) == 1
    err = capsys.readouterr().err
    assert "expected 2 columns (cell name, sample)" in err and "tab-separated" in err
    blank = tmp_path / "blank.csv"
    blank.write_text("cell,mouse\nt0,\n")
    assert main(_fit_argv(d, tmp_path / "run", "--samples", str(blank),
                          "--background-samples", str(background))) == 1
    assert "line 2 (cell 't0') has no sample label" in capsys.readouterr().err
