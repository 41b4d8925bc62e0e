"""What each topic means: enrichment in the target, top features, background-corrected data.

- :func:`topic_enrichment`: per topic, usage in target vs background, effect sizes, a
  permutation p-value (cells, or with sample labels whole samples, shuffled between target
  and background) with Benjamini-Hochberg q-values and, given labels of the target cells,
  Welch t-tests between the labelled groups;
- :func:`top_features`: the features with the largest loadings per topic, optionally with
  per-feature Welch tests between the labelled groups of target cells;
- :func:`background_corrected`: the target reconstructed from its enriched topics only, and
  the complementary shared part.

Codes are always solved with the fitted basis fixed (:meth:`bcnmf.BCNMF.transform`; the
background under its own model, ``as_background=True``).  Inputs are never modified.

A note on validity: the permutation test treats the basis as fixed.  When the model was
fitted on the same cells, the basis was chosen to separate them, so the p-values are
optimistic (selective inference); for calibrated p-values pass cells that were not used to fit
(for example a held-out split).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._stats import (
    bh_qvalues,
    group_permutation_test,
    permutation_pvalues,
    random_relabel_null,
    welch_greater,
    welch_ttest,
)

__all__ = ["topic_enrichment", "top_features", "background_corrected", "topic_usage",
           "topic_indices", "topic_labels", "feature_labels", "ranked_features",
           "BackgroundCorrected"]

_USAGES = ("share", "codes")


def _check_model(model, what):
    from sklearn.utils.validation import check_is_fitted

    if not hasattr(model, "components_") or not hasattr(model, "transform"):
        raise TypeError(f"{what} needs a fitted bcnmf model (e.g. BCNMF); got "
                        f"{type(model).__name__}.")
    check_is_fitted(model)
    return np.asarray(model.components_)


def topic_labels(k: int) -> list:
    """``["topic 1", ..., "topic k"]``: how the tables, plots and reports name topics."""
    return [f"topic {i + 1}" for i in range(k)]


def feature_labels(n: int) -> list:
    """``["feature_1", ..., "feature_n"]``: the names of features that came without any."""
    return [f"feature_{j + 1}" for j in range(n)]


def ranked_features(basis, n_top) -> list:
    """Per topic (row of ``basis``), the indices of its ``n_top`` largest loadings, largest
    first (ties in feature order); features with zero loading are left out.  ``n_top`` must
    be an int >= 1."""
    if not (isinstance(n_top, (int, np.integer)) and not isinstance(n_top, bool)
            and n_top >= 1):
        raise ValueError(f"n_top must be an int >= 1; got {n_top!r}.")
    basis = np.asarray(basis)
    out = []
    for row in basis:
        order = np.argsort(-row, kind="stable")[:int(n_top)]
        out.append(order[row[order] > 0])
    return out


def topic_indices(topics, k: int) -> list:
    """0-based indices of the topics named by ``topics``, in the order given.

    ``topics`` is None (every topic), 0-based integer indices, the labels of the tables
    (``"topic 1"`` ... ``"topic k"``, the index of :func:`topic_enrichment`), or a boolean
    mask of ``k`` entries (such as ``table["enriched"]``).  Anything else, an index out of
    range, an unknown label or an empty selection raises a ValueError that names what is
    accepted."""
    if topics is None:
        return list(range(k))
    accepted = (f"0-based indices below {k}, labels 'topic 1' ... 'topic {k}', or a "
                f"boolean mask of {k} entries")
    values = np.asarray(getattr(topics, "to_numpy", lambda: topics)())
    if values.dtype == bool:
        if values.shape != (k,):
            raise ValueError(f"topics must be {accepted}; got a boolean mask of shape "
                             f"{values.shape}.")
        out = np.flatnonzero(values).tolist()
    elif values.ndim != 1:
        raise ValueError(f"topics must be {accepted}; got an array of shape {values.shape}.")
    else:
        labels = {name: i for i, name in enumerate(topic_labels(k))}
        out = []
        for t in values.tolist():
            if isinstance(t, str) and t in labels:
                out.append(labels[t])
            elif isinstance(t, int) and not isinstance(t, bool) and 0 <= t < k:
                out.append(t)
            else:
                raise ValueError(f"topics must be {accepted}; got {t!r} in {topics!r}.")
    if not out:
        raise ValueError(f"topics selects no topic; pass {accepted}.")
    return out


def topic_usage(model, X, *, as_background=False, usage="share"):
    """Per-cell usage of every topic.

    Parameters
    ----------
    model : fitted BCNMF
    X : array-like or sparse of shape (n_cells, n_features)
    as_background : bool, default=False
        Solve the codes under the background's model.
    usage : {"share", "codes"}, default="share"
        ``"codes"``: the codes (the amount of the topic, in the data's units); ``"share"``: the
        fraction of the cell's reconstruction carried by the topic,
        ``c_ik |b_k|_1 / sum_l c_il |b_l|_1``, which is comparable between datasets of
        different scales.

    Returns
    -------
    ndarray of shape (n_cells, n_components)
    """
    if usage not in _USAGES:
        raise ValueError(f"usage must be one of {_USAGES}; got {usage!r}.")
    basis = _check_model(model, "topic_usage")
    codes = np.asarray(model.transform(X, as_background=as_background), dtype=np.float64)
    if usage == "codes":
        return codes
    mass = codes * np.abs(basis).sum(axis=1)[None, :]
    total = mass.sum(axis=1, keepdims=True)
    out = np.zeros_like(mass)
    np.divide(mass, total, out=out, where=total > 0)
    return out


def _label_array(labels, n, what="labels"):
    g = np.asarray(labels)
    if g.ndim != 1 or g.shape[0] != n:
        raise ValueError(f"{what} must be 1-D with one label per target cell ({n}); got shape "
                         f"{g.shape}.")
    values = list(dict.fromkeys(g.tolist()))
    if len(values) < 2:
        raise ValueError(f"{what} must hold at least two distinct labels; got {values}.")
    return g, values


def _n_rows(A):
    return A.shape[0] if hasattr(A, "shape") else len(A)


def _sample_labels(samples, n, name, cells):
    """Integer codes (0..S-1) and the distinct labels of one sample label per cell."""
    import pandas as pd

    arr = np.asarray(samples, dtype=object)
    if arr.ndim != 1 or arr.shape[0] != n:
        got = f"{arr.shape[0]} labels" if arr.ndim == 1 else f"shape {arr.shape}"
        raise ValueError(f"{name} must hold one sample label per {cells} cell ({n}); got "
                         f"{got}.")
    missing = np.asarray(pd.isna(arr), dtype=bool)
    if missing.any():
        raise ValueError(f"{name} has {int(missing.sum())} missing label(s) (None/NaN), the "
                         f"first at {cells} cell {int(np.flatnonzero(missing)[0])}: every cell "
                         "needs the sample (donor, animal, well) it was measured on.")
    codes, uniques = pd.factorize(arr)
    return codes, list(uniques)


def _check_samples(samples, background_samples, n_target, n_background, q_threshold):
    """Validate the two sample label vectors; warn when the test cannot be fine-grained."""
    import warnings
    from math import comb

    if (samples is None) != (background_samples is None):
        given, absent = (("samples", "background_samples") if background_samples is None
                         else ("background_samples", "samples"))
        raise ValueError(f"{given} was given without {absent}: the sample-level test needs "
                         "one sample label per target cell (samples=) and per background "
                         "cell (background_samples=); pass neither for the cell-level test.")
    codes_t, names_t = _sample_labels(samples, n_target, "samples", "target")
    codes_b, names_b = _sample_labels(background_samples, n_background, "background_samples",
                                      "background")
    both = [v for v in names_t if v in set(names_b)]
    if both:
        raise ValueError(f"sample label(s) {both[:10]} occur in both samples and "
                         "background_samples: a sample belongs to one condition (target or "
                         "background). If these are different samples that share a name, "
                         "make the names distinct (for example prefix the condition).")
    for name, values in (("samples", names_t), ("background_samples", names_b)):
        if len(values) < 2:
            raise ValueError(
                f"{name} holds {len(values)} distinct sample ({values}); the sample-level "
                "test needs at least 2 samples on each side, since it compares the "
                "condition with the spread between samples. With fewer, pass neither "
                "samples nor background_samples for the cell-level test (which treats "
                "cells as independent).")
    n_t, n_b = len(names_t), len(names_b)
    if min(n_t, n_b) <= 3:
        arrangements = comb(n_t + n_b, n_t)
        floor = 1.0 / arrangements
        msg = (f"Only {n_t} target and {n_b} background samples: the smallest p-value the "
               f"sample-level permutation test can give is 1/C({n_t + n_b}, {n_t}) = "
               f"{floor:.3g} ({arrangements} arrangements of the samples)")
        if floor > q_threshold:
            msg += f", above q_threshold={q_threshold}, so no topic can be called enriched"
        warnings.warn(msg + ". More samples per side give a finer test.", UserWarning,
                      stacklevel=3)
    return codes_t, n_t, codes_b, n_b


def _sample_means(values, codes, n_groups):
    """Mean of the rows of ``values`` within each group ``codes`` (groups in code order)."""
    sums = np.zeros((n_groups, values.shape[1]))
    np.add.at(sums, codes, values)
    return sums / np.bincount(codes, minlength=n_groups)[:, None]


def _effects(a, b):
    """Means, log2 fold change (pseudo-count) and Cohen's d of the rows of ``a`` vs ``b``."""
    k = a.shape[1]
    ma, mb = a.mean(axis=0), b.mean(axis=0)
    pooled = np.vstack([a, b])
    pseudo = 1e-3 * pooled.mean(axis=0) + np.finfo(np.float64).tiny
    lfc = np.log2((ma + pseudo) / (mb + pseudo))
    na, nb = a.shape[0], b.shape[0]
    sd = np.sqrt(((na - 1) * a.var(axis=0, ddof=1) + (nb - 1) * b.var(axis=0, ddof=1))
                 / max(na + nb - 2, 1)) if na > 1 and nb > 1 else np.zeros(k)
    diff = ma - mb
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(sd > 0, diff / np.where(sd > 0, sd, 1.0), np.sign(diff) * np.inf)
    d[(sd == 0) & (diff == 0)] = 0.0
    return ma, mb, lfc, d, diff


def topic_enrichment(model, X, *, background, labels=None, samples=None,
                     background_samples=None, usage="share", n_permutations=1000,
                     q_threshold=0.05, random_state=0):
    r"""Which topics are used more in the target than in the background, and how surely.

    For every topic, the usage of each cell (:func:`topic_usage`) is compared between the
    target cells ``X`` and the background cells ``background``, by one of two tests.

    **Cells** (``samples`` not given, column ``test == "cells"``): every cell is a unit.

    - ``usage_target``, ``usage_background``: mean usage of the cells;
    - ``log2_fold_change``: :math:`\log_2` of the ratio of mean usages (a pseudo-count of
      1e-3 times the mean usage of all cells is added to both);
    - ``effect_size``: Cohen's d, the difference of means over the pooled standard deviation
      of the cells;
    - ``p_value``: one-sided permutation p-value of the difference of mean usage (target
      minus background), cells shuffled between target and background,
      :math:`(1 + \#\{\text{null} \ge \text{observed}\}) / (1 + n_\text{permutations})`.

    This test assumes the cells are independent draws, so that shuffling them between target
    and background is a valid null.  Cells of one sample (donor, animal, well, replicate
    measurement) are not independent: they share the sample's own deviation, which the
    shuffle mistakes for an effect of the condition, and the p-values come out too small
    (pseudoreplication).  When the cells come from several samples per condition, pass
    ``samples`` and ``background_samples``.

    **Samples** (``samples`` and ``background_samples`` given, ``test == "samples"``): every
    sample is a unit.  With :math:`\bar u_s` the mean usage of the cells of sample
    :math:`s` (a pseudobulk), :math:`n_t` target and :math:`n_b` background samples:

    - ``usage_target``, ``usage_background``: the means of :math:`\bar u_s` over the target
      and the background samples (each sample weighs the same, whatever its number of cells);
    - ``log2_fold_change``: :math:`\log_2` of their ratio (pseudo-count 1e-3 times the mean of
      all :math:`\bar u_s`);
    - ``effect_size``: Cohen's d between the sample means, the difference over the pooled
      standard deviation of :math:`\bar u_s` (the spread between samples, not between cells);
    - ``p_value``: one-sided permutation p-value of the difference of the two means, the
      sample labels shuffled between the conditions.  When the number of arrangements
      :math:`C = \binom{n_t + n_b}{n_t}` is at most 20,000 (for example 924 for 6 samples
      per side) all of them are enumerated and :math:`p = \#\{\text{null} \ge
      \text{observed}\} / C` is exact, at least :math:`1/C`; otherwise ``n_permutations``
      random arrangements give the Monte Carlo p-value above;
    - ``pseudobulk_t``, ``pseudobulk_p_value``: a one-sided Welch t-test of the
      :math:`\bar u_s`, target against background, for comparison (it assumes the sample
      means are roughly normal; the permutation test does not); NaN for a topic whose
      sample means are all equal.

    This test assumes the samples are independent and, under the null, exchangeable between
    the conditions; cells within a sample may be correlated in any way.  Each side needs at
    least 2 samples; with 2 or 3 on a side a warning gives the smallest attainable p-value.

    Both tests add:

    - ``q_value``: Benjamini-Hochberg adjustment of ``p_value`` over topics;
    - ``enriched``: ``q_value <= q_threshold`` and a positive difference;
    - ``test``: ``"cells"`` or ``"samples"``;
    - ``n_samples_target``, ``n_samples_background``: the number of units compared on each
      side (samples; for the cell-level test, where each cell is its own unit, cells);
    - ``stability``: the model's ``topic_stability_`` when it has one.

    With ``labels`` (one label per target cell), for every label ``g`` a Welch t-test of the
    usage of the target cells labelled ``g`` against the other target cells adds the columns
    ``t[g]``, ``p[g]`` and ``signed_log10_p[g]`` (:math:`\mathrm{sign}(t)\,(-\log_{10} p)`,
    the statistic of the paper's figures).  These treat cells as independent, with or without
    ``samples``.  Labels are used only here, never by the fit.

    Parameters
    ----------
    model : fitted BCNMF
    X : array-like or sparse of shape (n_target, n_features)
        Target cells.
    background : array-like or sparse of shape (n_background, n_features)
        Background cells.
    labels : array-like of shape (n_target,), optional
        One label per target cell (a cell type, a condition); never used by the fit.
    samples : array-like of shape (n_target,), optional
        The sample (donor, animal, well) of every target cell; with ``background_samples``,
        the test is made at the level of samples.  Labels may be strings or numbers; missing
        labels (None, NaN) are refused, and no label may occur on both sides.
    background_samples : array-like of shape (n_background,), optional
        The sample of every background cell.  Give both or neither.
    usage : {"share", "codes"}, default="share"
        See :func:`topic_usage`.
    n_permutations : int, default=1000
        Random arrangements of the Monte Carlo tests (every cell-level test; the
        sample-level test only when there are more than 20,000 arrangements).
    q_threshold : float, default=0.05
        A topic is ``enriched`` when its ``q_value`` is at most this.
    random_state : int, Generator or None, default=0
        Seeds the permutations (0: the same table every time; None: fresh entropy).

    Returns
    -------
    pandas.DataFrame
        One row per topic, indexed by ``"topic k"`` (index name ``topic``).

    Raises
    ------
    ValueError
        For sample labels whose number differs from the cells', missing sample labels, a
        sample label on both sides, fewer than 2 samples on a side, or only one of
        ``samples`` and ``background_samples``.

    Warns
    -----
    UserWarning
        With 2 or 3 samples on a side: the smallest attainable p-value,
        :math:`1/\binom{n_t + n_b}{n_t}`, is coarse (0.05 for 3 against 3).

    Notes
    -----
    The basis is treated as fixed.  If the model was fitted on these cells the p-values are
    optimistic (the basis was chosen to separate them); pass held-out cells (held-out
    samples, for the sample-level test) for calibrated p-values.

    Examples
    --------
    >>> import numpy as np
    >>> from bcnmf import BCNMF, topic_enrichment
    >>> rng = np.random.default_rng(0)
    >>> Y = rng.poisson(1.0, size=(60, 12)).astype(float)
    >>> X = rng.poisson(1.0, size=(60, 12)).astype(float)
    >>> X[:, :3] += 4.0
    >>> model = BCNMF(2, alpha=0.0, random_state=0, max_iter=2000).fit(np.vstack([X, Y]))
    >>> table = topic_enrichment(model, X, background=Y, n_permutations=200)
    >>> int(table["enriched"].sum())
    1

    The same cells, ten per sample (six target and six background samples):

    >>> by_sample = topic_enrichment(model, X, background=Y,
    ...                              samples=np.repeat(np.arange(6), 10),
    ...                              background_samples=np.repeat(np.arange(6, 12), 10))
    >>> by_sample["test"].iloc[0], int(by_sample["n_samples_target"].iloc[0])
    ('samples', 6)
    >>> float(by_sample["p_value"].min()) >= 1 / 924  # exact: C(12, 6) arrangements
    True
    """
    import pandas as pd

    if not (isinstance(n_permutations, (int, np.integer)) and n_permutations >= 1):
        raise ValueError(f"n_permutations must be an int >= 1; got {n_permutations!r}.")
    if not (0 < q_threshold <= 1):
        raise ValueError(f"q_threshold must be in (0, 1]; got {q_threshold!r}.")
    if background is None:
        raise ValueError("topic_enrichment needs background= (the background cells).")
    by_sample = samples is not None or background_samples is not None
    if by_sample:
        codes_t, n_t, codes_b, n_b = _check_samples(samples, background_samples, _n_rows(X),
                                                    _n_rows(background), q_threshold)
    ux = topic_usage(model, X, usage=usage)
    uy = topic_usage(model, background, as_background=True, usage=usage)
    k = ux.shape[1]
    nx = ux.shape[0]
    rng = np.random.default_rng(random_state)
    if by_sample:
        sx, sy = _sample_means(ux, codes_t, n_t), _sample_means(uy, codes_b, n_b)
        mx, my, lfc, d, diff = _effects(sx, sy)
        _, p, _, _ = group_permutation_test(sx, sy, n_permutations=int(n_permutations),
                                            rng=rng)
        units = (n_t, n_b)
    else:
        mx, my, lfc, d, diff = _effects(ux, uy)
        null = random_relabel_null(np.vstack([ux, uy]), nx, int(n_permutations), rng)
        p = permutation_pvalues(diff, null)
        units = (nx, uy.shape[0])
    q = bh_qvalues(p)
    table = pd.DataFrame({
        "usage_target": mx, "usage_background": my, "log2_fold_change": lfc,
        "effect_size": d, "p_value": p, "q_value": q,
        "enriched": (q <= q_threshold) & (diff > 0),
        "test": "samples" if by_sample else "cells",
        "n_samples_target": np.full(k, units[0], dtype=np.int64),
        "n_samples_background": np.full(k, units[1], dtype=np.int64),
    }, index=pd.Index(topic_labels(k), name="topic"))
    if by_sample:
        table["pseudobulk_t"], table["pseudobulk_p_value"] = welch_greater(sx, sy)
    stability = getattr(model, "topic_stability_", None)
    if stability is not None:
        table["stability"] = np.asarray(stability, dtype=np.float64)
    if labels is not None:
        g, values = _label_array(labels, nx)
        for value in values:
            inside = g == value
            t, pg, signed = welch_ttest(ux[inside], ux[~inside])
            table[f"t[{value}]"] = t
            table[f"p[{value}]"] = pg
            table[f"signed_log10_p[{value}]"] = signed
    return table


def _feature_names(model, X, n_features, feature_names):
    if feature_names is not None:
        names = [str(f) for f in feature_names]
    elif getattr(model, "feature_names_in_", None) is not None:
        names = [str(f) for f in model.feature_names_in_]
    elif X is not None and hasattr(X, "columns"):
        names = [str(c) for c in X.columns]
    else:
        names = feature_labels(n_features)
    if len(names) != n_features:
        raise ValueError(f"{len(names)} feature names for {n_features} features.")
    return names


def _dense_rows(X, rows):
    import scipy.sparse as sp

    A = X[rows] if not hasattr(X, "iloc") else X.iloc[rows]
    A = A.toarray() if sp.issparse(A) else np.asarray(A)
    return A.astype(np.float64, copy=False)


def top_features(model, *, n_top=10, X=None, labels=None, feature_names=None):
    """The ``n_top`` features with the largest loadings of every topic, as a tidy table.

    Parameters
    ----------
    model : fitted BCNMF
    n_top : int, default=10
        Features per topic (fewer for a topic with fewer non-zero loadings: features with
        zero loading are not listed).
    X : array-like or sparse of shape (n_target, n_features), optional
        Target cells; with ``labels``, every listed feature is tested between the labelled
        groups of cells.
    labels : array-like of shape (n_target,), optional
        One label per row of ``X``; for every label ``g`` a Welch t-test of the feature's
        values in cells labelled ``g`` against the other cells adds ``t[g]``, ``p[g]`` and
        ``signed_log10_p[g]``.
    feature_names : sequence of str, optional
        Default: ``model.feature_names_in_``, the columns of a DataFrame ``X``, or
        ``feature_1``...

    Returns
    -------
    pandas.DataFrame
        Columns ``topic`` ("topic k"), ``rank`` (1 = largest), ``feature``,
        ``feature_index``, ``loading`` (row of ``components_``) and ``weight`` (the loading as
        a fraction of the topic's total loading), plus the test columns.
    """
    import pandas as pd

    basis = _check_model(model, "top_features")
    k, f = basis.shape
    names = _feature_names(model, X, f, feature_names)
    totals = np.abs(basis).sum(axis=1)
    topic_names, rows = topic_labels(k), []
    for t, order in enumerate(ranked_features(basis, n_top)):
        for r, j in enumerate(order):
            rows.append({"topic": topic_names[t], "rank": r + 1, "feature": names[j],
                         "feature_index": int(j), "loading": float(basis[t, j]),
                         "weight": float(basis[t, j] / totals[t]) if totals[t] > 0 else 0.0})
    table = pd.DataFrame(rows)
    if labels is not None:
        if X is None:
            raise ValueError("labels needs X (the target cells the labels belong to).")
        g, values = _label_array(labels, X.shape[0])
        cols = table["feature_index"].to_numpy()
        for value in values:
            inside = np.flatnonzero(g == value)
            outside = np.flatnonzero(g != value)
            t, p, signed = welch_ttest(_dense_rows(X, inside)[:, cols],
                                       _dense_rows(X, outside)[:, cols])
            table[f"t[{value}]"] = t
            table[f"p[{value}]"] = p
            table[f"signed_log10_p[{value}]"] = signed
    return table


@dataclass(frozen=True, repr=False)
class BackgroundCorrected:
    """Result of :func:`background_corrected`.

    Attributes
    ----------
    corrected : ndarray of shape (n_target, n_features)
        Target reconstructed from the enriched topics only, ``codes[:, T] @ components_[T]``.
    shared : ndarray of shape (n_target, n_features)
        The complementary part, reconstructed from the other topics.
    topics : ndarray of int
        0-based indices of the topics used for ``corrected``.
    enrichment : pandas.DataFrame or None
        The :func:`topic_enrichment` table the topics were chosen from (None when ``topics``
        was given).
    """

    corrected: np.ndarray
    shared: np.ndarray
    topics: np.ndarray
    enrichment: object = None

    def __repr__(self):
        return (f"BackgroundCorrected(shape={self.corrected.shape}, "
                f"topics={self.topics.tolist()})")


def background_corrected(model, X, *, background=None, topics=None, samples=None,
                         background_samples=None, q_threshold=0.05, usage="share",
                         n_permutations=1000, random_state=0):
    """The target reconstructed from its target-enriched topics only, and the shared rest.

    Parameters
    ----------
    model : fitted BCNMF
    X : array-like or sparse of shape (n_target, n_features)
    background : array-like or sparse of shape (n_background, n_features), optional
        Needed when ``topics`` is None, to find the enriched topics with
        :func:`topic_enrichment` (``q_value <= q_threshold`` and a positive effect).
    topics : sequence of int or str, or bool mask, optional
        Topics to keep (:func:`topic_indices`: 0-based indices, labels such as
        ``"topic 2"``, or a mask); default the enriched ones.
    samples, background_samples : array-like, optional
        The sample of every target and background cell: the enriched topics are then found
        by the sample-level test of :func:`topic_enrichment`.
    q_threshold, usage, n_permutations, random_state
        Passed to :func:`topic_enrichment`.

    Returns
    -------
    BackgroundCorrected
        ``corrected + shared`` equals the model's reconstruction of ``X``,
        ``transform(X) @ components_``.
    """
    basis = _check_model(model, "background_corrected")
    k = basis.shape[0]
    table = None
    if topics is None:
        if background is None:
            raise ValueError("Pass topics= or background= (to find the enriched topics).")
        table = topic_enrichment(model, X, background=background, samples=samples,
                                 background_samples=background_samples, usage=usage,
                                 n_permutations=n_permutations, q_threshold=q_threshold,
                                 random_state=random_state)
        keep = table["enriched"].to_numpy(dtype=bool)
    else:
        keep = np.zeros(k, dtype=bool)
        keep[topic_indices(topics, k)] = True
    codes = np.asarray(model.transform(X))
    corrected = codes[:, keep] @ basis[keep]
    shared = codes[:, ~keep] @ basis[~keep]
    return BackgroundCorrected(corrected, shared, np.flatnonzero(keep), table)
