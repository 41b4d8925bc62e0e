"""Combined-basis bcNMF: shared plus target-specific topics (MODEL.md section 6)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ._validation import check_for_loss, check_orientation, check_params
from .core.combined import fit_combined
from .core.source import is_out_of_core
from .estimator import BCNMF, _check_background, _report, _settings, _validate_target


class CombinedBCNMF(BCNMF):
    r"""bcNMF with a combined basis: the target is explained by shared plus
    target-specific topics, the background by the shared topics only.

    .. math::

        \min \; D(X \mid H_X (W_s + W_t)) + D(Y \mid H_Y W_s)
        + \lambda \, \lVert W_s W_t^\top \rVert_F^2

    (cells as rows, so ``components_shared_`` is the paper's :math:`W_s^\top`).
    Topic ``k`` of a target cell is the pair ``W_s[k] + W_t[k]``: its shared
    part is what the background also shows, its target part what only the
    target shows.  The authors use this form for their two-digit figure.
    Unlike :class:`BCNMF` nothing is subtracted, so the objective is bounded
    below and large penalties do not collapse the fit.

    Parameters
    ----------
    n_components : int or None, default=None
        Number of topics K (1 <= K <= n_features); None means n_features.
    penalty : float, default=1.0
        Weight of the overlap penalty, scale-free: rows of ``W_s + W_t`` sum
        to one (the scale lives in the codes) and the applied weight is
        ``penalty_raw_ = penalty * n_features * (D(X|0) + D(Y|0))`` (squared
        norms for squared error, total counts for KL), so that a complete
        overlap of a shared and a target topic spread evenly over the
        features costs ``penalty`` times the data's total energy.  0 removes
        the penalty (the shared/target split is then arbitrary).
    beta_loss : {"frobenius", "kullback-leibler", "poisson"}, default="frobenius"
    init : {"random", "uniform"} or None, default=None
        Starting basis as in :class:`BCNMF` ("random" when None), split
        entry-wise at uniform random fractions into shared and target parts.
    max_iter, tol, n_init, random_state, transform_max_iter, block_size
        As in :class:`BCNMF` (stable mode: floors, gauge, stopping rule on
        the topics of both bases, code refinement, last finite state on
        divergence).  Among restarts the lowest final objective wins.

    Attributes
    ----------
    components_shared_, components_target_ : ndarray of shape (n_components, n_features)
    components_ : ndarray of shape (n_components, n_features)
        ``components_shared_ + components_target_``, the target's basis
        (used by :meth:`transform` and :meth:`inverse_transform`).
    background_codes_ : ndarray of shape (n_background, n_components)
    history_ : dict of ndarray
        ``"target"``, ``"background"``, ``"penalty"`` and ``"objective"`` (their
        sum) at the sweeps in ``history_["iteration"]``.
    penalty_raw_ : float
    n_iter_, objective_, restart_objectives_, n_features_in_, feature_names_in_

    Examples
    --------
    >>> import numpy as np
    >>> from bcnmf import CombinedBCNMF
    >>> rng = np.random.default_rng(0)
    >>> Y = rng.poisson(1.0, size=(60, 12)).astype(float)
    >>> X = rng.poisson(1.0, size=(50, 12)).astype(float)
    >>> X[:25, :3] += 5.0
    >>> model = CombinedBCNMF(2, random_state=0, max_iter=2000, tol=1e-3).fit(X, background=Y)
    >>> model.components_target_.shape
    (2, 12)
    """

    # what persistence saves beyond BCNMF's fitted state
    _saved_arrays = ("components_shared_", "components_target_")
    _saved_scalars = ("penalty_raw_",)

    def __init__(self, n_components=None, *, penalty=1.0, beta_loss="frobenius", init=None,
                 max_iter=500, tol=1e-4, n_init=1, random_state=None,
                 transform_max_iter=1000, block_size=None):
        self.n_components = n_components
        self.penalty = penalty
        self.beta_loss = beta_loss
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.random_state = random_state
        self.transform_max_iter = transform_max_iter
        self.block_size = block_size

    def fit(self, X, y=None, *, background=None):
        """Fit the model; returns self.  See :meth:`fit_transform`."""
        self.fit_transform(X, background=background)
        return self

    def fit_transform(self, X, y=None, *, background=None):
        """Fit the model and return the target codes.

        Parameters
        ----------
        X : {ndarray, sparse matrix, DataFrame} of shape (n_target, n_features)
        y : ignored
        background : array-like or sparse of shape (n_background, n_features)
            Required: the shared topics are learnt from it.

        Returns
        -------
        codes : ndarray of shape (n_target, n_components)
        """
        owner = type(self).__name__
        params = self.get_params()
        check_params(params, owner)
        if background is None:
            raise ValueError(f"{owner} needs a background: fit(X, background=Y). Without one, "
                             "use BCNMF (plain NMF).")
        check_orientation(X, background, owner)
        X = _validate_target(self, X, reset=True)
        Y = _check_background(background, X, getattr(self, "feature_names_in_", None), owner)
        s = _settings(self.n_components, X.shape[1],
                      {**params, "alpha": 0.0, "alpha_scale": "raw", "mode": "stable",
                       "damping": None, "smoothing": 0.0}, owner)
        for A, name in ((X, "X"), (Y, "background")):
            if not is_out_of_core(A):
                check_for_loss(A, name, s.loss, owner)
        res = fit_combined(X, Y, s, self.penalty, self.random_state,
                           block_rows=self.block_size)
        components = res.shared + res.target
        _report({"diverged": res.diverged, "converged": res.converged, "runaway": None}, s,
                SimpleNamespace(components=components, codes=res.codes,
                                background_codes=res.background_codes,
                                objective=res.objective, n_iter=res.n_iter), owner)
        self.components_shared_ = res.shared
        self.components_target_ = res.target
        self.components_ = components
        self.background_codes_ = res.background_codes
        self.n_iter_ = res.n_iter
        self.history_ = res.history
        self.penalty_raw_ = res.penalty_raw
        self.objective_ = res.objective
        self.restart_objectives_ = res.restart_objectives
        self._n_features_out = s.n_components
        self._policy = res.policy
        self._settings = s
        self._offsets = (None, None)
        return res.codes

    def _transform_basis(self, as_background):
        """Target cells are coded on ``W_s + W_t``, background cells on ``W_s``."""
        return self.components_shared_ if as_background else self.components_

    def target_fraction(self) -> np.ndarray:
        """Share of each topic's mass in its target-specific part,
        ``sum_j W_t[k, j] / sum_j (W_s + W_t)[k, j]`` (rows of the sum are 1)."""
        total = self.components_.sum(axis=1)
        return self.components_target_.sum(axis=1) / np.where(total > 0, total, 1.0)
