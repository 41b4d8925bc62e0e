"""The one solve loop of the library: every full-batch fit runs here.

A fit is a *model* (what the basis is and how parts become a basis step: the
contrast of :class:`Contrast`, the combined bases of
:mod:`bcnmf.core.combined`) run on an *executor* (where the blocks of cells
and their codes live: :class:`bcnmf.core.executor.InMemory` for blocks in
this process, numpy or torch, held or streamed from an out-of-core source;
:class:`bcnmf.dask_engine.OnDask` for chunks on a Dask cluster).  The loop
(:func:`solve`) is written once against the two:

* every sweep, the executor streams every block through the kernel
  (:func:`~bcnmf.core.updates.sweep_block`) with the model's bases and
  returns the summed divergences and additive parts of each dataset;
* the model takes one basis step from the parts and fixes the gauge,
  telling the executor how to rescale the codes;
* the loop records the objective, tests convergence, goes back to the last
  finite state when a sweep meets a non-finite one, and at the end refines
  the codes with the basis fixed and evaluates the final state.

Order within a sweep (the authors' order): target codes, background codes,
then the basis with the new codes.  The divergence of each block at the state
*entering* a sweep is a by-product of the sweep, so the objective is recorded
at no extra cost, every ``eval_every`` sweeps (1 for squared error, where it
is free; more for KL, whose logarithms cost as much as the sweep itself); one
evaluation pass after the last sweep records the final state.  Checkpoints
(:mod:`bcnmf.core.checkpoint`) and progress callbacks are hooks of the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .backend import all_finite, contiguous, copy, maximum_, namespace
from .blocks import CSR, DENSE, Block
from .step import StepPolicy
from .updates import FROBENIUS, basis_step, sweep_block


@dataclass(frozen=True)
class SolverOptions:
    """Settings of one run of the loop.

    ``alpha`` is the raw contrast weight.  ``tol <= 0`` runs exactly
    ``max_iter`` sweeps.  Convergence is declared when the topics stop
    moving: the largest L1 distance between a basis row (scaled to unit L1
    norm) and the same row ``window`` sweeps earlier, divided by ``window``,
    is at most ``tol``.  This quantity is gauge-free and scale-free, and it
    goes to zero exactly when the iterates converge, unlike the objective of
    a min-max problem (not monotone) or its change relative to the data's
    total energy (far larger than what the contrast moves).  ``normalize``
    rescales basis rows to unit L1 norm after every basis step, moving the
    scale into the codes.  ``polish_iter > 0`` (with ``tol > 0``) refines all
    codes with the final basis fixed (:func:`refine_codes`) before the final
    evaluation, so that returned codes are the solution for the returned
    basis, as :meth:`transform` computes it.  ``n_free`` (KL only): only the
    first ``n_free`` basis rows are updated and normalised; the rows after
    them are fixed shared topics whose codes are fitted with the others
    (``None``: every row is free).  ``shared_every`` (with ``n_free``):
    the codes on the fixed rows are updated only every ``shared_every``-th
    sweep (and at every evaluation); in between they are held fixed, so that
    their prediction at the stored entries is computed once and the sweeps
    only visit the free rows (a *held* sweep).  Each sweep remains a
    multiplicative step of a block coordinate descent.  The objective is
    recorded for the state entering every ``eval_every``-th sweep (and the
    final state); non-finite states are detected at every sweep from the
    basis parts.
    """

    loss: str
    alpha: float
    policy: StepPolicy
    normalize: bool
    max_iter: int
    tol: float
    window: int = 10
    polish_iter: int = 0
    eval_every: int = 1
    n_free: int | None = None
    shared_every: int = 1


@dataclass
class SolveOutput:
    """What :func:`solve` returns: the model's parameters (the basis of a
    :class:`Contrast`, ``(shared, target)`` of a combined model), the
    recorded ``history`` (``iteration`` and the model's terms), the number of
    sweeps taken and the flags."""

    basis: object
    history: dict = field(default_factory=dict)
    n_iter: int = 0
    converged: bool = False
    diverged: bool = False


# --------------------------------------------------------------------------- gauge

def unit_rows(basis):
    """The rows of ``basis`` scaled to unit L1 norm (zero rows kept)."""
    xp = namespace(basis)
    scale = xp.sum(basis, axis=1, keepdims=True)
    return basis / xp.where(scale > 0, scale, 1.0)


def gauge_scale(basis, floor: float):
    """Gauge fix of ``basis`` in place: rows to unit L1 norm, then the basis
    floor.  Returns the row scales, which the codes take over."""
    scale = basis.sum(axis=1)
    scale[~(scale > 0)] = 1.0
    basis /= scale[:, None]
    if floor > 0:
        maximum_(basis, floor)
    return scale


def normalize_basis(basis, code_blocks, floor: float) -> None:
    """Gauge fix in place: basis rows to unit L1 norm, scale into the codes."""
    scale = gauge_scale(basis, floor)
    for codes in code_blocks:
        codes *= scale


# --------------------------------------------------------------------------- the model

class Contrast:
    """The contrastive model: one basis ``B`` for both datasets, objective
    ``D(X | C_X B) - alpha D(Y | C_Y B)`` (``alpha`` is 0 without a
    background).  With ``opts.n_free`` the rows after the first ``n_free``
    are fixed shared topics: only the head is stepped and normalised, and
    sweeps may hold the codes on the fixed rows (``held``)."""

    terms = ("target", "background", "objective")

    def __init__(self, basis, opts: SolverOptions, has_background: bool):
        self.basis = basis
        self.loss, self.policy, self.normalize = opts.loss, opts.policy, opts.normalize
        self.alpha = opts.alpha if has_background else 0.0
        self.n_free = opts.n_free
        self._tail = None

    @property
    def params(self):
        return self.basis

    def snapshot(self):
        return copy(self.basis)

    def restore(self, saved) -> None:
        self.basis[...] = saved

    def bases(self, held: bool = False):
        """``(target basis, background basis)`` of a sweep (the free head only
        for a held sweep)."""
        b = self.basis[:self.n_free] if held else self.basis
        return b, b

    def held(self):
        """``(tail^T, first)``: the fixed rows of a held sweep (transposed,
        C-contiguous; they never move, so they are taken once)."""
        if self._tail is None:
            self._tail = contiguous(self.basis[self.n_free:].T)
        return self._tail, self.n_free

    def extra_terms(self, params) -> dict:
        return {}

    def record(self, dx, dy, extra) -> dict:
        return {"target": dx, "background": dy, "objective": dx - self.alpha * dy}

    def step(self, px, py, executor) -> None:
        """One basis step from the summed parts, then the gauge fix (the
        codes of the stepped rows take the scales)."""
        k = self.n_free
        if k is None:
            basis_step(self.basis, px, py, self.alpha, self.loss, self.policy)
            free = self.basis
        else:   # fixed shared rows after the first n_free: only the head moves
            free = self.basis[:k]
            basis_step(free, px.head(k), None if py is None else py.head(k), self.alpha,
                       self.loss, self.policy, full=self.basis)
        if self.normalize:
            scale = gauge_scale(free, self.policy.basis_floor)
            executor.scale("target", scale)
            executor.scale("background", scale)

    def unit_rows(self):
        return unit_rows(self.basis)


# --------------------------------------------------------------------------- the loop

def _finite(parts) -> bool:
    return parts is None or all_finite(parts.cross.sum() + parts.second.sum())


def solve(executor, model, opts: SolverOptions, callback=None, checkpoint=None) -> SolveOutput:
    """Run ``model`` on ``executor`` in place (the model's parameters and the
    executor's codes).

    ``callback(iteration, params, record)`` is called after every recorded
    sweep with the record of the state that entered it.  Floating-point
    warnings are silenced inside: overflow is detected on the objective and
    the basis parts, and handled by returning the last finite state.
    ``checkpoint`` (:mod:`bcnmf.core.checkpoint`, in-memory executors)
    resumes a saved state, saves the state entering sweeps, and saves the
    last complete state on KeyboardInterrupt.
    """
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        if checkpoint is None:
            return _solve(executor, model, opts, callback)
        try:
            return _solve(executor, model, opts, callback, checkpoint)
        except KeyboardInterrupt:
            checkpoint.interrupted()
            raise


def _record(hist, sweep, record) -> None:
    hist["iteration"].append(sweep)
    for name, value in record.items():
        hist[name].append(value)


def _drop_last(hist, sweep) -> None:
    """Drop the last record when it is of ``sweep`` (the final evaluation re-adds it)."""
    if hist["iteration"] and hist["iteration"][-1] == sweep:
        for values in hist.values():
            values.pop()


def _restore(model, executor, good, hist, out) -> None:
    """Go back to ``good = (sweep, (params, codes))``, the last state that
    entered a sweep with finite results."""
    sweep, (params, codes) = good
    model.restore(params)
    executor.restore(codes)
    _drop_last(hist, sweep)
    out.n_iter = sweep


def _solve(executor, model, opts, callback, checkpoint=None):
    hist = {name: [] for name in ("iteration",) + model.terms}
    out = SolveOutput(model.params)
    last_good = None
    recent = []
    start = 0
    if checkpoint is not None:
        resumed = checkpoint.resume_into(model.params, executor.codes(), hist, out)
        if resumed is not None:
            start, last_good, recent = resumed
    can_hold = model.n_free is not None and executor.can_hold
    for it in range(start, opts.max_iter):
        entering = (model.snapshot(), executor.snapshot())
        if checkpoint is not None:
            checkpoint.at(it, entering, hist, recent, last_good)
        want_div = it % opts.eval_every == 0
        # squared error: every sweep is held (an exact step of every row, at the
        # cost of the free rows); KL: between the scheduled updates of the fixed
        # rows' codes, when the divergence is not wanted
        if can_hold and (opts.loss == FROBENIUS or (
                not want_div and opts.shared_every > 1 and it % opts.shared_every != 0)):
            (dx, px), (dy, py) = executor.sweep(*model.bases(held=True), want_div,
                                                held=model.held())
        else:
            (dx, px), (dy, py) = executor.sweep(*model.bases(), want_div)
        extra = model.extra_terms(entering[0])
        record = model.record(dx, dy, extra) if dx is not None and dy is not None else None
        if not (_finite(px) and _finite(py) and all(np.isfinite(v) for v in extra.values())
                and (record is None or np.isfinite(record["objective"]))):
            # this sweep met a non-finite state: go back to the last good one
            out.diverged = True
            if last_good is not None:
                _restore(model, executor, last_good, hist, out)
            break
        last_good = (it, entering)
        if record is not None:
            _record(hist, it, record)
            if callback is not None:
                callback(it, model.params, record)
        model.step(px, py, executor)
        out.n_iter = it + 1
        if opts.tol > 0:
            recent.append(model.unit_rows())
            if len(recent) > opts.window:
                past = recent.pop(0)
                change = abs(recent[-1] - past).sum(axis=1).max() / opts.window
                if change <= opts.tol:
                    out.converged = True
                    break
    if opts.polish_iter > 0 and opts.tol > 0 and not out.diverged:
        executor.refine(*model.bases(), opts.polish_iter, opts.tol)
    record = model.record(*executor.evaluate(*model.bases()), model.extra_terms(model.params))
    if not np.isfinite(record["objective"]) and last_good is not None:
        out.diverged = True
        _restore(model, executor, last_good, hist, out)
        record = model.record(*executor.evaluate(*model.bases()),
                              model.extra_terms(model.params))
    _drop_last(hist, out.n_iter)
    _record(hist, out.n_iter, record)
    out.history = {k: np.asarray(v, dtype=np.int64 if k == "iteration" else np.float64)
                   for k, v in hist.items()}
    return out


# --------------------------------------------------------------------------- code refinement

#: the cells still moving are gathered into a smaller block once they are at
#: most this fraction of the rows swept (see :func:`refine_block`)
REGATHER = 0.8
_TINY = np.finfo(np.float64).tiny


def refine_codes(pairs, view, loss, policy, max_iter: int, tol: float) -> int:
    """Code-only sweeps with the basis fixed (a convex problem per cell): every
    cell is swept until its codes moved by at most ``tol`` relative to their
    size in one sweep, ``|c_i,t - c_i,t-1|_1 / |c_i,t|_1 <= tol``, or
    ``max_iter`` sweeps (:func:`refine_block`); returns the largest number
    of sweeps a block ran."""
    return max((refine_block(block, codes, view, loss, policy, max_iter, tol)
                for block, codes in pairs), default=0)
def refine_block(block, codes, view, loss, policy, max_iter: int, tol: float) -> int:
    """:func:`refine_codes` for one block, in place on ``codes``.

    Cells are independent problems: a cell that has met the criterion keeps
    the codes of that sweep and is not updated again.  In in-memory numpy
    blocks the cells still moving are gathered into a smaller block whenever
    they have shrunk to ``REGATHER`` of the rows swept, so that finished
    cells cost nothing (measured: 2,000 cells of the raw-count simulation
    swept 1,000 times while 1-250 moved after the first 100 sweeps).  With
    missing values the prior couples a block's cells: the block is swept
    whole until every cell has met the criterion.  Returns the number of
    sweeps run."""
    xp = namespace(codes)
    coupled = block.masked
    data = block.data if block.resident else None
    gathers = not coupled and data is not None and block.storage in (DENSE, CSR)
    rows = None                    # rows of the block still swept (None: all)
    sub_block, sub = block, codes  # their block and their codes
    done = None                    # of those rows, the ones that have finished
    for it in range(max_iter):
        before = copy(sub)
        sweep_block(sub_block, sub, view, loss, policy, want_parts=False, want_div=False)
        if sub.shape[0] == 0:
            return it + 1
        if done is not None and bool(xp.any(done)):
            sub[done] = before[done]          # finished cells keep their codes
        step = xp.sum(xp.abs(sub - before), axis=1)
        size = xp.clip(xp.astype(xp.sum(sub, axis=1), xp.float64), min=_TINY)
        finished = xp.astype(step, xp.float64) / size <= tol   # NaN keeps moving
        if coupled:
            if bool(xp.all(finished)):
                return it + 1
            continue
        done = finished if done is None else done | finished
        n_moving = int(xp.sum(xp.astype(~done, xp.int64)))
        if n_moving == 0:
            break
        if gathers and n_moving <= REGATHER * sub.shape[0]:
            moving = np.flatnonzero(~done)
            if rows is not None:
                codes[rows] = sub
            rows = moving if rows is None else rows[moving]
            sub_block = Block(data[rows], 0.0, block.offset)
            sub = np.ascontiguousarray(codes[rows])
            done = None
    else:
        it = max_iter - 1
    if rows is not None:
        codes[rows] = sub
    return it + 1
