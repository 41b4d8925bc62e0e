"""Online bcNMF: :class:`MiniBatchBCNMF`, one basis step per minibatch."""

from __future__ import annotations

import functools
import warnings

import numpy as np

from .core.fit import (FitState, _augment, _drawn, _restart_seeds, _stack_offset,
                       contrastive_start, host_sample, prepare, shared_basis)
from .core.backend import is_torch
from .core.init import codes_for_basis, initial_factors
from .core.online import OnlineState, online_step, polish_codes
from .core.solver import SolverOptions, unit_rows, normalize_basis
from .core.source import RowSource, make_blocks, scan
from ._base import BaseBCNMF
from ._inputs import check_background, check_init, resolve_settings, validate_target
from ._validation import INIT_OR_CONTRASTIVE, constraints
from .exceptions import ConvergenceWarning, DivergenceWarning


#: largest L1 change of a unit-L1 basis row in a step that counts as a step
#: without improvement (``max_no_improvement``)
STALE_CHANGE = 1e-3


class MiniBatchBCNMF(BaseBCNMF):
    """bcNMF learned online: a basis step after every minibatch.

    Every step takes ``batch_size`` target cells and the matching share of
    background cells (so that both are traversed once per epoch), updates
    their codes with the basis fixed and takes one multiplicative basis step
    from running accumulators of the batches' parts (see ``forget_factor``).
    On large data this reaches the full-batch objective in fewer passes over
    the cells; :meth:`partial_fit` learns from blocks that arrive one at a
    time.  With one batch per epoch (``batch_size`` at least the number of
    target cells) every step is the full-batch step and the fit is
    :class:`BCNMF`'s (with shared topics, up to their schedule: their codes
    are updated at every step here, every 10th sweep there).  See
    docs/online.md.

    Parameters
    ----------
    n_components, alpha, alpha_scale, beta_loss, mode, init, smoothing, \
random_state, transform_max_iter
        As in :class:`BCNMF`.  :meth:`fit` applies a relative ``alpha`` and
        the stable Poisson offsets of the whole data, as :class:`BCNMF` does;
        :meth:`partial_fit` applies a relative ``alpha`` per block,
        ``alpha * S(X_b) / S(Y_b)``, and offsets from the running feature
        means of the cells seen so far.
    n_shared : "auto" or int, default="auto"
        As in :class:`BCNMF`: stable mode with a background fixes this many
        topics of the background (counted and fitted once before the first
        step: on all background cells in :meth:`fit`, on the first block's
        in :meth:`partial_fit`) and fits their codes with the others; only the
        contrastive topics are learnt online.
    batch_size : int, default=1024
        Target cells per step.
    forget_factor : float in [0, 1], default=0.7
        Weight of the past in the accumulators after one epoch.
        :meth:`fit` revisits the same batches every epoch: the accumulators
        hold every batch once, by its latest parts, weighted by
        ``forget_factor ** (batch_size / n_target)`` per step since they were
        computed (between ``forget_factor`` and 1), so a batch's older parts
        never add to its new ones.  :meth:`partial_fit` receives new cells at
        every call: it multiplies the accumulators by ``forget_factor`` and
        adds the block's parts (scikit-learn's
        :class:`~sklearn.decomposition.MiniBatchNMF`).  0 forgets everything
        (every step is a full-batch step on its batch); 1 remembers all.
    fresh_restarts : bool, default=False
        Solve the codes of every batch afresh (up to
        ``fresh_restarts_max_iter`` code updates) instead of one update from
        their stored values.  :meth:`partial_fit` always does.
    fresh_restarts_max_iter : int, default=30
    max_iter : int, default=500
        Maximum number of epochs (passes over the data); one epoch with one
        batch is one sweep of :class:`BCNMF`.
    tol : float, default=1e-4
        The rule of :class:`BCNMF`, per epoch: stop at the end of an epoch
        when the topics stop moving, i.e. the largest L1 distance between a
        unit-L1 basis row and the same row 10 epochs earlier, divided by 10,
        is at most ``tol`` (comparing states at the same point of the batch
        sequence, which repeats every epoch); the stored codes of all cells
        are then refined with the basis fixed until their relative L1 change
        per step is at most ``tol`` (at most ``transform_max_iter`` steps).
        0 runs exactly ``max_iter`` epochs and no refinement.
    max_no_improvement : int or None, default=10
        Stop after this many steps without improvement of the smoothed
        per-cell batch objective in which no topic moved by more than
        ``STALE_CHANGE`` (1e-3, L1 change of a unit-L1 basis row): the
        contrastive objective can stall while the topics still move.  Not
        applied with one batch per epoch, whose steps are full-batch steps
        judged by ``tol`` as in :class:`BCNMF`.  None disables it.

    Attributes
    ----------
    components_, background_codes_, n_features_in_, feature_names_in_
        As in :class:`BCNMF`.
    n_iter_ : int
        Epochs started.
    n_steps_ : int
        Minibatch steps taken.
    history_ : dict of ndarray
        Per step, for the state entering it: ``"iteration"`` (steps taken
        before), ``"target"``, ``"background"`` (the batch's divergences),
        ``"objective"`` and ``"smoothed"`` (exponentially weighted per-cell
        objective).

    Examples
    --------
    >>> import numpy as np
    >>> from bcnmf import MiniBatchBCNMF
    >>> rng = np.random.default_rng(0)
    >>> X, Y = rng.random((200, 8)), rng.random((100, 8))
    >>> model = MiniBatchBCNMF(2, batch_size=50, max_iter=5, tol=0, max_no_improvement=None,
    ...                        random_state=0)
    >>> model.fit_transform(X, background=Y).shape
    (200, 2)
    """

    _parameter_constraints = {**constraints(
        "n_components", "alpha", "alpha_scale", "beta_loss", "mode", "smoothing",
        "batch_size", "forget_factor", "fresh_restarts", "fresh_restarts_max_iter", "max_iter",
        "tol", "max_no_improvement", "random_state", "transform_max_iter", "n_shared"),
        "init": INIT_OR_CONTRASTIVE}
    _saved_scalars = ("alpha_raw_", "n_steps_")

    def __init__(self, n_components=None, *, alpha=1.5, alpha_scale=None,
                 beta_loss="frobenius", mode="stable", init=None, smoothing=0.1,
                 batch_size=1024, forget_factor=0.7, fresh_restarts=False,
                 fresh_restarts_max_iter=30, max_iter=500, tol=1e-4, max_no_improvement=10,
                 random_state=None, transform_max_iter=1000, n_shared="auto"):
        self.n_components = n_components
        self.alpha = alpha
        self.alpha_scale = alpha_scale
        self.beta_loss = beta_loss
        self.mode = mode
        self.init = init
        self.smoothing = smoothing
        self.batch_size = batch_size
        self.forget_factor = forget_factor
        self.fresh_restarts = fresh_restarts
        self.fresh_restarts_max_iter = fresh_restarts_max_iter
        self.max_iter = max_iter
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.random_state = random_state
        self.transform_max_iter = transform_max_iter
        self.n_shared = n_shared

    # -- settings -------------------------------------------------------------------------

    def _params(self):
        return dict(self._validate_params(), damping=None, n_init=1)

    def _start(self, X, Y, p, init, n_batches=0):
        """Settings, policy and starting factors (as :func:`bcnmf.core.fit.fit_factors`
        draws them), from ``X`` and ``Y`` or from ``init = (basis, codes,
        background codes)``, for a fit over ``n_batches`` batches (0: a stream
        of blocks); returns the starting codes."""
        s = resolve_settings(self.n_components, X.shape[1], p, owner=type(self).__name__,
                             contrastive=True)
        info_x = scan(RowSource(X), s.loss, None)
        info_y = scan(RowSource(Y, "background", X.dtype), s.loss, None) \
            if Y is not None else None
        sample_y = functools.cache(lambda: host_sample(Y))
        prep = prepare(info_x, info_y, s, sample=sample_y)
        self._settings, self._policy = s, prep.policy
        shared = None
        if prep.n_shared:   # fixed topics of the background, as BCNMF fits them
            blocks_y = make_blocks(RowSource(Y, "background", X.dtype), info_y, s.loss,
                                   prep.offsets[1])
            with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
                shared = shared_basis(blocks_y, info_y, prep.n_shared, s, self._policy)
        if init is not None:
            basis, cx, cy = (None if a is None else np.array(a, dtype=X.dtype, order="C")
                             for a in init)
        elif s.init == "contrastive" and Y is not None:   # as BCNMF starts
            basis = np.ascontiguousarray(contrastive_start(
                (host_sample(X, name="X"), sample_y()), info_x, info_y, s, prep.alpha_raw,
                shared), dtype=X.dtype)
            cx, cy = codes_for_basis(X, basis), codes_for_basis(Y, basis)
        else:
            seed = _restart_seeds(self.random_state, 1)[0]
            basis, cx, cy = initial_factors(info_x, info_y, s.n_components, _drawn(s.init),
                                            np.random.default_rng(seed), X.dtype)
        if s.mode != "reference":
            with np.errstate(over="ignore", invalid="ignore"):
                normalize_basis(basis, [c for c in (cx, cy) if c is not None],
                                self._policy.basis_floor)
        k = basis.shape[0]
        self._shared = None
        if shared is not None:
            g, dy = shared
            self._shared = g
            if cx is None:   # the codes are solved afresh at the first step
                basis = np.ascontiguousarray(np.concatenate([basis, g]))
            else:
                basis, cx, cy = _augment(basis, cx, cy, (g, dy), info_x, info_y)
        self._online = OnlineState.start(basis, k, n_batches)
        if n_batches and Y is not None:   # the whole data's contrast, as in BCNMF
            self._online.alpha = prep.alpha_raw
            self._online.data_offsets = prep.offsets
        self._hist = {k: [] for k in ("iteration", "target", "background", "objective",
                                      "smoothed")}
        self._ewa = None
        self._alpha = 0.0
        return cx, cy

    # -- fitting --------------------------------------------------------------------------

    def fit(self, X, y=None, *, background=None, init_components=None, init_codes=None,
            init_background_codes=None):
        """Fit on all cells, by epochs of minibatch steps; returns self."""
        self.fit_transform(X, background=background, init_components=init_components,
                           init_codes=init_codes, init_background_codes=init_background_codes)
        return self

    def fit_transform(self, X, y=None, *, background=None, init_components=None,
                      init_codes=None, init_background_codes=None):
        """Fit and return the target codes (see :meth:`BCNMF.fit_transform`)."""
        _numpy_only(X, background)
        p = self._params()
        X = validate_target(self, X, reset=True)
        Y = check_background(background, X, getattr(self, "feature_names_in_", None),
                              type(self).__name__)
        s_k = resolve_settings(self.n_components, X.shape[1], p, type(self).__name__).n_components
        init = check_init((init_components, init_codes, init_background_codes), X, Y, s_k)
        n_x = X.shape[0]
        n_steps = -(-n_x // self.batch_size)
        cx, cy = self._start(X, Y, p, init, n_steps)
        rho = self.forget_factor ** (self.batch_size / n_x)
        bounds_x = _even_bounds(n_x, n_steps)
        bounds_y = _even_bounds(Y.shape[0], n_steps) if Y is not None else None
        patience = self.max_no_improvement if n_steps > 1 else None
        stop, recent, window = None, [], SolverOptions.window
        for epoch in range(self.max_iter):
            self.n_iter_ = epoch + 1
            for step in range(n_steps):
                (lo, hi) = bounds_x[step]
                xb, yb = X[lo:hi], None
                codes_x, codes_y = cx[lo:hi], None
                if Y is not None:
                    (ly, hy) = bounds_y[step]
                    yb, codes_y = Y[ly:hy], cy[ly:hy]
                if self.fresh_restarts:
                    codes_x, codes_y = codes_x.copy(), None if yb is None else codes_y.copy()
                    rescale = [c for c in (codes_x, codes_y) if c is not None]
                else:
                    rescale = [c for c in (cx, cy) if c is not None]
                stop = self._step(xb, codes_x, yb, codes_y, rho, self.fresh_restarts, rescale,
                                  n_x, patience, step)
                if self.fresh_restarts:
                    cx[lo:hi] = codes_x
                    if yb is not None:
                        cy[ly:hy] = codes_y
                if stop:
                    break
            if stop:
                break
            if self.tol > 0:
                recent.append(unit_rows(self._online.basis))
                if len(recent) > window:
                    past = recent.pop(0)
                    if np.abs(recent[-1] - past).sum(axis=1).max() / window <= self.tol:
                        stop = "converged"
                        break
        if stop != "diverged" and self.tol > 0 and not self.fresh_restarts:
            with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
                polish_codes(self._online, X, cx, Y, cy, self._settings, self._policy,
                             self.transform_max_iter, self.tol)
        self._finish(stop, stopping=self.tol > 0 or patience is not None)
        if Y is not None:
            self.background_codes_ = self.transform(Y, as_background=True) \
                if self.fresh_restarts else cy[:, :s_k].copy()
        else:
            self.background_codes_ = None
        return self.transform(X) if self.fresh_restarts else cx[:, :s_k].copy()

    def partial_fit(self, X, y=None, *, background=None, init_components=None):
        """One minibatch step on a block of target cells (and background
        cells, ideally in the proportion of the full data); the first call
        initialises the model from this block (or ``init_components``)."""
        _numpy_only(X, background)
        first = not hasattr(self, "_online")
        if first and hasattr(self, "components_"):
            raise ValueError(
                f"This {type(self).__name__} was loaded from a file, which keeps the topics "
                "but not the running accumulators that partial_fit continues from; call fit, "
                f"or start a new model from these topics: {type(self).__name__}(**model."
                "get_params()).partial_fit(X, background=Y, init_components=model."
                "components_).")
        p = self._params()
        X = validate_target(self, X, reset=first)
        Y = check_background(background, X, getattr(self, "feature_names_in_", None),
                              type(self).__name__)
        if first:
            k = resolve_settings(self.n_components, X.shape[1], p, type(self).__name__).n_components
            init = None
            if init_components is not None:
                init = (check_init((init_components, np.zeros((X.shape[0], k)),
                                     None if Y is None else np.zeros((Y.shape[0], k))),
                                    X, Y, k)[0], None, None)
            self._start(X, Y, p, init)
        codes_x = np.empty((X.shape[0], self._online.basis.shape[0]), dtype=X.dtype)
        codes_y = None if Y is None else np.empty((Y.shape[0], codes_x.shape[1]), X.dtype)
        rescale = [c for c in (codes_x, codes_y) if c is not None]
        X = X.astype(self._online.basis.dtype, copy=False)
        self._step(X, codes_x, Y, codes_y, self.forget_factor, True, rescale, None,
                   self.max_no_improvement)
        self.n_iter_ = 1
        self._finish(None, stopping=False)
        self.background_codes_ = None if codes_y is None else codes_y[:, :self._online.n_free]
        return self

    def _step(self, X, codes_x, Y, codes_y, rho, fresh, rescale, n_total, patience,
              batch=None):
        state, s = self._online, self._settings
        basis_before = unit_rows(state.basis)
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            dx, dy, alpha = online_step(state, X, codes_x, Y, codes_y, s, self._policy, rho,
                                        fresh, self.fresh_restarts_max_iter, rescale, batch)
        if not np.all(np.isfinite(state.basis)):
            state.basis[...] = basis_before
            return "diverged"
        self._alpha = alpha
        change = float(np.abs(unit_rows(state.basis) - basis_before).sum(1).max())
        cost = (dx - alpha * dy) / X.shape[0]
        weight = X.shape[0] / (n_total + 1) if n_total else 0.5
        smoothed = cost if self._ewa is None else (1 - weight) * self._ewa[0] + weight * cost
        if self._ewa is None or smoothed < self._ewa[1]:
            best, stale = smoothed, 0
        else:   # a step whose topics still move is not stale (see max_no_improvement)
            best, stale = self._ewa[1], self._ewa[2] + (change <= STALE_CHANGE)
        self._ewa = (smoothed, best, stale)
        entering = state.n_steps - 1   # the record is of the state entering the step
        for key, value in zip(self._hist, (entering, dx, dy, dx - alpha * dy, smoothed)):
            self._hist[key].append(value)
        if patience is not None and stale >= patience:
            return "no improvement"
        return None

    def _finish(self, stop, stopping):
        """Set the fitted state; warn when the fit diverged, or when a stopping rule
        (``stopping``) was in force and did not fire."""
        k = self._online.n_free
        self.components_ = self._online.basis[:k].copy()
        self.n_steps_ = self._online.n_steps
        self.history_ = {k: np.asarray(v, dtype=np.int64 if k == "iteration" else np.float64)
                         for k, v in self._hist.items()}
        self.alpha_raw_ = self._alpha   # fit: the whole data's; partial_fit: the last block's
        self.objective_ = float(self._hist["objective"][-1]) if self._hist["objective"] \
            else np.nan
        offsets = self._online.offsets(self._settings, self._online.n_y > 0)
        if self._shared is not None:   # the fixed topics travel with the offsets
            offsets = tuple(_stack_offset(o, self._shared) for o in offsets)
        self.fit_state_ = FitState(self._settings, self._policy, offsets)
        self._n_features_out = k
        if stop == "diverged":
            warnings.warn(f"{type(self).__name__} diverged: a basis step produced non-finite "
                          "values; returning the basis before it.", DivergenceWarning,
                          stacklevel=3)
        elif stop is None and stopping:
            warnings.warn(f"Maximum number of epochs {self.max_iter} reached before "
                          "convergence; increase max_iter.", ConvergenceWarning, stacklevel=3)


def _even_bounds(n, parts):
    edges = np.linspace(0, n, parts + 1).round().astype(int)
    return list(zip(edges[:-1], edges[1:]))


def _numpy_only(*arrays):
    """The online engine runs on the numpy backend only."""
    if any(is_torch(a) for a in arrays):
        raise NotImplementedError(
            "MiniBatchBCNMF fits numpy arrays and scipy.sparse matrices (in memory or out of "
            "core); torch tensors are supported by BCNMF and factorize (device=..., CPU or "
            "CUDA). Pass tensor.cpu().numpy(), or use BCNMF.")
