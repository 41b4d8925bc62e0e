"""Choosing the number of topics K and the contrast weight alpha without labels.

:func:`select_model` fits every point of a ``(K, alpha)`` grid several times on a training
split of the target and background cells and measures, per grid point, criteria that need no
labels:

``heldout_target``, ``heldout_background``
    Fraction of the held-out cells' divergence explained by the model,
    ``1 - D(A | prediction) / D(A | null)``, with the codes of held-out cells solved with the
    basis frozen (:meth:`bcnmf.BCNMF.transform`; background cells under the background's
    model).  The null is the zero prediction (squared error), or each cell's total spread over
    the features in proportion to the training mean profile (KL), or, for stable Poisson with
    shared topics, the shared-only prediction (the floor plus the shared topics, their
    codes solved), which every grid point shares.  Held-out fit alone always
    prefers a small alpha (a smaller contrast always fits the target better), so it is
    reported, not maximised.
``contrast``
    The contrast criterion: the probability that a held-out target cell is better explained
    (per-cell explained fraction) than a held-out background cell, i.e. the area under the ROC
    curve separating target from background by how well the topics explain them.  0.5 means
    the topics explain both alike (plain NMF of data with the same shared structure, or a
    collapsed fit), 1 means every target cell is explained better than every background cell.
    It is scale-free, so it does not reward small or large alpha by itself.
    ``contrast_sd`` is its spread over restarts, ``contrast_se`` its standard error from the
    finite held-out sample (Hanley and McNeil 1982): differences below it are noise.
``stability``
    Mean, over pairs of restarts, of the mean cosine similarity of Hungarian-matched topics
    (:func:`bcnmf.matching.restart_agreement`); ``stability_min`` is the least stable topic's
    mean matched similarity.
``consensus``
    Dispersion coefficient of the consensus matrix (Brunet et al. 2004): cells are assigned
    to their largest topic in every restart, ``M_ij`` is the fraction of restarts that put
    cells i and j together, and the dispersion ``mean(4 (M_ij - 1/2)^2)`` is 1 when all
    restarts agree on the partition.
``score``
    The rule's score: the contrast of the stable grid points (below).
``contrast_gap``, ``contrast_gap_se``, ``within_noise``
    How far each grid point is from the chosen one: the chosen contrast minus this point's,
    the standard error of that difference on the shared held-out cells
    (:func:`paired_contrast_se`, DeLong's paired variance of two AUCs measured on the same
    cells, from the restart-averaged placements in ``SelectionResult.placements``), and
    whether the gap is at most one such standard error.  Grid points ``within_noise`` at
    other K or alpha are ones the held-out cells cannot tell from the choice.

Each per-restart criterion is averaged over the restarts (``n_init``) and over
independent random hold-out splits (``n_splits``, each with its own restarts), which makes the
rule less sensitive to one unlucky fit and to which cells one split happens to hold out.

The rule (:data:`RULE`) is written down in ``SelectionResult.rule`` and
``docs/selection.md``.  Labels are never used.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from .core.alpha_path import paired_se, resolve_seed
from .core.alpha_path import placements as _placements

__all__ = ["select_model", "SelectionResult", "RULE", "selection_score", "paired_contrast_se"]

#: grid points whose restarts agree less than this (mean matched cosine) are not chosen
MIN_STABILITY = 0.9
#: contrasts within this of the best stable contrast are tied
CONTRAST_TIE = 0.005

RULE = (
    f"Only grid points whose restarts agree count (stability >= {MIN_STABILITY}: mean "
    "Hungarian-matched cosine similarity of topics across restarts; if none does, all "
    "count). The contrast of a grid point is the probability that a held-out target cell is "
    "better explained by its topics than a held-out background cell, averaged over restarts "
    "and over random hold-out splits. At every K, the contrast is followed along increasing "
    "alpha up to its first peak: the best contrast so far, until it first falls more than "
    f"{CONTRAST_TIE} below that best (past the first peak the fit is leaving the useful "
    "band; a later rise comes from fits that explain almost nothing of either data set). "
    "K is the number of topics whose first peak is highest (ties: fewer topics); alpha is "
    f"the largest alpha before that fall whose contrast is within {CONTRAST_TIE} of the "
    "peak. score = contrast where stable, else 0. No labels are used."
)


def selection_score(table):
    """The rule's score for every row of a selection table: ``contrast`` where
    ``stability >= MIN_STABILITY`` (0 elsewhere; when no row is stable, ``contrast``)."""
    contrast = np.nan_to_num(np.asarray(table["contrast"], dtype=float), nan=0.0)
    stable = np.nan_to_num(np.asarray(table["stability"], dtype=float), nan=1.0) \
        >= MIN_STABILITY
    if not stable.any():
        return contrast
    return np.where(stable, contrast, 0.0)


def apply_rule(table):
    """Index (position) of the row the rule (:data:`RULE`) picks in a selection table."""
    score = selection_score(table)
    k = np.asarray(table["n_components"])
    a = np.asarray(table["alpha"], dtype=float)
    best_level, pick = -np.inf, None
    for kk in sorted(set(k.tolist())):    # fewer topics first: a tie keeps fewer topics
        level, row = first_peak(score, a, np.flatnonzero(k == kk))
        if level > best_level:
            best_level, pick = level, row
    return int(pick)


def first_peak(score, alpha, rows):
    """``(level, row)`` of the first peak of ``score`` along increasing ``alpha`` among
    ``rows`` (one K): the best score so far until a score first falls more than
    :data:`CONTRAST_TIE` below it, and the row of the largest alpha before that fall whose
    score is within :data:`CONTRAST_TIE` of the peak."""
    rows = np.asarray(rows)[np.argsort(np.asarray(alpha)[rows], kind="stable")]
    peak, stop = -np.inf, len(rows)
    for j, i in enumerate(rows):
        if score[i] < peak - CONTRAST_TIE:
            stop = j
            break
        peak = max(peak, score[i])
    candidates = [i for i in rows[:stop] if score[i] >= peak - CONTRAST_TIE]
    return float(peak), int(max(candidates, key=lambda i: alpha[i]))


def grid_edges(table, pick):
    """Messages for a choice at the edge of the grid, where the grid may have cut the search
    short: the largest alpha while the contrast at that K had not fallen (the first peak may
    lie beyond), or the largest K (more topics might score higher).  Empty when the choice is
    inside the grid or the grid has one value there."""
    k = np.asarray(table["n_components"])
    a = np.asarray(table["alpha"], dtype=float)
    out = []
    at_k = a[k == k[pick]]
    if len(np.unique(at_k)) > 1 and a[pick] == at_k.max():
        out.append(f"select_model chose alpha = {a[pick]:g}, the largest alpha of the grid, "
                   f"and the contrast at n_components = {k[pick]} had not fallen there: its "
                   "first peak may lie at a larger alpha. Extend the alpha grid to see it.")
    if len(np.unique(k)) > 1 and k[pick] == k.max():
        out.append(f"select_model chose n_components = {k[pick]}, the largest of the grid: "
                   "more topics might score higher. Extend the grid of n_components to see "
                   "whether the contrast still rises.")
    return out


def noise_columns(table, placements, pick):
    """How far every grid point is from the chosen one, in units of the held-out noise.

    Returns ``(contrast_gap, contrast_gap_se, within_noise)``: the chosen point's contrast
    minus this point's, the standard error of that difference on the shared held-out cells
    (:func:`paired_contrast_se`; 0 for the chosen point itself) and whether the gap is at most
    one such standard error, i.e. whether the held-out cells cannot tell the two apart.
    ``placements`` holds one ``(target, background)`` pair of DeLong placements per row.
    """
    contrast = np.asarray(table["contrast"], dtype=float)
    gap = contrast[pick] - contrast
    se = np.array([paired_contrast_se(placements[i], placements[pick]) if i != pick else 0.0
                   for i in range(len(contrast))])
    within = np.where(np.isfinite(se), gap <= se, False)
    return gap, se, within


@dataclass(frozen=True, repr=False)
class SelectionResult:
    """Result of :func:`select_model`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per grid point: ``n_components``, ``alpha``, every criterion (see
        :mod:`bcnmf.selection`), ``score`` and ``chosen``.
    best : dict
        ``{"n_components": K, "alpha": a}`` chosen by the rule.
    best_model : BCNMF or None
        The chosen model refitted on all cells (None with ``refit=False``).
    rule : str
        The rule, in words.
    settings : dict
        ``n_init``, ``n_splits``, ``holdout``, ``by_sample`` (whether ``samples`` and
        ``background_samples`` were given), ``random_state``, the restart seeds (one list per
        split) and the fit parameters.
    placements : list of (ndarray, ndarray) or None
        Per grid point (rows of ``table``), the DeLong placements of the held-out target and
        background cells averaged over the restarts, the held-out cells of every split one
        after the other: for a target cell, the fraction of
        held-out background cells it is better explained than (ties half), and for a
        background cell, the fraction of target cells better explained than it.  Their means
        are the ``contrast``; :func:`paired_contrast_se` compares two grid points with them.
    """

    table: object
    best: dict
    best_model: object = None
    rule: str = RULE
    settings: dict = field(default_factory=dict)
    placements: list = None

    def plot(self, value="score", ax=None):
        """Heatmap of one column of ``table`` over the grid, the chosen point outlined
        (:func:`bcnmf.pl.selection_grid`; needs matplotlib).  Returns the Axes."""
        from . import pl

        return pl.selection_grid(self.table, value=value, best=self.best, ax=ax)

    def __repr__(self):
        return (f"SelectionResult(best={self.best}, grid={len(self.table)} points, "
                f"columns={list(self.table.columns)})")


# ------------------------------------------------------------------------------------------
# criteria
# ------------------------------------------------------------------------------------------

def _dense(A):
    import scipy.sparse as sp

    return A.toarray() if sp.issparse(A) else np.asarray(A)


def _per_cell_divergence(A, pred, loss):
    """(divergence, null divergence) per cell."""
    A = _dense(A).astype(np.float64, copy=False)
    pred = np.asarray(pred, dtype=np.float64)
    if loss == "frobenius":
        return ((A - pred) ** 2).sum(axis=1), (A ** 2).sum(axis=1)
    tiny = np.finfo(np.float64).tiny
    pred = np.maximum(pred, tiny)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(A > 0, A * np.log(np.maximum(A, tiny) / pred), 0.0)
    return (term - A + pred).sum(axis=1), None


def _kl_null(A, profile):
    A = _dense(A).astype(np.float64, copy=False)
    pred = np.maximum(A.sum(axis=1, keepdims=True) * profile[None, :],
                      np.finfo(np.float64).tiny)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(A > 0, A * np.log(np.maximum(A, np.finfo(np.float64).tiny) / pred), 0.0)
    return (term - A + pred).sum(axis=1)


def _auc(a, b):
    """P(a > b) + P(a = b) / 2 for independent draws of the two samples."""
    from scipy.stats import rankdata

    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([a, b]))
    u = ranks[: a.size].sum() - a.size * (a.size + 1) / 2.0
    return float(u / (a.size * b.size))


def paired_contrast_se(first, second):
    """Standard error of the difference of two grid points' contrasts measured on the same
    held-out cells (DeLong, DeLong and Clarke-Pearson 1988).

    ``first`` and ``second`` are ``(target placements, background placements)`` pairs (the
    ``placements`` of a :class:`SelectionResult`).  Both contrasts are measured on the same
    cells, so the sampling noise they share cancels in the difference; this is the noise
    level against which the rule compares grid points.
    """
    return paired_se(first, second)


def _auc_se(auc, n_a, n_b):
    """Standard error of an AUC estimate (Hanley and McNeil 1982)."""
    if not np.isfinite(auc) or n_a < 1 or n_b < 1:
        return float("nan")
    q1, q2 = auc / (2.0 - auc), 2.0 * auc ** 2 / (1.0 + auc)
    var = (auc * (1 - auc) + (n_a - 1) * (q1 - auc ** 2) + (n_b - 1) * (q2 - auc ** 2)) \
        / (n_a * n_b)
    return float(np.sqrt(max(var, 0.0)))


def _dispersion(assignments):
    """Dispersion coefficient of the consensus matrix of several partitions (rows)."""
    labels = np.asarray(assignments)
    n_runs, n = labels.shape
    if n < 2:
        return float("nan")
    m = np.zeros((n, n))
    for row in labels:
        m += row[:, None] == row[None, :]
    m /= n_runs
    return float(np.mean(4.0 * (m - 0.5) ** 2))


def _rows_count(A):
    return int(A.shape[0])


def _explained(d, d0):
    total = d0.sum()
    return float(1.0 - d.sum() / total) if total > 0 else float("nan")


def _heldout(model, A, basis, as_background):
    """Codes of held-out cells and the model's prediction of them (stable Poisson: the
    prediction floor and, when the model has them, the shared topics included)."""
    from .core.fit import split_offset, transform_codes

    state = model.fit_state_
    offset = state.offsets[1 if as_background else 0]
    floor, shared = split_offset(offset)
    if shared is None:
        codes = model.transform(A, as_background=as_background)
        return codes, codes @ basis + (0.0 if floor is None else floor)
    A = A.astype(np.float64) if A.dtype != np.float64 else A   # the basis's dtype
    full, _ = transform_codes(A, basis, state.settings, state.policy, offset,
                              model.transform_max_iter, model.tol, full=True)
    k = basis.shape[0]
    return full[:, :k], full @ np.vstack([basis, shared]) + floor


def _shared_null(model, A, as_background):
    """Per-cell divergence of the shared-only prediction of held-out cells (the shared
    topics with their codes solved, plus the floor of stable Poisson; no contrastive
    topic), or None when the model has no shared topics."""
    from .core.fit import split_offset, transform_codes

    state = model.fit_state_
    floor, shared = split_offset(state.offsets[1 if as_background else 0])
    if shared is None:
        return None
    shared = np.asarray(shared, dtype=np.float64)
    A = A.astype(np.float64) if A.dtype != np.float64 else A
    codes, _ = transform_codes(A, shared, state.settings, state.policy, floor,
                               model.transform_max_iter, model.tol)
    pred = codes @ shared + (0.0 if floor is None else floor)
    return _per_cell_divergence(A, pred, state.settings.loss)[0]


def _evaluate(k, alpha, X, Y, split, seeds, params, consensus_cells):
    """Fit one grid point ``len(seeds)`` times on the training cells of one split (``split``:
    the training and held-out rows of ``X`` and of ``Y``); its criteria.  The rows are taken
    here, so that the splits hold indices, not copies of the data."""
    from threadpoolctl import threadpool_limits

    from .estimator import BCNMF
    from .matching import restart_agreement

    x_tr, y_tr, x_ho, y_ho = (A[rows] for A, rows in zip((X, Y, X, Y), split))
    loss = "frobenius" if params.get("beta_loss", "frobenius") == "frobenius" \
        else "kullback-leibler"
    profile = None
    if loss != "frobenius":
        col = np.asarray(x_tr.sum(axis=0)).ravel() + np.asarray(y_tr.sum(axis=0)).ravel()
        profile = col / max(col.sum(), np.finfo(np.float64).tiny)
    rows = {"fit_target": [], "fit_background": [], "heldout_target": [],
            "heldout_background": [], "contrast": [], "n_iter": []}
    bases, assign = [], []
    place_t, place_b = [], []
    n_warnings = 0
    t0 = time.perf_counter()
    with threadpool_limits(limits=1), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for seed in seeds:
            # its restarts measure stability, so they start from random draws unless the
            # caller sets the start (the contrastive start does not depend on the seed)
            model = BCNMF(int(k), alpha=float(alpha), random_state=int(seed),
                          **{**params, "init": params.get("init") or "random"})
            codes_tr = model.fit_transform(x_tr, background=y_tr)
            basis = np.asarray(model.components_, dtype=np.float64)
            cx, px = _heldout(model, x_ho, basis, False)
            cy, py = _heldout(model, y_ho, basis, True)
            dx, nx = _per_cell_divergence(x_ho, px, loss)
            dy, ny = _per_cell_divergence(y_ho, py, loss)
            # the null: the shared-only prediction when the model has shared topics
            # (they are shared by every grid point and explain most of both datasets),
            # else the zero prediction (squared error) or each cell's total along the
            # training mean profile (KL)
            sx, sy = _shared_null(model, x_ho, False), _shared_null(model, y_ho, True)
            if sx is not None:
                nx, ny = sx, sy
            elif loss != "frobenius":
                nx, ny = _kl_null(x_ho, profile), _kl_null(y_ho, profile)
            with np.errstate(divide="ignore", invalid="ignore"):
                ex = np.where(nx > 0, 1.0 - dx / nx, np.nan)
                ey = np.where(ny > 0, 1.0 - dy / ny, np.nan)
            rows["heldout_target"].append(_explained(dx, nx))
            rows["heldout_background"].append(_explained(dy, ny))
            rows["contrast"].append(_auc(ex, ey))
            vt, vb = _placements(ex, ey)
            place_t.append(vt)
            place_b.append(vb)
            hist = model.history_
            rows["fit_target"].append(float(hist["target"][-1]))
            rows["fit_background"].append(float(hist["background"][-1]))
            rows["n_iter"].append(int(model.n_iter_))
            bases.append(basis)
            all_codes = np.vstack([codes_tr, cx])[consensus_cells]
            assign.append(np.argmax(all_codes, axis=1))
    n_warnings = len(caught)
    out = {key: _nanmean(v) for key, v in rows.items()}
    out["_contrasts"] = rows["contrast"]
    out["contrast_se"] = _auc_se(out["contrast"], _rows_count(x_ho), _rows_count(y_ho))
    if len(bases) > 1:
        agreement = restart_agreement(bases)
        out["stability"] = float(agreement.mean())
        from .matching import consensus_basis

        _, per_topic, _ = consensus_basis(bases)
        out["stability_min"] = float(per_topic.min())
        out["consensus"] = _dispersion(assign) if int(k) > 1 else 1.0
    else:
        out["stability"] = out["stability_min"] = out["consensus"] = float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN cells stay NaN
        out["_placements"] = (np.nanmean(place_t, axis=0), np.nanmean(place_b, axis=0))
    out["n_warnings"] = n_warnings
    out["seconds"] = time.perf_counter() - t0
    return out


def _nanmean(values):
    values = np.asarray(values, dtype=float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


#: criteria averaged over the hold-out splits
_AVERAGED = ("fit_target", "fit_background", "heldout_target", "heldout_background",
             "contrast", "n_iter", "stability", "stability_min", "consensus")


def _combine(splits):
    """One grid point's criteria from its evaluations on independent hold-out splits: the
    criteria averaged; ``contrast_sd`` the spread over every fit; ``contrast_se`` the
    standard error of the averaged contrast; the placements of the held-out cells of all
    splits pooled (their means are the averaged contrast when the splits are the same
    size)."""
    out = {key: _nanmean([part[key] for part in splits]) for key in _AVERAGED}
    contrasts = np.concatenate([part["_contrasts"] for part in splits])
    out["contrast_sd"] = float(np.nanstd(contrasts)) if contrasts.size > 1 else 0.0
    out["contrast_se"] = float(np.sqrt(np.sum([part["contrast_se"] ** 2 for part in splits]))
                               / len(splits))
    out["n_warnings"] = int(sum(part["n_warnings"] for part in splits))
    out["seconds"] = float(sum(part["seconds"] for part in splits))
    out["_placements"] = tuple(np.concatenate([part["_placements"][j] for part in splits])
                               for j in (0, 1))
    return out


# ------------------------------------------------------------------------------------------
# driver
# ------------------------------------------------------------------------------------------

def _as_list(values, name, kind):
    if np.ndim(values) == 0:
        values = [values]
    values = list(values)
    if not values:
        raise ValueError(f"{name} must list at least one value.")
    for v in values:
        if kind == "int":
            ok = isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
        else:
            ok = isinstance(v, (int, float, np.integer, np.floating)) and \
                not isinstance(v, bool) and np.isfinite(v) and v >= 0
        if not ok:
            accepted = "ints >= 1" if kind == "int" else "finite reals >= 0"
            raise ValueError(f"{name} must hold {accepted}; got {v!r}.")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} has repeated values: {values}.")
    return values


def _seeds(random_state, n):
    rng = np.random.default_rng(resolve_seed(random_state))
    return rng, rng.integers(0, 2**31 - 1, size=n)


def _split(n, holdout, rng, name, samples=None):
    """``(training rows, held-out rows)``: a random ``holdout`` of the cells, or, with
    ``samples`` (the sample of every cell), of whole samples (samples in random order until
    they hold at least ``holdout`` of the cells)."""
    if samples is None:
        n_ho = int(round(holdout * n))
        perm = rng.permutation(n)
        held = np.zeros(n, dtype=bool)
        held[perm[:n_ho]] = True
    else:
        _, which = np.unique(samples, return_inverse=True)
        sizes = np.bincount(which)
        order = rng.permutation(len(sizes))
        n_held = int(np.searchsorted(np.cumsum(sizes[order]), holdout * n) + 1)
        held = np.isin(which, order[:n_held])
        if held.all():
            raise ValueError(f"holdout={holdout} takes every sample of {name}; give more "
                             "samples or a smaller holdout.")
    n_ho = int(held.sum())
    if n_ho < 2 or n - n_ho < 2:
        raise ValueError(f"holdout={holdout} leaves {n - n_ho} training and {n_ho} held-out "
                         f"cells of {name} ({n}); each needs at least 2.")
    return np.flatnonzero(~held), np.flatnonzero(held)


def _check_samples(samples, n, name):
    if samples is None:
        return None
    samples = np.asarray(samples)
    if samples.ndim != 1 or samples.shape[0] != n:
        raise ValueError(f"{name} must be one label per cell ({n}); got shape "
                         f"{samples.shape}.")
    if samples.dtype.kind == "f" and np.isnan(samples).any():
        raise ValueError(f"{name} has NaN labels; give every cell a sample.")
    return samples


def select_model(X, n_components=(2, 3, 5), *, background, alpha=(0.25, 0.5, 1.0, 1.5, 2.0),
                 beta_loss="frobenius", n_init=3, n_splits=3, holdout=0.2, samples=None,
                 background_samples=None, n_jobs=1, random_state=0, progress=False,
                 refit=True, max_cells=500, **fit_params) -> SelectionResult:
    """Choose ``(n_components, alpha)`` without labels.

    Every grid point is fitted ``n_init`` times (seeds shared by all grid points) on a
    random ``1 - holdout`` of the target and background cells; the held-out cells are encoded
    with the basis frozen.  This is repeated on ``n_splits`` independent random splits.  The
    criteria (see :mod:`bcnmf.selection`) are averaged over the restarts and the splits, and
    the documented rule (:data:`RULE`) picks one grid point.

    Cost: ``len(n_components) * len(alpha) * n_init * n_splits`` fits (135 at the
    defaults) plus the held-out encodings, measured at 88-263 times one fit
    (docs/selection.md); ``BCNMF(alpha="auto")`` chooses alpha for about 3-4 fits.

    Parameters
    ----------
    X : array-like or sparse of shape (n_target, n_features)
        Target cells.
    n_components : int or sequence of int, default=(2, 3, 5)
    background : array-like or sparse of shape (n_background, n_features)
        Background cells, same features (required).
    alpha : float or sequence of float, default=(0.25, 0.5, 1.0, 1.5, 2.0)
        Contrast weights, on the scale of ``alpha_scale`` (relative by default).
    beta_loss : {"frobenius", "kullback-leibler", "poisson"}, default="frobenius"
    n_init : int, default=3
        Fits (restarts) per grid point and split (>= 2: stability and consensus need several),
        each from its own random start (``init="random"`` unless ``init`` is passed).
    n_splits : int, default=3
        Independent random hold-out splits; every criterion is averaged over them (the cost
        grows in proportion).  The rule was validated with 3 (``docs/selection.md``).
    holdout : float in (0, 1), default=0.2
        Fraction of the cells (of each dataset) held out.
    samples, background_samples : array-like of shape (n_target,) / (n_background,), optional
        The sample each cell comes from (a mouse, a donor, a well).  Cells of one sample are
        then held out together (whole samples in random order, until they hold at least
        ``holdout`` of the cells), so that the held-out fit measures how a model carries over
        to new samples rather than to replicates of its training cells.
    n_jobs : int, default=1
        Grid points evaluated in parallel with joblib (-1: all cores).  Each fit runs with one
        BLAS thread, so results do not depend on ``n_jobs``.
    random_state : int, RandomState, Generator or None, default=0
        Seeds the split and the restarts; a fixed int gives the same table every time.
    progress : bool, default=False
        Show progress on stderr (a tqdm bar when tqdm is installed, else one line per grid
        point and split).
    refit : bool, default=True
        Refit the chosen grid point on all cells (``best_model``, with
        ``n_init`` restarts and their consensus).
    max_cells : int, default=500
        Target cells (a fixed random subset) used for the consensus matrix.
    **fit_params
        Further :class:`bcnmf.BCNMF` parameters (``mode``, ``max_iter``, ``tol``,
        ``alpha_scale``, ``smoothing``...; not ``consensus``, which the refit sets).

    Returns
    -------
    SelectionResult

    Warns
    -----
    UserWarning
        When the choice is the grid's largest alpha or largest K (:func:`grid_edges`): the
        grid may have cut the search short.

    Examples
    --------
    >>> import numpy as np
    >>> from bcnmf import select_model
    >>> rng = np.random.default_rng(0)
    >>> Y = rng.poisson(2.0, size=(80, 15)).astype(float)
    >>> X = rng.poisson(2.0, size=(80, 15)).astype(float)
    >>> X[:40, :3] += 6.0
    >>> X[40:, 3:6] += 6.0
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:   # a choice at the grid's edge
    ...     warnings.simplefilter("always")
    ...     res = select_model(X, [2, 3], background=Y, alpha=[0.5, 1.0], n_init=2,
    ...                        max_iter=300, tol=1e-3)
    >>> sorted(res.best), len(res.table)
    (['alpha', 'n_components'], 4)
    >>> all(str(w.message).startswith("select_model chose") for w in caught)
    True
    """
    import pandas as pd
    from joblib import Parallel, delayed

    from ._progress import Progress
    from ._validation import check_matrix, check_params, check_same_features, feature_names

    ks = _as_list(n_components, "n_components", "int")
    alphas = _as_list(alpha, "alpha", "real")
    if not (isinstance(n_init, (int, np.integer)) and not isinstance(n_init, bool)
            and n_init >= 2):
        raise ValueError(f"n_init must be an int >= 2 (stability needs several fits); "
                         f"got {n_init!r}.")
    if not (isinstance(n_splits, (int, np.integer)) and not isinstance(n_splits, bool)
            and n_splits >= 1):
        raise ValueError(f"n_splits must be an int >= 1 (random hold-out splits); got "
                         f"{n_splits!r}.")
    if not (isinstance(holdout, (float, int)) and 0 < holdout < 1):
        raise ValueError(f"holdout must be a fraction in (0, 1); got {holdout!r}.")
    if background is None:
        raise ValueError("select_model needs background= (the background cells): the "
                         "criteria contrast the target against it.")
    if "consensus" in fit_params:
        raise TypeError("consensus is set by select_model (the refit is the consensus of its "
                        "restarts); do not pass it.")
    from .estimator import BCNMF

    own = {"n_components", "alpha", "beta_loss", "n_init", "random_state", "consensus"}
    unknown = sorted(set(fit_params) - set(BCNMF().get_params()))
    if unknown:
        raise TypeError(f"select_model got unknown BCNMF parameters {unknown}; accepted: "
                        f"{sorted(set(BCNMF().get_params()) - own)}.")
    params = {"beta_loss": beta_loss, **fit_params}
    check_params(params, owner="select_model")
    x_names = feature_names(X)
    Xc = check_matrix(X, "X", "select_model")
    Yc = check_matrix(background, "background", "select_model")
    check_same_features(Xc, Yc, x_names, feature_names(background), "select_model")
    if Yc.dtype != Xc.dtype:
        Yc = Yc.astype(Xc.dtype)
    too_big = [k for k in ks if k > Xc.shape[1]]
    if too_big:
        raise ValueError(f"n_components {too_big} exceed the number of features "
                         f"({Xc.shape[1]}).")
    samples = _check_samples(samples, Xc.shape[0], "samples")
    background_samples = _check_samples(background_samples, Yc.shape[0], "background_samples")
    rng, seeds = _seeds(random_state, int(n_init))
    n_all = Xc.shape[0]
    splits = []     # (training and held-out rows, restart seeds, consensus cells) per split
    cells = None
    for s in range(int(n_splits)):
        if s:
            seeds = rng.integers(0, 2**31 - 1, size=int(n_init))
        tr_x, ho_x = _split(Xc.shape[0], holdout, rng, "X", samples)
        tr_y, ho_y = _split(Yc.shape[0], holdout, rng, "background", background_samples)
        if cells is None:   # one random subset of the target cells for every split
            cells = np.sort(rng.permutation(n_all)[:max_cells]) if n_all > max_cells \
                else np.arange(n_all)
        # positions of those cells in vstack([train, held-out]) order
        where = np.empty(n_all, dtype=np.intp)
        where[np.concatenate([tr_x, ho_x])] = np.arange(n_all)
        splits.append(((tr_x, tr_y, ho_x, ho_y), seeds, np.sort(where[cells])))
    grid = [(k, a) for k in ks for a in alphas]
    tasks = [(k, a, s, split) for k, a in grid for s, split in enumerate(splits)]
    bar = Progress(progress, len(tasks), "select_model", "evaluation")
    try:
        if n_jobs == 1:
            parts = []
            for k, a, s, (rows, seeds_s, cells_s) in tasks:
                parts.append(_evaluate(k, a, Xc, Yc, rows, seeds_s, params, cells_s))
                bar.update(f"K={k}, alpha={a:g}, split {s + 1}/{len(splits)}")
        else:
            jobs = Parallel(n_jobs=n_jobs, return_as="generator")(
                delayed(_evaluate)(k, a, Xc, Yc, rows, seeds_s, params, cells_s)
                for k, a, _, (rows, seeds_s, cells_s) in tasks)
            parts = []
            for (k, a, s, _), res in zip(tasks, jobs):
                parts.append(res)
                bar.update(f"K={k}, alpha={a:g}, split {s + 1}/{len(splits)}")
    finally:
        bar.close()
    n_sp = len(splits)
    results = [_combine(parts[g * n_sp:(g + 1) * n_sp]) for g in range(len(grid))]
    placements = [res.pop("_placements") for res in results]
    table = pd.DataFrame([{"n_components": int(k), "alpha": float(a), **res}
                          for (k, a), res in zip(grid, results)])
    columns = ["n_components", "alpha", "score", "contrast", "contrast_sd", "contrast_se",
               "stability",
               "stability_min", "consensus", "heldout_target", "heldout_background",
               "fit_target", "fit_background", "n_iter", "n_warnings", "seconds"]
    table["score"] = selection_score(table)
    table = table[columns]
    pick = apply_rule(table)
    for message in grid_edges(table, pick):
        warnings.warn(message, UserWarning, stacklevel=2)
    table["chosen"] = np.arange(len(table)) == pick
    table["contrast_gap"], table["contrast_gap_se"], table["within_noise"] = \
        noise_columns(table, placements, pick)
    best = {"n_components": int(table["n_components"].iloc[pick]),
            "alpha": float(table["alpha"].iloc[pick])}
    model = None
    if refit:
        model = BCNMF(best["n_components"], alpha=best["alpha"], n_init=int(n_init),
                      consensus=True, random_state=int(splits[0][1][0]), **params)
        model.fit(X, background=background)
    settings = {"n_init": int(n_init), "n_splits": int(n_splits),
                "holdout": float(holdout),
                "by_sample": (samples is not None, background_samples is not None),
                "random_state": random_state if isinstance(random_state, (int, type(None)))
                else "generator",
                "seeds": [[int(x) for x in split[1]] for split in splits], **params}
    return SelectionResult(table=table, best=best, best_model=model, rule=RULE,
                           settings=settings, placements=placements)
