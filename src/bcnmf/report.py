"""Self-contained HTML report of a bcNMF run (``bcnmf report OUTDIR``).

One HTML file, no external assets: figures are embedded as base64 PNG, styles inline, no
scripts. It shows the run's inputs and parameters, how alpha was chosen (``alpha="auto"``),
convergence, the topics with their top features, topic usage in target vs background, and,
when available, the topic enrichment statistics and the model-selection table.

:func:`render_report` builds the page from arrays and tables; :func:`write_report` reads a
folder written by ``bcnmf fit`` (or ``bcnmf demo``) and writes ``report.html`` into it.
Optional files picked up from the folder: ``alpha_path.csv`` (the screening table of
``alpha="auto"``, the model's ``alpha_path_``), ``enrichment.csv`` (topic statistics, one row
per topic, first column the topic), ``selection.csv`` (model-selection table) with
``selection.json`` (``{"best": {"n_components": K, "alpha": a}}``), and ``ari.csv`` (the
demo's comparison against labels).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from . import pl
from ._version import __version__
from .core.backend import to_numpy

__all__ = ["render_report", "read_run", "write_report", "REPORT_NAME"]

REPORT_NAME = "report.html"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 64em; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em;
     border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th { background: #f0f3f7; } td.name, th.name, td.text { text-align: left; }
td.name { white-space: nowrap; }
figure { margin: 0.5em 0; } img { max-width: 100%; height: auto; }
.note { color: #555; font-size: 0.9em; } .warn { color: #8a4b00; }
tr.enriched td { background: #fff4e5; } tr.chosen td { background: #e8f4e8; }
tr.collapsed td { color: #888; }
div.wide { overflow-x: auto; max-width: 100%; }
"""


def _figure_png(draw, figsize):
    """Draw with ``draw(ax)`` on an off-screen figure; return a base64 PNG data URI."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    draw(fig.add_subplot())
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(uri, alt):
    return f'<figure><img src="{uri}" alt="{html.escape(alt)}"></figure>'


def _fmt(v):
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}"
    return str(v)


def _table(rows, header, *, table_id=None, row_class=None, formats=None):
    """HTML table from rows of cells (already plain values); the first column is a name.
    ``formats`` maps a column's position to the function that writes its values (default
    :func:`_fmt`); such values stay numbers (right-aligned)."""
    esc = html.escape
    formats = formats or {}
    ident = f' id="{table_id}"' if table_id else ""
    head = "".join(f'<th class="name">{esc(str(h))}</th>' if i == 0 else
                   f"<th>{esc(str(h))}</th>" for i, h in enumerate(header))
    body = []
    for r, row in enumerate(rows):
        cls = f' class="{row_class[r]}"' if row_class and row_class[r] else ""
        cells = "".join(
            f'<td class="{"name" if i == 0 else "text"}">{esc(formats.get(i, _fmt)(c))}</td>'
            if i == 0 or isinstance(c, str) else f"<td>{esc(formats.get(i, _fmt)(c))}</td>"
            for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table{ident}><tr>{head}</tr>{''.join(body)}</table>"


def _frame_table(df, table_id, row_class=None):
    header = [df.index.name or ""] + [str(c) for c in df.columns]
    rows = [[idx, *vals] for idx, vals in zip(df.index, df.itertuples(index=False))]
    return _table(rows, header, table_id=table_id, row_class=row_class)


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))


def _fitted_alpha(params, fit):
    """The alpha the model was fitted with: the number given, or with ``alpha="auto"`` the
    chosen ``alpha_`` (None when the folder does not say)."""
    alpha = params.get("alpha")
    if _is_number(alpha):
        return float(alpha)
    chosen = (fit or {}).get("alpha_")
    return float(chosen) if _is_number(chosen) else None


def _alpha_note(params, fit, screened):
    """One sentence on where the fit's alpha came from (``screened``: the report shows the
    screening table)."""
    alpha, chosen = params.get("alpha"), fit.get("alpha_")
    if _is_number(alpha):
        return (f'<p id="alpha-note">alpha fixed at {html.escape(_fmt(alpha))} by the user '
                "(no alpha was screened).</p>")
    if alpha == "auto":
        value = (f"alpha_ = {html.escape(_fmt(chosen))}" if _is_number(chosen)
                 else "alpha_ not recorded")
        where = ("see How alpha was chosen" if screened
                 else "no screening table (alpha_path.csv) in this run folder")
        return (f'<p id="alpha-note">alpha chosen without labels (alpha = "auto"): {value}; '
                f"{where}.</p>")
    return ""


def _parameter_section(params, fit, inputs, screened=False):
    parts = ["<h2>Run</h2>"]
    if inputs:
        parts.append(_table(sorted(inputs.items()), ["input", "value"], table_id="inputs"))
    parts.append(_alpha_note(params, fit, screened))
    parts.append(_table(sorted(params.items()), ["parameter", "value"], table_id="params"))
    if fit:
        parts.append(_table(sorted(fit.items()), ["fitted", "value"], table_id="fit"))
    return "".join(parts)


def _topics_section(components, names, n_top, enrichment):
    labels = pl._topic_labels(components.shape[0])
    tops = pl._top_features(components, names, n_top)
    features = ["; ".join(f"{n} ({v:.3g})" for n, v in top) for top in tops]
    intro = (f'<p class="note">The {n_top} features with the largest loadings per topic '
             "(loadings are the rows of <code>components_</code>).</p>")
    if enrichment is None:
        rows = [[labels[k], features[k]] for k in range(len(labels))]
        table = _table(rows, ["topic", "top features (loading)"], table_id="topics")
        return ("<h2>Topics</h2>" + intro + table +
                '<p class="note">No topic statistics in this run folder (enrichment.csv).</p>')
    stats = enrichment.copy()
    order = list(range(len(stats)))
    if "enriched" in stats.columns:
        key_q = stats["q_value"].to_numpy(float) if "q_value" in stats.columns else None
        enriched = stats["enriched"].to_numpy(bool)
        order = sorted(order, key=lambda i: (not enriched[i],
                                             key_q[i] if key_q is not None else 0.0))
    stats = stats.iloc[order]
    positions = [_topic_position(t, len(labels)) for t in stats.index]
    stats.insert(0, "top features (loading)",
                 [features[p] if p is not None else "" for p in positions])
    stats.index = [labels[p] if p is not None else str(t)
                   for p, t in zip(positions, stats.index)]
    stats.index.name = "topic"
    row_class = (["enriched" if e else "" for e in stats["enriched"].to_numpy(bool)]
                 if "enriched" in stats.columns else None)
    return ("<h2>Topics, enriched first</h2>" + intro +
            _frame_table(stats, "topics", row_class))


def _topic_position(topic, n):
    """0-based position of a topic label from a statistics table (int or 'topic k')."""
    try:
        k = int(topic)
    except (TypeError, ValueError):
        text = str(topic).replace("_", " ").split()
        if len(text) == 2 and text[0] == "topic" and text[1].isdigit():
            return int(text[1]) - 1 if 0 < int(text[1]) <= n else None
        return None
    return k if 0 <= k < n else None


#: columns of the alpha screening shown in the report, with how they are written
_PATH_COLUMNS = {"n_components": lambda v: str(int(v)), "alpha": lambda v: f"{float(v):g}",
                 "contrast": lambda v: f"{float(v):.3f}",
                 "stability": lambda v: f"{float(v):.3f}",
                 "explained_target": lambda v: f"{float(v):.3f}",
                 "counted": _fmt, "chosen": _fmt}

_ALPHA_RULE = (
    "alpha was chosen without labels: at every alpha of a grid, short screening fits ran "
    "two-fold (topics fitted on one half of the cells, scored on the other half); the "
    "contrast is the probability that a held-out target cell is better explained by the "
    "contrastive topics than a held-out background cell (0.5 = no difference); the chosen "
    "alpha has the highest contrast among the fits that did not collapse, and when several "
    "alphas are tied (contrasts the held-out cells cannot tell apart) the choice goes to the "
    "middle of the tied band.")


def _alpha_path_section(path, fit):
    """How ``alpha="auto"`` chose alpha: the rule, the choice, the screening table and its
    plot (:func:`bcnmf.pl.alpha_path`)."""
    import pandas as pd

    if path is None:
        return ""
    path = path if isinstance(path, pd.DataFrame) else pd.DataFrame(
        {k: np.asarray(to_numpy(v)) for k, v in path.items()})
    esc = html.escape
    several_k = "n_components" in path.columns and path["n_components"].nunique() > 1
    chosen = pl._flags(path["chosen"] if "chosen" in path.columns else None, len(path), False)
    counted = pl._flags(path["counted"] if "counted" in path.columns else None, len(path),
                        True)
    parts = ['<h2 id="alpha-path">How alpha was chosen</h2>', f"<p>{esc(_ALPHA_RULE)}"]
    if several_k:
        parts.append(" With n_components = \"auto\" every number of topics was screened the "
                     "same way and the one whose best contrast is highest was kept (ties: "
                     "fewer topics).")
    parts.append("</p>")
    alpha = fit.get("alpha_")
    if not _is_number(alpha) and chosen.any():
        alpha = float(path["alpha"].to_numpy(float)[np.flatnonzero(chosen)[0]])
    if _is_number(alpha):
        what = f"alpha = {float(alpha):g}"
        if several_k and chosen.any():
            what += f", n_components = {int(path['n_components'].to_numpy()[chosen][0])}"
        contrast = (f" (contrast {float(path['contrast'].to_numpy(float)[chosen][0]):.3f})"
                    if chosen.any() and "contrast" in path.columns else "")
        parts.append(f'<p id="alpha-chosen">Chosen: {esc(what)}{esc(contrast)}, on the '
                     "relative scale.</p>")
    parts.append(_img(_figure_png(lambda ax: pl.alpha_path(path, ax=ax), (6.4, 3.6)),
                      "held-out contrast per screened alpha, the chosen alpha marked"))
    columns = [c for c in _PATH_COLUMNS if c in path.columns
               and (c != "n_components" or several_k)]
    rows = [list(r) for r in path[columns].itertuples(index=False)]
    classes = ["chosen" if c else ("" if ok else "collapsed")
               for c, ok in zip(chosen, counted)]
    parts.append('<div class="wide">' + _table(
        rows, columns, table_id="alpha_path", row_class=classes,
        formats={i: _PATH_COLUMNS[c] for i, c in enumerate(columns)}) + "</div>")
    if not counted.all():
        parts.append('<p class="note">Grey rows: the screening fit collapsed (its topics '
                     "explain much less of the target than at the best alpha); the rule does "
                     "not choose them.</p>")
    return "".join(parts)


def _mean_sd(values):
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "nan"
    return f"{v.mean():.3f} ± {(v.std(ddof=1) if v.size > 1 else 0.0):.3f}"


def _comparison_section(comparison):
    if comparison is None:
        return ""
    rows = [[method, _mean_sd(group["ari_raw"]), _mean_sd(group["ari_norm"]), len(group)]
            for method, group in comparison.groupby("method", sort=False)]
    return ('<h2>Comparison against labels</h2><p class="note">Adjusted Rand index of KMeans '
            "clusters of the target codes against labels never used in fitting (mean ± sd "
            "over seeds).</p>" +
            _table(rows, ["method", "ARI raw", "ARI normalised", "fits"], table_id="ari"))


def render_report(*, params, history, components, feature_names, target_codes=None,
                  background_codes=None, fit=None, inputs=None, alpha_path=None,
                  enrichment=None, selection=None, selection_best=None, comparison=None,
                  warnings=(), title="bcNMF report", n_top=10) -> str:
    """The report as one HTML string.

    Parameters
    ----------
    params : dict
        Estimator parameters (``get_params()``).
    history : dict of array
        ``"target"``, ``"background"``, ``"objective"`` per sweep (``history_``).
    components : ndarray of shape (n_components, n_features)
    feature_names : sequence of str
    target_codes, background_codes : ndarray of shape (n_cells, n_components), optional
        Draw topic usage in target vs background when both are given.
    fit : dict, optional
        Fitted scalars (``n_iter_``, ``alpha_raw_``, ``objective_`` ...).
    inputs : dict, optional
        Description of the inputs (paths, shapes).
    alpha_path : pandas.DataFrame or dict of array, optional
        The screening table of ``alpha="auto"`` (``alpha_path_``, or ``alpha_path.csv``):
        shown with its plot in a section "How alpha was chosen".
    enrichment : pandas.DataFrame, optional
        Topic statistics (``bcnmf.topic_enrichment`` schema), indexed by topic.
    selection : pandas.DataFrame, optional
        Model-selection table (``SelectionResult.table``); ``selection_best`` the chosen
        ``{"n_components", "alpha"}``.
    comparison : pandas.DataFrame, optional
        Per-fit adjusted Rand indices (columns method, seed, ari_raw, ari_norm).
    warnings : sequence of str
    title : str
    n_top : int, default=10
    """
    components = np.asarray(to_numpy(components))  # torch tensors of device fits too
    target_codes, background_codes = to_numpy(target_codes), to_numpy(background_codes)
    names = [str(n) for n in feature_names]
    esc = html.escape
    n_k = components.shape[0]
    parts = [f"<h1>{esc(title)}</h1>",
             f'<p class="note">bcNMF: {n_k} topics over {components.shape[1]} features. '
             f"Written by bcnmf {esc(__version__)}.</p>",
             _parameter_section(params, fit or {}, inputs or {}, alpha_path is not None),
             _alpha_path_section(alpha_path, fit or {})]
    recorded = np.asarray(history.get("iteration", np.arange(
        len(np.asarray(history.get("objective", ()))))))
    sweeps = int(recorded[-1]) if recorded.size else 0
    parts.append(f"<h2>Convergence</h2><p>{sweeps} sweeps; the objective is "
                 "target divergence minus alpha_raw times background divergence.</p>")
    parts.append(_img(_figure_png(lambda ax: pl.loss_history(history, ax=ax), (6.4, 3.4)),
                      "objective, target and background divergence per sweep"))
    if warnings:
        items = "".join(f"<li>{esc(str(w))}</li>" for w in warnings)
        parts.append(f'<p>Warnings raised by the fit(s):</p><ul class="warn" id="warnings">'
                     f"{items}</ul>")
    parts.append(_topics_section(components, names, n_top, enrichment))
    n_rows = len(pl._top_rows(components, range(n_k), n_top))
    parts.append(_img(_figure_png(
        lambda ax: pl.loadings(components, feature_names=names, n_top=n_top, ax=ax),
        (2.0 + 0.55 * n_k, 1.6 + 0.2 * n_rows)), "heatmap of the top features per topic"))
    if target_codes is not None and background_codes is not None:
        parts.append("<h2>Topic usage</h2><p class='note'>Each cell's share of its codes per "
                     "topic, target vs background.</p>")
        parts.append(_img(_figure_png(
            lambda ax: pl.topic_usage(np.asarray(target_codes), background=np.asarray(
                background_codes), normalize=True, ax=ax), (1.5 + 0.8 * n_k, 3.6)),
            "distribution of topic shares in target and background cells"))
    if enrichment is not None:
        parts.append("<h2>Enrichment</h2>")
        parts.append(_img(_figure_png(lambda ax: pl.enrichment_volcano(enrichment, ax=ax),
                                      (5.0, 3.8)), "volcano plot of topic enrichment"))
    if selection is not None:
        parts.append("<h2>Model selection</h2>")
        value = "score" if "score" in selection.columns else selection.columns[-1]
        parts.append(_img(_figure_png(
            lambda ax: pl.selection_grid(selection, value=value, best=selection_best, ax=ax),
            (6.0, 4.0)), "model selection grid"))
        if selection_best:
            parts.append(f"<p>Chosen: n_components = {esc(_fmt(selection_best['n_components']))}"
                         f", alpha = {esc(_fmt(selection_best['alpha']))}.</p>")
            # n_components="auto" / alpha="auto": the K and alpha the model was fitted with
            k = params.get("n_components")
            fitted = (int(k) if _is_number(k) else n_k, _fitted_alpha(params, fit))
            if fitted[1] is not None and (
                    fitted[0] != int(selection_best["n_components"])
                    or not np.isclose(fitted[1], float(selection_best["alpha"]))):
                parts.append(f'<p class="note warn" id="selection-differs">The model in this '
                             f"report was fitted with n_components = {esc(_fmt(fitted[0]))}, "
                             f"alpha = {esc(_fmt(fitted[1]))}, not the chosen values.</p>")
        chosen = (selection["chosen"].to_numpy(bool) if "chosen" in selection.columns
                  else None)
        parts.append('<div class="wide">' + _frame_table(
            selection.set_index(selection.columns[0]), "selection",
            None if chosen is None else ["chosen" if c else "" for c in chosen]) + "</div>")
    parts.append(_comparison_section(comparison))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(p for p in parts if p) + "\n</body></html>\n")


def _need(run_dir, name):
    path = Path(run_dir) / name
    if not path.is_file():
        chosen = Path(run_dir) / "selection.json"
        if chosen.is_file():  # written by `bcnmf select` alone
            try:
                best = json.loads(chosen.read_text(encoding="utf-8"))["best"]
                values = f"-k {best['n_components']} --alpha {best['alpha']:g}"
            except (ValueError, KeyError, TypeError):
                values = "-k K --alpha A"
            raise FileNotFoundError(
                f"{run_dir} holds a model selection but no fitted model ({name} is missing): "
                f"run `bcnmf fit TARGET ... {values} -o {run_dir}` with the chosen values, "
                "then `bcnmf report` shows the fit and the selection table.")
        raise FileNotFoundError(f"{run_dir} is not a bcnmf run folder: {name} is missing "
                                "(write one with `bcnmf fit ... -o DIR`).")
    return path


def read_run(run_dir) -> dict:
    """Read a run folder written by ``bcnmf fit``/``bcnmf demo`` into the keyword arguments
    of :func:`render_report`."""
    import pandas as pd

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"No such run folder: {run_dir}")
    record = json.loads(_need(run_dir, "params.json").read_text(encoding="utf-8"))
    history = pd.read_csv(_need(run_dir, "history.csv"))
    components = pd.read_csv(_need(run_dir, "components.csv"), index_col=0)
    out = {
        "params": {k: v for k, v in record.items()
                   if not k.endswith("_") and k not in ("inputs", "warnings", "bcnmf_version")},
        "fit": {k: v for k, v in record.items() if k.endswith("_")},
        "inputs": record.get("inputs") or {},
        "warnings": record.get("warnings") or [],
        "history": {c: history[c].to_numpy() for c in history.columns},
        "components": components.to_numpy(dtype=float),
        "feature_names": [str(c) for c in components.columns],
    }
    for name in ("target_codes", "background_codes"):
        path = run_dir / f"{name}.csv"
        if path.is_file():
            out[name] = pd.read_csv(path, index_col=0).to_numpy(dtype=float)
    if (run_dir / "alpha_path.csv").is_file():
        out["alpha_path"] = pd.read_csv(run_dir / "alpha_path.csv")
    if (run_dir / "enrichment.csv").is_file():
        out["enrichment"] = pd.read_csv(run_dir / "enrichment.csv", index_col=0)
    if (run_dir / "selection.csv").is_file():
        out["selection"] = pd.read_csv(run_dir / "selection.csv")
        if (run_dir / "selection.json").is_file():
            best = json.loads((run_dir / "selection.json").read_text(encoding="utf-8"))
            out["selection_best"] = best.get("best")
    if (run_dir / "ari.csv").is_file():
        out["comparison"] = pd.read_csv(run_dir / "ari.csv")
    return out


def write_report(run_dir, out=None, *, title=None, n_top=10) -> Path:
    """Write the HTML report of a run folder.

    Parameters
    ----------
    run_dir : str or path-like
        Folder written by ``bcnmf fit`` (``params.json``, ``history.csv``,
        ``components.csv``, codes; optional ``alpha_path.csv``, ``enrichment.csv``,
        ``selection.csv``).
    out : str or path-like, optional
        Report file; default ``run_dir / "report.html"``.
    title : str, optional
    n_top : int, default=10
        Top features listed per topic.

    Returns
    -------
    pathlib.Path
    """
    kwargs = read_run(run_dir)
    if title is None:
        source = kwargs["inputs"].get("target", "")
        title = f"bcNMF report: {Path(source).name}" if source else "bcNMF report"
    text = render_report(**kwargs, title=title, n_top=n_top)
    path = Path(out) if out is not None else Path(run_dir) / REPORT_NAME
    path.write_text(text, encoding="utf-8")
    return path
