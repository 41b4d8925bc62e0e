"""Topics read through gene sets: a rank test of every topic's loadings for every set.

- :func:`topic_gene_sets`: for every topic and every gene set, whether the set's genes sit
  higher in the topic's loadings than the other genes (a one-sided Mann-Whitney / rank-sum
  test), with Benjamini-Hochberg q-values over the sets tested for the topic;
- :func:`read_gmt`: a strict reader of GMT files (``name<TAB>description<TAB>gene...``).

Gene sets are given as a dict ``{name: genes}``, a path to a GMT file or a long table
``(source, target[, weight])`` in the format of decoupler's networks.  Nothing is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from ._stats import bh_qvalues, permutation_pvalues
from .topics import topic_labels

__all__ = ["topic_gene_sets", "read_gmt"]

#: the columns of the table returned by :func:`topic_gene_sets`, in order
COLUMNS = ("topic", "gene_set", "n_genes", "set_size", "statistic", "effect", "p_value",
           "q_value", "leading_genes")


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _examples(values, n=3):
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:n])
    return shown + (", ..." if len(values) > n else "")


# ---------------------------------------------------------------------------------------------
# gene sets
# ---------------------------------------------------------------------------------------------

def read_gmt(path):
    """Read a GMT file: one gene set per line, ``name<TAB>description<TAB>gene<TAB>gene...``.

    The reader is strict: every non-blank line needs a name, a description (which may be
    empty) and at least one gene, separated by tabs; names are unique.  Surrounding spaces
    of a field and tabs at the end of a line are dropped; a gene listed twice in a set counts
    once.  Files ending in ``.gz`` are read through gzip.

    Parameters
    ----------
    path : str or os.PathLike
        The GMT file (UTF-8).

    Returns
    -------
    dict
        ``{name: [gene, ...]}`` in the order of the file.

    Raises
    ------
    ValueError
        A line with fewer than 3 fields, an empty name or gene, a name defined twice, a file
        that is not UTF-8 text or holds no gene set; the message names the file and the line.
    FileNotFoundError
        No file at ``path``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "sets.gmt").write_text("UP\\tgenes up\\tA\\tB\\tC\\nDOWN\\t\\tD\\tE\\n")
    >>> read_gmt(folder / "sets.gmt")
    {'UP': ['A', 'B', 'C'], 'DOWN': ['D', 'E']}
    """
    import gzip

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No GMT file at {path!r}.")
    opener = gzip.open if path.lower().endswith(".gz") else open
    sets, first_line = {}, {}
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                line = line.rstrip("\r\n").rstrip("\t")
                if not line.strip():
                    continue
                fields = [field.strip() for field in line.split("\t")]
                where = f"{path}, line {number}"
                if len(fields) < 3:
                    hint = (" (fields must be separated by tabs; this line has none)"
                            if len(fields) == 1 and " " in line.strip() else "")
                    raise ValueError(
                        f"{where}: expected at least 3 tab-separated fields (name, "
                        f"description, gene, ...); found {len(fields)}{hint}.")
                name, genes = fields[0], fields[2:]
                if not name:
                    raise ValueError(f"{where}: the gene set name (first field) is empty.")
                if name in sets:
                    raise ValueError(f"{where}: gene set {name!r} is already defined on line "
                                     f"{first_line[name]}; names must be unique.")
                empty = [i + 3 for i, gene in enumerate(genes) if not gene]
                if empty:
                    raise ValueError(f"{where}: gene set {name!r} has an empty gene field "
                                     f"(field {empty[0]}); genes are separated by one tab.")
                sets[name] = list(dict.fromkeys(genes))
                first_line[name] = number
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text (a GMT file was expected): {err}.") \
            from None
    except (OSError, EOFError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(f"{path} could not be read as a GMT file: {err}.") from None
    if not sets:
        raise ValueError(f"{path} holds no gene set (every line is blank).")
    return sets


def _genes_of(name, genes, where):
    """The unique genes of one set, checked: strings, not empty."""
    if isinstance(genes, (str, bytes)):
        raise TypeError(f"{where}gene set {name!r} is a single string ({genes!r}); pass an "
                        "iterable of gene names, e.g. a list.")
    try:
        genes = list(genes)
    except TypeError:
        raise TypeError(f"{where}gene set {name!r} must be an iterable of gene names; got "
                        f"{type(genes).__name__}.") from None
    bad = [g for g in genes if not isinstance(g, str)]
    if bad:
        raise TypeError(f"{where}gene set {name!r} holds genes that are not strings: "
                        f"{bad[0]!r} ({type(bad[0]).__name__}); gene names must be str.")
    if any(not g.strip() for g in genes):
        raise ValueError(f"{where}gene set {name!r} holds an empty gene name.")
    if not genes:
        raise ValueError(f"{where}gene set {name!r} is empty.")
    return tuple(dict.fromkeys(genes))


def _from_long_table(table):
    """``{source: genes}`` from a long table ``(source, target[, weight])``."""
    missing = [c for c in ("source", "target") if c not in table.columns]
    if missing:
        raise ValueError(f"A gene-set table needs the columns 'source' (set name) and "
                         f"'target' (gene), and optionally 'weight'; it lacks {missing} "
                         f"(columns: {list(table.columns)[:10]}).")
    if len(table) == 0:
        raise ValueError("The gene-set table has no rows.")
    source = table["source"].to_numpy(dtype=object)
    target = table["target"].to_numpy(dtype=object)
    for column, values in (("source", source), ("target", target)):
        bad = [i for i, v in enumerate(values) if not isinstance(v, str)]
        if bad:
            v = values[bad[0]]
            raise TypeError(f"Column {column!r} of the gene-set table holds values that are "
                            f"not strings: {v!r} ({type(v).__name__}) in row {bad[0]}; set "
                            "names and gene names must be str.")
    if "weight" in table.columns:
        import pandas as pd

        weight = pd.to_numeric(table["weight"], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isfinite(weight) | (weight <= 0))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"The gene-set table's weights must be finite and positive; row {i} (set "
                f"{source[i]!r}, gene {target[i]!r}) has weight {table['weight'].iloc[i]!r}. "
                "The test asks whether a set's genes have high loadings, which means nothing "
                "for genes of negative weight: split a signed set by sign (e.g. "
                "net[net['weight'] > 0]).")
    sets = {}
    for s, g in zip(source, target):
        sets.setdefault(s, []).append(g)
    return sets


def _collect(gene_sets):
    """``{name: tuple of unique genes}`` from any accepted form, checked."""
    import pandas as pd

    where = ""
    if isinstance(gene_sets, (str, os.PathLike)):
        where = f"{os.fspath(gene_sets)}: "
        raw = read_gmt(gene_sets)
    elif isinstance(gene_sets, pd.DataFrame):
        raw = _from_long_table(gene_sets)
    elif isinstance(gene_sets, Mapping):
        raw = gene_sets
        bad = [k for k in raw if not isinstance(k, str)]
        if bad:
            raise TypeError(f"Gene set names must be str; got {bad[0]!r} "
                            f"({type(bad[0]).__name__}).")
    else:
        raise TypeError("gene_sets must be a dict {name: genes}, a path to a GMT file or a "
                        "pandas DataFrame with columns 'source', 'target' (and optionally "
                        f"'weight'); got {type(gene_sets).__name__}.")
    if not raw:
        raise ValueError("gene_sets holds no gene set.")
    return {name: _genes_of(name, genes, where) for name, genes in raw.items()}


# ---------------------------------------------------------------------------------------------
# loadings
# ---------------------------------------------------------------------------------------------

def _names_checked(names, n_features, what):
    names = list(names)
    if len(names) != n_features:
        raise ValueError(f"{what}: {len(names)} feature names for {n_features} features.")
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise TypeError(f"{what}: feature names must be str (gene names); got {bad[0]!r} "
                        f"({type(bad[0]).__name__}).")
    seen, duplicates = set(), []
    for n in names:
        if n in seen:
            duplicates.append(n)
        seen.add(n)
    if duplicates:
        raise ValueError(f"{what}: feature names must be unique to match genes; "
                         f"{len(duplicates)} repeat (e.g. {_examples(duplicates)}).")
    return names


def _loadings(model, feature_names):
    """(loadings of shape (n_topics, n_features) float64, feature names, topic labels)."""
    import pandas as pd
    import scipy.sparse as sp

    from .core.backend import to_numpy

    if isinstance(model, pd.DataFrame):
        if feature_names is not None:
            raise ValueError("A DataFrame of loadings carries its feature names as columns; "
                             "do not pass feature_names.")
        try:
            values = model.to_numpy(dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError("A DataFrame of loadings must hold numbers (topics x features).") \
                from None
        names = list(model.columns)
        topics = [str(i) for i in model.index]
        if len(set(topics)) != len(topics):
            raise ValueError("The index of a DataFrame of loadings labels the topics; its "
                             f"labels must be unique (got {topics[:10]}).")
        what = "loadings DataFrame"
    elif hasattr(model, "components_") or hasattr(model, "fit"):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(model, "components_")
        values = np.asarray(to_numpy(model.components_), dtype=np.float64)
        own = getattr(model, "feature_names_in_", None)
        if own is not None and feature_names is not None and \
                [str(n) for n in own] != [str(n) for n in feature_names]:
            raise ValueError("feature_names differ from the model's feature_names_in_; pass "
                             "none (the model's are used) or the same.")
        names = own if own is not None else feature_names
        if names is None:
            raise ValueError(f"topic_gene_sets needs feature names: this "
                             f"{type(model).__name__} was fitted without them (X had no "
                             "string column names); pass feature_names= (the gene of every "
                             "column of components_).")
        names = [str(n) for n in names] if own is not None else list(names)
        topics = topic_labels(values.shape[0])
        what = type(model).__name__
    elif all(hasattr(model, a) for a in ("obsm", "varm", "var_names")):
        raise TypeError("An AnnData is not accepted as it is: its varm holds zeros for the "
                        "genes outside the fit. Pass the fitted model, or the loadings of the "
                        "fitted genes: adata.varm['bcnmf'][mask].T with "
                        "feature_names=adata.var_names[mask].")
    else:
        if sp.issparse(model):
            raise TypeError("Loadings must be a dense array of shape (n_topics, n_features); "
                            "got a sparse matrix (call .toarray()).")
        try:
            values = np.asarray(to_numpy(model), dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError("model must be a fitted bcnmf model (e.g. BCNMF), a DataFrame of "
                            "loadings (topics x genes) or an array of loadings of shape "
                            f"(n_topics, n_features); got {type(model).__name__}.") from None
        if feature_names is None:
            raise ValueError("An array of loadings needs feature_names= (the gene of every "
                             "column).")
        names = list(feature_names)
        topics = topic_labels(values.shape[0]) if values.ndim == 2 else []
        what = "loadings"
    if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 2:
        raise ValueError(f"Loadings must have shape (n_topics, n_features) with at least one "
                         f"topic and two features; got shape {values.shape}.")
    bad = ~np.isfinite(values)
    if bad.any():
        k = int(np.flatnonzero(bad.any(axis=1))[0])
        raise ValueError(f"The loadings hold {int(bad.sum())} NaN or infinite value(s) "
                         f"(first in {topics[k]!r}); they must be finite.")
    return values, _names_checked(names, values.shape[1], what), topics


# ---------------------------------------------------------------------------------------------
# the test
# ---------------------------------------------------------------------------------------------

def _rank_sum_z(rank_sums, n1, n, tie_term):
    """(U, z, AUC) of the Mann-Whitney test of a set of ``n1`` of ``n`` genes with the given
    rank sums (sets x topics), continuity- and tie-corrected as scipy's asymptotic test."""
    n1 = n1[:, None].astype(np.float64)
    n2 = n - n1
    u = rank_sums - n1 * (n1 + 1) / 2
    mu = n1 * n2 / 2
    var = n1 * n2 / 12 * ((n + 1) - tie_term[None, :] / (n * (n - 1)))
    sd = np.sqrt(np.maximum(var, 0.0))
    z = np.zeros_like(u)
    ok = sd > 0
    z[ok] = ((u - mu - 0.5) / np.where(ok, sd, 1.0))[ok]
    return u, z, u / (n1 * n2), ok


def _permutation_p(ranks, members, rank_sums, n_permutations, rng, batch=64):
    """Monte Carlo p-values of the rank sums: for every set size, ``n_permutations`` random
    sets of that size drawn from all genes (sets x topics)."""
    n_genes, k = ranks.shape
    sizes = np.array([m.size for m in members])
    p = np.empty(rank_sums.shape)
    base = np.arange(n_genes)
    for size in np.unique(sizes):
        null = np.empty((n_permutations, k))
        for lo in range(0, n_permutations, batch):
            hi = min(lo + batch, n_permutations)
            idx = rng.permuted(np.broadcast_to(base, (hi - lo, n_genes)), axis=1)[:, :size]
            null[lo:hi] = ranks[idx].sum(axis=1)
        for s in np.flatnonzero(sizes == size):
            p[s] = permutation_pvalues(rank_sums[s], null)
    return p


def _select_sets(sets, names, min_size, max_size, min_overlap):
    """(names of the sets tested, their genes' column indices (sorted), their sizes as given,
    ``{skipped set: reason}``); ValueError with the numbers when no set can be tested."""
    position = {name: j for j, name in enumerate(names)}
    n_genes = len(names)
    tested, members, sizes, skipped, overlaps = [], [], [], {}, {}
    for name, genes in sets.items():
        found = np.array([position[g] for g in genes if g in position], dtype=np.intp)
        overlaps[name] = (found.size, len(genes))
        if found.size < min_size:
            skipped[name] = (f"{found.size} of its {len(genes)} genes are features of the "
                             f"model, fewer than min_size={min_size}")
        elif max_size is not None and found.size > max_size:
            skipped[name] = (f"{found.size} of its genes are features of the model, more "
                             f"than max_size={max_size}")
        elif found.size / len(genes) < min_overlap:
            skipped[name] = (f"{found.size} of its {len(genes)} genes are features of the "
                             f"model, a fraction below min_overlap={min_overlap:g}")
        elif found.size == n_genes:
            skipped[name] = "every feature of the model is in the set (nothing to compare)"
        else:
            tested.append(name)
            members.append(np.sort(found))
            sizes.append(len(genes))
    if not tested:
        raise ValueError(_nothing_tested(sets, overlaps, skipped, names, min_size, max_size,
                                         min_overlap))
    return tested, members, sizes, skipped


def topic_gene_sets(model, gene_sets, *, feature_names=None, min_size=5, max_size=500,
                    min_overlap=0.0, n_permutations=None, n_top=50, random_state=0):
    r"""Which gene sets each topic loads on: a rank test of the topic's loadings per set.

    For every topic and every gene set, the genes of the model are ranked by their loading
    in the topic (rank 1 = smallest, ties share their average rank) and the set's genes
    among them are compared with all the other genes of the model by a one-sided
    Mann-Whitney (Wilcoxon rank-sum) test: are the set's genes ranked higher than the rest?
    With :math:`R` the sum of the ranks of the :math:`n_1` genes of the set among
    :math:`n` genes, :math:`n_2 = n - n_1`,

    .. math::

        U = R - \frac{n_1 (n_1 + 1)}{2}, \qquad
        \mathrm{AUC} = \frac{U}{n_1 n_2}, \qquad
        z = \frac{U - n_1 n_2 / 2 - 1/2}
                 {\sqrt{\frac{n_1 n_2}{12}\left(n + 1 - \frac{\sum_t (t^3 - t)}
                 {n (n - 1)}\right)}},

    the sum over the sizes :math:`t` of the groups of tied loadings.  ``p_value`` is the
    normal tail :math:`P(Z \ge z)` (scipy's asymptotic ``mannwhitneyu(...,
    alternative="greater")``), or with ``n_permutations`` a Monte Carlo p-value of the rank
    sum against random sets of the same size.  ``q_value`` is the Benjamini-Hochberg
    adjustment over the sets tested for the topic (one family per topic; no correction
    across topics).

    Parameters
    ----------
    model : fitted bcnmf model, pandas.DataFrame or array-like
        A fitted model (``BCNMF`` and the other estimators): its ``components_`` are the
        loadings, its ``feature_names_in_`` (when it was fitted on a DataFrame) the genes.
        Or the loadings themselves, topics x genes: a DataFrame (columns: genes, index:
        topic labels) or an array of shape (n_topics, n_features) with ``feature_names``.
    gene_sets : dict, str, os.PathLike or pandas.DataFrame
        ``{name: iterable of genes}``; the path of a GMT file (read by :func:`read_gmt`);
        or a long table with the columns ``source`` (set name), ``target`` (gene) and
        optionally ``weight``, as decoupler's networks.  Weights must be positive and are
        not used (the test uses membership only); split signed sets by sign.
    feature_names : sequence of str, optional
        The gene of every column of the loadings, when the model (or array) does not carry
        them.  Must be unique.
    min_size : int, default=5
        Sets with fewer of their genes among the model's features are not tested.
    max_size : int or None, default=500
        Sets with more of their genes among the model's features are not tested (None: no
        bound).
    min_overlap : float, default=0.0
        Sets of which a smaller fraction of the genes are features of the model are not
        tested (e.g. 0.5 refuses sets that lost more than half of their genes).
    n_permutations : int, optional
        None (default): the normal approximation above.  An int: Monte Carlo p-values,
        :math:`(1 + \#\{\text{null} \ge R\}) / (1 + n_\text{permutations})`, from random
        sets of the same size drawn from the model's genes.
    n_top : int, default=50
        ``leading_genes`` lists the set's genes among the topic's ``n_top`` largest
        loadings.
    random_state : int, Generator or None, default=0
        Seeds the permutations.

    Returns
    -------
    pandas.DataFrame
        One row per topic and tested set, sorted by topic and then ``p_value``, with the
        columns

        - ``topic``: ``"topic k"`` (or the index of a DataFrame of loadings);
        - ``gene_set``: the set's name;
        - ``n_genes``: the set's genes among the model's features (the genes tested);
        - ``set_size``: the set's genes as given;
        - ``statistic``: the standardised rank sum :math:`z`;
        - ``effect``: the AUC, the probability that a gene of the set has a larger loading
          than a gene outside it (0.5: no enrichment; 1: the set's genes are the topic's top);
        - ``p_value``, ``q_value``;
        - ``leading_genes``: the set's genes among the topic's ``n_top`` largest loadings
          (largest first, comma-separated; genes at the topic's smallest loading never
          lead).

        ``table.attrs["skipped"]`` maps every set that was not tested to the reason.

    Raises
    ------
    ValueError
        No set can be tested (the message gives the overlaps and examples of the set genes
        and of the features, to spot identifiers of different kinds), an empty set,
        duplicate set names, a GMT line with fewer than 3 fields, a table without the
        ``source``/``target`` columns, loadings that are not finite, missing or duplicate
        feature names.
    TypeError
        Genes or set names that are not strings; ``gene_sets`` or ``model`` of another type.

    See Also
    --------
    bcnmf.topic_enrichment : which topics the target uses more than the background.
    bcnmf.top_features : the genes with the largest loadings of every topic.
    bcnmf.pl.gene_sets : a dot plot of this table.

    Notes
    -----
    This is a competitive test: its null hypothesis is that the set's genes are a random
    draw from the model's genes, as if genes were independent and exchangeable.  Genes
    are not independent: co-regulated genes load together on topics, so a set of genes that
    are correlated with each other for any reason (a pathway, a cell-type signature) moves
    as a block and its p-value is smaller than the correlation warrants.  The p-values
    rank sets within a topic; they are not calibrated evidence about samples.  The test
    treats the loadings as fixed: the variability of the fit (another seed, other cells)
    is not in the p-value.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from bcnmf import topic_gene_sets
    >>> genes = [f"g{j}" for j in range(40)]
    >>> loadings = pd.DataFrame(np.tile(np.linspace(1.0, 0.0, 40), (2, 1)),
    ...                         index=["topic 1", "topic 2"], columns=genes)
    >>> loadings.iloc[1] = loadings.iloc[1, ::-1].to_numpy()
    >>> sets = {"first": genes[:8], "last": genes[-8:]}
    >>> table = topic_gene_sets(loadings, sets, n_top=3)
    >>> table[["topic", "gene_set", "n_genes", "effect"]]
         topic gene_set  n_genes  effect
    0  topic 1    first        8     1.0
    1  topic 1     last        8     0.0
    2  topic 2     last        8     1.0
    3  topic 2    first        8     0.0
    >>> table["leading_genes"].tolist()
    ['g0,g1,g2', '', 'g39,g38,g37', '']
    """
    import pandas as pd
    import scipy.sparse as sp
    from scipy import stats

    if not (_is_int(min_size) and min_size >= 1):
        raise ValueError(f"min_size must be an int >= 1; got {min_size!r}.")
    if max_size is not None and not (_is_int(max_size) and max_size >= min_size):
        raise ValueError(f"max_size must be None or an int >= min_size ({min_size}); got "
                         f"{max_size!r}.")
    if isinstance(min_overlap, bool) or not isinstance(min_overlap, (int, float, np.number)) \
            or not 0.0 <= float(min_overlap) <= 1.0:
        raise ValueError(f"min_overlap must be a fraction in [0, 1]; got {min_overlap!r}.")
    if n_permutations is not None and not (_is_int(n_permutations) and n_permutations >= 1):
        raise ValueError(f"n_permutations must be None or an int >= 1; got "
                         f"{n_permutations!r}.")
    if not (_is_int(n_top) and n_top >= 1):
        raise ValueError(f"n_top must be an int >= 1; got {n_top!r}.")

    loadings, names, topics = _loadings(model, feature_names)
    sets = _collect(gene_sets)
    n_topics, n_genes = loadings.shape

    tested, members, sizes, skipped = _select_sets(sets, names, min_size, max_size,
                                                   min_overlap)
    ranks = stats.rankdata(loadings, axis=1)  # (topics, genes), average ranks of ties
    tie_term = np.empty(n_topics)
    for t in range(n_topics):
        _, counts = np.unique(loadings[t], return_counts=True)
        tie_term[t] = float(np.sum(counts.astype(np.float64) ** 3 - counts))
    n1 = np.array([m.size for m in members])
    indptr = np.concatenate([[0], np.cumsum(n1)])
    membership = sp.csr_matrix((np.ones(indptr[-1]), np.concatenate(members), indptr),
                               shape=(len(members), n_genes))
    rank_sums = np.asarray(membership @ ranks.T)  # (sets, topics)
    _, z, auc, ok = _rank_sum_z(rank_sums, n1, n_genes, tie_term)
    if n_permutations is None:
        p = np.where(ok, stats.norm.sf(z), 1.0)
    else:
        rng = np.random.default_rng(random_state)
        p = _permutation_p(ranks.T.copy(), members, rank_sums, int(n_permutations), rng)
    p = np.clip(p, 0.0, 1.0)

    n_lead = min(int(n_top), n_genes)
    frames = []
    for t in range(n_topics):
        order = np.argsort(-loadings[t], kind="stable")[:n_lead]
        order = order[loadings[t, order] > loadings[t].min()]
        top_rank = np.full(n_genes, n_genes)
        top_rank[order] = np.arange(order.size)
        leading = []
        for m in members:
            lead = m[top_rank[m] < order.size]
            lead = lead[np.argsort(top_rank[lead], kind="stable")]
            leading.append(",".join(names[j] for j in lead))
        frames.append(pd.DataFrame({
            "topic": topics[t], "gene_set": tested, "n_genes": n1, "set_size": sizes,
            "statistic": z[:, t], "effect": auc[:, t], "p_value": p[:, t],
            "q_value": bh_qvalues(p[:, t]), "leading_genes": leading,
        }).assign(_order=t, _neg_effect=-auc[:, t]))
    table = pd.concat(frames, ignore_index=True)
    table = table.sort_values(["_order", "p_value", "_neg_effect", "gene_set"],
                              kind="stable").drop(columns=["_order", "_neg_effect"])
    table = table.reset_index(drop=True)[list(COLUMNS)]
    table.attrs["skipped"] = skipped
    return table


def _nothing_tested(sets, overlaps, skipped, names, min_size, max_size, min_overlap):
    """The message of the error raised when no set can be tested, with the numbers."""
    best = max(overlaps, key=lambda s: overlaps[s][0])
    found, size = overlaps[best]
    small = sum(1 for s in skipped if "min_size" in skipped[s])
    large = sum(1 for s in skipped if "max_size" in skipped[s])
    low = sum(1 for s in skipped if "min_overlap" in skipped[s])
    parts = []
    if small:
        parts.append(f"{small} have fewer than min_size={min_size} of their genes among them")
    if large:
        parts.append(f"{large} have more than max_size={max_size}")
    if low:
        parts.append(f"{low} keep a fraction of their genes below min_overlap={min_overlap:g}")
    rest = len(sets) - small - large - low
    if rest:
        parts.append(f"{rest} cover every feature")
    genes = [g for s in sets.values() for g in s][:3]
    message = (f"No gene set can be tested against the model's {len(names)} features: of "
               f"{len(sets)} set(s), {'; '.join(parts)}. The largest overlap is {found} of "
               f"{size} genes (set {best!r}).")
    if found < min_size:
        message += (f" Set genes look like {_examples(genes)} and the features like "
                    f"{_examples(names)}: are both the same kind of identifier (symbols or "
                    "Ensembl IDs, human or mouse)?")
    return message
