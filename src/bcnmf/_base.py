"""The private base class of the bcnmf estimators.

:class:`BaseBCNMF` owns what every estimator shares, so that each class adds
only what differs:

* **parameters**: each class declares the constraints of its constructor
  parameters (``_parameter_constraints``, name -> ``(predicate, what is
  accepted)``, built from :data:`bcnmf._validation.PARAMETER_CONSTRAINTS`);
  :meth:`BaseBCNMF._validate_params` checks every parameter against them at
  the start of a fit and refuses a parameter that has none;
* **capabilities**, declared as class attributes (``_fits_missing``) and
  methods (``_device``, ``_block_rows``) instead of being probed;
* **the fitted state**: the public attributes (``components_``,
  ``history_``, ...) and one :class:`~bcnmf.core.fit.FitState` in
  ``fit_state_`` holding what ``transform`` and the model files need
  (settings, step policy, prediction offsets, the missing-value prior);
* ``transform``, ``inverse_transform`` and ``save``;
* registration for model files (:mod:`bcnmf.registry`): every subclass is
  registered when it is made, with the fitted attributes it keeps beyond the
  base's (``_saved_arrays``, ``_saved_scalars``); a class whose fitted state
  has another shape gives it as named arrays (``_state`` / ``_set_state``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._inputs import is_dask, on_device, validate_target
from ._validation import check_for_loss, check_params
from .core.backend import asarray_like, is_torch, numpy_dtype, to_device, to_numpy
from .core.fit import FitState, split_offset, transform_codes
from .core.source import is_out_of_core
from .registry import register


class BaseBCNMF(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Private base of the bcnmf estimators (see the module docstring)."""

    #: every constructor parameter: name -> (predicate, what is accepted)
    _parameter_constraints: ClassVar[dict] = {}
    #: whether ``fit`` takes missing values (NaN entries, masks) in dense numpy input
    _fits_missing: ClassVar[bool] = False
    #: whether torch tensors are taken (and computed on, see ``_device``)
    _takes_torch: ClassVar[bool] = False
    #: fitted arrays and scalars kept beyond the base's, saved with the model (an array
    #: that is None is not written, and is None when loaded)
    _saved_arrays: ClassVar[tuple] = ()
    _saved_scalars: ClassVar[tuple] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        register(cls, cls._saved_arrays, cls._saved_scalars)

    # -- parameters and capabilities ------------------------------------------------------

    def _validate_params(self) -> dict:
        """Check every constructor parameter against the class's declared
        constraints; returns the parameters."""
        params = self.get_params(deep=False)
        undeclared = sorted(set(params) - set(self._parameter_constraints))
        if undeclared:   # a programming error of the class, not of the user
            raise TypeError(f"{type(self).__name__} declares no constraint for its "
                            f"parameters {undeclared}.")
        check_params(params, type(self).__name__, self._parameter_constraints)
        return params

    def _device(self):
        """The torch device the model computes on (None: numpy)."""
        return None

    def _block_rows(self):
        """Cells per block of the block engine (None: the default)."""
        return None

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.input_tags.sparse = True
        tags.input_tags.allow_nan = self._fits_missing and self._device() is None
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # -- fitted state ---------------------------------------------------------------------

    def _store(self, result, background_codes, state: FitState) -> None:
        """Set the fitted attributes from a fit's
        :class:`~bcnmf.core.result.FactorizationResult` and its state."""
        self.components_ = result.components
        self.background_codes_ = background_codes
        self.n_iter_ = result.n_iter
        self.history_ = result.history
        self.alpha_raw_ = result.alpha_raw
        self.objective_ = result.objective
        self.restart_objectives_ = result.restart_objectives
        self.restart_agreement_ = result.restart_agreement
        self.topic_stability_ = result.topic_stability
        self._n_features_out = state.settings.n_components
        self.fit_state_ = state

    @property
    def shared_components_(self):
        """The fit's shared topics (``n_shared_`` x n_features, rows summing to
        one): topics of the background alone, held fixed while the
        contrastive ``components_`` were fitted, with free per-cell codes in
        both datasets (see ``n_shared``); None when the fit has none."""
        check_is_fitted(self, "fit_state_")
        return split_offset(self.fit_state_.offsets[0])[1]

    @property
    def n_components_(self) -> int:
        """The number of topics of the fit (rows of ``components_``): the K chosen
        with ``n_components="auto"``, else ``n_components`` (n_features for None),
        as scikit-learn's ``NMF.n_components_``."""
        check_is_fitted(self, "components_")
        return int(self.components_.shape[0])

    @property
    def n_shared_(self) -> int:
        """The number of shared topics of the fit (0 when it has none)."""
        shared = self.shared_components_
        return 0 if shared is None else int(shared.shape[0])

    def _state(self) -> dict:
        """Fitted state beyond the base's that has no attribute of its own
        shape, as named arrays (for :mod:`bcnmf.persistence`)."""
        return {}

    def _set_state(self, arrays: dict) -> None:
        """Restore what :meth:`_state` gave."""

    def _transform_basis(self, as_background: bool):
        """The basis cells are coded on (target's or background's)."""
        return self.components_

    # -- transform ------------------------------------------------------------------------

    def transform(self, X, *, as_background=False, mask=None):
        """Codes of cells with the basis fixed.

        Parameters
        ----------
        X : {ndarray, sparse matrix} of shape (n_cells, n_features)
        as_background : bool, default=False
            Solve the codes under the background's model rather than the
            target's.  The two differ only for the stable Poisson contrast,
            whose predictions carry a per-feature offset fitted to each
            dataset (see ``smoothing``).
        mask : bool ndarray of the shape of X, optional
            True = observed; missing entries (mask False, or NaN) are left out
            and each cell's codes are solved on its observed entries.

        Returns
        -------
        codes : ndarray of shape (n_cells, n_components)
        """
        check_is_fitted(self)
        if is_dask(X):
            return self._transform_dask(X, as_background, mask)
        state = self.fit_state_
        X = validate_target(self, X, reset=False, mask=mask,
                            allow_nan=self._fits_missing and self._device() is None)
        X, _ = on_device(X, None, self._device())
        if not is_out_of_core(X):
            check_for_loss(X, "X", state.settings.loss)
        dtype = numpy_dtype(X) if is_torch(X) else X.dtype
        dtype = dtype if dtype in (np.float32, np.float64) else np.float64
        if is_torch(X):   # the model's basis on X's device and dtype
            basis = asarray_like(self._transform_basis(as_background), X)
        else:
            basis = to_numpy(self._transform_basis(as_background)).astype(dtype, copy=False)
        side = 1 if as_background else 0
        offset = state.offsets[side]
        if offset is not None:
            offset = to_numpy(offset).astype(dtype)
        codes, _ = transform_codes(X, basis, state.settings, state.policy, offset,
                                   self.transform_max_iter, state.settings.tol,
                                   block_rows=self._block_rows(),
                                   prior=state.missing_prior[side])
        return codes

    def _transform_dask(self, X, as_background, mask=None):
        """``transform`` of a dask array: a lazy dask array of codes (missing
        entries solved with the fit's prior, as in memory)."""
        from .dask_engine import as_cell_chunks, transform_dask

        X = as_cell_chunks(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input.")
        state = self.fit_state_
        side = 1 if as_background else 0
        dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        basis = to_numpy(self._transform_basis(as_background)).astype(dtype, copy=False)
        offset = state.offsets[side]
        if offset is not None:
            offset = to_numpy(offset).astype(dtype)
        return transform_dask(X, basis, state.settings, state.policy, offset,
                              self.transform_max_iter, state.settings.tol, mask=mask,
                              prior=state.missing_prior[side])

    def inverse_transform(self, X):
        """Reconstruct data from codes: ``X @ components_``.

        Parameters
        ----------
        X : ndarray of shape (n_cells, n_components)

        Returns
        -------
        ndarray of shape (n_cells, n_features)
        """
        check_is_fitted(self)
        device = self._device()
        codes = X if is_torch(X) else np.asarray(X)
        if codes.ndim != 2 or codes.shape[1] != self.components_.shape[0]:
            raise ValueError(f"inverse_transform expects codes of shape (n_cells, "
                             f"{self.components_.shape[0]}); got {tuple(codes.shape)}.")
        if device is not None and not is_torch(codes):
            codes = to_device(codes, device)
        if not is_torch(codes):
            return codes @ to_numpy(self.components_)
        import torch

        dtype = torch.promote_types(codes.dtype, self.components_.dtype) \
            if is_torch(self.components_) else codes.dtype
        if not dtype.is_floating_point:
            dtype = torch.float64
        return codes.to(dtype) @ asarray_like(self.components_, codes.to(dtype))

    def save(self, path, *, feature_names=None):
        """Save the fitted model to ``path`` (npz arrays + JSON metadata, no pickle).

        Thin wrapper of :func:`bcnmf.persistence.save_model`; read it back with
        :func:`bcnmf.load`.  Returns the path written.
        """
        from .persistence import save_model

        return save_model(self, path, feature_names=feature_names)
