"""Several modalities sharing per-cell codes (docs/variants.md).

Modalities ``m = 1..M`` (RNA and protein, say) are measured on the same cells;
each has its own basis ``B_m`` and all share the codes::

    min  sum_m w_m [ D(X_m | C_X B_m) - alpha D(Y_m | C_Y B_m) ]

A weighted divergence is the divergence of scaled data: ``w D(A | P) =
D(s A | s P)`` with ``s = sqrt(w)`` for the squared error and ``s = w`` for
KL.  So the model is exactly :class:`~bcnmf.BCNMF` on the modalities scaled by
``s_m`` and placed side by side, and every solver path, check and stabiliser
of the base model applies unchanged.  The basis of modality ``m`` in its own
units is the fitted block divided by ``s_m``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from sklearn.utils.validation import check_is_fitted

from ._base import BaseBCNMF
from ._validation import check_matrix, constraints
from .core.updates import data_scale
from .estimator import RESTART_ARRAYS, fit_contrast

_OWNER = "MultiModalBCNMF"


def _as_list(data, name):
    if data is None:
        return None
    if not isinstance(data, (list, tuple)) or len(data) == 0:
        raise TypeError(f"{name} must be a non-empty list of matrices, one per modality "
                        f"(cells x features of that modality); got {type(data).__name__}.")
    return [check_matrix(A, f"{name}[{m}]", _OWNER) for m, A in enumerate(data)]


def _side_by_side(mats, scales):
    if any(sp.issparse(A) for A in mats):
        return sp.hstack([sp.csr_matrix(A) * s for A, s in zip(mats, scales)], format="csr")
    return np.hstack([A * A.dtype.type(s) for A, s in zip(mats, scales)])


class MultiModalBCNMF(BaseBCNMF):
    """bcNMF over several modalities with shared per-cell codes.

    ``fit(Xs, background=Ys)`` takes one matrix per modality (same cells in the
    same order in every target matrix, and likewise in every background
    matrix).  Every parameter of :class:`BCNMF` applies, plus ``weights``.

    Parameters
    ----------
    weights : "balanced", None or sequence of float, default="balanced"
        Weight ``w_m`` of each modality's divergences.  ``"balanced"`` gives
        every modality the same share of the objective, ``w_m`` proportional
        to ``1 / D(X_m | 0)`` (squared norm or total count of its target
        data), so a modality measured on a 100x larger scale does not
        dominate; None gives every modality weight 1 (the authors' form, in
        which the larger-scale modality dominates); explicit weights are
        used as given (> 0).
    Other parameters: see :class:`BCNMF`.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, sum of n_features_m)
        The bases of all modalities side by side, each in its own units.
    modality_components_ : list of ndarray, (n_components, n_features_m) each
    modality_slices_ : list of slice
        Columns of ``components_`` that belong to each modality.
    weights_ : ndarray of shape (n_modalities,)
        Applied weights (``"balanced"`` resolved, normalised to mean 1).
    background_codes_, n_iter_, history_, alpha_raw_, objective_
        As in :class:`BCNMF`, for the weighted objective.
    """

    _parameter_constraints = constraints(
        "n_components", "weights", "alpha", "alpha_scale", "beta_loss", "mode", "init",
        "damping", "smoothing", "max_iter", "tol", "n_init", "random_state",
        "transform_max_iter", "block_size", "n_shared")
    _saved_arrays = RESTART_ARRAYS
    _saved_scalars = ("alpha_raw_",)

    def __init__(self, n_components=None, *, weights="balanced", alpha=1.5, alpha_scale=None,
                 beta_loss="frobenius", mode="stable", init=None, damping=None,
                 smoothing=0.1, max_iter=500, tol=1e-4, n_init=1, random_state=None,
                 transform_max_iter=1000, block_size=None, n_shared="auto"):
        self.n_components = n_components
        self.weights = weights
        self.alpha = alpha
        self.alpha_scale = alpha_scale
        self.beta_loss = beta_loss
        self.mode = mode
        self.init = init
        self.damping = damping
        self.smoothing = smoothing
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.random_state = random_state
        self.transform_max_iter = transform_max_iter
        self.block_size = block_size
        self.n_shared = n_shared

    def _block_rows(self):
        return self.block_size

    def _resolve_weights(self, Xs, loss):
        m = len(Xs)
        if self.weights is None:
            w = np.ones(m)
        elif isinstance(self.weights, str):
            if self.weights != "balanced":
                raise ValueError(f"weights must be 'balanced', None or one positive number "
                                 f"per modality; got {self.weights!r}.")
            energy = np.array([data_scale(A, loss) for A in Xs])
            if np.any(energy <= 0):
                raise ValueError("weights='balanced' needs every target modality to have "
                                 "non-zero data; give explicit weights instead.")
            w = 1.0 / energy
        else:
            w = np.asarray(self.weights, dtype=np.float64).ravel()
            if w.shape != (m,) or not np.all(np.isfinite(w)) or np.any(w <= 0):
                raise ValueError(f"weights must hold one finite positive number per modality "
                                 f"({m}); got {self.weights!r}.")
        return w / w.mean()

    def _scales(self, loss):
        return np.sqrt(self.weights_) if loss == "frobenius" else self.weights_

    def fit(self, X, y=None, *, background=None):
        """Fit on a list of target matrices (and background matrices); returns self."""
        self.fit_transform(X, background=background)
        return self

    def fit_transform(self, X, y=None, *, background=None):
        """Fit and return the shared target codes (n_target x n_components).

        Parameters
        ----------
        X : list of {ndarray, sparse matrix}
            One target matrix per modality, cells x features of that modality.
        background : list of {ndarray, sparse matrix}, optional
            One background matrix per modality, in the same modality order.
        """
        params = self._validate_params()
        Xs = _as_list(X, "X")
        Ys = _as_list(background, "background")
        self._check_shapes(Xs, Ys)
        loss = "frobenius" if self.beta_loss == "frobenius" else "kullback-leibler"
        self.weights_ = self._resolve_weights(Xs, loss)
        scales = self._scales(loss)
        Xc = _side_by_side(Xs, scales)
        Yc = None if Ys is None else _side_by_side(Ys, scales)
        contrast = {k: v for k, v in params.items() if k != "weights"}
        codes = fit_contrast(self, Xc, Yc, dict(contrast, consensus=False, device=None,
                                                engine=None),
                             (None, None, None), (None, None), {}).codes
        bounds = np.cumsum([0] + [A.shape[1] for A in Xs])
        self.modality_slices_ = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
        self._scaled_components = self.components_
        self.modality_components_ = [self.components_[:, sl] / s
                                     for sl, s in zip(self.modality_slices_, scales)]
        self.components_ = np.hstack(self.modality_components_)
        return codes

    @staticmethod
    def _check_shapes(Xs, Ys):
        for name, mats in (("X", Xs), ("background", Ys)):
            if mats is not None and len({A.shape[0] for A in mats}) > 1:
                raise ValueError(f"every matrix in {name} must hold the same cells; got cell "
                                 f"counts {[A.shape[0] for A in mats]}.")
        if Ys is not None:
            if len(Ys) != len(Xs):
                raise ValueError(f"background has {len(Ys)} modalities but X has {len(Xs)}; "
                                 "pass one background matrix per target modality.")
            for m, (A, B) in enumerate(zip(Xs, Ys)):
                if A.shape[1] != B.shape[1]:
                    raise ValueError(f"modality {m}: X has {A.shape[1]} features but the "
                                     f"background has {B.shape[1]}.")

    def transform(self, X, *, as_background=False):
        """Shared codes of cells measured in every modality (list of matrices)."""
        check_is_fitted(self)
        Xs = _as_list(X, "X")
        self._check_shapes(Xs, None)
        widths = [sl.stop - sl.start for sl in self.modality_slices_]
        if [A.shape[1] for A in Xs] != widths:
            raise ValueError(f"X has modalities with {[A.shape[1] for A in Xs]} features; "
                             f"the model was fitted with {widths}.")
        scales = self._scales(self.fit_state_.settings.loss)
        return super().transform(_side_by_side(Xs, scales), as_background=as_background)

    def _transform_basis(self, as_background):
        return self._scaled_components

    def inverse_transform(self, X):
        """Reconstruction of every modality from codes: a list, one matrix per modality."""
        full = super().inverse_transform(X)
        return [full[:, sl] for sl in self.modality_slices_]

    def _state(self):
        """Fitted state beyond BCNMF's, as named arrays (for :mod:`bcnmf.persistence`)."""
        bounds = [0] + [sl.stop for sl in self.modality_slices_]
        return {"weights": self.weights_, "modality_bounds": np.asarray(bounds, np.int64),
                "scaled_components": self._scaled_components}

    def _set_state(self, arrays):
        self.weights_ = arrays["weights"]
        bounds = arrays["modality_bounds"].tolist()
        self.modality_slices_ = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        self.modality_components_ = [self.components_[:, sl] for sl in self.modality_slices_]
        self._scaled_components = arrays["scaled_components"]
