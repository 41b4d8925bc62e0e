"""End-to-end demo on the bundled mouse-protein data: ``python -m bcnmf.demo``.

Fits PCA, plain NMF (both scikit-learn) and bcNMF to the target (270 measurements of control and
Ts65Dn mice) with the learning-stimulated control mice as background, over several fitting seeds,
and scores every fit with the evaluation protocol of the bcNMF benchmarks: KMeans with
``n_clusters=2, n_init=20, random_state=42`` on the target codes (raw and per-cell
L1-normalised), adjusted Rand index against the genotype labels (never used in fitting).

Files written to the output folder:

- ``ari.csv``: method, seed, ari_raw, ari_norm (one row per fit);
- ``components.csv``: bcNMF topics x proteins (first seed), protein names as header;
- ``target_codes.csv``, ``background_codes.csv``: bcNMF codes (first seed), cells x topics;
- ``history.csv``: iteration, target, background, objective (first seed's bcNMF);
- ``params.json``: ``get_params()`` of the first seed's model plus ``alpha_raw_``, ``n_iter_`` and
  the bcnmf version;
- ``report.html``: a self-contained report (inline CSS and SVG, no external assets).

:func:`run_demo` does the work and returns the results without printing; :func:`main` is the
command-line entry point and the only place that prints.
"""

from __future__ import annotations

import csv
import html
import json
import math
import warnings
from pathlib import Path

import numpy as np
from sklearn.decomposition import NMF, PCA
from sklearn.exceptions import ConvergenceWarning

from ._version import __version__
from .datasets import load_mice_protein
from .estimator import BCNMF
from .exceptions import DivergenceWarning
from .metrics import cluster_ari

__all__ = ["DEMO_ALPHA", "N_COMPONENTS", "METHODS", "format_table", "run_demo", "main"]

#: Contrast weight of the demo's bcNMF fits (relative scale).  1.0 rather than the library's
#: default 1.5: on this data the alpha grid of docs/benchmarks.md peaks near 1.
DEMO_ALPHA = 1.0
#: Restarts per bcNMF fit; the medoid restart is kept, which removes most of the
#: seed-to-seed variance of single runs on this data.
DEMO_N_INIT = 5
#: Sweeps allowed per restart (multiplicative updates converge slowly on this data).
DEMO_MAX_ITER = 3000
#: Number of topics / components for every method.
N_COMPONENTS = 5
#: Methods compared, in table order.
METHODS = ("PCA", "NMF", "bcNMF")
#: Default output folder of the command-line demo.
DEFAULT_OUT = "bcnmf-demo"

_NMF_MAX_ITER = 500
_TOP_PROTEINS = 10
# Warnings that a fit may raise: always recorded in the results and the report, never raised,
# even where warnings are errors (bcnmf's ConvergenceWarning is scikit-learn's).  Other warnings
# follow the active filters: raised where they are errors, otherwise recorded too.
_RECORDED_WARNINGS = (ConvergenceWarning, DivergenceWarning)


# ---------------------------------------------------------------------------------------------
# Evaluation protocol
# ---------------------------------------------------------------------------------------------

def _mean_sd(values):
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else 0.0)


def _fmt_mean_sd(mean, sd):
    if not math.isfinite(mean):
        return "nan"
    return f"{mean:.3f} ± {sd:.3f}"


# ---------------------------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------------------------

def _fit(method, data, seed, alpha, max_iter):
    """Target codes of one method and seed (and the fitted bcNMF model, else None)."""
    if method == "PCA":
        return PCA(n_components=N_COMPONENTS, random_state=seed).fit_transform(data.X), None
    if method == "NMF":
        model = NMF(n_components=N_COMPONENTS, init="random", max_iter=_NMF_MAX_ITER,
                    random_state=seed)
        return model.fit_transform(data.X), None
    model = BCNMF(n_components=N_COMPONENTS, alpha=alpha, beta_loss="frobenius",
                  n_init=DEMO_N_INIT, random_state=seed,
                  max_iter=DEMO_MAX_ITER if max_iter is None else int(max_iter))
    return model.fit_transform(data.X, background=data.Y), model


def _check_seeds(seeds):
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer (number of fitting seeds); "
                         f"got {seeds!r}.")
    return int(seeds)


# ---------------------------------------------------------------------------------------------
# Output files
# ---------------------------------------------------------------------------------------------

def _num(x):
    return repr(float(x))


def _write_matrix(path, matrix, index_name, index, columns):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([index_name, *columns])
        for name, row in zip(index, np.asarray(matrix)):
            writer.writerow([name, *(_num(v) for v in row)])


def _write_ari(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["method", "seed", "ari_raw", "ari_norm"])
        for r in rows:
            writer.writerow([r["method"], r["seed"], _num(r["ari_raw"]), _num(r["ari_norm"])])


def _write_history(path, history):
    keys = ("target", "background", "objective")
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["iteration", *keys])
        for i, vals in zip(history["iteration"], zip(*(history[k] for k in keys))):
            writer.writerow([int(i), *(_num(v) for v in vals)])


def _json_value(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return repr(v)


def _svg_polyline(values, title, width=560, height=150, pad=40):
    """A small line chart of ``values`` against iteration as an inline SVG string."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    t = html.escape(title)
    if v.size < 2 or finite.sum() < 2:
        return (f'<svg width="{width}" height="{height}" '
                f'role="img" aria-label="{t}"><text x="10" y="20">{t}: no data</text></svg>')
    x_idx = np.flatnonzero(finite)
    y = v[finite]
    lo, hi = float(y.min()), float(y.max())
    span = hi - lo if hi > lo else 1.0
    x_max = max(int(x_idx[-1]), 1)
    plot_w, plot_h = width - 2 * pad, height - 2 * 20
    xs = pad + x_idx / x_max * plot_w
    ys = 20 + (hi - y) / span * plot_h
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(xs, ys))
    return (
        f'<svg width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{t}">'
        f'<rect x="{pad}" y="20" width="{plot_w}" height="{plot_h}" class="frame"/>'
        f'<polyline fill="none" stroke="#1f5fa8" stroke-width="1.5" points="{points}"/>'
        f'<text x="{pad}" y="14" class="title">{t}</text>'
        f'<text x="{pad - 4}" y="24" text-anchor="end" class="tick">{hi:.4g}</text>'
        f'<text x="{pad - 4}" y="{20 + plot_h}" text-anchor="end" class="tick">{lo:.4g}</text>'
        f'<text x="{pad}" y="{height - 4}" class="tick">0</text>'
        f'<text x="{pad + plot_w}" y="{height - 4}" text-anchor="end" class="tick">'
        f'iteration {x_max}</text></svg>')


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 60em; color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f3f7; } td.name, th.name { text-align: left; }
.topics { display: flex; flex-wrap: wrap; gap: 1em; }
.topics table { font-size: 0.9em; }
svg .frame { fill: #fafbfc; stroke: #bbb; } svg .title { font-size: 12px; font-weight: 600; }
svg .tick { font-size: 10px; fill: #555; }
.note { color: #555; font-size: 0.9em; }
"""


def _html_report(results, data, model):
    esc = html.escape
    s = results["summary"]
    ari_rows = "".join(
        f'<tr><td class="name">{esc(m)}</td><td>{_fmt_mean_sd(*s[m]["ari_raw"])}</td>'
        f'<td>{_fmt_mean_sd(*s[m]["ari_norm"])}</td></tr>' for m in METHODS)
    seed_rows = "".join(
        f'<tr><td class="name">{esc(r["method"])}</td><td>{r["seed"]}</td>'
        f'<td>{r["ari_raw"]:.3f}</td><td>{r["ari_norm"]:.3f}</td></tr>' for r in results["ari"])
    topics = []
    names = [str(n) for n in data.feature_names]
    for k, row in enumerate(model.components_):
        order = np.argsort(row)[::-1][:_TOP_PROTEINS]
        body = "".join(f'<tr><td class="name">{esc(names[j])}</td><td>{row[j]:.4f}</td></tr>'
                       for j in order)
        topics.append(f'<table><tr><th class="name" colspan="2">topic {k + 1}</th></tr>'
                      f'<tr><th class="name">protein</th><th>loading</th></tr>{body}</table>')
    h = model.history_
    charts = "".join(f"<div>{_svg_polyline(h[key], label)}</div>" for key, label in (
        ("objective", "objective = target - alpha_raw x background"),
        ("target", "target divergence D(X | codes components)"),
        ("background", "background divergence D(Y | background codes components)")))
    warn_html = ""
    if results["warnings"]:
        items = "".join(f"<li>{esc(w)}</li>" for w in results["warnings"])
        warn_html = f"<h2>Warnings raised by the fits</h2><ul>{items}</ul>"
    p = results["params"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>bcNMF demo: mouse protein expression</title>
<style>{_CSS}</style></head>
<body>
<h1>bcNMF demo: mouse protein expression</h1>
<p>Target: {data.X.shape[0]} cortex measurements of control and Ts65Dn mice (not stimulated to
learn); background: {data.Y.shape[0]} measurements of control mice stimulated to learn;
{data.X.shape[1]} proteins. Data: Higuera, Gardiner &amp; Cios (2015), PLoS ONE 10(6):e0129126,
UCI Machine Learning Repository, CC BY 4.0.</p>
<p>bcNMF: <code>BCNMF(n_components={N_COMPONENTS}, alpha={p["alpha"]!r},
beta_loss="frobenius", n_init={p["n_init"]}, max_iter={p["max_iter"]})</code>, other
parameters at the library defaults
(applied alpha_raw_ = {p["alpha_raw_"]:.6g}); bcnmf {esc(p["bcnmf_version"])}.</p>
<h2>Adjusted Rand index (genotype), mean ± sd over {results["seeds"]} seed(s)</h2>
<p class="note">KMeans(n_clusters=2, n_init=20, random_state=42) on the target codes, raw and
per-cell L1-normalised; the genotype labels are used for scoring only.</p>
<table id="ari"><tr><th class="name">method</th><th>ARI raw</th><th>ARI normalised</th></tr>
{ari_rows}</table>
<details><summary>Per seed</summary>
<table><tr><th class="name">method</th><th>seed</th><th>ARI raw</th><th>ARI normalised</th></tr>
{seed_rows}</table></details>
<h2>Top {_TOP_PROTEINS} proteins per bcNMF topic (seed {results["first_seed"]})</h2>
<div class="topics">{"".join(topics)}</div>
<h2>Convergence (seed {results["first_seed"]}, {p["n_iter_"]} sweeps)</h2>
{charts}
{warn_html}
</body></html>
"""


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------

def run_demo(out_dir=DEFAULT_OUT, seeds=5, *, alpha=None, max_iter=None):
    """Fit PCA, NMF and bcNMF on the bundled mouse-protein data, score and write the results.

    Parameters
    ----------
    out_dir : str or path-like, default="bcnmf-demo"
        Output folder (created if needed; existing files of the same names are overwritten).
    seeds : int, default=5
        Number of fitting seeds; seeds 0 .. seeds-1 are used.
    alpha : float or None, default=None
        bcNMF contrast weight; None means :data:`DEMO_ALPHA`.
    max_iter : int or None, default=None
        bcNMF ``max_iter``; None means ``DEMO_MAX_ITER``.  (NMF always uses 500.)

    Returns
    -------
    dict
        ``"ari"``: list of per-fit dicts (method, seed, ari_raw, ari_norm);
        ``"summary"``: {method: {"ari_raw": (mean, sd), "ari_norm": (mean, sd)}};
        ``"files"``: {name: Path} of the files written; ``"params"``: the contents of
        params.json; ``"model"``: the first seed's fitted :class:`~bcnmf.BCNMF`;
        ``"warnings"``: convergence/divergence warnings raised by the fits, as strings;
        ``"seeds"``, ``"first_seed"``, ``"out_dir"``.
    """
    n_seeds = _check_seeds(seeds)
    alpha = DEMO_ALPHA if alpha is None else float(alpha)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = load_mice_protein()

    rows, notes, first_model, first_codes = [], [], None, None
    for seed in range(n_seeds):
        for method in METHODS:
            with warnings.catch_warnings(record=True) as caught:
                for category in _RECORDED_WARNINGS:
                    warnings.simplefilter("always", category)
                codes, model = _fit(method, data, seed, alpha, max_iter)
                raw = cluster_ari(codes, data.labels)
                norm = cluster_ari(codes, data.labels, normalise=True)
            notes.extend(f"{method}, seed {seed}: {w.category.__name__}: {w.message}"
                         for w in caught)
            rows.append({"method": method, "seed": seed, "ari_raw": raw, "ari_norm": norm})
            if model is not None and first_model is None:
                first_model, first_codes = model, codes

    summary = {m: {key: _mean_sd([r[key] for r in rows if r["method"] == m])
                   for key in ("ari_raw", "ari_norm")} for m in METHODS}
    params = {k: _json_value(v) for k, v in first_model.get_params().items()}
    params.update(alpha_raw_=float(first_model.alpha_raw_), n_iter_=int(first_model.n_iter_),
                  bcnmf_version=__version__)
    results = {"out_dir": out, "seeds": n_seeds, "first_seed": 0, "ari": rows,
               "summary": summary, "params": params, "model": first_model,
               "warnings": notes, "files": {}}

    proteins = [str(n) for n in data.feature_names]
    topics = [f"topic_{k + 1}" for k in range(N_COMPONENTS)]
    files = results["files"]
    files["ari"] = out / "ari.csv"
    _write_ari(files["ari"], rows)
    files["components"] = out / "components.csv"
    _write_matrix(files["components"], first_model.components_, "topic", topics, proteins)
    files["target_codes"] = out / "target_codes.csv"
    _write_matrix(files["target_codes"], first_codes, "cell", range(data.X.shape[0]), topics)
    files["background_codes"] = out / "background_codes.csv"
    _write_matrix(files["background_codes"], first_model.background_codes_, "cell",
                  range(data.Y.shape[0]), topics)
    files["history"] = out / "history.csv"
    _write_history(files["history"], first_model.history_)
    files["params"] = out / "params.json"
    files["params"].write_text(json.dumps(params, indent=2) + "\n", encoding="utf-8")
    files["report"] = out / "report.html"
    files["report"].write_text(_html_report(results, data, first_model), encoding="utf-8")
    return results


def format_table(results):
    s = results["summary"]
    header = f"{'method':<8}  {'ARI raw':>15}  {'ARI normalised':>15}"
    lines = [f"Adjusted Rand index vs genotype, mean ± sd over {results['seeds']} seed(s)",
             header, "-" * len(header)]
    lines += [f"{m:<8}  {_fmt_mean_sd(*s[m]['ari_raw']):>15}  "
              f"{_fmt_mean_sd(*s[m]['ari_norm']):>15}" for m in METHODS]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Command-line entry point (``python -m bcnmf.demo``); see :func:`bcnmf.cli.demo_main`."""
    from .cli import demo_main

    return demo_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
