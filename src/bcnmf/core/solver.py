"""Full-batch engine: every sweep streams the blocks through the kernel,
sums their parts and takes one basis step.

Order within a sweep (the authors' order): target codes, background codes,
then the basis with the new codes.  The divergence of each block at the state
*entering* a sweep is a by-product of the sweep, so the objective is recorded
at no extra cost, every ``eval_every`` sweeps (1 for squared error, where it
is free; more for KL, whose logarithms cost as much as the sweep itself); one
evaluation pass after the last sweep records the final state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .backend import all_finite, contiguous, copy, maximum_, namespace
from .updates import (Block, StepPolicy, basis_step, entry_predictions, sweep_block,
                      view_basis)


@dataclass(frozen=True)
class SolverOptions:
    """Settings of one run of the engine.

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
    them are fixed nuisance topics whose codes are fitted with the others
    (``None``: every row is free).  ``nuisance_every`` (with ``n_free``):
    the codes on the fixed rows are updated only every ``nuisance_every``-th
    sweep (and at every evaluation); in between they are held fixed, so that
    their prediction at the stored entries is computed once and the sweeps
    only visit the free rows (:func:`_sweep_held`).  Each sweep remains a
    multiplicative step of a block coordinate descent.  The objective is
    recorded for the state entering every ``eval_every``-th sweep (and the
    final state);
    non-finite states are detected at every sweep from the basis parts.
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
    nuisance_every: int = 1


@dataclass
class SolveOutput:
    basis: np.ndarray
    history: dict = field(default_factory=dict)
    n_iter: int = 0
    converged: bool = False
    diverged: bool = False


def evaluate(target, background, basis, opts: SolverOptions):
    """Divergences ``(D_X, D_Y)`` at the current state, no updates."""
    view = view_basis(basis, opts.loss)
    dx = sum(sweep_block(b, c, view, opts.loss, opts.policy, update=False,
                         want_parts=False)[0] for b, c in target)
    dy = sum(sweep_block(b, c, view, opts.loss, opts.policy, update=False,
                         want_parts=False)[0] for b, c in background)
    return float(dx), float(dy)


def _sweep_all(pairs, view, opts, want_div):
    """Sweep every block: ``(summed divergence or None, summed parts)``."""
    div, parts = 0.0, None
    for block, codes in pairs:
        d, p = sweep_block(block, codes, view, opts.loss, opts.policy, want_div=want_div)
        div = None if d is None or div is None else div + d
        if parts is None:
            parts = p
        else:
            parts += p
    return div, parts


def _can_hold_nuisance(pairs, opts) -> bool:
    """Whether the run holds the codes on the fixed rows between updates
    (not with missing values: the masked sweep has no entry offsets)."""
    return (opts.n_free is not None and opts.nuisance_every > 1
            and all(getattr(b, "mask", None) is None for b, _ in pairs))


def _sweep_held(pairs, view, opts, tail_t, cache, refresh):
    """:func:`_sweep_all` with the codes on the fixed rows (after the first
    ``n_free``) held: their prediction at the stored entries is an entry
    offset (cached in ``cache`` by pair index for blocks held in memory and
    recomputed into the same buffers when ``refresh``, i.e. after the held
    codes changed; recomputed from a single read for streamed blocks), and
    ``view`` holds the free rows only."""
    k = opts.n_free
    parts = None
    for i, (block, codes) in enumerate(pairs):
        if not isinstance(block, Block):   # streamed: read once for both uses
            block = Block(block.data, block.const, block.offset)
            entries = entry_predictions(block, codes, k, tail_t)
        else:
            entries = cache.get(i)
            if refresh or entries is None:
                entries = cache[i] = entry_predictions(block, codes, k, tail_t, out=entries)
        _, p = sweep_block(block, codes, view, opts.loss, opts.policy, want_div=False,
                           entry_offset=entries)
        if parts is None:
            parts = p
        else:
            parts += p
    return None, parts


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
    coupled = getattr(block, "mask", None) is not None
    data = block.data if isinstance(block, Block) else None
    gathers = not coupled and (isinstance(data, np.ndarray) or sp.issparse(data))
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


def _unit_rows(basis: np.ndarray) -> np.ndarray:
    xp = namespace(basis)
    scale = xp.sum(basis, axis=1, keepdims=True)
    return basis / xp.where(scale > 0, scale, 1.0)


def normalize_basis(basis: np.ndarray, code_blocks, floor: float) -> None:
    """Gauge fix in place: basis rows to unit L1 norm, scale into the codes."""
    scale = basis.sum(axis=1)
    scale[~(scale > 0)] = 1.0
    basis /= scale[:, None]
    if floor > 0:
        maximum_(basis, floor)
    for codes in code_blocks:
        codes *= scale


def _finite(parts) -> bool:
    return parts is None or all_finite(parts.cross.sum() + parts.second.sum())


def _restore(basis, all_codes, good, hist, out) -> None:
    """Go back to ``good = (sweep, state)``, the last state that entered a
    sweep with finite results; its record, if it was recorded, is dropped
    (the final evaluation re-adds it)."""
    sweep, (saved_basis, saved_codes) = good
    basis[...] = saved_basis
    for codes, saved in zip(all_codes, saved_codes):
        codes[...] = saved
    if hist["iteration"] and hist["iteration"][-1] == sweep:
        for values in hist.values():
            values.pop()
    out.n_iter = sweep


def solve(target: list[tuple[Block, np.ndarray]],
          background: list[tuple[Block, np.ndarray]],
          basis: np.ndarray, opts: SolverOptions, callback=None,
          checkpoint=None) -> SolveOutput:
    """Run the engine in place on ``basis`` and the code arrays in the pairs.

    ``callback(iteration, basis, record)`` is called after every recorded
    sweep with the record of the state that entered it.  Floating-point
    warnings are silenced inside: overflow is detected on the objective and
    the basis parts, and handled by returning the last finite state.
    ``checkpoint`` (:mod:`bcnmf.core.checkpoint`) resumes a saved state, saves
    the state entering sweeps, and saves the last complete state on
    KeyboardInterrupt.
    """
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        if checkpoint is None:
            return _solve(target, background, basis, opts, callback)
        try:
            return _solve(target, background, basis, opts, callback, checkpoint)
        except KeyboardInterrupt:
            checkpoint.interrupted()
            raise


def _record(hist, sweep, dx, dy, alpha):
    hist["iteration"].append(sweep)
    hist["target"].append(dx)
    hist["background"].append(dy)
    hist["objective"].append(dx - alpha * dy)


def _solve(target, background, basis, opts, callback, checkpoint=None):
    hist = {"iteration": [], "target": [], "background": [], "objective": []}
    alpha = opts.alpha if background else 0.0
    all_codes = [c for _, c in target] + [c for _, c in background]
    out = SolveOutput(basis)
    last_good = None
    recent = []
    start = 0
    resumed = checkpoint.resume_into(basis, all_codes, hist, out) if checkpoint else None
    if resumed is not None:
        start, last_good, recent = resumed
    held = ({}, {})   # entry predictions of the fixed rows while their codes are held
    stale = True      # ... to be recomputed (the held codes changed since)
    can_hold = _can_hold_nuisance(target + background, opts)
    tail_t = contiguous(basis[opts.n_free:].T) if can_hold else None
    for it in range(start, opts.max_iter):
        entering = (copy(basis), [copy(c) for c in all_codes])
        if checkpoint is not None:
            checkpoint.at(it, entering, hist, recent, last_good)
        want_div = it % opts.eval_every == 0
        if can_hold and not want_div and it % opts.nuisance_every != 0:
            view = view_basis(basis[:opts.n_free], opts.loss)
            dx, px = _sweep_held(target, view, opts, tail_t, held[0], stale)
            dy, py = (_sweep_held(background, view, opts, tail_t, held[1], stale)
                      if background else (0.0, None))
            stale = False
        else:
            stale = True
            view = view_basis(basis, opts.loss)
            dx, px = _sweep_all(target, view, opts, want_div)
            dy, py = _sweep_all(background, view, opts, want_div) if background else (0.0, None)
        recorded = dx is not None and dy is not None
        if not (_finite(px) and _finite(py)
                and (not recorded or np.isfinite(dx - alpha * dy))):
            # this sweep met a non-finite state: go back to the last good one
            out.diverged = True
            if last_good is not None:
                _restore(basis, all_codes, last_good, hist, out)
            break
        last_good = (it, entering)
        if recorded:
            _record(hist, it, dx, dy, alpha)
            if callback is not None:
                callback(it, basis, {"target": dx, "background": dy,
                                     "objective": dx - alpha * dy})
        if opts.n_free is None:
            basis_step(basis, px, py, alpha, opts.loss, opts.policy)
            if opts.normalize:
                normalize_basis(basis, all_codes, opts.policy.basis_floor)
        else:   # fixed nuisance rows after the first n_free: only the head moves
            k = opts.n_free
            basis_step(basis[:k], px.head(k), None if py is None else py.head(k), alpha,
                       opts.loss, opts.policy)
            if opts.normalize:
                normalize_basis(basis[:k], [c[:, :k] for c in all_codes],
                                opts.policy.basis_floor)
        out.n_iter = it + 1
        if opts.tol > 0:
            recent.append(_unit_rows(basis))
            if len(recent) > opts.window:
                past = recent.pop(0)
                change = abs(recent[-1] - past).sum(axis=1).max() / opts.window
                if change <= opts.tol:
                    out.converged = True
                    break
    if opts.polish_iter > 0 and opts.tol > 0 and not out.diverged:
        refine_codes(target + background, view_basis(basis, opts.loss), opts.loss,
                     opts.policy, opts.polish_iter, opts.tol)
    dx, dy = evaluate(target, background, basis, opts)
    if not np.isfinite(dx - alpha * dy) and last_good is not None:
        out.diverged = True
        _restore(basis, all_codes, last_good, hist, out)
        dx, dy = evaluate(target, background, basis, opts)
    if hist["iteration"] and hist["iteration"][-1] == out.n_iter:
        for values in hist.values():
            values.pop()
    _record(hist, out.n_iter, dx, dy, alpha)
    out.history = {k: np.asarray(v, dtype=np.int64 if k == "iteration" else np.float64)
                   for k, v in hist.items()}
    return out
