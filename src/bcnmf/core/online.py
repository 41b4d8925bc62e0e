"""Online engine: one basis step per minibatch, with running accumulators.

A step takes a batch of target cells and a batch of background cells:

1. their codes are updated with the basis fixed, by one multiplicative step
   from their stored values (warm) or solved afresh from a deterministic
   start (``fresh``, as for cells never seen before), then one kernel sweep
   (:func:`~bcnmf.core.updates.sweep_block`) returns the batch's basis parts;
2. the multiplicative basis step uses running accumulators ``A`` and ``D``,
   ``B <- A / D``, where ``numer / denom`` is the ratio of the full-batch
   step computed on the batch.  Blocks that arrive once (a stream) enter
   with a forgetting factor ``rho``, as in scikit-learn's ``MiniBatchNMF``::

       A <- rho A + numer * B,   D <- rho D + denom

   A fit that revisits a fixed set of batches every epoch counts every batch
   once, by its latest parts, weighted by ``rho ** (steps since they were
   computed)``::

       A = sum_b rho ** age_b (numer_b * B_b),   D = sum_b rho ** age_b denom_b

   so that a batch's older parts (computed from older codes and basis) do
   not linger beside its new ones.  Either way, a batch holding every cell
   takes exactly the full-batch step.

Data-level statistics follow the full-batch fit.  A fit over data held in
full uses the full-batch values (:func:`~bcnmf.core.fit.raw_alpha`,
:func:`~bcnmf.core.fit.contrast_offsets`, set on the state).  A stream
rescales relative ``alpha`` by the batch's ``S(X_b) / S(Y_b)``, and its stable
Poisson offsets use the running per-feature means of all cells seen so far.
Either way a batch holding all cells reproduces a full-batch sweep.

:func:`polish_codes` ends a fit as the full-batch engine does: the codes of
every cell are refined with the final basis fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fit import FitSettings
from .init import codes_for_basis
from .solver import normalize_basis, refine_codes
from .updates import (FROBENIUS, StepPolicy, basis_policy, basis_terms, data_scale, make_block,
                      sweep_block, view_basis)


@dataclass
class OnlineState:
    """Everything an online fit carries from one step to the next.  The
    accumulators cover the free rows of the basis: all of them, or the
    first ``n_free`` when fixed shared topics follow
    (:func:`bcnmf.core.fit.shared_basis`)."""

    basis: np.ndarray
    numer: np.ndarray            # running accumulator A
    denom: np.ndarray            # running accumulator D
    colsum_x: np.ndarray         # per-feature sums of the cells seen (float64)
    colsum_y: np.ndarray
    n_x: int = 0
    n_y: int = 0
    n_steps: int = 0
    batch_numer: np.ndarray | None = None   # per batch: its latest A
    batch_denom: np.ndarray | None = None   # per batch: its latest D
    batch_step: np.ndarray | None = None    # per batch: the step that computed them (-1)
    alpha: float | None = None              # raw alpha of the whole data (None: per batch)
    data_offsets: tuple | None = None       # offsets of the whole data (None: running)

    @classmethod
    def start(cls, basis: np.ndarray, n_free: int | None = None,
              n_batches: int = 0) -> "OnlineState":
        """The state before the first step; ``n_batches > 0``: a fit that
        revisits that many batches (steps name their batch), else a stream."""
        k, f = basis.shape
        k = k if n_free is None else n_free
        state = cls(basis, np.zeros((k, f), basis.dtype), np.zeros((k, f), basis.dtype),
                    np.zeros(f), np.zeros(f))
        if n_batches:
            state.batch_numer = np.zeros((n_batches, k, f), basis.dtype)
            state.batch_denom = np.zeros((n_batches, k, f), basis.dtype)
            state.batch_step = np.full(n_batches, -1)
        return state

    @property
    def n_free(self) -> int:
        return self.numer.shape[0]

    def offsets(self, s: FitSettings, has_background: bool):
        """Stable Poisson prediction offsets: of the whole data when set,
        else from the running means."""
        if self.data_offsets is not None:
            return self.data_offsets
        if (not has_background or s.loss == FROBENIUS or s.mode == "reference"
                or s.smoothing == 0 or self.n_x == 0 or self.n_y == 0):
            return None, None
        return (s.smoothing * self.colsum_x / self.n_x,
                s.smoothing * self.colsum_y / self.n_y)


def batch_alpha(s: FitSettings, X, Y) -> float:
    """Raw contrast weight for one batch (see :func:`bcnmf.core.fit.raw_alpha`)."""
    if Y is None:
        return 0.0
    if s.alpha_scale == "raw":
        return float(s.alpha)
    sy = data_scale(Y, s.loss)
    return float(s.alpha) * data_scale(X, s.loss) / sy if sy > 0 else 0.0


def online_step(state: OnlineState, X, codes_x, Y, codes_y, s: FitSettings,
                policy: StepPolicy, rho: float, fresh: bool, fresh_max_iter: int,
                rescale, batch=None):
    """One online step on validated batches ``X`` (and ``Y`` or None) with
    their code arrays (updated in place).  ``rescale`` lists the code arrays
    that follow the gauge fix, each cell once: the batch's codes, or the
    stored codes of all cells when the batch's are views of them.
    ``batch``: the index of the batch in a state started with ``n_batches``
    (its parts replace the batch's previous ones), else None (a stream).
    Returns ``(target divergence, background divergence, alpha)`` of the
    batch at the state entering the step."""
    state.colsum_x += np.asarray(X.sum(axis=0, dtype=np.float64)).ravel()
    state.n_x += X.shape[0]
    if Y is not None:
        state.colsum_y += np.asarray(Y.sum(axis=0, dtype=np.float64)).ravel()
        state.n_y += Y.shape[0]
    offset_x, offset_y = state.offsets(s, Y is not None)
    cast = lambda o: None if o is None else o.astype(X.dtype)  # noqa: E731
    bx = make_block(X, s.loss, cast(offset_x))
    by = make_block(Y, s.loss, cast(offset_y)) if Y is not None else None
    alpha = batch_alpha(s, X, Y) if state.alpha is None or Y is None else state.alpha
    basis = state.basis
    view = view_basis(basis, s.loss)
    pairs = [(bx, codes_x)] + ([(by, codes_y)] if Y is not None else [])
    if fresh:
        for block, codes in pairs:
            codes[...] = codes_for_basis(block.data, basis)
        refine_codes(pairs, view, s.loss, policy, fresh_max_iter, s.tol)
    dx, px = sweep_block(bx, codes_x, view, s.loss, policy)
    dy, py = sweep_block(by, codes_y, view, s.loss, policy) if Y is not None else (0.0, None)
    k = state.n_free
    full = basis
    if k < basis.shape[0]:   # fixed shared rows after the first k: only the head moves
        basis, px, py = basis[:k], px.head(k), None if py is None else py.head(k)
        rescale = [c[:, :k] for c in rescale]
    numer, denom = basis_terms(basis, px, py, alpha, s.loss, full)
    numer *= basis
    if batch is None:
        state.numer *= rho
        state.numer += numer
        state.denom *= rho
        state.denom += denom
    else:
        _replace_batch(state, batch, numer, denom, rho)
    np.divide(state.numer, state.denom + basis_policy(policy).eps, out=basis)
    if policy.basis_floor > 0:
        np.maximum(basis, policy.basis_floor, out=basis)
    if s.mode != "reference":
        scale = basis.sum(axis=1)
        scale[~(scale > 0)] = 1.0
        normalize_basis(basis, list(rescale), policy.basis_floor)
        state.numer /= scale[:, None]
        if state.batch_numer is not None:   # every A follows the gauge of the basis
            state.batch_numer /= scale[:, None]
    state.n_steps += 1
    return dx, dy, alpha


def _replace_batch(state: OnlineState, batch: int, numer, denom, rho: float) -> None:
    """Accumulators of a fit that revisits its batches: every batch counts
    once, by its latest parts, weighted by ``rho ** (steps since they were
    computed)``."""
    state.batch_numer[batch] = numer
    state.batch_denom[batch] = denom
    state.batch_step[batch] = state.n_steps
    seen = state.batch_step >= 0
    weight = np.where(seen, rho ** (state.n_steps - state.batch_step), 0.0)
    state.numer[...] = np.tensordot(weight, state.batch_numer, axes=1)
    state.denom[...] = np.tensordot(weight, state.batch_denom, axes=1)


def polish_codes(state: OnlineState, X, codes_x, Y, codes_y, s: FitSettings,
                 policy: StepPolicy, max_iter: int, tol: float) -> int:
    """Refine the stored codes of all cells (``codes_x``, and ``codes_y`` when
    ``Y`` is not None; in place) with the final basis fixed, from their
    stored values, as the full-batch engine's final refinement
    (:func:`~bcnmf.core.solver.refine_codes`, ``max_iter`` sweeps at most,
    relative code change ``tol``), with the prediction offsets of the fitted
    model.  Returns the largest number of sweeps a block ran."""
    offset_x, offset_y = state.offsets(s, Y is not None)
    cast = lambda o: None if o is None else o.astype(X.dtype)  # noqa: E731
    pairs = [(make_block(X, s.loss, cast(offset_x)), codes_x)]
    if Y is not None:
        pairs.append((make_block(Y, s.loss, cast(offset_y)), codes_y))
    return refine_codes(pairs, view_basis(state.basis, s.loss), s.loss, policy, max_iter, tol)
