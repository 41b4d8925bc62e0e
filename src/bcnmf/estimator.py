"""scikit-learn estimator and functional twin for bcNMF."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ._validation import (ACCEPT_SPARSE, LOSS_ALIASES, as_supported_float, check_for_loss,
                          check_matrix, check_n_components, check_orientation, check_params,
                          check_same_features, check_torch_matrix, converting, feature_names,
                          reject_unsupported)
from .core.backend import (all_finite, asarray_like, is_torch, numpy_dtype, resolve_device,
                           to_device, to_numpy)
from .core.fit import FitSettings, fit_factors, transform_codes
from .core.source import OnDevice, is_out_of_core
from .core.result import FactorizationResult
from .exceptions import ConvergenceWarning, DivergenceWarning, InvalidParameterError
from .registry import register


def _settings(n_components, n_features, p, owner="BCNMF") -> FitSettings:
    reference = p["mode"] == "reference"
    return FitSettings(
        n_components=check_n_components(n_components, n_features, owner),
        loss=LOSS_ALIASES[p["beta_loss"]],
        alpha=float(p["alpha"]),
        alpha_scale=p["alpha_scale"] or ("raw" if reference else "relative"),
        mode=p["mode"],
        init=p["init"] or ("uniform" if reference else "random"),
        damping=p["damping"],
        smoothing=float(p["smoothing"]),
        max_iter=int(p["max_iter"]),
        tol=float(p["tol"]),
        n_init=int(p["n_init"]),
        code_max_iter=int(p["transform_max_iter"]),
        nuisance_topics=int(p.get("nuisance_topics", 0)))


def _check_out_of_core(A, name, owner="BCNMF"):
    """Shape and dtype checks of a streamed matrix (its values are checked
    block by block when the fit first reads them)."""
    shape = tuple(A.shape)
    dtype = np.dtype(A.dtype)
    if len(shape) != 2:
        raise ValueError(f"{name} must be 2-D (cells x features); got shape {shape}.")
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)
            or dtype == np.bool_):
        raise ValueError(f"{name} has dtype {dtype}; {owner} streams real numbers only "
                         "(float, integer or boolean).")
    return A


def _check_background(background, X, x_names, owner="BCNMF", mask=None, allow_nan=False):
    if background is None:
        return None
    if is_torch(background) or is_torch(X):
        Y = (check_torch_matrix(background, "background", owner) if is_torch(background)
             else check_matrix(background, "background", owner))
        check_same_features(X, Y, x_names, None if is_torch(background)
                            else feature_names(background), owner)
        return Y
    if is_out_of_core(background) or is_out_of_core(X):
        if mask is not None:
            raise ValueError("background_mask was given with out-of-core data; missing values "
                             "are fitted around in in-memory dense input only.")
        Y = (_check_out_of_core(background, "background", owner) if is_out_of_core(background)
             else check_matrix(background, "background", owner))
        check_same_features(X, Y, x_names, None, owner)
        return Y
    Y = check_matrix(background, "background", owner, allow_nan=allow_nan, mask=mask)
    check_same_features(X, Y, x_names, feature_names(background), owner)
    if Y.dtype != X.dtype:
        Y = Y.astype(X.dtype)
    return Y


def _check_init(init_factors, X, Y, k, basis_only=False):
    """Validated ``(basis, codes, background_codes)`` or None.  With
    ``basis_only`` (the Dask engine) the codes may both be omitted, and codes
    given as dask arrays are checked for shape only (their values stay on the
    cluster)."""
    if init_factors is None or all(a is None for a in init_factors):
        return None
    basis, cx, cy = init_factors
    if basis_only and basis is not None and cx is None and cy is None:
        init_factors = (basis,)
    expected = [("init_components", basis, (k, X.shape[1])),
                ("init_codes", cx, (X.shape[0], k))]
    if Y is not None:
        expected.append(("init_background_codes", cy, (Y.shape[0], k)))
    if len(init_factors) == 1:
        expected = expected[:1]
    for name, a, shape in expected:
        if basis_only and _is_dask(a):
            if tuple(a.shape) != shape:
                raise ValueError(f"{name} must have shape {shape}; got shape {a.shape}.")
            continue
        if a is None:
            raise ValueError(f"{name} is missing: pass all of init_components, init_codes"
                             " and (with a background) init_background_codes, or none.")
        a = np.asarray(to_numpy(a))
        if a.shape != shape:
            raise ValueError(f"{name} must have shape {shape}; got shape {a.shape}.")
        if not np.issubdtype(a.dtype, np.number) or not np.all(np.isfinite(a)):
            raise ValueError(f"{name} must contain finite numbers only.")
        if np.any(a < 0):
            raise ValueError(f"{name} must be non-negative; its smallest entry is "
                             f"{a.min():.3g}.")
    return basis, cx, (cy if Y is not None else None)


def _is_dask(A) -> bool:
    """Whether ``A`` is a dask array (dask is not imported to find out)."""
    from .dask_engine import is_dask_array

    return is_dask_array(A)


def _use_dask(engine, *arrays) -> bool:
    if engine not in (None, "dask", "local"):
        raise InvalidParameterError(
            f"The 'engine' parameter of BCNMF must be None, 'local' or 'dask'; got {engine!r}.")
    if engine == "dask":
        return True
    dask_in = any(_is_dask(A) for A in arrays if A is not None)
    if dask_in and engine == "local":
        raise ValueError("engine='local' cannot fit dask arrays; use engine='dask' (or None), "
                         "or pass X.compute().")
    return dask_in


def _checkpointing(checkpoint, checkpoint_every, resume) -> dict:
    """Keyword arguments of :func:`fit_factors` for checkpoints (none when unused)."""
    if checkpoint is None and resume is None:
        return {}
    if not isinstance(checkpoint_every, (int, np.integer)) or isinstance(checkpoint_every, bool) \
            or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be an int >= 1; got {checkpoint_every!r}.")
    return {"checkpoint": checkpoint, "checkpoint_every": int(checkpoint_every),
            "resume": resume}


def _report(diag, s: FitSettings, result: FactorizationResult, owner="BCNMF"):
    """Turn the engine's diagnostics into warnings (or an error when nothing finite exists)."""
    finite = all(all_finite(a) for a in
                 (result.components, result.codes, result.background_codes) if a is not None)
    if not finite or not np.isfinite(result.objective):
        raise FloatingPointError(
            f"{owner} could not reach a finite state: the data overflow the working precision "
            "from the start (check the data's scale, e.g. use float64 or rescale X and the "
            "background).")
    if diag["diverged"]:
        warnings.warn(
            f"{owner} diverged: the iterations produced non-finite values; returning the last "
            f"finite state (after {result.n_iter} sweeps). Lower alpha, use mode='stable', or "
            "damping < 1.", DivergenceWarning, stacklevel=3)
    elif diag["runaway"] is not None:
        warnings.warn(
            f"{owner}: the Poisson contrast is running away to minus infinity: the background "
            f"divergence reached {diag['runaway']:.3g} nats per count because basis entries of "
            "background features collapse toward zero (the unbounded objective of the paper). "
            "The result depends on max_iter, damping and the start; use mode='stable' with "
            "smoothing > 0, or a lower alpha.", DivergenceWarning, stacklevel=3)
    if not diag["diverged"] and s.mode == "stable" and s.tol > 0 and not diag["converged"]:
        warnings.warn(
            f"Maximum number of iterations {s.max_iter} reached before convergence "
            f"(tol={s.tol}); increase max_iter or tol.", ConvergenceWarning, stacklevel=3)


def on_device(X, Y, device):
    """Put validated ``X`` and ``Y`` on one backend: unchanged (numpy) when
    ``device`` is None and neither is a tensor; else torch on ``device``
    (default: the device of the tensor given), ``Y`` cast to ``X``'s dtype."""
    if device is None and not is_torch(X) and not is_torch(Y):
        return X, Y
    if device is None:
        device = X.device if is_torch(X) else Y.device
    # out-of-core matrices stay where they are; their blocks move as they are read
    move = lambda A: OnDevice(A, device) if is_out_of_core(A) else to_device(A, device)  # noqa
    X = move(X)
    if Y is not None:
        Y = move(Y)
        if Y.dtype != X.dtype and not isinstance(Y, OnDevice):
            Y = Y.to(dtype=X.dtype)
    return X, Y


def _validate_target(estimator, X, reset: bool, mask=None, allow_nan=None):
    """Validate X through scikit-learn (feature names, n_features_in_) and then
    through bcnmf's own checks, with bcnmf's messages for non-matrices.
    Out-of-core matrices are checked for shape and dtype only, and streamed;
    torch tensors by :func:`~bcnmf._validation.check_torch_matrix`."""
    if is_torch(X) and "device" not in estimator.get_params():
        raise NotImplementedError(
            f"{type(estimator).__name__} fits numpy arrays and scipy.sparse matrices; torch "
            "tensors are supported by the estimators with a device parameter (BCNMF, "
            "factorize). Pass tensor.cpu().numpy().")
    if (is_out_of_core(X) or is_torch(X)) and mask is not None:
        raise ValueError("mask was given with an out-of-core or torch X; missing values are "
                         "fitted around in in-memory dense numpy input only: load X, or impute.")
    if is_out_of_core(X) or is_torch(X):
        X = (check_torch_matrix(X, "X", type(estimator).__name__) if is_torch(X)
             else _check_out_of_core(X, "X"))
        if reset:
            estimator.n_features_in_ = X.shape[1]
            if hasattr(estimator, "feature_names_in_"):
                del estimator.feature_names_in_
        elif X.shape[1] != estimator.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(estimator).__name__} "
                             "is expecting "
                             f"{estimator.n_features_in_} features as input.")
        return X
    reject_unsupported(X, "X")
    X = as_supported_float(X)
    X = converting("X", lambda: validate_data(
        estimator, X, accept_sparse=ACCEPT_SPARSE, dtype=[np.float64, np.float32],
        reset=reset, ensure_all_finite=False))  # NaN/Inf: check_matrix says where
    if allow_nan is None:   # fitting around missing values: classes that declare it (BCNMF)
        allow_nan = vars(type(estimator)).get("_fits_missing", False)
    return check_matrix(X, "X", type(estimator).__name__ if not allow_nan else "BCNMF",
                        allow_nan=allow_nan, mask=mask)


class BCNMF(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    r"""Background-contrastive non-negative matrix factorisation.

    Finds a shared non-negative basis whose topics explain the target ``X``
    but not the background ``Y``.  With cells as rows (as here and in
    scikit-learn/AnnData), ``components_`` is the paper's :math:`W^\top`,
    ``fit_transform`` returns :math:`H_X^\top` and ``background_codes_`` is
    :math:`H_Y^\top`.  The objective is

    .. math::

        \min_{W, H_X \ge 0} \; D(X \mid H_X W) - \alpha \min_{H_Y \ge 0} D(Y \mid H_Y W)

    with :math:`D` the squared Frobenius distance or the generalised
    Kullback-Leibler (Poisson) divergence.  Without ``background`` (or with
    ``alpha=0``) it is plain NMF with multiplicative updates.

    Parameters
    ----------
    n_components : int or None, default=None
        Number of topics K (1 <= K <= n_features); None means n_features.
    alpha : float, default=1.5
        Contrast weight (>= 0), interpreted according to ``alpha_scale``.
        With the relative scale, values a little above 1 ask for topics used
        more in the target than in the background; the default 1.5 is the
        value measured to work across the benchmark datasets
        (``docs/benchmarks.md``).  Too large a value leaves no
        target-enriched direction and the fit collapses (the topics then
        explain almost nothing of either dataset).
    alpha_scale : {"relative", "raw"} or None, default=None
        ``"raw"``: alpha multiplies the background divergence as in the paper,
        so its meaning depends on the data's scale and on the numbers of cells.
        ``"relative"``: the applied weight is ``alpha * S(X) / S(Y)``, with S
        the squared Frobenius norm (squared error) or the total count (KL), so
        alpha = 1 weighs target and background equally whatever their sizes
        and units.  None means "relative" in stable mode (the default, because
        one alpha then works across datasets) and "raw" in reference mode (so
        the paper's values reproduce the paper).  The applied value is
        ``alpha_raw_``.
    beta_loss : {"frobenius", "kullback-leibler", "poisson"}, default="frobenius"
        Divergence; "poisson" is an alias of "kullback-leibler".
    mode : {"stable", "reference"}, default="stable"
        ``"reference"`` reproduces the authors' algorithm: the update rules
        and order (target codes, background codes, basis), U[0, 1)
        initialisation, their epsilons (1e-10 squared error, 1e-16 Poisson),
        optional damping, no normalisation, exactly ``max_iter`` sweeps, and
        the restart with the lowest final objective.  ``"stable"`` (default)
        fixes the gauge (basis rows sum to one, scale moved into the codes),
        floors factors to stop zero-locking and float32 underflow, bounds the
        Poisson contrast (see ``smoothing``), stops on a convergence criterion,
        returns the last finite state with a warning if the iterations
        diverge, and chooses the medoid among ``n_init`` restarts.
    init : {"random", "uniform"} or None, default=None
        "random": half-normal entries scaled to the data (stable default);
        "uniform": U[0, 1) entries (the authors'; reference default).
    damping : float in (0, 1] or None, default=None
        Exponent gamma applied to every multiplicative ratio as
        ``max(r, eps) ** gamma`` (the authors use 0.5 for Poisson).
    smoothing : float, default=0.1
        Stable Poisson with a background only: target and background are
        modelled as ``H W + mu`` (plus the nuisance topics, see
        ``nuisance_topics``) with ``mu_j = smoothing * mean(A[:, j])``
        of each dataset.  This bounds the objective below by
        ``-alpha_raw D(Y | mu_Y)`` (the authors' objective is unbounded: it
        drives basis entries of background features to zero); 0 restores the
        unbounded form (and drops the nuisance topics).
    nuisance_topics : int, default=10
        Stable Poisson with a background (and ``smoothing > 0``) only: both
        predictions also carry this many fixed nuisance topics
        ``G``, a KL NMF of the background alone, with free per-cell codes:
        ``H W + D G + mu``.  The expression the background shares with the
        target is then explained in target cells too, so it no longer drives
        the contrastive codes; ``components_`` holds only the contrastive
        topics ``W``, which stay penalised for what the background can still
        use on top of ``G``.  :meth:`transform` solves both sets of codes and
        returns the contrastive ones.  0 drops them.  Every engine fits them
        (``engine="dask"``, :class:`MiniBatchBCNMF`).  See docs/design.md,
        "Stable mode".
    max_iter : int, default=500
        Maximum number of sweeps (exact number in reference mode).
    tol : float, default=1e-4
        Stable mode stops when the topics stop moving: the largest L1 change
        of a basis row (rows sum to one) per sweep, averaged over the last 10
        sweeps, is at most ``tol``; the codes are then refined with the basis
        fixed until their relative L1 change per step is at most ``tol`` (the
        rule :meth:`transform` uses).  0 runs exactly ``max_iter`` sweeps and
        no refinement.
    n_init : int, default=1
        Number of restarts from different random initialisations.
    consensus : bool, default=False
        With ``n_init > 1``: return the consensus of the restarts instead of
        one of them.  Topics of every restart are matched to the medoid
        restart (Hungarian matching on cosine similarity), matched topics are
        averaged, and the codes are refined with that basis fixed.  See
        ``topic_stability_`` and :func:`bcnmf.matching.consensus_basis`.
    random_state : int, RandomState, Generator or None, default=None
        Seeds the initialisations (drawn on the host with numpy).
    transform_max_iter : int, default=1000
        Maximum number of code updates with the basis fixed, in
        :meth:`transform` and in the final refinement of a stable-mode fit.
    block_size : int or None, default=None
        Cells per block of the block engine: every sweep streams the cells
        block by block and sums the blocks' basis parts, computing exactly
        the full-batch update.  ``None``: in-memory inputs form one block;
        out-of-core inputs (``np.memmap``, HDF5/zarr arrays, the ``X`` of an
        AnnData opened with ``backed="r"``, dense or sparse) are streamed in
        blocks of about 16 million entries, so memory holds the factors and
        one block, not the data.  With the Dask engine: cells per chunk
        (numpy/scipy inputs are wrapped, dask arrays rechunked); None keeps a
        dask array's chunks.
    device : str, torch.device or None, default=None
        Backend of the computation.  None follows the input: numpy and scipy
        inputs run on numpy (numba kernels for CSR), torch tensors (dense or
        sparse, CPU or CUDA) on torch on their own device.  ``"cpu"``,
        ``"cuda"``, ``"cuda:N"`` or a ``torch.device`` move the inputs to that
        torch device.  Results (``components_``, codes, ``transform``,
        ``inverse_transform``) are torch tensors on the device when the fit ran
        on torch; float32 and float64 are preserved.  Random starts are drawn
        on the host with numpy, so the backends start from the same factors.
        Needs PyTorch (``pip install 'bcnmf[torch]'``).
    engine : {None, "local", "dask"}, default=None
        ``"dask"`` fits on Dask (:mod:`bcnmf.dask_engine`): every sweep maps
        the kernel over chunks of cells on the current ``distributed.Client``
        (or dask's default scheduler), sums the chunks' basis parts by a tree
        reduction and updates the basis on the client; codes stay on the
        workers.  None uses Dask when ``X`` or the background is a
        ``dask.array`` and the in-process engine otherwise; ``"local"`` is the
        in-process engine (dask arrays refused).  With dask arrays in,
        ``fit_transform``, ``transform`` and ``background_codes_`` are dask
        arrays; with numpy/scipy in, numpy out.  The fit equals the in-process
        fit from the same start (``docs/dask.md``).

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        Shared basis (topics x features).
    background_codes_ : ndarray of shape (n_background, n_components) or None
        Codes of the background cells.
    n_iter_ : int
        Number of sweeps run by the selected restart.
    history_ : dict of ndarray
        ``"target"``, ``"background"`` (divergences) and ``"objective"``
        (target - alpha_raw_ * background) of the state after
        ``history_["iteration"]`` sweeps: every sweep for the squared error,
        every 10th for KL (its logarithms cost as much as a sweep), and always
        the final state.
    alpha_raw_ : float
        Contrast weight applied to the sums.
    objective_ : float
        Final objective of the selected restart.
    restart_objectives_, restart_agreement_ : ndarray of shape (n_init,)
        Final objective and mean matched cosine similarity to the other
        restarts, for every restart.
    topic_stability_ : ndarray of shape (n_components,) or None
        With ``n_init > 1``: per topic, the mean cosine similarity of the
        matching topic (Hungarian matching) of every other restart; values
        near 1 mean every restart found the topic.  None for ``n_init=1``.
    n_features_in_ : int
    feature_names_in_ : ndarray of str, only when X has string column names.

    Examples
    --------
    >>> import numpy as np
    >>> from bcnmf import BCNMF
    >>> rng = np.random.default_rng(0)
    >>> Y = rng.poisson(1.0, size=(60, 12)).astype(float)
    >>> X = rng.poisson(1.0, size=(50, 12)).astype(float)
    >>> X[:25, :3] += 5.0                       # a program only in the target
    >>> model = BCNMF(n_components=2, alpha=1.0, random_state=0, max_iter=1000)
    >>> codes = model.fit_transform(X, background=Y)
    >>> codes.shape, model.components_.shape
    ((50, 2), (2, 12))
    """

    _fits_missing = True   # NaN / masks in fit (core/masked.py)
    #: fitted arrays and scalars a subclass keeps beyond these, saved with the model
    _saved_arrays: tuple = ()
    _saved_scalars: tuple = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        register(cls, cls._saved_arrays, cls._saved_scalars)

    def __init__(self, n_components=None, *, alpha=1.5, alpha_scale=None,
                 beta_loss="frobenius", mode="stable", init=None, damping=None,
                 smoothing=0.1, max_iter=500, tol=1e-4, n_init=1, consensus=False,
                 random_state=None, transform_max_iter=1000, block_size=None, device=None,
                 engine=None, nuisance_topics=10):
        self.n_components = n_components
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
        self.consensus = consensus
        self.random_state = random_state
        self.transform_max_iter = transform_max_iter
        self.block_size = block_size
        self.device = device
        self.engine = engine
        self.nuisance_topics = nuisance_topics

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.input_tags.sparse = True
        # NaN = missing in dense numpy input (see fit); the torch backend refuses NaN
        tags.input_tags.allow_nan = getattr(self, "device", None) is None
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def fit(self, X, y=None, *, background=None, init_components=None, init_codes=None,
            init_background_codes=None, mask=None, background_mask=None, checkpoint=None,
            checkpoint_every=10, resume=None):
        """Fit the model; returns self.  See :meth:`fit_transform`."""
        self.fit_transform(X, background=background, init_components=init_components,
                           init_codes=init_codes, init_background_codes=init_background_codes,
                           mask=mask, background_mask=background_mask, checkpoint=checkpoint,
                           checkpoint_every=checkpoint_every, resume=resume)
        return self

    def fit_transform(self, X, y=None, *, background=None, init_components=None,
                      init_codes=None, init_background_codes=None, mask=None,
                      background_mask=None, checkpoint=None, checkpoint_every=10,
                      resume=None):
        """Fit the model and return the target codes.

        Parameters
        ----------
        X : {ndarray, sparse matrix, DataFrame} of shape (n_target, n_features)
            Target cells, non-negative.  float32 and float64 are preserved.
        y : ignored
        background : array-like or sparse of shape (n_background, n_features), optional
            Background cells, same features in the same order.
        init_components, init_codes, init_background_codes : ndarray, optional
            Starting factors (all or none); used for every restart.
        mask, background_mask : bool ndarray of the shape of X / background, optional
            Observation masks, **True = observed** (the opposite of
            ``numpy.ma``): entries where the mask is False are missing and
            are left out of the fit, whatever value they hold.  NaN entries of
            dense X and background are missing too, with or without a mask.
            The fit uses weighted multiplicative updates over the observed
            entries (:mod:`bcnmf.core.masked`).  Dense input only.
        checkpoint : str or path-like, optional
            Write the solver state to this file every ``checkpoint_every``
            sweeps (atomically, with a checksum; :mod:`bcnmf.core.checkpoint`),
            and when the fit is interrupted (KeyboardInterrupt).
        checkpoint_every : int, default=10
            Sweeps between checkpoints.
        resume : str or path-like, optional
            Continue from a checkpoint written by a fit with the same data and
            parameters; the result is identical to an uninterrupted fit.
            On the Dask engine (``n_init=1``) checkpoints hold the basis only
            (the codes live on the workers): the resumed fit starts from the
            saved basis with codes started as :meth:`transform` starts them,
            so it continues from where the topics were, not bit for bit.

        Returns
        -------
        codes : ndarray of shape (n_target, n_components)
        """
        params = self._fit_params()
        engine = params.pop("engine", None)
        check_params({k: params[k] for k in params})
        if _use_dask(engine, X, background):
            if getattr(self, "device", None) is not None:
                raise ValueError(f"device={self.device!r} and the Dask engine cannot be "
                                 "combined; the Dask engine runs numpy on the workers.")
            return self._fit_dask(X, background, params,
                                  (init_components, init_codes, init_background_codes),
                                  _checkpointing(checkpoint, checkpoint_every, resume),
                                  (mask, background_mask))
        check_orientation(X, background)
        device = resolve_device(getattr(self, "device", None))
        # missing values: numpy backend of the classes that declare it (BCNMF)
        missing_ok = vars(type(self)).get("_fits_missing", False) and device is None
        X = _validate_target(self, X, reset=True, mask=mask, allow_nan=missing_ok)
        Y = _check_background(background, X, getattr(self, "feature_names_in_", None),
                              mask=background_mask, allow_nan=missing_ok)
        X, Y = on_device(X, Y, device)
        s = _settings(self.n_components, X.shape[1], params)
        for A, name in ((X, "X"), (Y, "background")):
            if not is_out_of_core(A):   # streamed data are checked block by block
                check_for_loss(A, name, s.loss)
        init = _check_init((init_components, init_codes, init_background_codes), X, Y,
                           s.n_components)
        result, diag = fit_factors(X, Y, s, self.random_state, init,
                                   block_rows=self.block_size,
                                   consensus=bool(getattr(self, "consensus", False)),
                                   **_checkpointing(checkpoint, checkpoint_every, resume))
        _report(diag, s, result)
        self._store(result, result.background_codes, s, diag)
        return result.codes

    def _fit_params(self):
        """The parameters a fit runs with (subclasses that rewrite their data
        also rewrite the parameters here, never the estimator's own)."""
        return self.get_params()

    def _store(self, result, background_codes, s, diag):
        """Set the fitted attributes from a fit's result."""
        self.components_ = result.components
        self.background_codes_ = background_codes
        self.n_iter_ = result.n_iter
        self.history_ = result.history
        self.alpha_raw_ = result.alpha_raw
        self.objective_ = result.objective
        self.restart_objectives_ = result.restart_objectives
        self.restart_agreement_ = result.restart_agreement
        self.topic_stability_ = result.topic_stability
        self._n_features_out = s.n_components
        self._policy = diag["policy"]
        self._settings = s
        self._offsets = diag["offsets"]
        self._missing_prior = diag.get("missing_prior", (None, None))

    def _fit_dask(self, X, background, params, init, ckpt, masks):
        """``fit_transform`` on the Dask engine (see ``engine``).  ``ckpt``: the
        checkpoint keywords; the engine checkpoints the basis (its codes live on
        the workers) and resumes from it, codes restarted as ``transform`` starts.
        ``masks``: ``(mask, background_mask)``, numpy or dask bool arrays or None."""
        from .dask_engine import as_cell_chunks, checkpoint_hooks, fit_factors_dask, is_dask_array

        dask_in = is_dask_array(X)
        for A, name in ((X, "X"), (background, "background")):
            if A is not None:
                reject_unsupported(A, name)
        X = as_cell_chunks(X, "X", self.block_size)
        Y = as_cell_chunks(background, "background", self.block_size) \
            if background is not None else None
        if Y is not None and Y.shape[1] != X.shape[1]:
            raise ValueError(f"X has {X.shape[1]} features but the background has "
                             f"{Y.shape[1]}; both need the same features in the same order.")
        self.n_features_in_ = X.shape[1]
        if hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        s = _settings(self.n_components, X.shape[1], params)
        init = _check_init(init, X, Y, s.n_components, basis_only=True)
        callback = None
        if ckpt:
            init, callback = checkpoint_hooks(s, X, Y, init, **ckpt)
        result, diag = fit_factors_dask(X, Y, s, self.random_state, init, callback=callback,
                                        consensus=bool(getattr(self, "consensus", False)),
                                        mask=masks[0], background_mask=masks[1])
        _report(diag, s, result)
        codes, bg = result.codes, result.background_codes
        if not dask_in:   # numpy/scipy in, numpy out
            codes = codes.compute()
            bg = bg.compute() if bg is not None else None
        self._store(result, bg, s, diag)
        self._dask_run = diag["dask"]
        return codes

    def transform(self, X, *, as_background=False, mask=None):
        """Codes of cells (target or background) with the basis fixed.

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
        if _is_dask(X):
            if mask is not None:
                raise ValueError("mask is not supported for dask arrays; the Dask engine "
                                 "fits and transforms fully observed data.")
            return self._transform_dask(X, as_background)
        X = _validate_target(self, X, reset=False, mask=mask,
                             allow_nan=getattr(self, "device", None) is None)
        X, _ = on_device(X, None, resolve_device(getattr(self, "device", None)))
        if not is_out_of_core(X):
            check_for_loss(X, "X", self._settings.loss)
        dtype = numpy_dtype(X) if is_torch(X) else X.dtype
        dtype = dtype if dtype in (np.float32, np.float64) else np.float64
        if is_torch(X):   # the model's basis on X's device and dtype
            basis = asarray_like(self._transform_basis(as_background), X)
        else:
            basis = to_numpy(self._transform_basis(as_background)).astype(dtype, copy=False)
        offset = self._offsets[1 if as_background else 0]
        if offset is not None:
            offset = to_numpy(offset).astype(dtype)
        prior = getattr(self, "_missing_prior", (None, None))[1 if as_background else 0]
        codes, _ = transform_codes(X, basis, self._settings, self._policy, offset,
                                   self.transform_max_iter, self.tol,
                                   block_rows=getattr(self, "block_size", None), prior=prior)
        return codes

    def _transform_dask(self, X, as_background):
        """``transform`` of a dask array: a lazy dask array of codes."""
        from .dask_engine import as_cell_chunks, transform_dask

        X = as_cell_chunks(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but BCNMF is expecting "
                             f"{self.n_features_in_} features as input.")
        dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        basis = to_numpy(self._transform_basis(as_background)).astype(dtype, copy=False)
        offset = self._offsets[1 if as_background else 0]
        if offset is not None:
            offset = to_numpy(offset).astype(dtype)
        return transform_dask(X, basis, self._settings, self._policy, offset,
                              self.transform_max_iter, self.tol)

    def _transform_basis(self, as_background):
        return self.components_

    def save(self, path, *, feature_names=None):
        """Save the fitted model to ``path`` (npz arrays + JSON metadata, no pickle).

        Thin wrapper of :func:`bcnmf.persistence.save_model`; read it back with
        :func:`bcnmf.load`.  Returns the path written.
        """
        from .persistence import save_model

        return save_model(self, path, feature_names=feature_names)

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
        device = resolve_device(getattr(self, "device", None))
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


register(BCNMF)


def factorize(X, n_components=None, *, background=None, alpha=1.5, alpha_scale=None,
              beta_loss="frobenius", mode="stable", init=None, damping=None,
              smoothing=0.1, max_iter=500, tol=1e-4, n_init=1, consensus=False,
              random_state=None, transform_max_iter=1000, block_size=None,
              init_factors=None, device=None, mask=None, background_mask=None,
              checkpoint=None, checkpoint_every=10, resume=None,
              nuisance_topics=10) -> FactorizationResult:
    """Functional bcNMF: same model and code as :class:`BCNMF`.

    Parameters are those of :class:`BCNMF`; ``X`` is the target and
    ``background`` the background (cells x features), as in
    :meth:`BCNMF.fit`.  ``init_factors`` is an optional tuple
    ``(components, codes, background_codes)``.  ``device`` as in
    :class:`BCNMF`: torch inputs, or any input with a device, give a result
    of torch tensors on that device.  ``mask``, ``background_mask`` (True =
    observed; NaN is missing too), ``checkpoint``, ``checkpoint_every`` and
    ``resume`` are those of :meth:`BCNMF.fit`.

    Returns
    -------
    FactorizationResult
        Frozen result with ``components``, ``codes``, ``background_codes``,
        ``history``, ``n_iter``, ``alpha_raw`` and restart diagnostics.

    Examples
    --------
    >>> import numpy as np
    >>> from bcnmf import factorize
    >>> rng = np.random.default_rng(0)
    >>> X, Y = rng.random((30, 8)), rng.random((20, 8))
    >>> res = factorize(X, 2, background=Y, random_state=0, max_iter=50, tol=0)
    >>> res.codes.shape, res.background_codes.shape
    ((30, 2), (20, 2))
    """
    p = dict(alpha=alpha, alpha_scale=alpha_scale, beta_loss=beta_loss, mode=mode, init=init,
             damping=damping, smoothing=smoothing, max_iter=max_iter, tol=tol, n_init=n_init,
             consensus=consensus, transform_max_iter=transform_max_iter,
             block_size=block_size, nuisance_topics=nuisance_topics)
    check_params({"n_components": n_components, "random_state": random_state, **p},
                 owner="factorize")
    check_orientation(X, background, "factorize")
    x_names = feature_names(X)
    device = resolve_device(device)
    X = (_check_out_of_core(X, "X", "factorize") if is_out_of_core(X)
         else check_torch_matrix(X, "X", "factorize") if is_torch(X)
         else check_matrix(X, "X", "factorize", allow_nan=device is None, mask=mask))
    Y = _check_background(background, X, x_names, "factorize", mask=background_mask,
                          allow_nan=device is None)
    X, Y = on_device(X, Y, device)
    s = _settings(n_components, X.shape[1], p, owner="factorize")
    for A, name in ((X, "X"), (Y, "background")):
        if not is_out_of_core(A):
            check_for_loss(A, name, s.loss, "factorize")
    init = _check_init(tuple(init_factors) if init_factors is not None else None, X, Y,
                       s.n_components)
    result, diag = fit_factors(X, Y, s, random_state, init, block_rows=block_size,
                               consensus=consensus,
                               **_checkpointing(checkpoint, checkpoint_every, resume))
    _report(diag, s, result, "factorize")
    return result
