"""Tests for the end-to-end demo (``bcnmf demo``, bcnmf.demo) on the bundled mouse-protein
data: the README's main command."""

import base64
import csv
import json
import math
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bcnmf
from bcnmf import __version__
from bcnmf.datasets import load_mice_protein
from bcnmf.demo import (DEMO_MAX_ITER, DEMO_N_INIT, METHODS, N_COMPONENTS, format_table, main,
                        run_demo)

SRC = str(Path(bcnmf.__file__).resolve().parents[1])
N_PROTEINS, N_TARGET, N_BACKGROUND = 77, 270, 135
FILES = ("model.npz", "ari.csv", "components.csv", "target_codes.csv", "background_codes.csv",
         "history.csv", "params.json", "alpha_path.csv", "enrichment.csv", "labels.csv",
         "report.html")


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _matrix(path):
    """(header without the index column, index, float matrix) of a matrix CSV."""
    header, rows = _read_csv(path)
    return header[1:], [r[0] for r in rows], np.array([r[1:] for r in rows], dtype=float)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One seed of the demo at its own budget, every warning recorded (none expected)."""
    out = tmp_path_factory.mktemp("demo")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = run_demo(out, seeds=1)
    return out, results, [f"{w.category.__name__}: {w.message}" for w in caught]


def test_no_warning_from_the_fits(demo):
    """At the demo's budget every fit converges: NMF and bcNMF raise no ConvergenceWarning,
    nothing is recorded in the results, params.json or the report."""
    out, results, caught = demo
    assert caught == []
    assert results["warnings"] == []
    assert json.loads((out / "params.json").read_text(encoding="utf-8"))["warnings"] == []
    assert 'id="fit-warnings"' not in (out / "report.html").read_text(encoding="utf-8")


def test_files_written(demo):
    out, results, _ = demo
    for name in FILES:
        assert (out / name).is_file(), name
    assert {p.name for p in results["files"].values()} == set(FILES)


def test_matrix_csvs(demo):
    out, _, _ = demo
    header, index, comps = _matrix(out / "components.csv")
    assert comps.shape == (N_COMPONENTS, N_PROTEINS)
    assert header[0] == "DYRK1A_N" and len(set(header)) == N_PROTEINS
    assert index == [f"topic_{k + 1}" for k in range(N_COMPONENTS)]
    for name, n_rows in (("target_codes.csv", N_TARGET), ("background_codes.csv", N_BACKGROUND)):
        header, _, codes = _matrix(out / name)
        assert codes.shape == (n_rows, N_COMPONENTS), name
        assert header == [f"topic_{k + 1}" for k in range(N_COMPONENTS)]
        assert np.all(np.isfinite(codes)) and np.all(codes >= 0)
    assert np.all(np.isfinite(comps)) and np.all(comps >= 0)


def test_history_and_params(demo):
    out, results, _ = demo
    header, rows = _read_csv(out / "history.csv")
    assert header == ["iteration", "target", "background", "objective"]
    hist = np.array(rows, dtype=float)
    params = json.loads((out / "params.json").read_text(encoding="utf-8"))
    # the library's defaults but for the shared budget and no shared topics
    defaults = bcnmf.BCNMF().get_params()
    changed = {k for k, v in params.items() if k in defaults and v != defaults[k]}
    assert changed == {"n_components", "max_iter", "n_init", "n_shared", "random_state"}
    assert params["n_components"] == N_COMPONENTS and params["max_iter"] == DEMO_MAX_ITER
    assert params["n_init"] == DEMO_N_INIT and params["n_shared"] == 0
    assert params["alpha"] == "auto" and params["random_state"] == 0
    assert params["beta_loss"] == "frobenius" and params["bcnmf_version"] == __version__
    assert params["n_iter_"] == results["model"].n_iter_
    assert hist.shape == (params["n_iter_"] + 1, 4)
    np.testing.assert_array_equal(hist[:, 0], np.arange(hist.shape[0]))
    np.testing.assert_allclose(hist[:, 3], hist[:, 1] - params["alpha_raw_"] * hist[:, 2],
                               rtol=1e-9, atol=1e-9 * np.abs(hist[:, 1:]).max())


def test_ari(demo):
    out, results, _ = demo
    header, rows = _read_csv(out / "ari.csv")
    assert header == ["method", "seed", "ari_raw", "ari_norm", "n_iter"]
    assert [r[0] for r in rows] == list(METHODS) and {r[1] for r in rows} == {"0"}
    for r in rows:
        for value in map(float, r[2:4]):
            assert math.isfinite(value) and -1.0 <= value <= 1.0
    # the iterations of the kept fits: within the shared budget (PCA has none)
    n_iter = {r[0]: r[4] for r in rows}
    assert n_iter["PCA"] == "" and n_iter["bcNMF"] == str(results["model"].n_iter_)
    assert 0 < int(n_iter["NMF"]) < DEMO_MAX_ITER and 0 < int(n_iter["bcNMF"]) < DEMO_MAX_ITER
    for method in METHODS:
        for key in ("ari_raw", "ari_norm"):
            mean, sd = results["summary"][method][key]
            assert -1.0 <= mean <= 1.0 and sd == 0.0


def test_report(demo):
    pytest.importorskip("matplotlib")
    out, _, _ = demo
    text = (out / "report.html").read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert '<table id="ari">' in text and all(f">{m}<" in text for m in METHODS)
    assert "How alpha was chosen" in text
    assert "DYRK1A_N" in text or "_N (" in text  # protein (loading)
    # what a biologist opens it for, each in its section, the figures decoded
    for section in ("enrichment", "top-features", "cells", "comparison", "alpha-path",
                    "convergence", "run"):
        assert f'<section id="{section}">' in text, section
    assert '<table id="enrichment-table">' in text and '<table id="topics">' in text
    for figure in ("alpha-curve", "cells-figure", "convergence-figure"):
        found = re.search(f'<figure id="{figure}"><img src="data:image/png;base64,([^"]+)"',
                          text)
        assert found, figure
        png = base64.b64decode(found.group(1))
        width, height = np.frombuffer(png[16:24], dtype=">u4")  # the PNG header's size
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and width > 400 and height > 250
    # the genotype colours the cells (labels.csv), on a second panel
    assert "coloured by condition and by label" in text
    assert "Sample-level test (18 target vs 9 background units)" in text
    # self-contained: no external stylesheets, scripts or images
    assert "<link" not in text and "<script" not in text
    assert 'src="data:' in text and 'src="http' not in text


def test_enrichment_csv_is_the_library_table_of_the_saved_model(demo):
    """enrichment.csv is bcnmf.topic_enrichment of the saved model, mice as units."""
    out, results, _ = demo
    data = load_mice_protein()
    table = pd.read_csv(out / "enrichment.csv", index_col=0)
    model = bcnmf.load(out / "model.npz")
    expected = bcnmf.topic_enrichment(model, data.X, background=data.Y,
                                      samples=data.target_samples,
                                      background_samples=data.background_samples)
    assert list(table.index) == [f"topic {k + 1}" for k in range(N_COMPONENTS)]
    assert list(table.columns) == list(expected.columns)
    assert set(table["test"]) == {"samples"}
    assert set(table["n_samples_target"]) == {18} and set(table["n_samples_background"]) == {9}
    for column in ("usage_target", "usage_background", "effect_size", "p_value", "q_value"):
        np.testing.assert_allclose(table[column].to_numpy(), expected[column].to_numpy(),
                                   rtol=1e-9, err_msg=column)
    np.testing.assert_array_equal(table["enriched"].to_numpy(),
                                  expected["enriched"].to_numpy())


def test_labels_csv(demo):
    out, _, _ = demo
    data = load_mice_protein()
    header, rows = _read_csv(out / "labels.csv")
    assert header == ["cell", "label"]
    assert [int(r[0]) for r in rows] == list(range(N_TARGET))
    names = [str(n) for n in data.label_names]
    assert [r[1] for r in rows] == [names[int(g)] for g in data.labels]


def test_notes_say_what_was_chosen_and_the_near_empty_cells(demo):
    _, results, _ = demo
    data = load_mice_protein(return_masks=True)
    missing = data.X_missing.sum(axis=1)
    rows = np.flatnonzero(missing > N_PROTEINS / 2)
    # the loader zero-fills missing values: these cells are near-empty
    assert rows.tolist() == [177, 178, 179]
    assert np.all((data.X[rows] == 0).sum(axis=1) >= missing[rows])
    assert results["near_empty"] == [(177, "3426", 43), (178, "3426", 43), (179, "3426", 43)]
    table = format_table(results)
    assert table.splitlines()[0].startswith("Adjusted Rand index vs genotype")
    notes = table.split("Notes:")[1]
    assert "mouse 3426 (rows 177, 178, 179) lack 43 of the 77 proteins" in notes
    assert "n_shared=0 because" in notes and "alpha chosen without labels" in notes
    assert f"{DEMO_N_INIT} restarts of at most {DEMO_MAX_ITER} iterations" in notes
    assert "mice as units (18 target vs 9 background mice)" in notes


def test_nmf_baseline_is_the_best_of_its_restarts(demo):
    """NMF gets bcNMF's restarts and iterations and keeps the restart with the lowest
    reconstruction error (an independent refit of every restart is the oracle)."""
    from sklearn.decomposition import NMF

    from bcnmf._demo import DEMO_NMF_TOL, _fit

    _, results, _ = demo
    data = load_mice_protein()
    errors, codes = [], []
    for restart in range(DEMO_N_INIT):
        model = NMF(N_COMPONENTS, init="random", max_iter=DEMO_MAX_ITER, tol=DEMO_NMF_TOL,
                    random_state=DEMO_N_INIT * 1 + restart)
        codes.append(model.fit_transform(data.X))
        errors.append(model.reconstruction_err_)
        assert model.n_iter_ < DEMO_MAX_ITER  # converged
    got, n_iter, model, got_errors = _fit("NMF", data, 1, "auto", DEMO_MAX_ITER)
    assert model is None and got_errors == pytest.approx(errors, rel=1e-12)
    np.testing.assert_array_equal(got, codes[int(np.argmin(errors))])
    assert len(set(np.round(errors, 9))) > 1  # the restarts differ: the choice matters
    # why not nndsvda (deterministic, one start): its fit reconstructs the data less well
    nndsvda = NMF(N_COMPONENTS, init="nndsvda", max_iter=DEMO_MAX_ITER, tol=DEMO_NMF_TOL)
    assert nndsvda.fit(data.X).reconstruction_err_ > min(errors)
    assert results["nmf_reconstruction"][0] and len(results["nmf_reconstruction"][0]) == 5


def test_a_small_budget_is_recorded_not_raised(tmp_path):
    """The negative control of test_no_warning_from_the_fits: with 20 iterations both
    NMF and bcNMF stop before converging, and the warnings are recorded (never raised, even
    with warnings as errors)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = run_demo(tmp_path, seeds=1, max_iter=20)
    methods = {note.split(",")[0] for note in results["warnings"]}
    assert methods == {"NMF", "bcNMF"}
    assert all("ConvergenceWarning" in note for note in results["warnings"])
    record = json.loads((tmp_path / "params.json").read_text(encoding="utf-8"))
    assert record["warnings"] == results["warnings"] and record["max_iter"] == 20
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert '<section id="fit-warnings">' in text and "NMF, seed 0: ConvergenceWarning" in text


def test_saved_model_reproduces_the_codes(demo):
    out, results, _ = demo
    import bcnmf
    from bcnmf.datasets import load_mice_protein

    model = bcnmf.load(out / "model.npz")
    data = load_mice_protein()
    np.testing.assert_array_equal(model.transform(data.X), results["model"].transform(data.X))


@pytest.mark.parametrize("kwargs, match", [
    ({"seeds": 0}, "'seeds' parameter of run_demo must be an int >= 1"),
    ({"seeds": True}, "'seeds' parameter of run_demo must be an int >= 1"),
    ({"max_iter": 0}, "'max_iter' parameter of run_demo must be None .* or an int >= 1"),
    ({"max_iter": 10.5}, "'max_iter' parameter of run_demo must be None"),
    ({"alpha": -1.0}, "'alpha' parameter of run_demo must be None .*, 'auto' or a finite"),
    ({"alpha": "large"}, "'alpha' parameter of run_demo must be None"),
    ({"alpha": float("nan")}, "'alpha' parameter of run_demo must be None"),
])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_demo(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_main_rejects_bad_seeds(tmp_path, capsys):
    # python -m bcnmf.demo still works: it is `bcnmf demo`; usage errors exit with 2
    assert main(["--out", str(tmp_path), "--seeds", "0"]) == 2
    assert "--seeds" in capsys.readouterr().err


def test_cli(tmp_path):
    """The README's main command, ``bcnmf demo --out DIR`` (here via ``python -m bcnmf``)."""
    out = tmp_path / "cli"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "bcnmf", "demo", "--out", str(out), "--seeds", "1", "--quiet"],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    for name in FILES:
        assert (out / name).is_file(), name
        assert str(out / name) in proc.stdout
