"""Tests for the end-to-end demo (``bcnmf demo``, bcnmf.demo) on the bundled mouse-protein
data: the README's main command."""

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bcnmf
from bcnmf import __version__
from bcnmf.demo import METHODS, N_COMPONENTS, main, run_demo

SRC = str(Path(bcnmf.__file__).resolve().parents[1])
N_PROTEINS, N_TARGET, N_BACKGROUND = 77, 270, 135
FILES = ("model.npz", "ari.csv", "components.csv", "target_codes.csv", "background_codes.csv",
         "history.csv", "params.json", "alpha_path.csv", "report.html")


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
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out, seeds=1, max_iter=60)


def test_files_written(demo):
    out, results = demo
    for name in FILES:
        assert (out / name).is_file(), name
    assert {p.name for p in results["files"].values()} == set(FILES)


def test_matrix_csvs(demo):
    out, _ = demo
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
    out, results = demo
    header, rows = _read_csv(out / "history.csv")
    assert header == ["iteration", "target", "background", "objective"]
    hist = np.array(rows, dtype=float)
    params = json.loads((out / "params.json").read_text(encoding="utf-8"))
    assert params["n_components"] == N_COMPONENTS and params["max_iter"] == 60
    assert params["beta_loss"] == "frobenius" and params["bcnmf_version"] == __version__
    assert params["n_iter_"] == results["model"].n_iter_
    assert hist.shape == (params["n_iter_"] + 1, 4)
    np.testing.assert_array_equal(hist[:, 0], np.arange(hist.shape[0]))
    np.testing.assert_allclose(hist[:, 3], hist[:, 1] - params["alpha_raw_"] * hist[:, 2],
                               rtol=1e-9, atol=1e-9 * np.abs(hist[:, 1:]).max())


def test_ari(demo):
    out, results = demo
    header, rows = _read_csv(out / "ari.csv")
    assert header == ["method", "seed", "ari_raw", "ari_norm"]
    assert [r[0] for r in rows] == list(METHODS) and {r[1] for r in rows} == {"0"}
    for r in rows:
        for value in map(float, r[2:]):
            assert math.isfinite(value) and -1.0 <= value <= 1.0
    for method in METHODS:
        for key in ("ari_raw", "ari_norm"):
            mean, sd = results["summary"][method][key]
            assert -1.0 <= mean <= 1.0 and sd == 0.0


def test_report(demo):
    pytest.importorskip("matplotlib")
    out, _ = demo
    text = (out / "report.html").read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert '<table id="ari">' in text and all(f">{m}<" in text for m in METHODS)
    # the figures of the run, and the automatic alpha's screening
    assert text.count('<img src="data:image/png;base64,') == 4
    assert "How alpha was chosen" in text
    assert "topic 1" in text and "loading" in text and "_N (" in text  # protein (loading)
    # self-contained: no external stylesheets, scripts or images
    assert "<link" not in text and "<script" not in text
    assert 'src="data:' in text and 'src="http' not in text


def test_saved_model_reproduces_the_codes(demo):
    out, results = demo
    import bcnmf
    from bcnmf.datasets import load_mice_protein

    model = bcnmf.load(out / "model.npz")
    data = load_mice_protein()
    np.testing.assert_array_equal(model.transform(data.X), results["model"].transform(data.X))


def test_bad_seeds(tmp_path):
    with pytest.raises(ValueError, match="seeds"):
        run_demo(tmp_path, seeds=0)


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
