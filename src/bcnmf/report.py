"""Self-contained HTML report of a bcNMF run (``bcnmf report OUTDIR``).

One HTML file, no external assets: figures are embedded as base64 PNG, styles inline, no
scripts.  Results come first, then how they were obtained.  Every section is a
``<section>`` with a stable id (what a reader can link to and what the tests look for):

- ``fit-warnings``: warnings raised by the fit(s), when there were any;
- ``enrichment``: topic enrichment statistics (table ``enrichment-table``, volcano plot);
- ``top-features``: the top features of every topic, enriched topics first and marked (table
  ``topics``, heatmap);
- ``cells``: the cells in the space of the enriched topics, coloured by condition and, with
  labels, by label (figure ``cells-figure``);
- ``gene-sets``: gene-set statistics of the topics (table ``gene-sets-table``);
- ``usage``: topic usage in target vs background;
- ``comparison``: agreement with labels of several methods (table ``ari``; the demo);
- ``alpha-path``: how ``alpha="auto"`` chose alpha (figure ``alpha-curve``, table
  ``alpha_path``);
- ``convergence``: the objective per sweep on log scales (figure ``convergence-figure``);
- ``model-selection``: the model-selection table;
- ``run``: inputs, parameters and fitted scalars.

:func:`render_report` builds the page from arrays and tables; :func:`write_report` reads a
folder written by ``bcnmf fit`` (or ``bcnmf demo``) and writes ``report.html`` into it.
Optional files picked up from the folder (:func:`read_run`): ``alpha_path.csv`` (the
screening table of ``alpha="auto"``, the model's ``alpha_path_``), ``enrichment.csv`` (topic
statistics, one row per topic, first column the topic), ``labels.csv`` (columns ``cell,
label``: a label per target cell, in the order of ``target_codes.csv``), ``gene_sets.csv``
(gene-set statistics, columns ``topic, gene_set, n_genes, set_size, statistic, effect,
p_value, q_value, leading_genes``), ``selection.csv`` (model-selection table) with
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
from .topics import ranked_features

__all__ = ["render_report", "read_run", "write_report", "REPORT_NAME"]

REPORT_NAME = "report.html"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 64em; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em;
     border-bottom: 1px solid #ddd; }
nav#contents { font-size: 0.9em; margin: 0.5em 0 1em 0; }
nav#contents a { margin-right: 1em; white-space: nowrap; }
table { border-collapse: collapse; margin: 0.5em 0 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th { background: #f0f3f7; } td.name, th.name, td.text, th.text { text-align: left; }
td.name { white-space: nowrap; }
figure { margin: 0.5em 0 1em 0; } img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9em; max-width: 56em; }
.note { color: #555; font-size: 0.9em; } .warn { color: #8a4b00; }
tr.enriched td, th.enriched, td.enriched { background: #fff4e5; }
tr.chosen td { background: #e8f4e8; }
tr.collapsed td { color: #888; }
span.mark { color: #b35900; font-weight: bold; }
div.wide { overflow-x: auto; max-width: 100%; }
#enrichment-table, #gene-sets-table { font-size: 0.8em; }
#enrichment-table th, #enrichment-table td { padding: 0.15em 0.35em; }
"""

#: marks an enriched topic in tables and figures
_MARK = "\u2605"
#: columns of the enrichment table shown first, in this order (the rest follow as given)
_ENRICHMENT_FIRST = ("usage_target", "usage_background", "log2_fold_change", "effect_size",
                     "p_value", "q_value", "enriched", "test", "n_samples_target",
                     "n_samples_background")
#: columns of a gene-set table (``gene_sets.csv``)
GENE_SET_COLUMNS = ("topic", "gene_set", "n_genes", "set_size", "statistic", "effect",
                    "p_value", "q_value", "leading_genes")
#: rows of the gene-set table shown in the report (the file holds them all)
_GENE_SET_ROWS = 40


def _figure_png(draw, figsize, ncols=1):
    """Draw with ``draw(ax)`` (``draw(axes)`` for ``ncols > 1``) on an off-screen figure;
    return a base64 PNG data URI."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    draw(axes[0] if ncols == 1 else axes)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(uri, alt, *, figure_id=None, caption=None):
    ident = f' id="{figure_id}"' if figure_id else ""
    text = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure{ident}><img src="{uri}" alt="{html.escape(alt)}">{text}</figure>'


def _section(section_id, title, *parts):
    body = "".join(p for p in parts if p)
    return f'<section id="{section_id}"><h2>{html.escape(title)}</h2>{body}</section>'


def _fmt(v):
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}"
    return str(v)


def _header(name):
    """A column name, escaped, that may wrap after its underscores (narrower tables)."""
    return html.escape(str(name)).replace("_", "_<wbr>")


def _fmt3(v):
    """Numbers to 3 significant digits (statistics tables)."""
    if isinstance(v, (float, np.floating)) and not isinstance(v, (bool, np.bool_)):
        return f"{float(v):.3g}"
    return _fmt(v)


def _table(rows, header, *, table_id=None, row_class=None, formats=None):
    """HTML table from rows of cells (already plain values); the first column is a name.
    ``formats`` maps a column's position to the function that writes its values (default
    :func:`_fmt`); such values stay numbers (right-aligned)."""
    esc = html.escape
    formats = formats or {}
    ident = f' id="{table_id}"' if table_id else ""
    text = [bool(rows) and i < len(rows[0]) and isinstance(rows[0][i], str)
            for i in range(len(header))]  # text columns: their header aligned as they are
    head = "".join(f'<th class="name">{_header(h)}</th>' if i == 0 else
                   f'<th class="text">{_header(h)}</th>' if text[i] else
                   f"<th>{_header(h)}</th>" for i, h in enumerate(header))
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
        where = ('see <a href="#alpha-path">How alpha was chosen</a>' if screened
                 else "no screening table (alpha_path.csv) in this run folder")
        return (f'<p id="alpha-note">alpha chosen without labels (alpha = "auto"): {value}; '
                f"{where}.</p>")
    return ""


def _parameter_section(params, fit, inputs):
    parts = []
    if inputs:
        parts.append(_table(sorted(inputs.items()), ["input", "value"], table_id="inputs"))
    parts.append(_table(sorted(params.items()), ["parameter", "value"], table_id="params"))
    if fit:
        parts.append(_table(sorted(fit.items()), ["fitted", "value"], table_id="fit"))
    return _section("run", "Run: inputs and parameters", *parts)


# ---------------------------------------------------------------------------------------------
# Topics: enrichment, top features, cells in topic space, gene sets
# ---------------------------------------------------------------------------------------------

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


def _shares(codes, components):
    """Each cell's share of its reconstruction carried by every topic (the ``"share"`` usage
    of :func:`bcnmf.topic_usage`): ``c_ik |b_k|_1 / sum_l c_il |b_l|_1``."""
    mass = np.asarray(codes, dtype=float) * np.abs(components).sum(axis=1)[None, :]
    total = mass.sum(axis=1, keepdims=True)
    out = np.zeros_like(mass)
    np.divide(mass, total, out=out, where=total > 0)
    return out


def _topic_order(enrichment, n_k, target_shares=None, background_shares=None):
    """(0-based topics, most enriched first; set of enriched topics; how they were ordered).

    With an enrichment table: enriched topics first, then by q-value, then by effect.
    Without one: by the difference of mean share, target minus background (or by the mean
    share in the target when there is no background)."""
    if enrichment is not None and len(enrichment):
        positions = [_topic_position(t, n_k) for t in enrichment.index]
        q = (enrichment["q_value"].to_numpy(float) if "q_value" in enrichment.columns
             else np.zeros(len(enrichment)))
        effect = (enrichment["effect_size"].to_numpy(float)
                  if "effect_size" in enrichment.columns else np.zeros(len(enrichment)))
        flags = (enrichment["enriched"].to_numpy(bool) if "enriched" in enrichment.columns
                 else np.zeros(len(enrichment), bool))
        rows = sorted((i for i, p in enumerate(positions) if p is not None),
                      key=lambda i: (not flags[i], np.nan_to_num(q[i], nan=np.inf),
                                     -np.nan_to_num(effect[i], nan=-np.inf)))
        order = [positions[i] for i in rows]
        order += [k for k in range(n_k) if k not in order]
        return order, {positions[i] for i in rows if flags[i]}, "enrichment"
    if target_shares is None:
        return list(range(n_k)), set(), "none"
    score = target_shares.mean(axis=0)
    how = "target"
    if background_shares is not None:
        score = score - background_shares.mean(axis=0)
        how = "difference"
    return [int(k) for k in np.argsort(-score, kind="stable")], set(), how


def _topic_name(k, enriched):
    return f"topic {k + 1}" + (f" {_MARK}" if k in enriched else "")


def _enrichment_section(enrichment, n_k):
    if enrichment is None:
        return ""
    esc = html.escape
    order, enriched, _ = _topic_order(enrichment, n_k)
    positions = [_topic_position(t, n_k) for t in enrichment.index]
    rank = {k: r for r, k in enumerate(order)}
    rows_order = sorted(range(len(enrichment)),
                        key=lambda i: rank.get(positions[i], len(order) + i))
    stats = enrichment.iloc[rows_order]
    columns = ([c for c in _ENRICHMENT_FIRST if c in stats.columns]
               + [c for c in stats.columns if c not in _ENRICHMENT_FIRST])
    stats = stats[columns]
    labels = [_topic_name(positions[i], enriched) if positions[i] is not None
              else str(enrichment.index[i]) for i in rows_order]
    flags = [positions[i] in enriched for i in rows_order]
    rows = [[label, *vals] for label, vals in zip(labels, stats.itertuples(index=False))]
    table = '<div class="wide">' + _table(
        rows, ["topic", *columns], table_id="enrichment-table",
        row_class=["enriched" if f else "" for f in flags],
        formats={i + 1: _fmt3 for i in range(len(columns))}) + "</div>"
    test = (str(stats["test"].iloc[0]) if "test" in stats.columns and len(stats) else None)
    units = ""
    if {"n_samples_target", "n_samples_background"} <= set(stats.columns) and len(stats):
        units = (f" ({_fmt(stats['n_samples_target'].iloc[0])} target vs "
                 f"{_fmt(stats['n_samples_background'].iloc[0])} background units)")
    if test == "samples":
        how = (f"Sample-level test{units}: each sample (donor, animal) is a unit, its cells "
               "averaged; the sample labels are permuted between the conditions.")
    elif test == "cells":
        how = (f"Cell-level test{units}: cells are treated as independent. When they come "
               "from a few samples (donors, animals, replicate measurements), these p-values "
               "are too small; the sample-level test (samples= of bcnmf.topic_enrichment) "
               "is the valid one.")
    else:
        how = "Permutation test of the difference of mean usage, target minus background."
    n_enriched = len(enriched)
    intro = (f"<p>{n_enriched} of {n_k} topics enriched in the target (marked {_MARK}, "
             "highlighted): used more in the target than in the background, q-value at most "
             "the threshold. Usage is each cell's share of its reconstruction carried by the "
             f"topic. {esc(how)}</p>"
             '<p class="note">The topics were fitted on these cells, so the p-values treat '
             "a basis chosen to separate the conditions as fixed and are optimistic; "
             "held-out cells give calibrated ones.</p>")
    parts = [intro, table]
    if {"effect_size", "q_value"} <= set(enrichment.columns):
        parts.append(_img(_figure_png(lambda ax: pl.enrichment_volcano(enrichment, ax=ax),
                                      (5.0, 3.8)), "volcano plot of topic enrichment",
                          caption="Effect size (Cohen's d) against the q-value of every topic."))
    return _section("enrichment", "Topic enrichment", *parts)


def _top_features_section(components, names, n_top, order, enriched, has_statistics):
    esc = html.escape
    tops = [[(names[j], float(components[k, j])) for j in order]
            for k, order in enumerate(ranked_features(components, n_top))]
    depth = max((len(t) for t in tops), default=0)
    head = '<th class="name">rank</th>' + "".join(
        f'<th class="text enriched">{esc(_topic_name(k, enriched))}</th>' if k in enriched
        else f'<th class="text">{esc(_topic_name(k, enriched))}</th>' for k in order)
    body = []
    for r in range(depth):
        cells = []
        for k in order:
            cls = "text enriched" if k in enriched else "text"
            if r < len(tops[k]):
                name, value = tops[k][r]
                cells.append(f'<td class="{cls}">{esc(str(name))} ({value:.3g})</td>')
            else:
                cells.append(f'<td class="{cls}"></td>')
        body.append(f'<tr><td class="name">{r + 1}</td>{"".join(cells)}</tr>')
    table = f'<div class="wide"><table id="topics"><tr>{head}</tr>{"".join(body)}</table></div>'
    if has_statistics:
        intro = (f'<p class="note">Topics, enriched first (marked {_MARK}): the {n_top} '
                 "features with the largest loadings of every topic, loading in brackets "
                 "(loadings are the rows of <code>components_</code>).</p>")
        missing = ""
    else:
        intro = (f'<p class="note">The {n_top} features with the largest loadings of every '
                 "topic, loading in brackets (loadings are the rows of "
                 "<code>components_</code>).</p>")
        missing = ('<p class="note">No topic statistics in this run folder '
                   "(enrichment.csv).</p>")
    n_rows = len(pl._top_rows(components, order, n_top))
    heatmap = _img(_figure_png(
        lambda ax: pl.loadings(components, feature_names=names, n_top=n_top, topics=order,
                               ax=ax),
        (2.0 + 0.55 * len(order), 1.6 + 0.2 * n_rows)), "heatmap of the top features per topic",
        caption="Loadings of the same features, each topic scaled to its largest loading.")
    return _section("top-features", "Top features per topic", intro, table, missing, heatmap)


def _check_labels(labels, n_target):
    if labels is None:
        return None
    values = np.asarray(labels).astype(str)
    if values.ndim != 1 or values.shape[0] != n_target:
        raise ValueError(f"labels must hold one label per target cell ({n_target}); got shape "
                         f"{values.shape}.")
    return values


def _cells_coordinates(target_shares, background_shares, order, enriched):
    """(target xy, background xy or None, x label, y label, caption) of the cells plot."""
    chosen = [k for k in order if k in enriched]
    if len(chosen) > 2:
        pooled = (target_shares if background_shares is None
                  else np.vstack([target_shares, background_shares]))[:, chosen]
        centre = pooled.mean(axis=0)
        _, _, vt = np.linalg.svd(pooled - centre, full_matrices=False)
        axes = vt[:2].T
        xy = (pooled - centre) @ axes
        names = ", ".join(str(k + 1) for k in chosen)
        n_t = target_shares.shape[0]
        caption = (f"The first two principal components of the usage of the {len(chosen)} "
                   f"enriched topics ({names}), target and background cells pooled.")
        return (xy[:n_t], None if background_shares is None else xy[n_t:], "PC 1", "PC 2",
                caption)
    pick = (chosen + [k for k in order if k not in chosen])[:2]
    back = None if background_shares is None else background_shares[:, pick]
    if len(chosen) == 2:
        caption = "Usage of the two enriched topics."
    elif len(chosen) == 1:
        caption = ("Usage of the enriched topic and of the next topic in the order of the "
                   "enrichment table.")
    else:
        caption = ("No topic is enriched: usage of the first two topics in the order of the "
                   "enrichment table (smallest q-values), or, without one, of the two topics "
                   "used most in the target relative to the background.")
    return (target_shares[:, pick], back, f"share of {_topic_name(pick[0], enriched)}",
            f"share of {_topic_name(pick[1], enriched)}", caption)


def _draw_cells(axes, xy_t, xy_b, xlabel, ylabel, labels):
    import matplotlib

    axes = axes if isinstance(axes, list) else [axes]
    ax = axes[0]
    if xy_b is not None:
        ax.scatter(xy_b[:, 0], xy_b[:, 1], s=12, alpha=0.6, color=pl._BACKGROUND_COLOUR,
                   label=f"background (n={xy_b.shape[0]})", linewidths=0)
    ax.scatter(xy_t[:, 0], xy_t[:, 1], s=12, alpha=0.6, color=pl._TARGET_COLOUR,
               label=f"target (n={xy_t.shape[0]})", linewidths=0)
    ax.set_title("by condition")
    ax.legend(frameon=False, fontsize="small", markerscale=1.5)
    if labels is not None:
        ax = axes[1]
        if xy_b is not None:
            ax.scatter(xy_b[:, 0], xy_b[:, 1], s=10, color="#d0d0d0", linewidths=0,
                       label=f"background (n={xy_b.shape[0]})")
        groups = list(dict.fromkeys(labels.tolist()))
        # colours other than those of target and background in the left panel
        colours = ([matplotlib.colormaps["tab10"](i) for i in range(2, 10)]
                   if len(groups) <= 8 else
                   [matplotlib.colormaps["tab20"](i % 20) for i in range(len(groups))])
        for i, group in enumerate(groups):
            mask = labels == group
            ax.scatter(xy_t[mask, 0], xy_t[mask, 1], s=12, alpha=0.7, linewidths=0,
                       color=colours[i], label=f"{group} (n={int(mask.sum())})")
        ax.set_title("target cells by label")
        if len(groups) <= 12:
            ax.legend(frameon=False, fontsize="small", markerscale=1.5)
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)


def _cells_section(components, target_codes, background_codes, enrichment, labels):
    if target_codes is None:
        return ""
    n_k = components.shape[0]
    title = "Cells in the space of the enriched topics"
    if n_k < 2:
        return _section("cells", title, '<p class="note">One topic: there is no plane of '
                                          "topics to draw the cells in.</p>")
    t_shares = _shares(target_codes, components)
    b_shares = None if background_codes is None else _shares(background_codes, components)
    order, enriched, how = _topic_order(enrichment, n_k, t_shares, b_shares)
    if enrichment is None:  # the most used topics, not enriched ones: say so
        how_text = {"difference": "the topics whose mean share is highest in the target "
                                  "relative to the background",
                    "target": "the topics with the highest mean share in the target"}[how]
        note = (f'<p class="note">No topic statistics in this run folder (enrichment.csv): '
                f"the axes are {how_text}.</p>")
    else:
        note = ""
    if n_k == 2:  # the two shares add up to 1: draw the codes, the amount of each topic
        t_use = np.asarray(target_codes, dtype=float)
        b_use = None if background_codes is None else np.asarray(background_codes, float)
        unit, what = "code of", (" With two topics the shares add up to one, so the axes are "
                                 "the codes: the amount of each topic in the cell.")
    else:
        t_use, b_use, unit = t_shares, b_shares, "share of"
        what = " Usage is each cell's share of its reconstruction carried by the topic."
    xy_t, xy_b, xlabel, ylabel, caption = _cells_coordinates(t_use, b_use, order, enriched)
    xlabel, ylabel = (label.replace("share of", unit) for label in (xlabel, ylabel))
    ncols = 2 if labels is not None else 1
    caption += what
    if labels is not None:
        caption += " Right: the target cells coloured by their label (never used in fitting)."
    figure = _img(_figure_png(
        lambda axes: _draw_cells(axes, xy_t, xy_b, xlabel, ylabel, labels),
        (4.6 * ncols, 4.0), ncols=ncols),
        "cells in the plane of the most enriched topics, coloured by condition"
        + (" and by label" if labels is not None else ""),
        figure_id="cells-figure", caption=caption)
    return _section("cells", title, note, figure)


def _check_gene_sets(table):
    missing = [c for c in GENE_SET_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"The gene-set table lacks the column(s) {missing}; it needs "
                         f"{list(GENE_SET_COLUMNS)} (bcnmf.topic_gene_sets writes them).")
    return table


def _gene_sets_section(table):
    if table is None:
        return ""
    table = _check_gene_sets(table)
    ordered = table.sort_values(["q_value", "p_value"], kind="stable", na_position="last")
    shown = ordered.iloc[:_GENE_SET_ROWS]
    rows = [[str(r.topic), *[getattr(r, c) for c in GENE_SET_COLUMNS[1:-1]],
             ", ".join(str(r.leading_genes).split(","))]  # a list that can wrap
            for r in shown.itertuples(index=False)]
    q = shown["q_value"].to_numpy(float)
    html_table = '<div class="wide">' + _table(
        rows, list(GENE_SET_COLUMNS), table_id="gene-sets-table",
        row_class=["enriched" if v <= 0.05 else "" for v in q]) + "</div>"
    n_sig = int((table["q_value"].to_numpy(float) <= 0.05).sum())
    intro = (f"<p>{n_sig} of {len(table)} topic-gene-set pairs with q-value at most 0.05 "
             "(highlighted). Sorted by q-value"
             + (f"; the first {_GENE_SET_ROWS} rows are shown, gene_sets.csv holds them all"
                if len(table) > _GENE_SET_ROWS else "") + ".</p>")
    draw = getattr(pl, "gene_sets", None)
    figure = ""
    if draw is not None:
        n_topics = table["topic"].nunique()
        n_rows = min(table["gene_set"].nunique(), 5 * n_topics)
        figure = _img(_figure_png(lambda ax: draw(table, n_top=5, q_threshold=0.05, ax=ax),
                                  (max(5.0, 4.0 + 0.7 * n_topics), max(3.0, 1.6 + 0.32 * n_rows))),
                      "gene sets of the topics",
                      figure_id="gene-sets-figure",
                      caption="The top 5 gene sets of every topic with q-value at most 0.05 "
                              "(dot area: -log10 q; colour: effect).")
    return _section("gene-sets", "Gene sets", intro, figure, html_table)


# ---------------------------------------------------------------------------------------------
# How the fit was obtained: alpha, convergence, selection
# ---------------------------------------------------------------------------------------------

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
    parts = [f"<p>{esc(_ALPHA_RULE)}"]
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
                      "held-out contrast per screened alpha, the chosen alpha marked",
                      figure_id="alpha-curve",
                      caption="Held-out contrast of the screening fits at every alpha; the "
                              "chosen alpha is marked."))
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
    return _section("alpha-path", "How alpha was chosen", *parts)


def _positive(values):
    """Values with the non-positive ones as NaN (gaps on a log axis)."""
    values = np.asarray(values, dtype=float)
    return np.where(values > 0, values, np.nan)


def _draw_convergence(axes, history):
    """Left: target and background divergence per sweep (log y).  Right: the objective's
    distance to its final value relative to the first sweep's (log y)."""
    left, right = axes
    objective = np.asarray(to_numpy(history["objective"]), dtype=float)
    sweeps = np.asarray(history.get("iteration", np.arange(objective.size)), dtype=float)
    for term, colour in (("target", pl._TARGET_COLOUR), ("background", pl._BACKGROUND_COLOUR)):
        if term in history:
            left.plot(sweeps, _positive(to_numpy(history[term])), color=colour, lw=1.5,
                      label=f"{term} divergence")
    left.set_yscale("log")
    left.set_xlabel("sweep")
    left.set_ylabel("divergence")
    left.set_title("the two terms")
    left.legend(frameon=False, fontsize="small")
    if objective.size >= 2:
        gap = np.abs(objective - objective[-1])
        scale = gap[0] if gap[0] > 0 else 1.0
        right.plot(sweeps[:-1], _positive(gap[:-1] / scale), color="#333333", lw=1.5)
        right.set_yscale("log")
    right.set_xlabel("sweep")
    right.set_ylabel("|objective - final| / |first - final|")
    right.set_title("distance to the final objective")


def _convergence_section(history, params, fit):
    recorded = np.asarray(history.get("iteration", np.arange(
        len(np.asarray(history.get("objective", ()))))))
    sweeps = int(recorded[-1]) if recorded.size else 0
    max_iter, tol = params.get("max_iter"), params.get("tol")
    stop = ""
    if _is_number(max_iter) and _is_number(tol) and tol > 0:
        stop = (f" The fit stopped at its tolerance (tol = {_fmt(tol)})."
                if sweeps < int(max_iter) else
                f" The fit ran to max_iter = {int(max_iter)} without meeting its tolerance.")
    text = (f"<p>{sweeps} sweeps; the objective is target divergence minus alpha_raw times "
            f"background divergence.{html.escape(stop)}</p>")
    if "objective" not in history or len(np.asarray(history["objective"])) == 0:
        return _section("convergence", "Convergence", text)
    figure = _img(_figure_png(lambda axes: _draw_convergence(axes, history), (9.6, 3.4),
                              ncols=2),
                  "divergences per sweep and the distance to the final objective, log scales",
                  figure_id="convergence-figure",
                  caption="Log scales. Left: the target and background divergences. Right: "
                          "how far the objective still is from its final value, relative to "
                          "the first sweep; a straight descent means steady convergence.")
    return _section("convergence", "Convergence", text, figure)


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
    return _section(
        "comparison", "Comparison against labels",
        '<p class="note">Adjusted Rand index of KMeans clusters of the target codes against '
        "labels never used in fitting (mean ± sd over seeds).</p>",
        _table(rows, ["method", "ARI raw", "ARI normalised", "fits"], table_id="ari"))


def _selection_section(selection, selection_best, params, fit, n_k):
    if selection is None:
        return ""
    esc = html.escape
    parts = []
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
    chosen = selection["chosen"].to_numpy(bool) if "chosen" in selection.columns else None
    parts.append('<div class="wide">' + _frame_table(
        selection.set_index(selection.columns[0]), "selection",
        None if chosen is None else ["chosen" if c else "" for c in chosen]) + "</div>")
    return _section("model-selection", "Model selection", *parts)


_CONTENTS = (("fit-warnings", "Warnings"), ("enrichment", "Enrichment"),
             ("top-features", "Top features"), ("cells", "Cells"), ("gene-sets", "Gene sets"),
             ("usage", "Usage"), ("comparison", "Comparison"), ("alpha-path", "Alpha"),
             ("convergence", "Convergence"), ("model-selection", "Model selection"),
             ("run", "Parameters"))


def render_report(*, params, history, components, feature_names, target_codes=None,
                  background_codes=None, fit=None, inputs=None, alpha_path=None,
                  enrichment=None, labels=None, gene_sets=None, selection=None,
                  selection_best=None, comparison=None, warnings=(), title="bcNMF report",
                  n_top=10) -> str:
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
        Draw the cells in the space of the enriched topics (target codes) and topic usage
        in target vs background (both).
    fit : dict, optional
        Fitted scalars (``n_iter_``, ``alpha_raw_``, ``objective_`` ...).
    inputs : dict, optional
        Description of the inputs (paths, shapes).
    alpha_path : pandas.DataFrame or dict of array, optional
        The screening table of ``alpha="auto"`` (``alpha_path_``, or ``alpha_path.csv``):
        shown with its plot in a section "How alpha was chosen".
    enrichment : pandas.DataFrame, optional
        Topic statistics (``bcnmf.topic_enrichment`` schema), indexed by topic; the columns
        ``test``, ``n_samples_target`` and ``n_samples_background`` are shown when present.
    labels : array-like of shape (n_target,), optional
        A label per target cell (never used in fitting): the cells are also drawn coloured
        by it.
    gene_sets : pandas.DataFrame, optional
        Gene-set statistics, one row per topic and gene set, with the columns ``topic,
        gene_set, n_genes, set_size, statistic, effect, p_value, q_value, leading_genes``;
        drawn with ``bcnmf.pl.gene_sets`` when the installed version has it.
    selection : pandas.DataFrame, optional
        Model-selection table (``SelectionResult.table``).
    selection_best : dict, optional
        The chosen ``{"n_components": K, "alpha": a}`` of the model selection.
    comparison : pandas.DataFrame, optional
        Per-fit adjusted Rand indices (columns method, seed, ari_raw, ari_norm).
    warnings : sequence of str
        Warnings raised by the fit(s), listed first when there are any.
    title : str
    n_top : int, default=10
        Top features listed per topic.

    Returns
    -------
    str
        The page, one self-contained HTML document.

    Raises
    ------
    ValueError
        If ``labels`` does not hold one label per target cell, or ``gene_sets`` lacks a
        column.
    """
    components = np.asarray(to_numpy(components), dtype=float)  # torch tensors of device fits
    target_codes, background_codes = to_numpy(target_codes), to_numpy(background_codes)
    labels = None if target_codes is None else _check_labels(labels,
                                                              np.shape(target_codes)[0])
    names = [str(n) for n in feature_names]
    esc = html.escape
    fit = fit or {}
    n_k = components.shape[0]
    t_shares = None if target_codes is None else _shares(target_codes, components)
    b_shares = None if background_codes is None else _shares(background_codes, components)
    order, enriched, _ = _topic_order(enrichment, n_k, t_shares, b_shares)
    if enrichment is None:
        order = list(range(n_k))
    summary = (f"bcNMF: {n_k} topics over {components.shape[1]} features"
               + (f"; {len(enriched)} enriched in the target" if enrichment is not None
                  else "") + f". Written by bcnmf {esc(__version__)}.")
    sections = []
    if warnings:
        items = "".join(f"<li>{esc(str(w))}</li>" for w in warnings)
        sections.append(_section("fit-warnings", "Warnings",
                                 f'<ul class="warn" id="warnings">{items}</ul>'))
    sections.append(_enrichment_section(enrichment, n_k))
    sections.append(_top_features_section(components, names, n_top, order, enriched,
                                          enrichment is not None))
    sections.append(_cells_section(components, target_codes, background_codes, enrichment,
                                   labels))
    sections.append(_gene_sets_section(gene_sets))
    if target_codes is not None and background_codes is not None:
        sections.append(_section(
            "usage", "Topic usage",
            "<p class='note'>Each cell's share of its codes per topic, target vs "
            "background.</p>",
            _img(_figure_png(
                lambda ax: pl.topic_usage(np.asarray(target_codes), background=np.asarray(
                    background_codes), normalize=True, ax=ax), (max(4.8, 1.5 + 0.8 * n_k), 3.6)),
                "distribution of topic shares in target and background cells")))
    sections.append(_comparison_section(comparison))
    sections.append(_alpha_path_section(alpha_path, fit))
    sections.append(_convergence_section(history, params, fit))
    sections.append(_selection_section(selection, selection_best, params, fit, n_k))
    sections.append(_parameter_section(params, fit, inputs or {}))
    present = [s for s in sections if s]
    links = "".join(f'<a href="#{sid}">{esc(label)}</a>' for sid, label in _CONTENTS
                    if any(s.startswith(f'<section id="{sid}">') for s in present))
    parts = [f"<h1>{esc(title)}</h1>", f'<p class="note">{summary}</p>',
             _alpha_note(params, fit, alpha_path is not None),
             f'<nav id="contents">{links}</nav>', *present]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
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
    of :func:`render_report`.

    Parameters
    ----------
    run_dir : str or path-like
        The run folder (``params.json``, ``history.csv``, ``components.csv`` and the optional
        files listed in :mod:`bcnmf.report`).

    Returns
    -------
    dict
        Keyword arguments of :func:`render_report` (without ``title`` and ``n_top``).

    Raises
    ------
    FileNotFoundError
        If the folder does not exist or lacks a required file.
    ValueError
        If ``labels.csv`` has no ``label`` column or ``gene_sets.csv`` lacks a column.
    """
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
    if (run_dir / "labels.csv").is_file():
        table = pd.read_csv(run_dir / "labels.csv", index_col=0, dtype=str,
                            keep_default_na=False)
        if "label" not in table.columns:
            raise ValueError(f"{run_dir / 'labels.csv'} needs a column 'label' (columns: cell, "
                             f"label); got columns {list(table.columns)}.")
        out["labels"] = table["label"].to_numpy()
    if (run_dir / "gene_sets.csv").is_file():
        text_columns = ("topic", "gene_set", "leading_genes")  # "NA" is a name, "" no genes
        numbers = [c for c in GENE_SET_COLUMNS if c not in text_columns]
        out["gene_sets"] = _check_gene_sets(pd.read_csv(
            run_dir / "gene_sets.csv", dtype={c: str for c in text_columns},
            keep_default_na=False, na_values={c: ["", "nan", "NaN", "NA"] for c in numbers}))
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
        ``labels.csv``, ``gene_sets.csv``, ``selection.csv``, ``ari.csv``).
    out : str or path-like, optional
        Report file; default ``run_dir / "report.html"``.
    title : str, optional
    n_top : int, default=10
        Top features listed per topic.

    Returns
    -------
    pathlib.Path
        The report file written.
    """
    kwargs = read_run(run_dir)
    if title is None:
        source = kwargs["inputs"].get("target", "")
        title = f"bcNMF report: {Path(source).name}" if source else "bcNMF report"
    text = render_report(**kwargs, title=title, n_top=n_top)
    path = Path(out) if out is not None else Path(run_dir) / REPORT_NAME
    path.write_text(text, encoding="utf-8")
    return path
