"""Full-batch engine: every sweep streams the blocks through the kernel,
sums their parts and takes one basis step.

Order within a sweep (the authors' order): target codes, background codes,
then the basis with the new codes.  The divergence of each block at the state
*entering* a sweep is a by-product of the sweep, so the objective is recorded
for every sweep at no extra cost; one evaluation pass after the last sweep
records the final state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .updates import Block, StepPolicy, basis_step, sweep_block, view_basis


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
    basis, as :meth:`transform` computes it.
    """

    loss: str
    alpha: float
    policy: StepPolicy
    normalize: bool
    max_iter: int
    tol: float
    window: int = 10
    polish_iter: int = 0


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


def _sweep_all(pairs, view, opts):
    div, parts = 0.0, None
    for block, codes in pairs:
        d, p = sweep_block(block, codes, view, opts.loss, opts.policy)
        div += d
        if parts is None:
            parts = p
        else:
            parts += p
    return div, parts


def refine_codes(pairs, view, loss, policy, max_iter: int, tol: float) -> int:
    """Code-only sweeps with the basis fixed (a convex problem per cell) until
    every cell's codes moved by at most ``tol`` relative to their size,
    ``max_i |c_i,t - c_i,t-1|_1 / |c_i,t|_1 <= tol``; returns the number of
    sweeps run."""
    tiny = np.finfo(np.float64).tiny
    for it in range(max_iter):
        worst = 0.0
        for block, codes in pairs:
            before = codes.copy()
            sweep_block(block, codes, view, loss, policy, want_parts=False)
            step = np.abs(codes - before).sum(axis=1)
            size = np.maximum(codes.sum(axis=1), tiny)
            if step.size:
                worst = max(worst, float(np.max(step / size)))
        if worst <= tol:
            return it + 1
    return max_iter


def _unit_rows(basis: np.ndarray) -> np.ndarray:
    scale = basis.sum(axis=1, keepdims=True)
    return basis / np.where(scale > 0, scale, 1.0)


def normalize_basis(basis: np.ndarray, code_blocks, floor: float) -> None:
    """Gauge fix in place: basis rows to unit L1 norm, scale into the codes."""
    scale = basis.sum(axis=1)
    scale[~(scale > 0)] = 1.0
    basis /= scale[:, None]
    if floor > 0:
        np.maximum(basis, floor, out=basis)
    for codes in code_blocks:
        codes *= scale


def _restore(basis, all_codes, state, hist, out) -> None:
    """Go back to ``state`` (the last finite state entering a sweep): its
    record is the last history entry, which the final evaluation re-adds."""
    basis[...] = state[0]
    for codes, saved in zip(all_codes, state[1]):
        codes[...] = saved
    for values in hist.values():
        values.pop()
    out.n_iter = len(hist["objective"])


def solve(target: list[tuple[Block, np.ndarray]],
          background: list[tuple[Block, np.ndarray]],
          basis: np.ndarray, opts: SolverOptions, callback=None) -> SolveOutput:
    """Run the engine in place on ``basis`` and the code arrays in the pairs.

    ``callback(iteration, basis, record)`` is called after every sweep with
    the record of the state that entered it.  Floating-point warnings are
    silenced inside: overflow is detected on the objective and handled by
    returning the last finite state.
    """
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        return _solve(target, background, basis, opts, callback)


def _solve(target, background, basis, opts, callback):
    hist = {"target": [], "background": [], "objective": []}
    alpha = opts.alpha if background else 0.0
    all_codes = [c for _, c in target] + [c for _, c in background]
    out = SolveOutput(basis)
    last_good = None
    recent = []
    for it in range(opts.max_iter):
        entering = (basis.copy(), [c.copy() for c in all_codes])
        view = view_basis(basis, opts.loss)
        dx, px = _sweep_all(target, view, opts)
        dy, py = _sweep_all(background, view, opts) if background else (0.0, None)
        obj = dx - alpha * dy
        if not np.isfinite(obj):
            # the state entering this sweep is not finite: go back one sweep
            out.diverged = True
            if last_good is not None:
                _restore(basis, all_codes, last_good, hist, out)
            break
        last_good = entering
        hist["target"].append(dx)
        hist["background"].append(dy)
        hist["objective"].append(obj)
        if callback is not None:
            callback(it, basis, {"target": dx, "background": dy, "objective": obj})
        basis_step(basis, px, py, alpha, opts.loss, opts.policy)
        if opts.normalize:
            normalize_basis(basis, all_codes, opts.policy.basis_floor)
        out.n_iter = it + 1
        if opts.tol > 0:
            recent.append(_unit_rows(basis))
            if len(recent) > opts.window:
                past = recent.pop(0)
                change = np.abs(recent[-1] - past).sum(axis=1).max() / opts.window
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
    hist["target"].append(dx)
    hist["background"].append(dy)
    hist["objective"].append(dx - alpha * dy)
    out.history = {k: np.asarray(v, dtype=np.float64) for k, v in hist.items()}
    return out
