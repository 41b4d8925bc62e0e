"""Several backgrounds, each with its own alpha, and several target conditions in one fit.

With backgrounds ``Y_1..Y_B`` (one per treatment, say) and target conditions
``X_1..X_T`` (one per dose) the objective is::

    sum_t D(X_t | C_t W) - sum_b alpha_b D(Y_b | C_b W)

Target conditions simply add up: they are fitted as one target whose codes are
split back per condition.  A weighted background divergence is the
divergence of scaled data (``a D(Y | P) = D(s Y | s P)`` with ``s = sqrt(a)``
for the squared error and ``s = a`` for KL, the codes absorbing ``s``), so
the backgrounds, each scaled by its own ``s_b``, form one background with
weight 1 and every path of :class:`~bcnmf.BCNMF` applies unchanged.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._inputs import resolve_settings
from ._validation import check_matrix
from .core.fit import host_sample
from .core.updates import data_scale
from .estimator import BCNMF, automatic, fit_contrast, path_table

_OWNER = "MultiConditionBCNMF"


def _matrices(data, name):
    mats = list(data) if isinstance(data, (list, tuple)) else [data]
    if not mats:
        raise ValueError(f"{name} is an empty list; pass at least one matrix.")
    return [check_matrix(A, f"{name}[{i}]" if len(mats) > 1 else name, _OWNER)
            for i, A in enumerate(mats)]


def _stack(mats, scales=None):
    if scales is not None:
        mats = [A * A.dtype.type(s) for A, s in zip(mats, scales)]
    if any(sp.issparse(A) for A in mats):
        return sp.vstack([sp.csr_matrix(A) for A in mats], format="csr")
    return np.vstack(mats)


def _slices(mats):
    bounds = np.cumsum([0] + [A.shape[0] for A in mats])
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


class MultiConditionBCNMF(BCNMF):
    """bcNMF with several backgrounds (each with its own alpha) and/or several
    target conditions, one basis for all of them.

    ``fit(X, background=[Y_1, ..., Y_B])``: ``X`` is a matrix or a list of
    target matrices (conditions); ``background`` a matrix or a list.  Every
    parameter of :class:`BCNMF` applies; ``alpha`` may be one value for all
    backgrounds or one value per background, each interpreted on
    ``alpha_scale`` as in :class:`BCNMF` (relative: ``alpha_b * S(X) /
    S(Y_b)``, with X all target conditions together).

    Attributes
    ----------
    alphas_raw_ : ndarray of shape (n_backgrounds,)
        Weight applied to each background's divergence.
    alpha_, alpha_path_
        As in :class:`BCNMF`: ``alpha="auto"`` chooses one relative alpha for every
        background, on the pooled targets against the pooled backgrounds (``alpha_``
        is NaN when a list of different alphas is given).
    background_codes_ : list of ndarray
        Codes of each background's cells, in its own units.
    target_slices_ : list of slice
        Rows of the codes returned by :meth:`fit_transform` that belong to each
        target condition.
    history_ : dict of ndarray
        ``"background"`` holds ``sum_b alphas_raw_[b] D(Y_b | C_b W)`` and
        ``"objective"`` = ``"target"`` - ``"background"``.
    components_, n_iter_, objective_, ...
        As in :class:`BCNMF`.

    Notes
    -----
    Stable Poisson: the prediction offset of background cells (see
    ``smoothing``) is computed from all backgrounds together (scaled by their
    weights), not per background.
    """

    # BCNMF's parameters (alpha may hold one value per background) on lists of matrices
    _parameter_constraints = {
        **BCNMF._parameter_constraints,
        "alpha": (lambda v: v == "auto" if isinstance(v, str)
                  else np.ndim(v) <= 1 and np.size(v) >= 1,
                  "'auto', a number, or one number per background"),
    }
    _fits_missing = False
    _takes_torch = False

    def fit(self, X, y=None, *, background=None):
        """Fit on target condition(s) and background(s); returns self."""
        self.fit_transform(X, background=background)
        return self

    def fit_transform(self, X, y=None, *, background=None):
        """Fit and return the codes of all target cells, conditions stacked in
        the order given (see ``target_slices_``)."""
        params = self._validate_params()
        if background is None:
            raise ValueError(f"{_OWNER} needs at least one background: fit(X, "
                             "background=[Y_1, ...]). Without one, use BCNMF.")
        Xs, Ys = _matrices(X, "X"), _matrices(background, "background")
        widths = [A.shape[1] for A in Xs + Ys]
        if len(set(widths)) > 1:
            raise ValueError(f"every target and background matrix must have the same "
                             f"features; got feature counts {widths} (targets first).")
        loss = "frobenius" if self.beta_loss == "frobenius" else "kullback-leibler"
        choice = None
        if isinstance(self.alpha, str):   # "auto": one relative alpha for every background,
            # chosen on the pooled targets against the pooled backgrounds
            s = resolve_settings(params["n_components"], widths[0], params, _OWNER)
            s, choice, seed = automatic(s, params, widths[0],
                                        lambda: host_sample(_stack(Xs), name="X"),
                                        lambda: host_sample(_stack(Ys)), _OWNER)
            params = dict(params, random_state=seed, n_components=s.n_components)
        alphas = np.asarray(self.alpha if choice is None else s.alpha,
                            dtype=np.float64).ravel()
        if alphas.size == 1:
            alphas = np.repeat(alphas, len(Ys))
        if alphas.size != len(Ys) or not np.all(np.isfinite(alphas)) or np.any(alphas <= 0):
            raise ValueError(f"alpha must be one finite positive number, or one per background "
                             f"({len(Ys)}); got {self.alpha!r}.")
        scale_x = sum(data_scale(A, loss) for A in Xs)
        relative = choice is not None or (
            self.alpha_scale or ("raw" if self.mode == "reference" else "relative")) == "relative"
        raw = alphas.copy()
        if relative:
            ey = np.array([data_scale(A, loss) for A in Ys])
            if np.any(ey <= 0):
                raise ValueError("A background is all zeros, so alpha_scale='relative' is "
                                 "undefined; pass non-zero backgrounds or alpha_scale='raw'.")
            raw = alphas * scale_x / ey
        scales = np.sqrt(raw) if loss == "frobenius" else raw
        # the weights live in the scaled, stacked background: one raw weight of 1
        codes = fit_contrast(self, _stack(Xs), _stack(Ys, scales),
                             dict(params, alpha=1.0, alpha_scale="raw"), (None, None, None),
                             (None, None), {}).codes
        self.alphas_raw_ = raw
        # one relative alpha for every background (NaN when they differ: see alphas_raw_)
        self.alpha_ = float(alphas[0]) if np.all(alphas == alphas[0]) else float("nan")
        self.alpha_path_ = path_table(choice)
        self._background_scales = scales
        self.background_codes_ = [self.background_codes_[sl] / s
                                  for sl, s in zip(_slices(Ys), scales)]
        self.target_slices_ = _slices(Xs)
        return codes

    def transform(self, X, *, as_background=False):
        """Codes of cells with the basis fixed.  ``as_background``: False
        (target cells), or the index of the background whose model the cells
        follow (True means background 0)."""
        if as_background is False:
            return super().transform(X)
        b = int(as_background)
        s = self._background_scales[b]
        A = check_matrix(X, "X", _OWNER)
        return super().transform(A * A.dtype.type(s), as_background=True) / s

    def _state(self):
        """Fitted state beyond BCNMF's, as named arrays (for :mod:`bcnmf.persistence`)."""
        codes = self.background_codes_
        return {**super()._state(), "alphas_raw": self.alphas_raw_,
                "background_scales": np.asarray(self._background_scales),
                "background_codes": np.vstack(codes),
                "background_bounds": np.cumsum([0] + [len(c) for c in codes]),
                "target_bounds": np.asarray([0] + [sl.stop for sl in self.target_slices_])}

    def _set_state(self, arrays):
        def slices(name):
            b = arrays[name].tolist()
            return [slice(lo, hi) for lo, hi in zip(b[:-1], b[1:])]

        super()._set_state(arrays)
        self.alphas_raw_ = arrays["alphas_raw"]
        self._background_scales = arrays["background_scales"]
        self.background_codes_ = [arrays["background_codes"][sl]
                                  for sl in slices("background_bounds")]
        self.target_slices_ = slices("target_bounds")
