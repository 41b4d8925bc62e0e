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
    "usage_target": [2.0, 1.0, 0.5], "usage_background": [0.5, 1.0, 1.5],
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


def _headers(table):
    return [h.replace("<wbr>", "") for h in re.findall(r"<th[^>]*>(.*?)</th>", table)]


def _cells(row):
    return re.findall(r"<td[^>]*>([^<]*)</td>", row)


def test_report_is_self_contained_with_the_run_content(run_dir):
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    # self-contained: no external stylesheets, scripts, or resources
    assert "<link" not in text and "<script" not in text
    assert re.findall(r'(?:src|href)="(?!data:|#)', text) == []  # links within the page only
    images = _images(text)
    assert len(images) == 4  # top-feature heatmap, cells, topic usage, convergence
    for b64 in images:
        assert base64.b64decode(b64).startswith(b"\x89PNG\r\n\x1a\n")
    for table in ("inputs", "params", "fit", "topics"):
        assert f'<table id="{table}">' in text
    # every section once, with its stable id, in this order; absent inputs, absent sections
    sections = re.findall(r'<section id="([^"]+)">', text)
    assert sections == ["fit-warnings", "top-features", "cells", "usage", "convergence", "run"]
    assert all(f'href="#{s}"' in text for s in sections)  # the contents link to them
    assert 'id="cells-figure"' in text and 'id="convergence-figure"' in text
    assert "80 sweeps" in text and "ConvergenceWarning: slow" in text
    assert "stopped at its tolerance" not in text and "ran to max_iter" not in text  # tol=0
    assert "GENE&lt;" in text and "GENE<" not in text  # names are escaped
    assert "cells &amp; more.h5ad" in text
    assert "No topic statistics" in text


def test_enrichment_and_selection_are_rendered_when_present(run_dir, tmp_path, contrast_fit):
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    ENRICHMENT.to_csv(folder / "enrichment.csv")
    SELECTION.to_csv(folder / "selection.csv", index=False)
    (folder / "selection.json").write_text('{"best": {"n_components": 3, "alpha": 1.5}}')
    kwargs = read_run(folder)
    assert kwargs["selection_best"] == {"n_components": 3, "alpha": 1.5}
    text = write_report(folder, tmp_path / "r.html", n_top=2).read_text(encoding="utf-8")
    assert len(_images(text)) == 6  # + volcano + selection grid
    assert re.findall(r'<section id="([^"]+)">', text) == [
        "fit-warnings", "enrichment", "top-features", "cells", "usage", "convergence",
        "model-selection", "run"]
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
    # the statistics: enriched topic first, then by q-value; the enriched row is marked
    stats = _section(text, "enrichment-table")
    rows = re.findall(r'<tr( class="enriched")?><td class="name">(topic \d)( ★)?</td>',
                      stats)
    assert rows == [(' class="enriched"', "topic 3", " ★"), ("", "topic 1", ""),
                    ("", "topic 2", "")]
    assert _cells(stats.split("</tr>")[1]) == [  # 3 significant digits
        "topic 3 ★", "0.5", "1.5", "-1.58", "-0.8", "0.01", "0.015", "True"]
    # the top features: one column per topic in the same order, two rows (n_top=2)
    topics = _section(text, "topics")
    assert _headers(topics) == ["rank", "topic 3 ★", "topic 1", "topic 2"]
    assert topics.count('<th class="text enriched">') == 1
    assert topics.count("<tr>") == 1 + 2 and topics.count('<td class="text enriched">') == 2
    model = contrast_fit[2]
    top = np.argsort(-model.components_[2], kind="stable")[:2]
    first_row = _cells(topics.split("</tr>")[1])
    assert first_row[1] == f"GENE&lt;{top[0]}&gt; ({model.components_[2, top[0]]:.3g})"


def test_auto_alpha_run_shows_how_alpha_was_chosen(auto_run, tmp_path):
    folder, model = auto_run
    path = model.alpha_path_
    text = write_report(folder, tmp_path / "r.html").read_text(encoding="utf-8")
    assert '<section id="alpha-path"><h2>How alpha was chosen</h2>' in text
    assert '<figure id="alpha-curve"><img src="data:image/png;base64,' in text
    assert "without labels" in text and "two-fold" in text and "middle of the tied band" in text
    assert f"alpha_ = {model.alpha_:g}" in text  # in the parameters' note
    i = int(np.flatnonzero(path["chosen"])[0])
    assert (f'<p id="alpha-chosen">Chosen: alpha = {model.alpha_:g} (contrast '
            f'{path["contrast"][i]:.3f})') in text
    assert "alpha fixed at" not in text
    assert len(_images(text)) == 5  # + the contrast per alpha
    assert "The fit ran to max_iter = 100 without meeting its tolerance." in text
    table = _section(text, "alpha_path")
    header = _headers(table)
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
        assert "How alpha was chosen" not in text and len(_images(text)) == 4
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
    assert len(_images(text)) == 4 and '<table id="topics">' in text
    direct = render_report(params=kwargs["params"], history=model.history_,
                           components=model.components_, feature_names=kwargs["feature_names"],
                           target_codes=codes, background_codes=model.background_codes_,
                           labels=["a", "b"] * (codes.shape[0] // 2))
    assert len(_images(direct)) == 4 and "and by label" in direct


def _gene_set_table():
    return pd.DataFrame({
        "topic": ["topic 1", "topic 1", "topic 2", "topic 3"],
        "gene_set": ["SET<A>", "SET_B", "SET_C", "SET_D"], "n_genes": [5, 6, 7, 5],
        "set_size": [10, 12, 20, 9], "statistic": [3.1, 0.2, 2.5, -1.0],
        "effect": [0.8, 0.52, 0.7, 0.35], "p_value": [1e-4, 0.8, 2e-3, 0.3],
        "q_value": [4e-4, 0.8, 4e-3, 0.4], "leading_genes": ["GENE<1>;GENE<2>", "", "G3", ""]})


def test_enrichment_table_shows_the_sample_level_columns(run_dir, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    ENRICHMENT.assign(test="samples", n_samples_target=6, n_samples_background=4,
                      pseudobulk_t=[3.0, 0.1, -1.0]).to_csv(folder / "enrichment.csv")
    text = write_report(folder).read_text(encoding="utf-8")
    stats = _section(text, "enrichment-table")
    assert _headers(stats) == ["topic", "usage_target", "usage_background",
                               "log2_fold_change", "effect_size", "p_value", "q_value",
                               "enriched", "test", "n_samples_target", "n_samples_background",
                               "pseudobulk_t"]
    assert _cells(stats.split("</tr>")[1])[-4:] == ["samples", "6", "4", "-1"]
    assert "Sample-level test (6 target vs 4 background units)" in text
    ENRICHMENT.assign(test="cells", n_samples_target=40, n_samples_background=30).to_csv(
        folder / "enrichment.csv")
    text = write_report(folder).read_text(encoding="utf-8")
    assert "Cell-level test (40 target vs 30 background units)" in text
    assert "these p-values are too small" in text


def test_shares_are_the_usage_of_topic_enrichment(contrast_fit):
    """The cells plot draws the same usage that bcnmf.topic_enrichment tests."""
    from bcnmf.report import _shares
    from bcnmf.topics import topic_usage

    X, Y, model, _ = contrast_fit
    np.testing.assert_allclose(_shares(model.transform(X), model.components_),
                               topic_usage(model, X, usage="share"), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        _shares(model.transform(Y, as_background=True), model.components_),
        topic_usage(model, Y, as_background=True, usage="share"), rtol=1e-12, atol=1e-15)


def test_cells_are_drawn_in_the_plane_of_the_enriched_topics():
    from bcnmf.report import _cells_coordinates

    rng = np.random.default_rng(1)
    t, b = rng.dirichlet(np.ones(4), size=30), rng.dirichlet(np.ones(4), size=20)
    # two enriched topics: their usage, the most enriched on x
    xy_t, xy_b, xlabel, ylabel, _ = _cells_coordinates(t, b, [2, 0, 1, 3], {2, 0})
    np.testing.assert_array_equal(xy_t, t[:, [2, 0]])
    np.testing.assert_array_equal(xy_b, b[:, [2, 0]])
    assert xlabel == "share of topic 3 ★" and ylabel == "share of topic 1 ★"
    # one enriched topic: it, then the next in the order
    xy_t, _, xlabel, ylabel, caption = _cells_coordinates(t, b, [1, 3, 0, 2], {1})
    np.testing.assert_array_equal(xy_t, t[:, [1, 3]])
    assert ylabel == "share of topic 4" and "enriched topic and of the next" in caption
    # three enriched topics: principal components of their usage, target and background
    # pooled; the plane keeps every pairwise distance a 2-D projection can
    xy_t, xy_b, xlabel, _, caption = _cells_coordinates(t, b, [0, 1, 3, 2], {0, 1, 3})
    pooled = np.vstack([t, b])[:, [0, 1, 3]]
    centred = pooled - pooled.mean(axis=0)
    xy = np.vstack([xy_t, xy_b])
    assert xlabel == "PC 1" and "principal components" in caption
    np.testing.assert_allclose(xy.mean(axis=0), 0.0, atol=1e-12)
    s = np.linalg.svd(centred, compute_uv=False)
    np.testing.assert_allclose(np.linalg.svd(xy, compute_uv=False), s[:2], rtol=1e-10)


def test_labels_colour_the_cells_and_bad_labels_are_refused(run_dir, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    n = 40
    pd.DataFrame({"label": ["A", "NA"] * (n // 2)}, index=pd.Index(range(n), name="cell")
                 ).to_csv(folder / "labels.csv")
    kwargs = read_run(folder)
    assert list(kwargs["labels"][:2]) == ["A", "NA"]  # "NA" is a label, not a missing value
    text = write_report(folder).read_text(encoding="utf-8")
    assert "coloured by condition and by label" in text and "coloured by their label" in text
    pd.DataFrame({"label": ["A", "B"] * 10}).to_csv(folder / "labels.csv")
    with pytest.raises(ValueError, match=r"one label per target cell \(40\); got shape \(20,\)"):
        write_report(folder)
    pd.DataFrame({"genotype": ["A", "B"] * 20}).to_csv(folder / "labels.csv")
    with pytest.raises(ValueError, match="needs a column 'label'"):
        write_report(folder)


def test_gene_set_section(run_dir, tmp_path, monkeypatch):
    from bcnmf import pl

    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    table = _gene_set_table()
    table.to_csv(folder / "gene_sets.csv", index=False)
    # without bcnmf.pl.gene_sets: the table alone
    monkeypatch.delattr(pl, "gene_sets", raising=False)
    text = write_report(folder).read_text(encoding="utf-8")
    section = text.split('<section id="gene-sets">')[1].split("</section>")[0]
    assert 'id="gene-sets-figure"' not in section
    rows = _section(section, "gene-sets-table")
    assert _headers(rows) == ["topic", "gene_set", "n_genes", "set_size", "statistic",
                              "effect", "p_value", "q_value", "leading_genes"]
    # sorted by q-value; significant rows highlighted; names escaped
    assert re.findall(r'<td class="text">(SET[^<]*)</td>', rows) == [
        "SET&lt;A&gt;", "SET_C", "SET_D", "SET_B"]
    assert rows.count('<tr class="enriched">') == 2
    assert "2 of 4 topic-gene-set pairs with q-value at most 0.05" in section
    # with it: drawn with the agreed arguments, above the table
    calls = []

    def gene_sets(data, *, n_top, q_threshold, ax):
        calls.append((data, n_top, q_threshold))
        ax.plot([0, 1], [0, 1])
        return ax

    monkeypatch.setattr(pl, "gene_sets", gene_sets, raising=False)
    text = write_report(folder).read_text(encoding="utf-8")
    assert len(calls) == 1 and calls[0][1:] == (5, 0.05)
    pd.testing.assert_frame_equal(calls[0][0], table)
    section = text.split('<section id="gene-sets">')[1].split("</section>")[0]
    assert '<figure id="gene-sets-figure"><img src="data:image/png;base64,' in section
    table.drop(columns="leading_genes").to_csv(folder / "gene_sets.csv", index=False)
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['leading_genes'\]"):
        write_report(folder)


def test_render_report_does_not_modify_its_inputs(run_dir):
    kwargs = read_run(run_dir)
    enrichment, genes = ENRICHMENT.copy(), _gene_set_table()
    labels = np.array(["b", "a"] * 20)
    before = ({k: v.copy() for k, v in kwargs["history"].items()},
              kwargs["components"].copy(), kwargs["target_codes"].copy(), labels.copy())
    render_report(**kwargs, enrichment=enrichment, gene_sets=genes, labels=labels)
    pd.testing.assert_frame_equal(enrichment, ENRICHMENT)
    pd.testing.assert_frame_equal(genes, _gene_set_table())
    for key, values in before[0].items():
        np.testing.assert_array_equal(kwargs["history"][key], values)
    np.testing.assert_array_equal(kwargs["components"], before[1])
    np.testing.assert_array_equal(kwargs["target_codes"], before[2])
    np.testing.assert_array_equal(labels, before[3])


def test_cells_without_background_or_with_one_topic():
    """A fit without background: the cells are drawn in the plane of the two topics used most
    in the target, and the page says so; one topic: no plane, a note instead of a figure."""
    rng = np.random.default_rng(2)
    history = {"iteration": np.arange(4), "objective": np.array([9.0, 5.0, 4.0, 3.5]),
               "target": np.array([9.0, 5.0, 4.0, 3.5]), "background": np.zeros(4)}
    comps, codes = rng.random((3, 6)), rng.random((20, 3))
    codes[:, 1] *= 5.0  # topic 2 is used most
    from bcnmf.report import _shares, _topic_order

    shares = _shares(codes, comps)
    order, enriched, how = _topic_order(None, 3, shares)
    assert order[0] == 1 and enriched == set() and how == "target"
    np.testing.assert_array_equal(order, np.argsort(-shares.mean(axis=0)))
    text = render_report(params={"alpha": 0.0}, history=history, components=comps,
                         feature_names=list("abcdef"), target_codes=codes)
    assert re.findall(r'<section id="([^"]+)">', text) == ["top-features", "cells",
                                                           "convergence", "run"]
    assert "the axes are the topics with the highest mean share in the target" in text
    assert len(_images(text)) == 3
    one = render_report(params={"alpha": 0.0}, history=history, components=comps[:1],
                        feature_names=list("abcdef"), target_codes=codes[:, :1])
    cells = one.split('<section id="cells">')[1].split("</section>")[0]
    assert "no plane of topics" in cells and "<img" not in cells


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

# the parts of the report that must be on screen: (element id, what it is)
VISIBLE = (("alpha-curve", "figure"), ("enrichment-table", "table"), ("cells-figure", "figure"))

# appended to a copy of the page: after load, record how many images failed to decode and,
# for every id of VISIBLE, its rendered size and (figures) the decoded size of its image
_PROBE = """<script>window.addEventListener("load", () => {
  const bad = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length;
  document.body.setAttribute("data-images", String(document.images.length));
  document.body.setAttribute("data-broken-images", String(bad));
  const seen = {};
  for (const id of %s) {
    const el = document.getElementById(id);
    if (!el) { seen[id] = null; continue; }
    const box = el.getBoundingClientRect(), style = getComputedStyle(el);
    const img = el.tagName === "FIGURE" ? el.querySelector("img") : null;
    const ibox = img ? img.getBoundingClientRect() : null;
    seen[id] = {tag: el.tagName.toLowerCase(), width: box.width, height: box.height,
                hidden: style.display === "none" || style.visibility === "hidden",
                natural: img ? [img.naturalWidth, img.naturalHeight] : null,
                shown: ibox ? [ibox.width, ibox.height] : null};
  }
  document.body.setAttribute("data-visible", JSON.stringify(seen));
});</script>""" % json.dumps([i for i, _ in VISIBLE])


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
    """(images, broken images, console lines, DOM, {id: what the browser rendered or None})."""
    import html

    probed = tmp_path / f"probed-{page.name}"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"),
                      encoding="utf-8")
    dom, console = _browse(probed, tmp_path / "profile-dom", "--dump-dom")
    images = re.search(r'data-images="(\d+)"', dom)
    broken = re.search(r'data-broken-images="(\d+)"', dom)
    seen = re.search(r'data-visible="([^"]*)"', dom)
    assert images and broken and seen, "the page did not finish loading"
    return (int(images.group(1)), int(broken.group(1)), console, dom,
            json.loads(html.unescape(seen.group(1))))


def _not_visible(seen):
    """The parts of VISIBLE that the browser did not show, with the reason."""
    problems = []
    for ident, kind in VISIBLE:
        got = seen.get(ident)
        if got is None:
            problems.append(f"{ident}: missing")
        elif got["tag"] != kind or got["hidden"] or got["width"] < 50 or got["height"] < 50:
            problems.append(f"{ident}: {got}")
        elif kind == "figure" and not (got["natural"] and min(got["natural"]) > 100
                                       and got["shown"] and min(got["shown"]) > 100):
            problems.append(f"{ident}: image {got['natural']} shown at {got['shown']}")
    return problems


@needs_chromium
def test_the_browser_check_detects_problems(tmp_path):
    """The check can fail: console errors, undecodable images, and a part of the report that
    is missing, hidden or broken are seen."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><img src="data:image/png;base64,AAAA">'
                    '<script>console.error("boom-marker")</script></body></html>')
    images, broken, console, _, seen = _probe(page, tmp_path)
    assert images == 1 and broken == 1
    assert any("boom-marker" in line for line in console)
    assert _not_visible(seen) == [f"{ident}: missing" for ident, _ in VISIBLE]
    # the alpha curve's image does not decode, the table is hidden, the cells figure is gone
    page.write_text(
        '<!DOCTYPE html><html><body><figure id="alpha-curve" style="height:200px">'
        '<img src="data:image/png;base64,AAAA" width="300" height="150"></figure>'
        '<table id="enrichment-table" style="display:none"><tr><td>x</td></tr></table>'
        "</body></html>")
    problems = _not_visible(_probe(page, tmp_path)[4])
    assert [p.split(":")[0] for p in problems] == ["alpha-curve", "enrichment-table",
                                                   "cells-figure"]
    assert "image [0, 0]" in problems[0] and problems[2] == "cells-figure: missing"


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, contrast_fit, auto_run):
    """The auto-alpha run folder with everything the report can show: the enrichment
    statistics and gene sets of the model, labels and a comparison."""
    from bcnmf import topic_enrichment
    from bcnmf.gene_sets import topic_gene_sets

    X, Y, _, _ = contrast_fit
    folder = tmp_path_factory.mktemp("full") / "run"
    shutil.copytree(auto_run[0], folder)
    model = auto_run[1]
    topic_enrichment(model, X, background=Y, n_permutations=200).to_csv(
        folder / "enrichment.csv")
    pd.DataFrame({"label": ["program"] * 20 + ["plain"] * 20},  # the fixture's two groups
                 index=pd.Index(range(40), name="cell")).to_csv(folder / "labels.csv")
    features = [f"feature_{j + 1}" for j in range(12)]  # write_run's names
    sets = {"program": features[:3], "rest": features[3:9], "mixed": features[1:7]}
    topic_gene_sets(model, sets, feature_names=features, min_size=3).to_csv(
        folder / "gene_sets.csv", index=False)
    pd.DataFrame({"method": ["NMF", "NMF", "bcNMF", "bcNMF"], "seed": [0, 1, 0, 1],
                  "ari_raw": [0.2, 0.3, 0.9, 1.0], "ari_norm": [0.2, 0.4, 0.9, 0.95]}
                 ).to_csv(folder / "ari.csv", index=False)
    return folder


@needs_chromium
def test_report_in_headless_chromium(full_run, tmp_path):
    """Every figure decodes, nothing is logged, and the alpha curve, the enrichment table and
    the cells in topic space are on screen; a screenshot is kept for a person to look at."""
    page = write_report(full_run, tmp_path / "report.html")
    text = page.read_text(encoding="utf-8")
    images, broken, console, dom, seen = _probe(page, tmp_path)
    assert console == []
    assert images == len(_images(text)) and broken == 0
    assert _not_visible(seen) == []
    width, height = seen["cells-figure"]["natural"]
    assert width > 1.5 * height  # two panels: by condition, by label
    for section in ("enrichment", "top-features", "cells", "gene-sets", "usage", "comparison",
                    "alpha-path", "convergence", "run"):
        assert f'<section id="{section}">' in dom, section
    assert 'id="gene-sets-figure"' in dom  # drawn by bcnmf.pl.gene_sets
    shot = tmp_path / "report.png"
    _, console = _browse(page, tmp_path / "profile-shot", f"--screenshot={shot}",
                         "--window-size=1280,6000", "--hide-scrollbars")
    assert console == []
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000
    keep = os.environ.get("BCNMF_REPORT_SCREENSHOT")  # CI: where to keep the screenshot
    if keep:
        Path(keep).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, keep)


@needs_chromium
def test_fixed_alpha_report_in_headless_chromium(run_dir, tmp_path):
    """A run without alpha screening: no alpha curve, and the check says exactly that."""
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    ENRICHMENT.to_csv(folder / "enrichment.csv")
    SELECTION.to_csv(folder / "selection.csv", index=False)
    images, broken, console, dom, seen = _probe(write_report(folder), tmp_path)
    assert console == [] and images == 6 and broken == 0
    assert _not_visible(seen) == ["alpha-curve: missing"]
    assert "bcNMF report" in dom and 'id="topics"' in dom
