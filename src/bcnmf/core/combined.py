"""Combined-basis model (docs/variants.md): the target is explained by a
shared plus a target-specific basis, the background by the shared basis only.

With cells as rows, shared basis ``S`` and target basis ``T`` (K x F)::

    min  D(X | C_X (S + T)) + D(Y | C_Y S) + lam * ||S T^T||_F^2

over non-negative ``S, T, C_X, C_Y``.  Unlike the contrastive objective this
is a plain (bounded) minimisation: the background is fitted, not subtracted,
and the penalty keeps the target-specific rows out of the span of the shared
rows.  The codes of the target (``C_X``) weigh topic ``k`` as the pair
``s_k + t_k``.

The sweep is the library's one kernel: target codes and parts with the basis
``S + T``, background codes and parts with ``S``.  Both losses produce the
same kind of parts, so one multiplicative step serves both (a joint
majorisation of the data terms in ``(S, T)``; the penalty's gradient is
non-negative and goes to the denominators):

* squared error, ``G = C^T C`` and ``P = C^T A``::

      S <- S * (P_X + P_Y) / (G_X (S + T) + G_Y S + lam (S T^T) T)
      T <- T * P_X / (G_X (S + T) + lam (T S^T) S)

  (numerator minus denominator is minus half the gradient, as in every
  squared-error multiplicative step)

* KL, ``P = C^T (A / pred)`` and ``g = colsum(C)``::

      S <- S * (P_X + P_Y) / (g_X + g_Y + 2 lam (S T^T) T)
      T <- T * P_X / (g_X + 2 lam (T S^T) S)

Gauge: the scale of ``s_k + t_k`` trades with the codes, and the penalty is
not invariant under that trade (the authors' version, with lam = 1e9, is
therefore meaningless without a scale).  Here every row of ``S + T`` is
rescaled to unit L1 norm after each step (scale moved into both code
matrices), and the applied weight is ``lam = penalty * F * (D(X|0) +
D(Y|0))`` (squared norm, or total count for KL), which makes ``penalty``
independent of the data's scale.  (A complete overlap of a shared and a
target part spread evenly over the F features costs ``penalty`` times the
energy over ``16 F``.)

Untied form (``Layout(tied=False)``): ``K_s`` shared topics ``S`` and ``K_t``
target topics ``T`` with separate codes, the target's basis is ``[S; T]``::

    min  D(X | C_s S + C_t T) + D(Y | C_Y S) + lam * ||S T^T||_F^2

The sweep is the same kernel (target codes ``[C_s, C_t]`` on ``[S; T]``,
background codes on ``S``); the data terms of the basis step are the
library's :func:`~bcnmf.core.updates.basis_terms` of each data set, summed
over the data sets that use a row (``S``: target rows ``:K_s`` plus the
background; ``T``: target rows ``K_s:``), and the penalty enters the
denominators as above.  With ``C_s = C_t`` it is the tied step
(``tests/test_combined.py``).  Gauge: every row of ``S`` and of ``T`` has unit
L1 norm (scales into the matching code columns), and the applied weight is
``lam = penalty * F^2 * (D(X|0) + D(Y|0))``: a shared and a target row spread
evenly over the F features (entries 1/F, inner product 1/F) that overlap
completely cost ``penalty`` times the data's total energy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fit import _pairs, _restart_seeds, _scanned, prepare
from .init import initial_factors
from .source import make_blocks

from .executor import InMemory
from .solver import Contrast, SolverOptions, solve, unit_rows
from .updates import FROBENIUS, basis_policy, basis_terms, mu_step


def penalty_weight(penalty: float, n_features: int, scale_x: float, scale_y: float,
                   norm: str | None = None) -> float:
    """Weight applied to ``||S T^T||_F^2`` (see the module docstring).
    ``norm=None``: the tied model's weight; ``"l1"`` / ``"l2"``: the untied
    model's, for rows of that unit norm."""
    if norm is None:
        return float(penalty) * n_features * (scale_x + scale_y)
    if norm == "l2":
        return float(penalty) * (scale_x + scale_y)
    return float(penalty) * n_features ** 2 * (scale_x + scale_y)


def overlap(shared: np.ndarray, target: np.ndarray) -> float:
    """``||S T^T||_F^2``."""
    m = shared @ target.T
    return float(np.sum(m * m))


def split_basis(basis: np.ndarray, rng: np.random.Generator):
    """Split a starting basis entry-wise at uniform random fractions into
    shared and target parts that sum to it."""
    u = rng.random(basis.shape).astype(basis.dtype, copy=False)
    shared = basis * u
    return shared, basis - shared


def _rescale_rows(rows, scale, floor: float) -> None:
    """In place ``rows /= scale`` (one scale per row), then the basis floor."""
    rows /= scale[:, None]
    if floor > 0:
        np.maximum(rows, floor, out=rows)


def pair_scale(shared, target, floor: float):
    """Gauge fix of the tied model in place: rows of ``shared + target`` to
    unit L1 norm.  Returns the row scales, which the codes take over."""
    scale = shared.sum(axis=1) + target.sum(axis=1)
    scale[~(scale > 0)] = 1.0
    _rescale_rows(shared, scale, floor)
    _rescale_rows(target, scale, floor)
    return scale


def normalize_pair(shared, target, code_blocks, floor: float) -> None:
    """:func:`pair_scale`, the scale moved into the codes."""
    scale = pair_scale(shared, target, floor)
    for codes in code_blocks:
        codes *= scale


def combined_step(shared, target, px, py, lam: float, loss: str, policy) -> None:
    """One joint multiplicative step of both bases from the summed parts
    (both numerators and denominators are formed before either moves)."""
    if loss == FROBENIUS:
        common = px.second @ (shared + target)
        den_s = common + py.second @ shared
    else:
        common = np.broadcast_to(px.second[:, None], shared.shape)
        den_s = common + py.second[:, None]
    num_s = px.cross + py.cross
    num_t = px.cross
    den_t = common.copy()
    if lam > 0:
        # the squared-error parts are half the gradient of ||A - C B||^2, so
        # the penalty enters with half its gradient too
        w = lam if loss == FROBENIUS else 2.0 * lam
        m = shared @ target.T
        den_s = den_s + w * (m @ target)
        den_t += w * (m.T @ shared)
    policy = basis_policy(policy)
    mu_step(shared, num_s, den_s, policy, policy.basis_floor)
    mu_step(target, num_t, den_t, policy, policy.basis_floor)


def untied_step(shared, target, px, py, lam: float, loss: str, policy) -> None:
    """One joint multiplicative step of both bases of the untied model.

    ``px`` are the target's parts for the stacked basis ``[S; T]`` (codes
    ``[C_s, C_t]``), ``py`` the background's parts for ``S``.  The data
    terms come from the library's :func:`~bcnmf.core.updates.basis_terms`
    (plain NMF steps of each data set), summed over the data sets that use a
    row; the penalty's gradient goes to the denominators as in
    :func:`combined_step`."""
    ks = shared.shape[0]
    num_x, den_x = basis_terms(np.vstack([shared, target]), px, None, 0.0, loss)
    num_y, den_y = basis_terms(shared, py, None, 0.0, loss)
    num_s, den_s = num_x[:ks] + num_y, den_x[:ks] + den_y
    num_t, den_t = num_x[ks:], den_x[ks:]
    if lam > 0:
        w = lam if loss == FROBENIUS else 2.0 * lam
        m = shared @ target.T
        den_s = den_s + w * (m @ target)
        den_t = den_t + w * (m.T @ shared)
    policy = basis_policy(policy)
    mu_step(shared, num_s, den_s, policy, policy.basis_floor)
    mu_step(target, num_t, den_t, policy, policy.basis_floor)


def _row_scale(rows, norm):
    scale = np.sqrt(np.sum(rows * rows, axis=1)) if norm == "l2" else rows.sum(axis=1)
    scale[~(scale > 0)] = 1.0
    return scale


def untied_scales(shared, target, floor: float, norm: str = "l1"):
    """Gauge fix of the untied model in place: every row of ``S`` and of
    ``T`` to unit norm (``"l1"`` or ``"l2"``).  Returns ``(scale_S,
    scale_T)``, which the matching code columns take over."""
    scale_s, scale_t = _row_scale(shared, norm), _row_scale(target, norm)
    _rescale_rows(shared, scale_s, floor)
    _rescale_rows(target, scale_t, floor)
    return scale_s, scale_t


def normalize_untied(shared, target, target_codes, background_codes, floor: float,
                     norm: str = "l1") -> None:
    """:func:`untied_scales`, the scales moved into the codes (target codes
    are ``[C_s, C_t]``, background codes ``C_Y``)."""
    ks = shared.shape[0]
    scale_s, scale_t = untied_scales(shared, target, floor, norm)
    for codes in target_codes:
        codes[:, :ks] *= scale_s
        codes[:, ks:] *= scale_t
    for codes in background_codes:
        codes *= scale_s


@dataclass(frozen=True)
class Layout:
    """How the two bases explain the target: ``tied`` (topic ``k`` of a
    target cell is ``s_k + t_k``, one code per topic) or untied (separate
    codes for the ``K_s`` shared and ``K_t`` target topics, target basis
    ``[S; T]``), and the norm of the gauge (``"l1"`` or ``"l2"`` rows)."""

    tied: bool = True
    norm: str = "l1"

    def target_basis(self, shared, target):
        return shared + target if self.tied else np.vstack([shared, target])

    def step(self, shared, target, px, py, lam, loss, policy):
        (combined_step if self.tied else untied_step)(shared, target, px, py, lam, loss, policy)

    def normalize(self, shared, target, executor, floor):
        """The gauge fix, the codes rescaled through ``executor``."""
        if self.tied:
            scale = pair_scale(shared, target, floor)
            executor.scale("target", scale)
            executor.scale("background", scale)
        else:
            scale_s, scale_t = untied_scales(shared, target, floor, self.norm)
            executor.scale("target", scale_s)
            executor.scale("target", scale_t, shared.shape[0])
            executor.scale("background", scale_s)


TIED = Layout()


class Combined:
    """The combined-basis model as a model of :func:`bcnmf.core.solver.solve`:
    the target swept with :meth:`Layout.target_basis`, the background with
    ``S``; objective ``D_X + D_Y + lam ||S T^T||^2`` (the penalty of the
    state entering a sweep is recorded with it); the stopping rule watches
    the unit-L1 rows of both bases."""

    terms = ("target", "background", "penalty", "objective")
    n_free = None

    def __init__(self, shared, target, lam: float, layout: Layout, loss: str, policy):
        self.shared, self.target = shared, target
        self.lam, self.layout, self.loss, self.policy = lam, layout, loss, policy

    @property
    def params(self):
        return self.shared, self.target

    def snapshot(self):
        return self.shared.copy(), self.target.copy()

    def restore(self, saved) -> None:
        self.shared[...], self.target[...] = saved

    def bases(self, held: bool = False):
        return self.layout.target_basis(self.shared, self.target), self.shared

    def extra_terms(self, params) -> dict:
        return {"penalty": self.lam * overlap(*params)}

    def record(self, dx, dy, extra) -> dict:
        pen = extra["penalty"]
        return {"target": dx, "background": dy, "penalty": pen, "objective": dx + dy + pen}

    def step(self, px, py, executor) -> None:
        self.layout.step(self.shared, self.target, px, py, self.lam, self.loss, self.policy)
        self.layout.normalize(self.shared, self.target, executor, self.policy.basis_floor)

    def unit_rows(self):
        return unit_rows(np.vstack([self.shared, self.target]))


@dataclass(frozen=True)
class CombinedResult:
    shared: np.ndarray
    target: np.ndarray
    codes: np.ndarray
    background_codes: np.ndarray
    history: dict
    n_iter: int
    converged: bool
    diverged: bool
    penalty_raw: float
    restart_objectives: np.ndarray
    best_restart: int
    policy: object

    @property
    def objective(self) -> float:
        return float(self.history["objective"][-1])


def _background_nmf(pairs, shared, opts, sweeps: int) -> None:
    """Plain NMF of the background alone (the contrastive model with
    ``alpha = 0`` and no background of its own) for a starting shared
    basis, ``sweeps`` sweeps in place on ``shared`` and the codes."""
    nmf = SolverOptions(loss=opts.loss, alpha=0.0, policy=opts.policy, normalize=True,
                        max_iter=sweeps, tol=0.0, eval_every=max(sweeps, 1))
    solve(InMemory(pairs, [], opts.loss, opts.policy), Contrast(shared, nmf, False), nmf)


def fit_combined(X, Y, s, penalty: float, random_state=None, block_rows=None,
                 callback=None, n_target=None, norm="l1", shared_init=None,
                 init_sweeps=200) -> CombinedResult:
    """Fit the combined-basis model with ``s.n_init`` restarts (the lowest
    final objective wins: the objective is bounded below, so it does not
    reward degeneracy).  ``s`` is a :class:`~bcnmf.core.fit.FitSettings`
    (its contrast fields are unused); ``X`` and ``Y`` are validated matrices
    or out-of-core sources, swept by blocks as in :func:`fit_factors`.

    ``n_target=None`` fits the tied model (``s.n_components`` topics, each
    with a shared and a target part); an integer ``K_t`` fits the untied
    model with ``K_s = s.n_components - K_t`` shared and ``K_t`` target
    topics (target codes ``[C_s, C_t]``, rows of each basis of unit ``norm``).
    ``shared_init="background"`` (untied only) starts ``S`` from
    ``init_sweeps`` sweeps of plain NMF of the background."""
    source_x, info_x = _scanned(X, "X", s.loss, block_rows)
    dtype = info_x.dtype
    source_y, info_y = _scanned(Y, "background", s.loss, block_rows, dtype)
    prep = prepare(info_x, info_y, s, contrast=False)
    policy, opts = prep.policy, prep.opts
    layout = TIED if n_target is None else Layout(tied=False, norm=norm)
    lam = penalty_weight(penalty, info_x.shape[1], info_x.scale(s.loss), info_y.scale(s.loss),
                         None if layout.tied else norm)
    blocks_x = make_blocks(source_x, info_x, s.loss)
    blocks_y = make_blocks(source_y, info_y, s.loss)
    k = s.n_components
    ks = k if n_target is None else k - int(n_target)
    runs = []
    for seed in _restart_seeds(random_state, s.n_init):
        rng = np.random.default_rng(seed)
        basis, cx, cy = initial_factors(info_x, info_y, k, s.init, rng, dtype)
        if layout.tied:
            shared, target = split_basis(basis, rng)
            with np.errstate(over="ignore", invalid="ignore"):
                normalize_pair(shared, target, [cx, cy], policy.basis_floor)
        else:
            shared, target = basis[:ks].copy(), basis[ks:].copy()
            cy = np.ascontiguousarray(cy[:, :ks] * (k / ks))
            pairs_y = _pairs(blocks_y, info_y, cy)
            if shared_init == "background":
                _background_nmf(pairs_y, shared, opts, init_sweeps)
            with np.errstate(over="ignore", invalid="ignore", under="ignore",
                             divide="ignore"):
                normalize_untied(shared, target, [cx], [cy], policy.basis_floor, norm)
        executor = InMemory(_pairs(blocks_x, info_x, cx), _pairs(blocks_y, info_y, cy), s.loss,
                            policy)
        out = solve(executor, Combined(shared, target, lam, layout, s.loss, policy), opts,
                    callback)
        runs.append((out, cx, cy))
    objectives = np.array([o.history["objective"][-1] for o, _, _ in runs])
    finite = np.where(np.isfinite(objectives), objectives, np.inf)
    best = int(np.argmin(finite))
    out, cx, cy = runs[best]
    shared, target = out.basis
    return CombinedResult(shared=shared, target=target, codes=cx, background_codes=cy,
                          history=out.history, n_iter=out.n_iter, converged=out.converged,
                          diverged=out.diverged, penalty_raw=lam,
                          restart_objectives=objectives, best_restart=best, policy=policy)
