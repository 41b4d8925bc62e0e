"""Plots of bcNMF results (``bcnmf.pl``), scanpy style.

Every function draws into ``ax`` when given (else a new figure) and returns the matplotlib
``Axes``. The first argument is what is plotted:

- an AnnData annotated by :func:`bcnmf.tl.bcnmf` (read from ``uns``/``varm``/``obsm`` under
  ``key``), a fitted :class:`bcnmf.BCNMF`, or a :class:`bcnmf.FactorizationResult`, for
  :func:`loss_history`, :func:`loadings` and :func:`topic_usage`;
- a table (pandas DataFrame) for :func:`enrichment_volcano` (topic statistics: columns
  ``effect_size``, ``q_value``, optionally ``enriched``), :func:`selection_grid`
  (model-selection table: ``n_components``, ``alpha`` and a score column) and
  :func:`gene_sets` (the table of :func:`bcnmf.topic_gene_sets`);
- a BCNMF fitted with ``alpha="auto"`` (its ``alpha_path_``), an AnnData annotated by such a
  fit, or the screening table itself (dict of arrays, or the DataFrame read from a run
  folder's ``alpha_path.csv``) for :func:`alpha_path`.

Embeddings of the codes use scanpy itself: ``sc.pl.embedding(adata, basis="bcnmf")``.
matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .core.backend import to_numpy
from .topics import feature_labels, ranked_features, topic_indices, topic_labels

__all__ = ["loss_history", "loadings", "topic_usage", "enrichment_volcano", "selection_grid",
           "alpha_path", "gene_sets"]

_TARGET_COLOUR, _BACKGROUND_COLOUR = "#1f77b4", "#ff7f0e"


def _new_ax(ax, figsize):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def _is_anndata(data):
    return all(hasattr(data, a) for a in ("obsm", "varm", "uns", "var_names"))


def _record(adata, key):
    if key not in adata.uns:
        raise KeyError(f"adata.uns has no {key!r} entry: run bcnmf.tl.bcnmf(adata, ...) first "
                       "(or pass key= the key_added used).")
    return adata.uns[key]


def _history(data, key):
    if _is_anndata(data):
        return _record(data, key)["history"]
    if isinstance(data, Mapping):
        return data
    for attr in ("history_", "history"):
        if hasattr(data, attr):
            return getattr(data, attr)
    raise TypeError("Expected an AnnData annotated by bcnmf.tl.bcnmf, a fitted BCNMF, a "
                    f"FactorizationResult or a history dict; got {type(data).__name__}.")


def _components(data, key, feature_names):
    """(components (K, F), feature names (F,))."""
    names = None
    if _is_anndata(data):
        if key not in data.varm:
            raise KeyError(f"adata.varm has no {key!r}: run bcnmf.tl.bcnmf(adata, ...) first.")
        comps = np.asarray(data.varm[key]).T
        names = np.asarray(data.var_names)
    elif hasattr(data, "components_"):  # a fitted estimator
        comps = np.asarray(to_numpy(data.components_))  # torch fits (device=...) too
        names = getattr(data, "feature_names_in_", None)
    elif hasattr(data, "components"):  # a FactorizationResult
        comps = np.asarray(to_numpy(data.components))
    else:
        comps = np.asarray(to_numpy(data))
    if comps.ndim != 2:
        raise ValueError(f"Loadings must be 2-D (topics x features); got shape {comps.shape}.")
    if feature_names is not None:
        names = np.asarray(feature_names)
    if names is None:
        names = np.array(feature_labels(comps.shape[1]))
    if len(names) != comps.shape[1]:
        raise ValueError(f"{len(names)} feature names for {comps.shape[1]} features.")
    return comps, np.asarray(names).astype(str)


def _top_rows(components, topics, n_top):
    """Union of the ``n_top`` largest-loading features of ``topics``, grouped by topic."""
    ranked = ranked_features(components, n_top)
    rows = []
    for t in topics:
        rows.extend(int(j) for j in ranked[t] if j not in rows)
    return rows


def loss_history(data, *, key="bcnmf", terms=("objective", "target", "background"),
                 logy=False, ax=None):
    """Optimised objective and its two terms per sweep.

    Parameters
    ----------
    data : AnnData, BCNMF, FactorizationResult or dict
        Anything carrying the fit's ``history`` (AnnData: ``uns[key]["history"]``).
    key : str, default="bcnmf"
        AnnData key (``key_added`` of :func:`bcnmf.tl.bcnmf`).
    terms : sequence of {"objective", "target", "background"}
        Which curves to draw: the objective ``target - alpha_raw * background`` and the
        target and background divergences.
    logy : bool, default=False
        Logarithmic y axis (only for positive curves, e.g. ``terms=("target",)``).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    history = _history(data, key)
    unknown = [t for t in terms if t not in history]
    if unknown or not terms:
        raise ValueError(f"terms must be a non-empty subset of {sorted(history)}; got "
                         f"{list(terms)}.")
    ax = _new_ax(ax, (5.0, 3.2))
    for term in terms:
        values = np.asarray(to_numpy(history[term]), dtype=float)
        sweeps = np.asarray(history.get("iteration", np.arange(values.size)))
        ax.plot(sweeps, values, label=term, lw=1.5)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("sweep")
    ax.set_ylabel("divergence")
    ax.set_title("bcNMF convergence")
    ax.legend(frameon=False)
    return ax


def loadings(data, *, key="bcnmf", n_top=10, topics=None, feature_names=None, scale="topic",
             cmap="Reds", ax=None):
    """Heatmap of the top features of each topic (features x topics).

    Rows are the union of every shown topic's ``n_top`` features with the largest loadings,
    grouped by topic in rank order; columns are topics.

    Parameters
    ----------
    data : AnnData, BCNMF, FactorizationResult or ndarray of shape (n_components, n_features)
    key : str, default="bcnmf"
    n_top : int, default=10
    topics : sequence of int or str, or bool mask, optional
        Topics to show (default all): 0-based indices, labels such as ``"topic 2"`` (the
        index of :func:`bcnmf.topic_enrichment`) or a boolean mask
        (:func:`bcnmf.topics.topic_indices`).
    feature_names : sequence of str, optional
        Overrides the names found in ``data``.
    scale : {"topic", "none"}, default="topic"
        ``"topic"`` divides each topic's loadings by its largest one.
    cmap : str, default="Reds"
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    comps, names = _components(data, key, feature_names)
    if scale not in ("topic", "none"):
        raise ValueError(f"scale must be 'topic' or 'none'; got {scale!r}.")
    shown = topic_indices(topics, comps.shape[0])
    rows = _top_rows(comps, shown, n_top)
    if not rows:
        raise ValueError("Every loading of the topics shown is zero: there is no feature to "
                         "show (a collapsed fit; see the model's warnings).")
    values = comps[np.ix_(shown, rows)].T.astype(float)
    if scale == "topic":
        peak = values.max(axis=0, keepdims=True)
        values = values / np.where(peak > 0, peak, 1.0)
    ax = _new_ax(ax, (1.2 + 0.6 * len(shown), 1.0 + 0.22 * len(rows)))
    image = ax.imshow(values, aspect="auto", cmap=cmap, interpolation="nearest",
                      vmin=0.0)
    labels = topic_labels(comps.shape[0])
    ax.set_xticks(np.arange(len(shown)), [labels[t] for t in shown], rotation=90)
    ax.set_yticks(np.arange(len(rows)), names[rows], fontsize="small")
    ax.set_title("top features per topic")
    ax.figure.colorbar(image, ax=ax, label="loading / topic max" if scale == "topic"
                       else "loading", shrink=0.6)
    return ax


def _usage_codes(data, key, background, groupby):
    """(target codes, background codes, number of topics)."""
    if _is_anndata(data):
        rec = _record(data, key)
        codes = np.asarray(data.obsm[f"X_{key}"])
        if background is not None and _is_anndata(background):
            return codes, np.asarray(background.obsm[f"X_{key}"])
        groupby = groupby if groupby is not None else rec.get("groupby")
        values = background if background is not None else rec.get("background")
        if groupby is None or values is None:
            raise ValueError("This AnnData was fitted against a separate background AnnData: "
                             "pass it as background=, or pass groupby= and background= values.")
        values = [values] if isinstance(values, str) else [str(v) for v in values]
        is_bg = data.obs[groupby].astype(str).isin(values).to_numpy()
        return codes[~is_bg], codes[is_bg]
    if hasattr(data, "codes") and hasattr(data, "background_codes"):
        return np.asarray(to_numpy(data.codes)), np.asarray(to_numpy(data.background_codes))
    codes = np.asarray(to_numpy(data))
    if background is None:
        raise ValueError("Pass the background codes as background= when data are codes.")
    return codes, np.asarray(to_numpy(background))


def _draw_groups(ax, groups, positions, colour, kind):
    if kind == "box":
        parts = ax.boxplot(groups, positions=positions, widths=0.7, patch_artist=True,
                           showfliers=False)
        for box in parts["boxes"]:
            box.set_facecolor(colour)
            box.set_alpha(0.7)
        return
    spread = [g for g, p in zip(groups, positions) if g.size > 1 and np.ptp(g) > 0]
    pos = [p for g, p in zip(groups, positions) if g.size > 1 and np.ptp(g) > 0]
    if spread:
        parts = ax.violinplot(spread, positions=pos, widths=0.8, showmedians=True)
        for body in parts["bodies"]:
            body.set_facecolor(colour)
            body.set_alpha(0.7)
    for g, p in zip(groups, positions):  # constant groups: a tick at their value
        if g.size and (g.size == 1 or np.ptp(g) == 0):
            ax.plot([p - 0.3, p + 0.3], [g[0], g[0]], color=colour, lw=2)


def topic_usage(data, *, key="bcnmf", background=None, groupby=None, topics=None,
                kind="violin", normalize=False, ax=None):
    """Distribution of each topic's codes in target vs background cells.

    Parameters
    ----------
    data : AnnData, FactorizationResult or ndarray of shape (n_target, n_components)
        AnnData annotated by :func:`bcnmf.tl.bcnmf`: target and background cells are told
        apart as in the fit (``uns[key]``), or by ``groupby``/``background`` when given.
        An array: the target codes.
    key : str, default="bcnmf"
    background : AnnData, value(s) or ndarray, optional
        Background AnnData (two-object fits), background value(s) of ``obs[groupby]``, or
        background codes (when ``data`` is an array).
    groupby : str, optional
    topics : sequence of int or str, or bool mask, optional
        Topics to show (default all): 0-based indices, labels such as ``"topic 2"`` (the
        index of :func:`bcnmf.topic_enrichment`) or a boolean mask
        (:func:`bcnmf.topics.topic_indices`).
    kind : {"violin", "box"}, default="violin"
    normalize : bool, default=False
        Plot each cell's share of its codes (rows L1-normalised) instead of raw codes.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    if kind not in ("violin", "box"):
        raise ValueError(f"kind must be 'violin' or 'box'; got {kind!r}.")
    target, back = _usage_codes(data, key, background, groupby)
    if target.ndim != 2 or back.ndim != 2 or target.shape[1] != back.shape[1]:
        raise ValueError(f"Target and background codes must be 2-D with the same number of "
                         f"topics; got {target.shape} and {back.shape}.")
    if normalize:
        from .metrics import l1_normalize_rows

        target, back = l1_normalize_rows(target), l1_normalize_rows(back)
    n = target.shape[1]
    shown = topic_indices(topics, n)
    ax = _new_ax(ax, (1.0 + 0.9 * len(shown), 3.2))
    base = np.arange(len(shown)) * 3.0
    _draw_groups(ax, [target[:, t] for t in shown], base, _TARGET_COLOUR, kind)
    _draw_groups(ax, [back[:, t] for t in shown], base + 1.0, _BACKGROUND_COLOUR, kind)
    labels = topic_labels(n)
    ax.set_xticks(base + 0.5, [labels[t] for t in shown], rotation=90)
    ax.set_ylabel("share of codes" if normalize else "code")
    ax.set_title("topic usage: target vs background")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=_TARGET_COLOUR, label=f"target (n={target.shape[0]})"),
                       Patch(color=_BACKGROUND_COLOUR,
                             label=f"background (n={back.shape[0]})")],
              frameon=False, fontsize="small")
    return ax


def _need_columns(table, columns, what):
    cols = getattr(table, "columns", None)
    if cols is None:
        raise TypeError(f"{what} expects a pandas DataFrame; got {type(table).__name__}.")
    missing = [c for c in columns if c not in cols]
    if missing:
        raise KeyError(f"{what}: the table lacks column(s) {missing}; it has {list(cols)}.")


def enrichment_volcano(table, *, x="effect_size", y="q_value", q_threshold=0.05, label=True,
                       ax=None):
    """Volcano plot of topic enrichment: effect against ``-log10`` q-value.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per topic (index: topic), e.g. from ``bcnmf.topic_enrichment``: needs the
        columns ``x`` and ``y``; the boolean column ``enriched``, when present, colours the
        points (else ``y <= q_threshold`` and ``x > 0``).
    x : str, default="effect_size"
        Effect column (``"log2_fold_change"`` also makes sense).
    y : str, default="q_value"
        Column of q-values (or p-values) in [0, 1].
    q_threshold : float, default=0.05
        The significance threshold on column ``y`` (the ``q_threshold`` of
        :func:`bcnmf.topic_enrichment`), drawn as a horizontal line at
        ``-log10(q_threshold)``.
    label : bool, default=True
        Write each topic's index next to its point.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    _need_columns(table, [x, y], "enrichment_volcano")
    effect = table[x].to_numpy(dtype=float)
    q = table[y].to_numpy(dtype=float)
    if np.any((q < 0) | (q > 1)):
        raise ValueError(f"Column {y!r} must hold probabilities in [0, 1].")
    positive = q[q > 0]
    floor = positive.min() if positive.size else 1e-300
    height = -np.log10(np.clip(q, floor, 1.0))
    if "enriched" in table.columns:
        hit = table["enriched"].to_numpy(dtype=bool)
    else:
        hit = (q <= q_threshold) & (effect > 0)
    ax = _new_ax(ax, (4.5, 3.6))
    ax.scatter(effect[~hit], height[~hit], c="#999999", s=30, label="not enriched")
    ax.scatter(effect[hit], height[hit], c="#d62728", s=36, label="enriched")
    ax.axhline(-np.log10(q_threshold), color="#555555", lw=0.8, ls="--")
    ax.axvline(0.0, color="#555555", lw=0.8, ls=":")
    if label:
        for name, ex, hy in zip(table.index, effect, height):
            ax.annotate(str(name), (ex, hy), xytext=(3, 3), textcoords="offset points",
                        fontsize="small")
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(f"-log10 {y.replace('_', ' ')}")
    ax.set_title("topic enrichment in the target")
    ax.legend(frameon=False, fontsize="small")
    return ax


def selection_grid(table, *, value="score", best=None, annotate=True, cmap="viridis", ax=None):
    """Heatmap of a model-selection criterion over the (n_components, alpha) grid.

    Parameters
    ----------
    table : pandas.DataFrame or SelectionResult
        One row per candidate, e.g. ``select_model(...).table``: columns ``n_components``,
        ``alpha`` and ``value`` (repeated candidates are averaged). A
        :class:`~bcnmf.selection.SelectionResult` gives its ``table``, and its ``best``
        when ``best`` is not given.
    value : str, default="score"
        Column to show.
    best : mapping, optional
        ``{"n_components": K, "alpha": a}`` of the chosen candidate (e.g.
        ``SelectionResult.best``), outlined.
    annotate : bool, default=True
        Write the value in each cell.
    cmap : str, default="viridis"
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    if hasattr(table, "table") and hasattr(table, "best"):  # a SelectionResult
        best = table.best if best is None else best
        table = table.table
    _need_columns(table, ["n_components", "alpha", value], "selection_grid")
    grid = table.pivot_table(index="n_components", columns="alpha", values=value,
                             aggfunc="mean").sort_index().sort_index(axis=1)
    values = grid.to_numpy(dtype=float)
    ax = _new_ax(ax, (1.5 + 0.8 * grid.shape[1], 1.2 + 0.5 * grid.shape[0]))
    image = ax.imshow(values, aspect="auto", cmap=cmap, interpolation="nearest")
    ax.set_xticks(np.arange(grid.shape[1]), [f"{a:g}" for a in grid.columns])
    ax.set_yticks(np.arange(grid.shape[0]), [str(k) for k in grid.index])
    ax.set_xlabel("alpha")
    ax.set_ylabel("n_components")
    ax.set_title(f"model selection: {value}")
    if annotate:
        finite = values[np.isfinite(values)]
        middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                if np.isfinite(values[i, j]):
                    ax.text(j, i, f"{values[i, j]:.3g}", ha="center", va="center",
                            fontsize="small",
                            color="white" if values[i, j] < middle else "black")
    if best is not None:
        from matplotlib.patches import Rectangle

        try:
            i = list(grid.index).index(best["n_components"])
            j = [float(a) for a in grid.columns].index(float(best["alpha"]))
        except (KeyError, ValueError):
            raise ValueError(f"best={best!r} is not a candidate of the table.") from None
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2.5))
    ax.figure.colorbar(image, ax=ax, label=value, shrink=0.8)
    return ax


_PATH_COLUMNS = ("alpha", "contrast")


def _flags(values, n, default):
    """A boolean column of an alpha path (``True``/``False`` strings of a csv read without
    pandas' bool parsing too); ``default`` when the column is missing."""
    if values is None:
        return np.full(n, default, dtype=bool)
    values = np.asarray(values)
    if values.dtype.kind in "USO":
        return np.array([str(v).strip().lower() in ("true", "1", "1.0") for v in values])
    return values.astype(bool)


def _alpha_path_table(data, key):
    """The screening table of an automatic alpha as a dict of equal-length arrays."""
    if _is_anndata(data):
        rec = _record(data, key)
        table = rec.get("alpha_path")
        if table is None:
            raise ValueError(f"adata.uns[{key!r}] has no alpha_path: the fit was fitted with a "
                             "fixed alpha, nothing was chosen (fit with alpha='auto').")
    elif hasattr(data, "get_params") and hasattr(data, "fit"):  # an estimator
        if not hasattr(data, "alpha_"):
            raise ValueError(f"This {type(data).__name__} is not fitted yet: fit it with "
                             "alpha='auto' first.")
        table = getattr(data, "alpha_path_", None)
        if table is None:
            raise ValueError(f"This {type(data).__name__} was fitted with a fixed alpha "
                             f"({data.alpha_:g}), nothing was chosen: fit with alpha='auto' to "
                             "screen alphas.")
    elif hasattr(data, "columns") and hasattr(data, "to_dict"):  # a DataFrame
        table = {str(c): data[c].to_numpy() for c in data.columns}
    elif isinstance(data, Mapping):
        table = data
    else:
        raise TypeError("Expected a BCNMF fitted with alpha='auto', an AnnData annotated by "
                        "such a fit, or its alpha_path_ table (dict of arrays or DataFrame); "
                        f"got {type(data).__name__}.")
    missing = [c for c in _PATH_COLUMNS if c not in table]
    if missing:
        raise KeyError(f"alpha_path: the table lacks column(s) {missing}; it has "
                       f"{sorted(table)}.")
    table = {str(k): np.asarray(to_numpy(v)) for k, v in table.items()}
    lengths = {k: v.shape[0] if v.ndim else 1 for k, v in table.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"alpha_path: the table's columns differ in length: {lengths}.")
    n = lengths["alpha"]
    if n == 0:
        raise ValueError("alpha_path: the table is empty.")
    alpha = table["alpha"].astype(float)
    if np.any(~np.isfinite(alpha) | (alpha <= 0)):
        raise ValueError("alpha_path: alphas must be positive (the x axis is logarithmic).")
    return {
        "n_components": (table["n_components"].astype(int) if "n_components" in table
                         else np.zeros(n, dtype=int)),
        "alpha": alpha,
        "contrast": table["contrast"].astype(float),
        "stability": (table["stability"].astype(float) if "stability" in table else None),
        "counted": _flags(table.get("counted"), n, True),
        "chosen": _flags(table.get("chosen"), n, False),
    }, "n_components" in table


def alpha_path(data, *, key="bcnmf", stability=False, ax=None):
    """How ``alpha="auto"`` chose alpha: the held-out contrast at every screened alpha.

    One line per number of topics (several with ``n_components="auto"``), the chosen alpha
    marked with a star, alphas the rule could not choose (their fit collapsed:
    ``counted=False``) drawn hollow and grey, and chance (contrast 0.5: the topics explain
    held-out target and background cells alike) as a dashed line. The x axis (alpha, on the
    relative scale) is logarithmic.

    Parameters
    ----------
    data : BCNMF, AnnData, dict of array or pandas.DataFrame
        A BCNMF fitted with ``alpha="auto"`` (its ``alpha_path_``), an AnnData annotated by
        :func:`bcnmf.tl.bcnmf` with ``alpha="auto"`` (``uns[key]["alpha_path"]``), or the
        table itself: a dict of equal-length arrays or a DataFrame (e.g.
        ``pandas.read_csv("OUTDIR/alpha_path.csv")``) with the columns ``alpha`` and
        ``contrast``, and optionally ``n_components``, ``stability``, ``counted`` and
        ``chosen``.
    key : str, default="bcnmf"
        AnnData key (``key_added`` of :func:`bcnmf.tl.bcnmf`).
    stability : bool, default=False
        Also draw the stability (mean matched cosine similarity of the topics fitted on the
        two halves of the cells) as dotted lines on a second y axis, on the right.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        The Axes of the contrast (the stability axis, when drawn, is its twin).

    Raises
    ------
    ValueError
        When the model was fitted with a fixed alpha (``alpha_path_`` is None): nothing was
        chosen.

    Examples
    --------
    >>> import numpy as np
    >>> path = {"alpha": np.array([0.5, 1.0, 2.0]), "contrast": np.array([0.61, 0.7, 0.66]),
    ...         "chosen": np.array([False, True, False])}
    >>> ax = alpha_path(path)
    >>> ax.get_xscale()
    'log'
    """
    path, has_k = _alpha_path_table(data, key)
    if stability and path["stability"] is None:
        raise KeyError("alpha_path: stability=True needs a 'stability' column.")
    ax = _new_ax(ax, (5.0, 3.4))
    ks = np.unique(path["n_components"])
    colours = [f"C{j % 10}" for j in range(len(ks))]
    twin = ax.twinx() if stability else None
    for k, colour in zip(ks, colours):
        rows = np.flatnonzero(path["n_components"] == k)
        rows = rows[np.argsort(path["alpha"][rows], kind="stable")]
        x, y, ok = path["alpha"][rows], path["contrast"][rows], path["counted"][rows]
        label = f"K = {k}" if has_k and len(ks) > 1 else "contrast"
        ax.plot(x, y, "-", color=colour, lw=1.5, label=label, zorder=2)
        ax.scatter(x[ok], y[ok], color=colour, s=22, zorder=3)
        if not ok.all():
            ax.scatter(x[~ok], y[~ok], facecolors="white", edgecolors="#999999", s=30,
                       linewidths=1.2, zorder=3)
        if twin is not None:
            twin.plot(x, path["stability"][rows], ":", color=colour, lw=1.2)
    ax.axhline(0.5, color="#555555", lw=0.8, ls="--", label="chance (0.5)", zorder=1)
    if not path["counted"].all():
        ax.scatter([], [], facecolors="white", edgecolors="#999999", s=30, linewidths=1.2,
                   label="collapsed, not counted")
    chosen = np.flatnonzero(path["chosen"])
    if chosen.size:
        i = int(chosen[0])
        what = f"alpha = {path['alpha'][i]:g}"
        if has_k and len(ks) > 1:
            what += f", K = {path['n_components'][i]}"
        ax.scatter([path["alpha"][i]], [path["contrast"][i]], marker="*", s=180,
                   facecolors="#d62728", edgecolors="black", linewidths=0.6, zorder=4,
                   label=f"chosen: {what}")
    ax.set_xscale("log")
    alphas = np.unique(path["alpha"])
    from matplotlib.ticker import NullLocator

    ax.set_xticks(alphas, [f"{a:g}" for a in alphas])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("alpha (relative)")
    ax.set_ylabel("contrast (held-out)")
    ax.set_title("alpha = 'auto': contrast per screened alpha")
    handles, labels = ax.get_legend_handles_labels()
    if twin is not None:
        from matplotlib.lines import Line2D

        twin.set_ylabel("stability (dotted)")
        handles.append(Line2D([], [], ls=":", color="#555555", lw=1.2))
        labels.append("stability (right axis)")
        # on the twin, drawn last, with a frame: the dotted lines do not cross it
        twin.legend(handles, labels, fontsize="small", framealpha=0.9)
    else:
        ax.legend(handles, labels, frameon=False, fontsize="small")
    return ax


_GENE_SET_COLUMNS = ("topic", "gene_set", "effect", "q_value")


def _gene_set_rows(table, topics, n_top, q_threshold):
    """The sets shown: per topic, its ``n_top`` smallest q-values at or below
    ``q_threshold`` (all sets when none is), ordered by the first topic that shows them."""
    q = table["q_value"].to_numpy(dtype=float)
    significant = bool((q <= q_threshold).any())
    ranked = table.assign(_q=q, _e=-table["effect"].to_numpy(dtype=float))
    if significant:
        ranked = ranked[ranked["_q"] <= q_threshold]
    rows = []
    for topic in topics:
        best = ranked[ranked["_topic"] == topic].sort_values(["_q", "_e", "gene_set"],
                                                             kind="stable").head(n_top)
        rows.extend(s for s in best["gene_set"] if s not in rows)
    return rows, significant


def gene_sets(table, *, n_top=5, q_threshold=0.05, ax=None):
    """Dot plot of the gene sets of every topic: topics across, the top sets down.

    Every dot is one (topic, set) pair of the table: its area grows with ``-log10 q`` and
    its colour is the effect (the AUC of :func:`bcnmf.topic_gene_sets`: 0.5 no enrichment,
    red above, blue below). Dots at or below ``q_threshold`` have a black edge.

    Parameters
    ----------
    table : pandas.DataFrame
        The table of :func:`bcnmf.topic_gene_sets` (or a run folder's ``gene_sets.csv``):
        needs the columns ``topic``, ``gene_set``, ``effect`` (in [0, 1]) and ``q_value``.
    n_top : int, default=5
        Sets shown per topic: its ``n_top`` smallest q-values at or below ``q_threshold``
        (a set shown for one topic is shown for all). When no set of any topic reaches
        ``q_threshold``, the ``n_top`` smallest q-values of every topic are shown and the
        title says so.
    q_threshold : float, default=0.05
        The q-value at or below which a set counts as enriched.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"topic": ["topic 1", "topic 1", "topic 2", "topic 2"],
    ...                       "gene_set": ["A", "B", "A", "B"], "effect": [0.9, 0.5, 0.4, 0.8],
    ...                       "q_value": [1e-4, 0.6, 0.9, 0.01]})
    >>> ax = gene_sets(table)
    >>> [t.get_text() for t in ax.get_yticklabels()]
    ['A', 'B']
    """
    _need_columns(table, _GENE_SET_COLUMNS, "gene_sets")
    if not (isinstance(n_top, (int, np.integer)) and not isinstance(n_top, bool)
            and n_top >= 1):
        raise ValueError(f"n_top must be an int >= 1; got {n_top!r}.")
    if not 0 < q_threshold <= 1:
        raise ValueError(f"q_threshold must be in (0, 1]; got {q_threshold!r}.")
    if len(table) == 0:
        raise ValueError("gene_sets: the table is empty.")
    q = table["q_value"].to_numpy(dtype=float)
    effect = table["effect"].to_numpy(dtype=float)
    if np.any(~(q >= 0) | (q > 1)):
        raise ValueError("Column 'q_value' must hold probabilities in [0, 1].")
    if np.any(~(effect >= 0) | (effect > 1)):
        raise ValueError("Column 'effect' must hold AUCs in [0, 1] (bcnmf.topic_gene_sets).")
    data = table.assign(_topic=table["topic"].astype(str))
    topics = list(dict.fromkeys(data["_topic"]))
    rows, significant = _gene_set_rows(data, topics, int(n_top), q_threshold)
    shown = data[data["gene_set"].isin(rows)]
    x = shown["_topic"].map({t: i for i, t in enumerate(topics)}).to_numpy()
    y = shown["gene_set"].map({s: i for i, s in enumerate(rows)}).to_numpy()
    qs = shown["q_value"].to_numpy(dtype=float)
    positive = q[q > 0]
    floor = positive.min() if positive.size else 1e-300
    height = -np.log10(np.clip(qs, floor, 1.0))
    top = max(float(-np.log10(floor)), 1.0)
    sizes = 12.0 + 228.0 * height / top
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.lines import Line2D

    hit = qs <= q_threshold
    ax = _new_ax(ax, (2.5 + 0.7 * len(topics), 1.4 + 0.32 * len(rows)))
    dots = ax.scatter(x, y, s=sizes, c=shown["effect"].to_numpy(dtype=float), cmap="RdBu_r",
                      norm=TwoSlopeNorm(vcenter=0.5, vmin=0.0, vmax=1.0),
                      edgecolors=np.where(hit[:, None], [[0, 0, 0, 1]], [[0, 0, 0, 0]]),
                      linewidths=0.8)
    ax.set_xticks(np.arange(len(topics)), topics, rotation=45, ha="right")
    ax.set_yticks(np.arange(len(rows)), rows)
    ax.set_xlim(-0.6, len(topics) - 0.4)
    ax.set_ylim(len(rows) - 0.4, -0.6)
    ax.set_xlabel("topic")
    ax.set_title("gene sets per topic" if significant else
                 f"gene sets per topic (none at q <= {q_threshold:g})")
    ax.figure.colorbar(dots, ax=ax, label="effect (AUC)", shrink=0.8)
    marks = sorted({1.0, round(top / 2, 1), round(top, 1)} - {0.0})
    handles = [Line2D([], [], ls="", marker="o", color="#777777",
                      markersize=np.sqrt(12.0 + 228.0 * h / top)) for h in marks]
    ax.legend(handles, [f"{h:g}" for h in marks], title="-log10 q", frameon=False,
              fontsize="small", loc="upper left", bbox_to_anchor=(1.3, 1.0))
    return ax
