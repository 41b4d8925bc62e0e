"""The HTML report: one self-contained file with the run's content, checked in a real headless
browser (Debian's chromium): it loads without console errors, every figure decodes, and a
screenshot is produced."""

import base64
import json
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning

from bcnmf import BCNMF
from bcnmf.io import write_run

pytest.importorskip("matplotlib")
from bcnmf.report import read_run, render_report, write_report  # noqa: E402

ENRICHMENT = pd.DataFrame({
    "mean_target": [2.0, 1.0, 0.5], "mean_background": [0.5, 1.0, 1.5],
    "log2_fold_change": [2.0, 0.0, -1.58], "effect_size": [1.5, 0.0, -0.8],
    "p_value": [1e-4, 0.9, 0.01], "q_value": [3e-4, 0.9, 0.015],
    "enriched": [False, False, True]}, index=pd.Index([0, 1, 2], name="topic"))
SELECTION = pd.DataFrame({"n_components": [2, 2, 3, 3], "alpha": [0.5, 1.5, 0.5, 1.5],
                          "reconstruction": [1.0, 2.0, 0.8, 1.9],
                          "score": [0.1, 0.4, 0.3, 0.9]})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, contrast_fit):
    X, Y, model, codes = contrast_fit
    out = tmp_path_factory.mktemp("run")
    write_run(out, model, codes, feature_names=[f"GENE<{j}>" for j in range(12)],
              inputs={"target": "cells & more.h5ad"}, warnings=["ConvergenceWarning: slow"])
    return out


@pytest.fixture(scope="module")
def auto_run(tmp_path_factory, contrast_fit):
    """A run folder of a model fitted with alpha="auto" (the default), and the model."""
    X, Y, _, _ = contrast_fit
    with warnings.catch_warnings():  # a short fit stops at max_iter: not what is tested here
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = BCNMF(2, random_state=0, max_iter=100).fit(X, background=Y)
    out = tmp_path_factory.mktemp("auto-run")
    files = write_run(out, model, model.transform(X))
    assert files["alpha_path"] == out / "alpha_path.csv"
    return out, model


def _images(text):
    return re.findall(r'<img src="data:image/png;base64,([^"]+)"', text)


def _section(text, table_id):
    return text.split(f'<table id="{table_id}">')[1].split("</table>")[0]


def test_report_is_self_contained_with_the_run_content(run_dir):
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    # self-contained: no external stylesheets, scripts, or resources
    assert "<link" not in text and "<script" not in text
    assert re.findall(r'(?:src|href)="(?!data:)', text) == []
    images = _images(text)
    assert len(images) == 3  # convergence, loadings, topic usage
    for b64 in images:
        assert base64.b64decode(b64).startswith(b"\x89PNG\r\n\x1a\n")
    for table in ("inputs", "params", "fit", "topics"):
        assert f'<table id="{table}">' in text
    assert "80 sweeps" in text and "ConvergenceWarning: slow" in text
    assert "GENE&lt;" in text and "GENE<" not in text  # names are escaped
    assert "cells &amp; more.h5ad" in text
    assert "No topic statistics" in text


def test_enrichment_and_selection_are_rendered_when_present(run_dir, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    ENRICHMENT.to_csv(folder / "enrichment.csv")
    SELECTION.to_csv(folder / "selection.csv", index=False)
    (folder / "selection.json").write_text('{"best": {"n_components": 3, "alpha": 1.5}}')
    kwargs = read_run(folder)
    assert kwargs["selection_best"] == {"n_components": 3, "alpha": 1.5}
    text = write_report(folder, tmp_path / "r.html", n_top=2).read_text(encoding="utf-8")
    assert len(_images(text)) == 5  # + volcano + selection grid
    assert '<table id="selection">' in text and "Chosen: n_components = 3" in text
    # the run was fitted with K=3, alpha=1: not the chosen alpha, and that is said
    assert 'id="selection-differs"' in text and "alpha = 1," in text
    assert '<div class="wide"><table id="selection">' in text  # wide tables scroll
    chosen = SELECTION.assign(alpha=[0.5, 1.0, 0.5, 1.0], chosen=[False, False, False, True])
    chosen.to_csv(folder / "selection.csv", index=False)
    (folder / "selection.json").write_text('{"best": {"n_components": 3, "alpha": 1.0}}')
    again = write_report(folder, tmp_path / "r2.html").read_text(encoding="utf-8")
    assert 'id="selection-differs"' not in again
    table = again.split('<table id="selection">')[1].split("</table>")[0]
    assert table.count('<tr class="chosen">') == 1
    assert '<tr class="chosen"><td class="name">3</td><td>1</td>' in table
    topics = text.split('<table id="topics">')[1].split("</table>")[0]
    rows = re.findall(r"<tr( class=\"enriched\")?><td class=\"name\">(topic \d)</td>", topics)
    assert rows[0] == (' class="enriched"', "topic 3")  # the enriched topic comes first
    assert [r[1] for r in rows] == ["topic 3", "topic 1", "topic 2"]
    assert topics.count("); ") == 3  # two top features per topic


def test_auto_alpha_run_shows_how_alpha_was_chosen(auto_run, tmp_path):
    folder, model = auto_run
    path = model.alpha_path_
    text = write_report(folder, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<h2 id=\"alpha-path\">How alpha was chosen</h2>" in text
    assert "without labels" in text and "two-fold" in text and "middle of the tied band" in text
    assert f"alpha_ = {model.alpha_:g}" in text  # in the parameters' note
    i = int(np.flatnonzero(path["chosen"])[0])
    assert (f'<p id="alpha-chosen">Chosen: alpha = {model.alpha_:g} (contrast '
            f'{path["contrast"][i]:.3f})') in text
    assert "alpha fixed at" not in text
    assert len(_images(text)) == 4  # + the contrast per alpha
    table = _section(text, "alpha_path")
    header = re.findall(r"<th[^>]*>([^<]+)</th>", table)
    assert header == ["alpha", "contrast", "stability", "explained_target", "counted",
                      "chosen"]
    assert table.count("<tr") == len(path["alpha"]) + 1 and table.count('class="chosen"') == 1
    chosen = table.split('<tr class="chosen">')[1].split("</tr>")[0]
    assert re.findall(r"<td[^>]*>([^<]+)</td>", chosen) == [
        f"{model.alpha_:g}", f"{path['contrast'][i]:.3f}", f"{path['stability'][i]:.3f}",
        f"{path['explained_target'][i]:.3f}", "True", "True"]


def test_fixed_alpha_run_says_so(run_dir, tmp_path):
    text = write_report(run_dir, tmp_path / "r.html").read_text(encoding="utf-8")
    assert '<p id="alpha-note">alpha fixed at 1 by the user' in text  # BCNMF(alpha=1.0)
    assert "How alpha was chosen" not in text and 'id="alpha_path"' not in text


def test_old_run_folders_still_render(run_dir, auto_run, tmp_path):
    """Folders written before alpha="auto" (no alpha_path.csv, no alpha_ in params.json)."""
    for name, source in (("fixed", run_dir), ("auto", auto_run[0])):
        folder = tmp_path / name
        shutil.copytree(source, folder)
        (folder / "alpha_path.csv").unlink(missing_ok=True)
        record = json.loads((folder / "params.json").read_text(encoding="utf-8"))
        del record["alpha_"]
        (folder / "params.json").write_text(json.dumps(record), encoding="utf-8")
        text = write_report(folder).read_text(encoding="utf-8")
        assert "How alpha was chosen" not in text and len(_images(text)) == 3
        if name == "fixed":
            assert "alpha fixed at 1 by the user" in text
        else:
            assert "alpha_ not recorded; no screening table" in text


def test_selection_against_an_auto_alpha_fit(auto_run, tmp_path):
    """params.json says alpha="auto": the selection is compared with the chosen alpha_."""
    source, model = auto_run
    folder = tmp_path / "run"
    shutil.copytree(source, folder)
    SELECTION.assign(alpha=[model.alpha_, 2 * model.alpha_] * 2).to_csv(
        folder / "selection.csv", index=False)
    best = {"n_components": 2, "alpha": model.alpha_}
    (folder / "selection.json").write_text(json.dumps({"best": best}))
    text = write_report(folder).read_text(encoding="utf-8")
    assert "Chosen: n_components = 2" in text and 'id="selection-differs"' not in text
    best["alpha"] = model.alpha_ * 2
    (folder / "selection.json").write_text(json.dumps({"best": best}))
    text = write_report(folder).read_text(encoding="utf-8")
    assert 'id="selection-differs"' in text and f"alpha = {model.alpha_:g}, not" in text


def test_render_report_directly_and_missing_files(tmp_path, run_dir):
    kwargs = read_run(run_dir)
    text = render_report(**kwargs, title="T", comparison=pd.DataFrame(
        {"method": ["PCA", "PCA", "bcNMF"], "seed": [0, 1, 0], "ari_raw": [0.1, 0.3, 0.9],
         "ari_norm": [0.2, 0.2, 0.8]}))
    assert "<title>T</title>" in text and '<table id="ari">' in text
    assert "0.200 ± 0.141" in text
    with pytest.raises(FileNotFoundError, match="No such run folder"):
        write_report(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="params.json is missing"):
        write_report(tmp_path)
    SELECTION.to_csv(tmp_path / "selection.csv", index=False)
    (tmp_path / "selection.json").write_text('{"best": {"n_components": 3, "alpha": 1.5}}')
    with pytest.raises(FileNotFoundError, match=r"holds a model selection but no fitted model.*"
                                                r"-k 3 --alpha 1\.5"):
        write_report(tmp_path)


def test_report_of_a_torch_fit(contrast_fit, tmp_path):
    """A model fitted with device="cpu" (torch tensors) goes through write_run, the report
    and render_report, and the folder holds the numpy values of its tensors."""
    pytest.importorskip("torch")
    from bcnmf.core.backend import to_numpy

    X, Y, _, _ = contrast_fit
    model = BCNMF(3, alpha=1.0, random_state=0, max_iter=80, tol=0, device="cpu")
    codes = model.fit_transform(X, background=Y)
    write_run(tmp_path / "run", model, codes)
    kwargs = read_run(tmp_path / "run")
    np.testing.assert_allclose(kwargs["components"], to_numpy(model.components_), rtol=1e-12)
    np.testing.assert_allclose(kwargs["background_codes"], to_numpy(model.background_codes_),
                               rtol=1e-12)
    text = write_report(tmp_path / "run").read_text(encoding="utf-8")
    assert len(_images(text)) == 3 and '<table id="topics">' in text
    direct = render_report(params=kwargs["params"], history=model.history_,
                           components=model.components_, feature_names=kwargs["feature_names"],
                           target_codes=codes, background_codes=model.background_codes_)
    assert len(_images(direct)) == 3


# ---------------------------------------------------------------------------------------------
# headless chromium
# ---------------------------------------------------------------------------------------------

def _chromium():
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


CHROMIUM = _chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium; "
                             ".ci/run installs it)")

# appended to a copy of the page: after load, record how many images failed to decode
_PROBE = """<script>window.addEventListener("load", () => {
  const bad = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length;
  document.body.setAttribute("data-images", String(document.images.length));
  document.body.setAttribute("data-broken-images", String(bad));
});</script>"""


def _browse(page: Path, profile: Path, *extra):
    """Run headless chromium on ``page``; return (stdout, console lines from stderr)."""
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", *extra,
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return proc.stdout, console


def _probe(page: Path, tmp_path: Path):
    probed = tmp_path / f"probed-{page.name}"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"),
                      encoding="utf-8")
    dom, console = _browse(probed, tmp_path / "profile-dom", "--dump-dom")
    images = re.search(r'data-images="(\d+)"', dom)
    broken = re.search(r'data-broken-images="(\d+)"', dom)
    assert images and broken, "the page did not finish loading"
    return int(images.group(1)), int(broken.group(1)), console, dom


@needs_chromium
def test_the_browser_check_detects_problems(tmp_path):
    """The check can fail: console errors and undecodable images are seen."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><img src="data:image/png;base64,AAAA">'
                    '<script>console.error("boom-marker")</script></body></html>')
    images, broken, console, _ = _probe(page, tmp_path)
    assert images == 1 and broken == 1
    assert any("boom-marker" in line for line in console)


@needs_chromium
def test_report_in_headless_chromium(run_dir, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    ENRICHMENT.to_csv(folder / "enrichment.csv")
    SELECTION.to_csv(folder / "selection.csv", index=False)
    page = write_report(folder)
    images, broken, console, dom = _probe(page, tmp_path)
    assert console == []
    assert images == 5 and broken == 0
    assert "bcNMF report" in dom and 'id="topics"' in dom
    shot = tmp_path / "report.png"
    _, console = _browse(page, tmp_path / "profile-shot", f"--screenshot={shot}",
                         "--window-size=1200,2400", "--hide-scrollbars")
    assert console == []
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000
    keep = os.environ.get("BCNMF_REPORT_SCREENSHOT")  # CI: where to keep the screenshot
    if keep:
        Path(keep).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, keep)


@needs_chromium
def test_auto_alpha_report_in_headless_chromium(auto_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(auto_run[0], folder)
    images, broken, console, dom = _probe(write_report(folder), tmp_path)
    assert console == []
    assert images == 4 and broken == 0
    assert "How alpha was chosen" in dom and 'id="alpha_path"' in dom
