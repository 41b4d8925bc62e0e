"""Choosing the contrast weight alpha (and, on request, K) without labels, at the cost of a
few fits.

``alpha="auto"`` (the estimators' default) runs :func:`settle` before the fit:

1. **Cells.**  At most :data:`MAX_CELLS` cells of each dataset (all of them below; beyond, a
   fixed random subset read on the host whatever the engine), split at random into two
   halves of the target and two of the background.
2. **Screening fits.**  At every alpha of :data:`GRID` each half is fitted with a short fit
   (:func:`screen_sweeps` sweeps, from one random start per half shared by every alpha), with
   its own shared topics fitted once on its background half, and the *other* half's cells are
   encoded with the fitted topics frozen: every cell is scored once, by topics fitted
   without it (two-fold cross-fitting).
3. **The criterion, without labels**: ``contrast``, the probability that a held-out target
   cell is better explained by the contrastive topics than a held-out background cell (the
   area under the ROC curve of the per-cell explained fraction ``1 - D(a | prediction) /
   D(a | null)``; the null is the shared topics alone with their codes solved, or without
   shared topics the zero prediction for squared error and each cell's total along the mean
   profile for KL).  It measures what the contrast asks for, topics that explain the target
   and not the background, and it is scale-free, so it does not reward a small or a large
   alpha by itself.  Scored in sample it would not be 0.5 for a target drawn like the
   background (topics fitted to target cells explain those cells better); held out it is.
   ``stability`` (the two halves' matched topics) is reported, not used.
4. **The rule** (:data:`RULE`): among the fits that have not collapsed (:func:`counted`),
   the alphas whose contrast the held-out cells cannot tell from the best (:func:`_tie`:
   within one paired standard error of the difference, DeLong) are tied, and the middle one
   of them along alpha is chosen (:func:`pick`).  A choice at an edge of the grid whose
   contrast beats every other alpha's extends the grid in that direction (:data:`EXTEND`).
5. When the best contrast is within :data:`NULL_Z` standard errors of 0.5 (no alpha
   separates the datasets), or the best lies at the edge of the extended grid, the choice
   says so (``status`` and ``message``) and the estimator warns.

The fit at the chosen alpha is then an ordinary fit on all cells (any engine), so that
``BCNMF(alpha="auto", random_state=s)`` equals ``BCNMF(alpha=model.alpha_, random_state=s)``.
``n_components="auto"`` screens every K of :data:`K_GRID` on the same halves and keeps the K
whose best contrast is highest; a K with more topics must beat one with fewer by more than
their tie.

Designed on the simulations of :mod:`bcnmf.datasets` (``make_contrastive_counts``,
``make_cell_type_counts``) and the two benchmark sets of the docs (mouse proteins, digits
on flowers); docs/selection.md reports how it does on other seeds and settings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

#: the relative alphas screened
GRID = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0)
#: alphas screened beyond the grid when the choice is at its edge and still rising: up, down
EXTEND = ((8.0, 12.0), (0.125, 0.0625))
#: below this many cells in a dataset there are too few to score held-out halves: alpha
#: 1 (target and background weighed equally) is used, with a warning
MIN_CELLS = 20
#: the numbers of topics ``n_components="auto"`` screens
K_GRID = (2, 3, 5, 8)
#: cells of each dataset the choice is made on (a fixed random subset beyond)
MAX_CELLS = 2000
#: contrasts within this of the best are tied ...
CONTRAST_TIE = 0.005
#: ... and within this many standard errors of their difference on the same cells
TIE_SE = 1.0
#: a best contrast within this many null standard errors of 0.5 means no alpha separates
#: the datasets
NULL_Z = 2.0
#: screened fits whose contrastive topics explain less than this fraction of what they
#: explain at their best alpha have collapsed (see :func:`counted`)
COLLAPSE = 0.5
#: a screening fit runs this fraction of the fit's ``max_iter`` sweeps ...
SCREEN_FRACTION = 0.2
#: ... and at least this many
MIN_SWEEPS = 50

RULE = (
    "Every alpha of the grid is screened by short fits on two halves of the cells, each "
    "scored on the other half. contrast = probability that a held-out target cell is better "
    "explained by the contrastive topics than a held-out background cell (per-cell fraction "
    "of the divergence beyond the shared topics that the contrastive topics explain). Among "
    f"fits that have not collapsed (explaining at least {COLLAPSE:g} of the target's "
    "divergence they explain at their best alpha), alphas whose contrast is within one "
    f"paired standard error (at least {CONTRAST_TIE}) of the best are tied, and the middle "
    "one along alpha is chosen. A choice at the grid's edge that beats every other alpha "
    "extends the grid. No labels are used.")


@dataclass(frozen=True)
class AlphaChoice:
    """What :func:`settle` found: the chosen relative ``alpha`` and ``n_components``, the
    screening ``table`` (a dict of equal-length lists: ``n_components``, ``alpha``,
    ``contrast``, ``explained_target``, ``explained_background``, ``n_iter``, ``counted``,
    ``chosen``), the ``status`` (``"ok"``, ``"edge"``: the best alpha lies at the edge of
    the extended grid, ``"no_contrast"``, or ``"too_few_cells"``: nothing was screened and
    alpha is 1), a ``message`` for the user (None when
    ``"ok"``) and the numbers of cells of each dataset screened."""

    alpha: float
    n_components: int
    table: dict
    status: str = "ok"
    message: str | None = None
    n_cells: tuple = (0, 0)


# ------------------------------------------------------------------------------ criteria

def per_cell_divergence(A, codes, basis, floor, loss):
    """Per-cell divergence ``D(a_i | codes_i basis + floor)`` of a host matrix (numpy or
    scipy), in chunks of cells so that no dense copy of a sparse ``A`` is made."""
    n, f = A.shape
    step = max(1, (1 << 22) // max(f, 1))
    basis = np.asarray(basis, dtype=np.float64)
    out = np.empty(n)
    tiny = np.finfo(np.float64).tiny
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        part = A[lo:hi]
        a = np.asarray(part.toarray() if sp.issparse(part) else part, dtype=np.float64)
        pred = np.asarray(codes[lo:hi], dtype=np.float64) @ basis
        if floor is not None:
            pred = pred + np.asarray(floor, dtype=np.float64)[None, :]
        if loss == "frobenius":
            out[lo:hi] = ((a - pred) ** 2).sum(axis=1)
        else:
            pred = np.maximum(pred, tiny)
            with np.errstate(divide="ignore", invalid="ignore"):
                term = np.where(a > 0, a * np.log(np.maximum(a, tiny) / pred), 0.0)
            out[lo:hi] = (term - a + pred).sum(axis=1)
    return out


def placements(a, b):
    """DeLong placements of two samples: ``P(b < a_i) + P(b = a_i) / 2`` for every ``a_i``
    and ``P(a > b_j) + P(a = b_j) / 2`` for every ``b_j`` (NaN where the value is not
    finite).  Both means are the AUC ``P(a > b) + P(a = b) / 2``."""
    from scipy.stats import rankdata

    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    fa, fb = np.isfinite(a), np.isfinite(b)
    va = np.full(a.shape, np.nan)
    vb = np.full(b.shape, np.nan)
    na, nb = int(fa.sum()), int(fb.sum())
    if na == 0 or nb == 0:
        return va, vb
    a_, b_ = a[fa], b[fb]
    both = rankdata(np.concatenate([a_, b_]))
    # rank among the pooled sample minus rank within its own sample = number of the other
    # sample's values below it (ties counted half)
    va[fa] = (both[:na] - rankdata(a_)) / nb
    vb[fb] = 1.0 - (both[na:] - rankdata(b_)) / na
    return va, vb


def paired_se(first, second) -> float:
    """Standard error of the difference of two contrasts measured on the same cells, from
    their ``(target, background)`` placements (DeLong, DeLong and Clarke-Pearson 1988;
    cells whose placement is not finite are left out): the noise against which two
    screened alphas, or two grid points of :func:`bcnmf.select_model`, are compared."""
    (ta, ba), (tb, bb) = first, second
    dt = np.asarray(ta, dtype=float) - np.asarray(tb, dtype=float)
    db = np.asarray(ba, dtype=float) - np.asarray(bb, dtype=float)
    dt, db = dt[np.isfinite(dt)], db[np.isfinite(db)]
    if dt.size < 2 or db.size < 2:
        return float("nan")
    return float(np.sqrt(dt.var(ddof=1) / dt.size + db.var(ddof=1) / db.size))


def null_se(n_target, n_background) -> float:
    """Standard error of the contrast (an AUC) of cells that do not differ: ``sqrt((m + n +
    1) / (12 m n))``."""
    m, n = n_target, n_background
    return float(np.sqrt((m + n + 1) / (12.0 * m * n)))


# ------------------------------------------------------------------------------ screening

class _Fold:
    """One of the two folds of a choice: the screening fits run on its training cells and
    are scored on the other fold's cells, encoded with the fitted topics frozen.  What does
    not depend on K or alpha (blocks, floors, shared topics, the held-out cells' null
    divergences) is set up once; a random start once per K, a contrastive start once per K
    and alpha."""

    def __init__(self, train, test, s, seed, n_shared, sweeps):
        from .fit import _scanned, _stack_offset, contrast_offsets, raw_alpha, step_policy
        from .source import make_blocks

        (X, Y), self.test, self.s, self.sweeps, self.seed = train, test, s, sweeps, seed
        self.train = train
        # the shared topics of the training background only: fitted on held-out background
        # cells too, they would explain those better than held-out target cells
        shared = fit_shared(Y, s, n_shared)
        self.shared, self.shared_codes = (None, None) if shared is None else shared
        (source_x, info_x), (source_y, info_y) = (_scanned(X, "X", s.loss, None),
                                                  _scanned(Y, "background", s.loss, None))
        self.info = (info_x, info_y)
        self.policy = step_policy(info_x, s)
        self.unit = raw_alpha(info_x, info_y, replace(s, alpha=1.0))
        self.floors = contrast_offsets(info_x, info_y, s)
        # the prediction offsets of held-out cells, as a fitted model keeps them
        self.offsets = tuple(f if self.shared is None else _stack_offset(f, self.shared)
                             for f in self.floors)
        self.blocks = (make_blocks(source_x, info_x, s.loss, self.floors[0]),
                       make_blocks(source_y, info_y, s.loss, self.floors[1]))
        self.null = tuple(self._null(A, side) for side, A in enumerate(test))
        self.starts = {}

    def _start(self, k, alpha):
        """The loop's settings and the starting factors of the screening fits with ``k``
        topics: drawn once per K and shared by every alpha, or with
        ``init="contrastive"`` the relaxation of the contrast at ``alpha``."""
        from .fit import _augment, _drawn, _options
        from .init import codes_for_basis, contrastive_basis, initial_factors
        from .solver import normalize_basis

        key = (k, alpha) if self.s.init == "contrastive" else k
        if key not in self.starts:
            info_x, info_y = self.info
            if self.s.init == "contrastive":
                (X, Y), shared = self.train, self.shared
                basis = contrastive_basis(X, Y, k, float(alpha) * self.unit, self.s.loss,
                                          None if shared is None else np.asarray(shared))
                cx, cy = codes_for_basis(X, basis), codes_for_basis(Y, basis)
            else:
                basis, cx, cy = initial_factors(info_x, info_y, k, _drawn(self.s.init),
                                                np.random.default_rng(self.seed), np.float64)
            opts = _options(replace(self.s, n_components=k), 0.0, self.policy,
                            None if self.shared is None else k)
            if opts.normalize:
                normalize_basis(basis, [cx, cy], self.policy.basis_floor)
            if self.shared is not None:
                basis, cx, cy = _augment(basis, cx, cy, (self.shared, self.shared_codes),
                                         info_x, info_y)
            self.starts[key] = (opts, (basis, cx, cy))
        return self.starts[key]

    def _null(self, A, side):
        """Per-cell divergence of the null prediction of held-out cells (see the module
        docstring)."""
        from .fit import transform_codes

        floor = self.floors[side]
        if self.shared is not None:
            codes, _ = transform_codes(A, self.shared, self.s, self.policy, floor,
                                       self.sweeps, self.s.tol or 1e-4)
            return per_cell_divergence(A, codes, self.shared, floor, self.s.loss)
        if self.s.loss == "frobenius":
            return per_cell_divergence(A, np.zeros((A.shape[0], 1)),
                                       np.zeros((1, A.shape[1])), None, self.s.loss)
        col = sum(np.asarray(info.colsum, dtype=np.float64) for info in self.info)
        profile = col / max(col.sum(), np.finfo(np.float64).tiny)
        totals = np.asarray(A.sum(axis=1), dtype=np.float64).reshape(-1, 1)
        return per_cell_divergence(A, totals, profile[None, :], None, self.s.loss)

    def run(self, k, alpha):
        """A screening fit with ``k`` topics at ``alpha`` (on the settings' scale):
        ``(explained fractions of the held-out target and background cells, contrastive
        topics, sweeps)``."""
        from .executor import InMemory
        from .fit import _pairs, transform_codes
        from .solver import Contrast, solve

        opts, start = self._start(k, alpha)
        basis, cx, cy = (a.copy() for a in start)
        opts = replace(opts, alpha=float(alpha) * self.unit, max_iter=self.sweeps,
                       polish_iter=0)
        (info_x, info_y), (blocks_x, blocks_y) = self.info, self.blocks
        executor = InMemory(_pairs(blocks_x, info_x, cx), _pairs(blocks_y, info_y, cy),
                            self.s.loss, self.policy)
        out = solve(executor, Contrast(basis, opts, True), opts)
        topics = np.ascontiguousarray(out.basis[:k])
        full = topics if self.shared is None else np.vstack([topics, self.shared])
        explained = []
        for side, A in enumerate(self.test):
            codes, _ = transform_codes(A, topics, self.s, self.policy, self.offsets[side],
                                       self.sweeps, self.s.tol or 1e-4, full=True)
            d = per_cell_divergence(A, codes, full, self.floors[side], self.s.loss)
            null = self.null[side]
            with np.errstate(divide="ignore", invalid="ignore"):
                explained.append(np.where(null > 0, 1.0 - d / null, 0.0))
        return explained, topics, int(out.n_iter)


class _Screen:
    """The screening: two folds of the cells, each fitted on one half and scored on the
    other, so that every cell is scored once, by topics fitted without it; every K and
    alpha is screened on the same folds."""

    def __init__(self, X, Y, s, seed, n_shared, sweeps):
        rng = np.random.default_rng(seed)
        halves = [_halves(X.shape[0], rng), _halves(Y.shape[0], rng)]
        self.folds = []
        for j in (0, 1):
            (tx, ex), (ty, ey) = ((h[j], h[1 - j]) for h in halves)
            self.folds.append(_Fold((_rows(X, tx), _rows(Y, ty)), (_rows(X, ex), _rows(Y, ey)),
                                    s, int(rng.integers(2**31 - 1)), n_shared, sweeps))

    def run(self, k, alpha) -> dict:
        """Both folds' screening fits with ``k`` topics at ``alpha``: its row of the
        table."""
        from ..matching import restart_agreement

        parts = [fold.run(k, alpha) for fold in self.folds]
        ex = np.concatenate([p[0][0] for p in parts])
        ey = np.concatenate([p[0][1] for p in parts])
        place = placements(ex, ey)
        return {"n_components": int(k), "alpha": float(alpha),
                "contrast": float(place[0].mean()), "_placements": place,
                "stability": float(restart_agreement([parts[0][1], parts[1][1]])[0]),
                "explained_target": float(ex.mean()),
                "explained_background": float(ey.mean()),
                "n_iter": int(sum(p[2] for p in parts))}


def _halves(n, rng):
    order = rng.permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2:])


def _rows(A, rows):
    part = A[rows]
    return part.tocsr() if sp.issparse(part) else np.ascontiguousarray(part)


def screen_sweeps(s) -> int:
    """Sweeps of every screening fit: :data:`SCREEN_FRACTION` of the fit's ``max_iter``
    (at least :data:`MIN_SWEEPS`, at most ``max_iter``)."""
    return min(int(s.max_iter), max(MIN_SWEEPS, int(SCREEN_FRACTION * s.max_iter)))


def counted(rows) -> np.ndarray:
    """Which screened alphas the rule may choose: those whose fit has not collapsed (its
    contrastive topics explain at least :data:`COLLAPSE` of the target cells' divergence
    that they explain at their best alpha)."""
    ex = np.array([r["explained_target"] for r in rows])
    alive = ex >= COLLAPSE * max(ex.max(), 0.0)
    return alive if alive.any() else np.ones(len(rows), bool)


def _tie(rows, i, j) -> float:
    """How far apart the contrasts of rows ``i`` and ``j`` must be to differ: the larger of
    :data:`CONTRAST_TIE` and :data:`TIE_SE` paired standard errors of their difference."""
    pi, pj = rows[i].get("_placements"), rows[j].get("_placements")
    se = 0.0 if pi is None or pj is None or i == j else paired_se(pi, pj)
    return max(CONTRAST_TIE, TIE_SE * np.nan_to_num(se))


def pick(rows) -> int:
    """The rule's row: among the counted rows, those whose contrast the held-out cells
    cannot tell from the highest (:func:`_tie`) are tied, and the middle one of them along
    alpha (the lower middle for an even number) is chosen: the centre of the band of
    alphas that do best, away from both of its edges."""
    ok = counted(rows)
    contrast = np.array([r["contrast"] for r in rows])
    best = int(np.flatnonzero(ok)[np.argmax(contrast[ok])])
    tied = [i for i in np.flatnonzero(ok) if contrast[i] >= contrast[best] - _tie(rows, i, best)]
    tied.sort(key=lambda i: rows[i]["alpha"])
    return int(tied[(len(tied) - 1) // 2])


def beats_rest(rows, row) -> bool:
    """Whether ``row``'s contrast exceeds every other counted row's by more than their tie
    (the contrast is still rising towards that edge)."""
    ok = counted(rows)
    return all(rows[row]["contrast"] > r["contrast"] + _tie(rows, row, i)
               for i, r in enumerate(rows) if ok[i] and i != row)


def screen_alpha(screen, k, alphas=GRID, extend=True, progress=None) -> list:
    """The rows of the screened alphas with ``k`` topics: ``alphas``, then, with ``extend``,
    the alphas of :data:`EXTEND` beyond an edge where the choice beats the rest, one at a
    time until the choice stops moving outwards."""
    rows = []

    def visit(alpha):
        rows.append(screen.run(k, alpha))
        if progress is not None:
            progress.update(f"K={k}, alpha={alpha:g}")

    for alpha in alphas:
        visit(alpha)
    if not extend:
        return rows
    row = pick(rows)
    for edge, beyond in ((max(alphas), EXTEND[0]), (min(alphas), EXTEND[1])):
        if rows[row]["alpha"] == edge and beats_rest(rows, row):
            for alpha in beyond:
                visit(alpha)
                row = pick(rows)
                if rows[row]["alpha"] != alpha:
                    break
            break
    return rows


def _verdict(rows, row, alphas_screened):
    """``(status, message)`` of a choice."""
    best = max(r["contrast"] for r in rows)
    alpha = rows[row]["alpha"]
    lo, hi = min(alphas_screened), max(alphas_screened)
    place = rows[row].get("_placements")
    noise = 0.0 if place is None else NULL_Z * null_se(len(place[0]), len(place[1]))
    if best <= 0.5 + noise:
        return "no_contrast", (
            f"alpha='auto' found no alpha at which the topics explain held-out target cells "
            f"better than held-out background cells (best contrast {best:.3f}; 0.5 = no "
            f"difference, {NULL_Z:g} standard errors = {noise:.3f}). The "
            "target may have no program the background lacks at this number of topics: try "
            "more topics (n_components), n_shared=0, or the other loss.")
    if len(alphas_screened) > 1 and alpha in (lo, hi) and beats_rest(rows, row):
        return "edge", (
            f"alpha='auto' chose alpha = {alpha:g}, the edge of the screened range ({lo:g} "
            f"to {hi:g}), where the contrast was still rising: the best alpha may lie "
            "beyond it. Pass alpha explicitly to go further.")
    return "ok", None


# ------------------------------------------------------------------------------ the choice

def shared_count(Y, s) -> int:
    """The number of shared topics a fit with settings ``s`` has on the host background
    ``Y`` (:func:`bcnmf.core.fit.shared_topic_count`), counted once for every fold."""
    from .fit import _scanned, shared_topic_count

    return shared_topic_count(s, _scanned(Y, "background", s.loss, None)[1], lambda: Y)


def fit_shared(Y, s, n):
    """``(topics, background codes)`` of ``n`` shared topics fitted on the host background
    ``Y`` as a fit with settings ``s`` fits them, or None for ``n = 0``."""
    from .fit import _scanned, contrast_offsets, shared_basis, step_policy
    from .source import make_blocks

    if not n:
        return None
    source, info_y = _scanned(Y, "background", s.loss, None)
    floor = contrast_offsets(info_y, info_y, s)[1]
    g, dy = shared_basis(make_blocks(source, info_y, s.loss, floor), info_y, n, s,
                         step_policy(info_y, s))
    return np.asarray(g, dtype=np.float64), np.asarray(dy, dtype=np.float64)


def _best_k(tables) -> int:
    """Index of the K whose best contrast is highest; a K with more topics must beat one
    with fewer by more than their tie (:func:`_tie`; every K is scored on the same cells)."""
    def top(rows):
        ok = counted(rows)
        return max((i for i in range(len(rows)) if ok[i]), key=lambda i: rows[i]["contrast"])

    best = 0
    for j in range(1, len(tables)):
        a, b = tables[best][0], tables[j][0]
        ia, ib = top(a), top(b)
        merged = [a[ia], b[ib]]
        if b[ib]["contrast"] > a[ia]["contrast"] + _tie(merged, 0, 1):
            best = j
    return best


def _host(A):
    """A float64 host copy of a sampled matrix (numpy or CSR)."""
    if sp.issparse(A):
        return A.tocsr().astype(np.float64)
    return np.ascontiguousarray(A, dtype=np.float64)


def settle(s, X, Y, seed: int, progress=None, k_grid=None):
    """``(settings, choice)``: the settings ``s`` with the alpha (when ``s.alpha`` is
    ``"auto"``) and the number of topics (when ``k_grid`` is given) that the rule picks on
    the host samples ``X`` and ``Y`` of the data (:func:`bcnmf.core.fit.host_sample`), and
    the :class:`AlphaChoice`.  ``seed`` (the fit's ``random_state`` as an int) draws the
    halves and the screening starts.  Without a background there is nothing to choose:
    alpha 0, no choice (``k_grid`` then needs a fixed K)."""
    from .fit import _restart_seeds

    auto_alpha = s.alpha == "auto"
    if Y is None:
        return replace(s, alpha=0.0 if auto_alpha else s.alpha), None
    if auto_alpha:
        s = replace(s, alpha=1.0, alpha_scale="relative")
    X, Y = _host(X), _host(Y)
    if min(X.shape[0], Y.shape[0]) < MIN_CELLS:
        if k_grid:
            raise ValueError(f"n_components='auto' needs at least {MIN_CELLS} cells in the "
                             f"target and in the background (got {X.shape[0]} and "
                             f"{Y.shape[0]}); pass a number of topics.")
        if not auto_alpha:
            return s, None
        message = (f"alpha='auto' needs at least {MIN_CELLS} cells in the target and in the "
                   f"background to score held-out cells (got {X.shape[0]} and {Y.shape[0]}); "
                   "alpha = 1 (both weighed equally) is used. Pass alpha to choose it.")
        choice = AlphaChoice(alpha=1.0, n_components=int(s.n_components), table={},
                             status="too_few_cells", message=message,
                             n_cells=(int(X.shape[0]), int(Y.shape[0])))
        return s, choice
    start = int(_restart_seeds(seed, max(1, s.n_init))[0])
    alphas = GRID if auto_alpha else (float(s.alpha),)
    try:
        screen = _Screen(X, Y, s, start, shared_count(Y, s), screen_sweeps(s))
        tables = []
        for k in (k_grid or (s.n_components,)):
            rows = screen_alpha(screen, int(k), alphas, extend=auto_alpha, progress=progress)
            tables.append((rows, pick(rows)))
        best = _best_k(tables)
    finally:
        if progress is not None:
            progress.close()
    rows, row = tables[best]
    status, message = _verdict(rows, row, [r["alpha"] for r in rows])
    table = {}
    for j, (rows_k, row_k) in enumerate(tables):
        order = np.argsort([r["alpha"] for r in rows_k], kind="stable")
        ok = counted(rows_k)
        for i in order:
            for key, value in rows_k[i].items():
                if not key.startswith("_"):
                    table.setdefault(key, []).append(value)
            table.setdefault("counted", []).append(bool(ok[i]))
            table.setdefault("chosen", []).append(bool(j == best and i == row_k))
    choice = AlphaChoice(alpha=rows[row]["alpha"], n_components=rows[row]["n_components"],
                         table=table, status=status, message=message,
                         n_cells=(int(X.shape[0]), int(Y.shape[0])))
    return replace(s, alpha=choice.alpha, n_components=choice.n_components), choice


def resolve_seed(random_state) -> int:
    """An int seed from a ``random_state`` (drawn from it when it is a generator; fresh
    entropy for None), so that the screening and the fit share it (and the restarts of
    :func:`bcnmf.select_model` derive from it)."""
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**31 - 1))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0] % (2**31 - 1))
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return int(random_state)
    raise ValueError(f"random_state must be None, an int, a RandomState or a Generator; "
                     f"got {random_state!r}.")
