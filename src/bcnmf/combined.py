"""Combined-basis bcNMF: shared plus target-specific topics (docs/variants.md)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ._base import BaseBCNMF
from ._inputs import check_background, report, resolve_settings, validate_target
from ._validation import PARAMETER_CONSTRAINTS, check_for_loss, check_orientation, constraints
from .core.combined import fit_combined
from .core.fit import FitState
from .core.source import is_out_of_core
from .exceptions import InvalidParameterError

#: the untied model's own parameters (the rest are checked from the library's table)
_OWN_CONSTRAINTS = {
    "n_target_components": (lambda v: v is None or (isinstance(v, (int, np.integer))
                                                    and not isinstance(v, bool) and v >= 1),
                            "None or an int >= 1"),
    "shared_init": (lambda v: v is None or (isinstance(v, str) and v in ("background",
                                                                          "random")),
                    "None, 'background' or 'random'"),
    "penalty": (lambda v: v is None or PARAMETER_CONSTRAINTS["penalty"][0](v),
                "None or a finite real >= 0"),
}


class CombinedBCNMF(BaseBCNMF):
    r"""bcNMF with a combined basis: the target is explained by shared plus
    target-specific topics, the background by the shared topics only.

    Two forms, both minimisations (nothing is subtracted, so the objective is
    bounded below and large penalties do not make the fit run away):

    * **tied** (``n_target_components=None``, the authors' form): ``K``
      topics, topic ``k`` of a target cell is the pair ``s_k + t_k``
      (one code per topic),

      .. math::

          \min \; D(X \mid C_X (S + T)) + D(Y \mid C_Y S)
          + \lambda \, \lVert S T^\top \rVert_F^2

    * **untied** (``n_target_components=K_t``): ``K_s = n_components - K_t``
      shared topics ``S`` and ``K_t`` target-specific topics ``T``, each
      with its own codes,

      .. math::

          \min \; D(X \mid C_s S + C_t T) + D(Y \mid C_Y S)
          + \lambda \, \lVert S T^\top \rVert_F^2

      The target codes are ``[C_s, C_t]`` (shared columns first); the
      target-specific codes ``C_t = codes[:, model.target_slice_]``
      (or :meth:`target_codes`) describe what only the target shows, and
      are what to cluster to find target subgroups that the background
      does not have.

    With cells as rows ``components_shared_`` is the paper's
    :math:`W_s^\top` and ``components_target_`` its :math:`W_t^\top`.

    Parameters
    ----------
    n_components : int or None, default=None
        Number of topics ``K`` = number of code columns (1 <= K <=
        n_features); None means n_features.  Untied: shared plus target
        topics.
    n_target_components : int or None, default=None
        None: the tied form.  An int ``K_t`` (1 <= K_t < n_components): the
        untied form with ``K_t`` target-specific topics.
    penalty : float or None, default=None
        Weight of the overlap penalty, scale-free; None means 1.0 (tied) or
        3.0 (untied).  Rows of the bases have unit L1 norm (the scale lives
        in the codes: rows of ``S + T`` in the tied form, rows of ``S`` and
        of ``T`` separately in the untied form).  The applied weight
        ``penalty_raw_`` is ``penalty * (D(X|0) + D(Y|0))`` (squared norms for
        squared error, total counts for KL) times ``n_features`` (tied) or
        ``n_features ** 2`` (untied): in the untied form a shared and a
        target topic that overlap completely, both spread evenly over the
        features, cost ``penalty`` times the data's total energy.  0 removes
        the penalty (the shared/target split is then arbitrary).
    shared_init : {"background", "random"} or None, default=None
        Untied form: "background" (the default) starts the shared topics
        from plain NMF of the background (200 sweeps of the library kernel),
        so that the target topics start where the background has nothing to
        say; "random" starts them as ``init``.  The tied form accepts only
        None.
    beta_loss : {"frobenius", "kullback-leibler", "poisson"}, default="frobenius"
    init : {"random", "uniform"} or None, default=None
        Starting basis as in :class:`BCNMF` ("random" when None); in the
        tied form split entry-wise at uniform random fractions into shared
        and target parts.
    max_iter, tol, n_init, random_state, transform_max_iter, block_size
        As in :class:`BCNMF` (stable mode: floors, gauge, stopping rule on
        the topics of both bases, code refinement, last finite state on
        divergence).  Among restarts the lowest final objective wins.

    Attributes
    ----------
    components_shared_ : ndarray of shape (K or K_s, n_features)
    components_target_ : ndarray of shape (K or K_t, n_features)
    components_ : ndarray of shape (n_components, n_features)
        The target's basis (used by :meth:`transform` and
        :meth:`inverse_transform`): ``components_shared_ +
        components_target_`` (tied) or the two stacked, shared rows first
        (untied).
    target_slice_ : slice
        Code columns of the target-specific topics (untied); all columns
        (tied).
    background_codes_ : ndarray of shape (n_background, K or K_s)
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
    >>> untied = CombinedBCNMF(3, n_target_components=1, random_state=0, max_iter=2000,
    ...                        tol=1e-3)
    >>> codes = untied.fit_transform(X, background=Y)
    >>> codes.shape, untied.components_shared_.shape, untied.components_target_.shape
    ((50, 3), (2, 12), (1, 12))
    >>> untied.target_codes(X).shape
    (50, 1)
    """

    _parameter_constraints = {
        **constraints("n_components", "beta_loss", "init", "max_iter", "tol", "n_init",
                      "random_state", "transform_max_iter", "block_size"),
        **_OWN_CONSTRAINTS}
    # what persistence saves beyond the base's fitted state
    _saved_arrays = ("components_shared_", "components_target_", "restart_objectives_")
    _saved_scalars = ("penalty_raw_",)

    def __init__(self, n_components=None, *, n_target_components=None, penalty=None,
                 shared_init=None, beta_loss="frobenius", init=None, max_iter=500, tol=1e-4,
                 n_init=1, random_state=None, transform_max_iter=1000, block_size=None):
        self.n_components = n_components
        self.n_target_components = n_target_components
        self.penalty = penalty
        self.shared_init = shared_init
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

    def _block_rows(self):
        return self.block_size

    def _check_own(self, params, n_components, owner):
        """The constraints between parameters (each alone is checked by the table)."""
        kt = params["n_target_components"]
        if kt is None:
            if params["shared_init"] is not None:
                raise InvalidParameterError(
                    f"shared_init={params['shared_init']!r} applies to the untied form only; "
                    f"set n_target_components (or leave shared_init=None).")
        elif not kt < n_components:
            raise InvalidParameterError(
                f"n_target_components={kt} must be smaller than n_components={n_components} "
                "(at least one shared topic explains the background).")

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
            Untied form: ``[C_s, C_t]``, the target-specific codes in the
            columns ``target_slice_``.
        """
        owner = type(self).__name__
        params = self._validate_params()
        if background is None:
            raise ValueError(f"{owner} needs a background: fit(X, background=Y). Without one, "
                             "use BCNMF (plain NMF).")
        check_orientation(X, background, owner)
        X = validate_target(self, X, reset=True)
        Y = check_background(background, X, getattr(self, "feature_names_in_", None), owner)
        s = resolve_settings(self.n_components, X.shape[1],
                             {**params, "alpha": 0.0, "alpha_scale": "raw", "mode": "stable",
                              "damping": None, "smoothing": 0.0}, owner)
        self._check_own(params, s.n_components, owner)
        untied = self.n_target_components is not None
        penalty = self.penalty if self.penalty is not None else (3.0 if untied else 1.0)
        for A, name in ((X, "X"), (Y, "background")):
            if not is_out_of_core(A):
                check_for_loss(A, name, s.loss, owner)
        res = fit_combined(X, Y, s, penalty, self.random_state, block_rows=self.block_size,
                           n_target=self.n_target_components,
                           shared_init=(self.shared_init or "background") if untied else None)
        components = np.vstack([res.shared, res.target]) if untied else res.shared + res.target
        report({"diverged": res.diverged, "converged": res.converged, "runaway": None}, s,
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
        self.fit_state_ = FitState(s, res.policy)
        return res.codes

    @property
    def target_slice_(self) -> slice:
        """Code columns of the target-specific topics (all columns when tied)."""
        k = self.components_.shape[0]
        if self.n_target_components is None:
            return slice(0, k)
        return slice(k - self.components_target_.shape[0], k)

    def target_codes(self, X):
        """Codes of the target-specific topics for cells ``X`` (target cells,
        basis fixed): ``transform(X)[:, target_slice_]``."""
        return self.transform(X)[:, self.target_slice_]

    def _transform_basis(self, as_background):
        """Target cells are coded on the target's basis, background cells on ``W_s``."""
        return self.components_shared_ if as_background else self.components_

    def target_fraction(self) -> np.ndarray:
        """Share of each topic's mass in its target-specific part,
        ``sum_j W_t[k, j] / sum_j (W_s + W_t)[k, j]`` (tied; rows of the sum
        are 1); 0 for the shared and 1 for the target topics (untied)."""
        if self.n_target_components is not None:
            ks = self.components_shared_.shape[0]
            return (np.arange(self.components_.shape[0]) >= ks).astype(float)
        total = self.components_.sum(axis=1)
        return self.components_target_.sum(axis=1) / np.where(total > 0, total, 1.0)
