"""scikit-learn estimator and functional twin for bcNMF."""

from __future__ import annotations

from dataclasses import replace

from ._base import BaseBCNMF
from ._inputs import (check_background, check_init, checkpointing, on_device, report,
                      resolve_settings, use_dask, validate_target)
from ._validation import (ALPHA_OR_AUTO, INIT_OR_CONTRASTIVE, K_OR_AUTO, check_for_loss,
                          check_orientation, check_params, constraints, reject_unsupported)
from .core import masked
from .core.alpha_path import K_GRID, resolve_seed, settle
from .core.backend import resolve_device
from .core.fit import FitState, fit_factors, host_sample
from .core.result import FactorizationResult
from .core.source import is_out_of_core

#: the fitted arrays of a fit with restarts (topic_stability_ is None for one restart)
RESTART_ARRAYS = ("restart_objectives_", "restart_agreement_", "topic_stability_")
#: the constructor parameters of BCNMF (and of factorize)
PARAMETERS = ("n_components", "alpha", "alpha_scale", "beta_loss", "mode", "init", "damping",
              "smoothing", "max_iter", "tol", "n_init", "consensus", "random_state",
              "transform_max_iter", "block_size", "device", "engine", "n_shared", "progress")


class BCNMF(BaseBCNMF):
    r"""Background-contrastive non-negative matrix factorisation.

    Finds a shared non-negative basis whose topics explain the target ``X``
    but not the background ``Y``.  With cells as rows (as here and in
    scikit-learn/AnnData), ``components_`` is the paper's :math:`W^\top`,
    ``fit_transform`` returns :math:`H_X^\top` and ``background_codes_`` is
    :math:`H_Y^\top`.  The objective is

    .. math::

        \min_{W, H_X \ge 0} \; D(X \mid H_X W) - \alpha \min_{H_Y \ge 0} D(Y \mid H_Y W)

    with :math:`D` the squared Frobenius distance or the generalised
    Kullback-Leibler (Poisson) divergence: the paper's model, fitted with
    ``n_shared=0`` (and in reference mode).  By default (stable mode with a
    background) both predictions also carry fixed *shared topics* of the
    background with free per-cell codes, ``H_X W + D_X G`` and ``H_Y W + D_Y
    G``, so that ``W`` carries what the target has in excess of what the two
    datasets share (see ``n_shared`` and docs/model.md).  Without
    ``background`` it is plain NMF with multiplicative updates.

    Parameters
    ----------
    n_components : int, "auto" or None, default=None
        Number of topics K (1 <= K <= n_features); None means n_features.
        ``"auto"`` (with a background) screens K = 2, 3, 5 and 8 as
        ``alpha="auto"`` screens alphas and keeps the K whose best held-out
        contrast is highest (a larger K must beat a smaller one beyond
        noise); the screening table is in ``alpha_path_``.  A first guess: it
        found the planted K of one of four benchmark sets (docs/selection.md).
    alpha : "auto" or float, default="auto"
        Contrast weight (>= 0), interpreted according to ``alpha_scale``.
        With the relative scale, values a little above 1 ask for topics used
        more in the target than in the background; too large a value leaves
        no target-enriched direction and the fit collapses (the topics then
        explain almost nothing of either dataset).  The useful band moves
        with the data, so ``"auto"`` (the default) chooses alpha without
        labels before the fit (:mod:`bcnmf.core.alpha_path`): at every alpha
        of the relative grid 0.25 to 5 (extended at an edge where the best
        lies), short fits on two random halves of at most 2,000 cells of each
        dataset are scored on the other half by the contrast, the probability
        that a held-out target cell is better explained than a held-out
        background cell; alpha is the middle of the alphas whose contrast the
        held-out cells cannot tell from the best.  The model is then fitted
        on all cells at that alpha, exactly as ``alpha=model.alpha_`` would
        be; the measurements are in ``alpha_path_``.  An
        :class:`~bcnmf.exceptions.AlphaSelectionWarning` says when no alpha
        separates the datasets or the best lies at the edge of the search.
        ``"auto"`` works on the relative scale (``alpha_scale="raw"`` is
        refused with it).  Without a background there is no contrast and no
        choice (``alpha_ = 0``).
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
    init : {"contrastive", "random", "uniform"} or None, default=None
        Where the fit starts.  "contrastive": topics from the relaxation of
        the contrast (the top eigenvectors of ``X^T X - alpha_raw Y^T Y``
        outside the span of the shared topics, split into non-negative parts
        as NNDSVD splits singular vectors; for Poisson on the square roots of
        the counts), computed on at most 2,000 cells of each dataset, each
        cell's total split evenly over the topics; deterministic, so the
        fit does not depend on ``random_state`` (only restarts after the
        first, which start from random draws, do).  "random": half-normal
        entries scaled to the data.  "uniform": U[0, 1) entries (the
        authors').  None means "contrastive" for squared error in stable
        mode, "random" for Poisson in stable mode (where the relaxation
        is only an approximation; docs/model.md) and
        "uniform" in reference mode.  Without a background every start is
        drawn.  With missing values the relaxation sees each missing entry
        at its feature's observed mean, and the codes start on the observed
        entries.
    damping : float in (0, 1] or None, default=None
        Exponent gamma applied to every multiplicative ratio as
        ``max(r, eps) ** gamma`` (the authors use 0.5 for Poisson).
    smoothing : float, default=0.1
        Stable Poisson with a background only: target and background are
        modelled as ``H W + mu`` (plus the shared topics, see
        ``n_shared``) with ``mu_j = smoothing * mean(A[:, j])``
        of each dataset.  This bounds the objective below by
        ``-alpha_raw D(Y | mu_Y)`` (the authors' objective is unbounded: it
        drives basis entries of background features to zero); 0 restores the
        unbounded form (and drops the shared topics).
    n_shared : "auto" or int, default="auto"
        Stable mode with a background only: the number of shared topics
        ``G``, topics of the background alone (an NMF of the background with
        the fit's loss, held fixed) with free per-cell codes in both
        predictions: ``H W + D G`` for the target and ``H_Y W + D_Y G`` for
        the background (plus the floors ``mu`` of stable Poisson).  What the
        two datasets share (cell types, baseline expression) is then
        explained in both, so it no longer drives the contrastive codes;
        ``components_`` holds only the contrastive topics ``W``, which stay
        penalised for what the background can still use on top of ``G``.
        ``"auto"`` counts the background's programs on a sample of its cells
        (:func:`bcnmf.core.shared_count.shared_count`) and fits twice as many
        (at most one per 10 background cells and 50); an int sets the
        number.  Either is capped at the background's number of cells and
        an eighth of the features; 0 drops them (the paper's model).
        :meth:`transform` solves both sets of codes and returns the
        contrastive ones.  Fitted: ``n_shared_`` and ``shared_components_``.
        Every engine fits them (``engine="dask"``, :class:`MiniBatchBCNMF`).
        See docs/model.md.
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
        Number of restarts: with ``init="contrastive"`` the first from the
        contrastive start and the others from random draws, otherwise each
        from its own random draw.
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
        The contrastive topics (topics x features); the shared topics of the
        background are in ``shared_components_``.
    n_components_ : int
        Number of topics (rows of ``components_``): the chosen K with
        ``n_components="auto"``.
    background_codes_ : ndarray of shape (n_background, n_components) or None
        Codes of the background cells.
    n_iter_ : int
        Number of sweeps run by the selected restart.
    history_ : dict of ndarray
        ``"target"``, ``"background"`` (divergences) and ``"objective"``
        (``target - alpha_raw_ * background``) of the state after
        ``history_["iteration"]`` sweeps: every sweep for the squared error,
        every 10th for KL (its logarithms cost as much as a sweep), and always
        the final state.
    alpha_ : float
        The contrast weight of the fit, on the relative scale unless
        ``alpha_scale="raw"``: the chosen one with ``alpha="auto"``, else
        ``alpha``.
    alpha_path_ : dict of ndarray or None
        With ``alpha="auto"``, one entry per alpha tried (as scikit-learn's
        ``cv_results_``; ``pandas.DataFrame(model.alpha_path_)`` makes it a
        table): ``n_components``, ``alpha``, ``contrast`` (probability that a
        held-out target cell is better explained than a held-out background
        cell; 0.5: no difference), ``stability`` (mean matched cosine of the
        topics fitted on the two halves), ``explained_target`` and
        ``explained_background`` (mean per-cell fraction of the held-out
        cells' divergence beyond the shared topics that the contrastive
        topics explain), ``n_iter`` (sweeps of both halves),
        ``counted`` (whether the rule could choose it) and ``chosen``.
        None for a fixed alpha.
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
    fit_state_ : bcnmf.core.fit.FitState
        What :meth:`transform` and :meth:`save` need from the fit: the
        resolved settings, the step policy, the prediction offsets and the
        missing-value prior.
    dask_run_ : bcnmf.dask_engine.DaskRun, only after a fit on the Dask engine
        Round trips and bytes brought back to the client.
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
    >>> model = BCNMF(n_components=2, random_state=0, max_iter=1000)
    >>> codes = model.fit_transform(X, background=Y)    # alpha="auto"
    >>> codes.shape, model.components_.shape
    ((50, 2), (2, 12))
    >>> fixed = BCNMF(n_components=2, alpha=model.alpha_, random_state=0,
    ...               max_iter=1000).fit(X, background=Y)
    >>> bool(np.array_equal(fixed.components_, model.components_))
    True
    """

    _parameter_constraints = {**constraints(*PARAMETERS), "alpha": ALPHA_OR_AUTO,
                              "n_components": K_OR_AUTO, "init": INIT_OR_CONTRASTIVE}
    _saved_arrays = RESTART_ARRAYS
    _saved_scalars = ("alpha_raw_", "alpha_")
    _fits_missing = True   # NaN / masks in fit (core/masked.py)
    _takes_torch = True    # torch tensors in, on their device (see ``device``)

    def __init__(self, n_components=None, *, alpha="auto", alpha_scale=None,
                 beta_loss="frobenius", mode="stable", init=None, damping=None,
                 smoothing=0.1, max_iter=500, tol=1e-4, n_init=1, consensus=False,
                 random_state=None, transform_max_iter=1000, block_size=None, device=None,
                 engine=None, n_shared="auto", progress=False):
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
        self.n_shared = n_shared
        self.progress = progress

    def _device(self):
        return resolve_device(self.device)

    def _state(self) -> dict:
        path = getattr(self, "alpha_path_", None)
        return {} if path is None else {f"alpha_path_{k}": v for k, v in path.items()}

    def _set_state(self, arrays: dict) -> None:
        keys = [k for k in arrays if k.startswith("alpha_path_")]
        self.alpha_path_ = {k[len("alpha_path_"):]: arrays[k] for k in keys} if keys else None

    def _block_rows(self):
        return self.block_size

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
            With ``alpha="auto"`` the choice is made again before resuming:
            pass the same int ``random_state`` (or ``alpha=model.alpha_``) so
            that it is the alpha of the checkpoint.

        Returns
        -------
        codes : ndarray of shape (n_target, n_components)
        """
        result = fit_contrast(self, X, background, self._validate_params(),
                              (init_components, init_codes, init_background_codes),
                              (mask, background_mask),
                              checkpointing(checkpoint, checkpoint_every, resume))
        return result.codes


def fit_contrast(estimator, X, background, params, init, masks, ckpt, owner=None):
    """The contrastive fit of ``estimator`` with ``params`` (validated
    parameters of :class:`BCNMF`; variants that rewrite their data pass the
    parameters their data need): the
    :class:`~bcnmf.core.result.FactorizationResult`, the estimator's fitted
    attributes set.  ``init``: ``(components, codes, background codes)``; ``masks``:
    ``(mask, background_mask)``; ``ckpt``: the checkpoint keywords;
    ``owner``: the name errors and warnings give (default: the class's)."""
    owner = owner or type(estimator).__name__
    if use_dask(params["engine"], X, background):
        return _fit_contrast_dask(estimator, X, background, params, init, ckpt, masks,
                                  owner)
    check_orientation(X, background, owner)
    device = resolve_device(params["device"])
    missing_ok = estimator._fits_missing and device is None
    X = validate_target(estimator, X, reset=True, mask=masks[0], allow_nan=missing_ok)
    Y = check_background(background, X, getattr(estimator, "feature_names_in_", None), owner,
                         mask=masks[1], allow_nan=missing_ok)
    X, Y = on_device(X, Y, device)
    s = resolve_settings(params["n_components"], X.shape[1], params, owner,
                         contrastive=True)
    for A, name in ((X, "X"), (Y, "background")):
        if not is_out_of_core(A):   # streamed data are checked block by block
            check_for_loss(A, name, s.loss, owner)
    rows = params["block_size"]
    s, choice, seed = automatic(
        s, params, X.shape[1], lambda: host_sample(X, masked.observed(X, masks[0]), rows, "X"),
        None if Y is None else lambda: host_sample(Y, masked.observed(Y, masks[1]), rows),
        owner)
    init = check_init(init, X, Y, s.n_components)
    result, diag = fit_factors(X, Y, s, seed, init,
                               block_rows=params["block_size"],
                               consensus=bool(params["consensus"]), **ckpt)
    report(diag, s, result, owner)
    result = with_alpha(result, s, choice)
    estimator._store(result, result.background_codes, FitState.of(s, diag))
    estimator.alpha_, estimator.alpha_path_ = result.alpha, result.alpha_path
    return result


def _fit_contrast_dask(estimator, X, background, params, init, ckpt, masks, owner):
    """:func:`fit_contrast` on the Dask engine (see ``engine``).  ``ckpt``: the
    checkpoint keywords; the engine checkpoints the basis (its codes live on
    the workers) and resumes from it, codes restarted as ``transform`` starts.
    ``masks``: ``(mask, background_mask)``, numpy or dask bool arrays or None."""
    from .dask_engine import (_host_sample, as_cell_chunks, checkpoint_hooks, fit_factors_dask,
                              is_dask_array)

    if params["device"] is not None:
        raise ValueError(f"device={params['device']!r} and the Dask engine cannot be "
                         "combined; the Dask engine runs numpy on the workers.")
    dask_in = is_dask_array(X)
    for A, name in ((X, "X"), (background, "background")):
        if A is not None:
            reject_unsupported(A, name)
    X = as_cell_chunks(X, "X", params["block_size"])
    Y = as_cell_chunks(background, "background", params["block_size"]) \
        if background is not None else None
    if Y is not None and Y.shape[1] != X.shape[1]:
        raise ValueError(f"X has {X.shape[1]} features but the background has "
                         f"{Y.shape[1]}; both need the same features in the same order.")
    estimator.n_features_in_ = X.shape[1]
    estimator.__dict__.pop("feature_names_in_", None)
    s = resolve_settings(params["n_components"], X.shape[1], params, owner,
                         contrastive=True)
    s, choice, seed = automatic(s, params, X.shape[1], lambda: _host_sample(X, masks[0]),
                                None if Y is None else lambda: _host_sample(Y, masks[1]),
                                owner)
    init = check_init(init, X, Y, s.n_components, basis_only=True)
    callback = None
    if ckpt:
        init, callback = checkpoint_hooks(s, X, Y, init, **ckpt)
    result, diag = fit_factors_dask(X, Y, s, seed, init,
                                    callback=callback, consensus=bool(params["consensus"]),
                                    mask=masks[0], background_mask=masks[1])
    report(diag, s, result, owner)
    if not dask_in:   # numpy/scipy in, numpy out
        bg = result.background_codes
        result = replace(result, codes=result.codes.compute(),
                         background_codes=None if bg is None else bg.compute())
    result = with_alpha(result, s, choice)
    estimator._store(result, result.background_codes, FitState.of(s, diag))
    estimator.alpha_, estimator.alpha_path_ = result.alpha, result.alpha_path
    estimator.dask_run_ = diag["dask"]
    return result


def automatic(s, params, n_features, sample_x, sample_y, owner):
    """``(settings, choice, random_state)`` of a fit: with ``alpha="auto"`` and/or
    ``n_components="auto"`` the settings with the choices of
    :func:`bcnmf.core.alpha_path.settle`, made on the host samples ``sample_x()`` and
    ``sample_y()`` (None without a background), the choice, and the int seed that the
    screening and the fit share; otherwise ``s``, None and the estimator's
    ``random_state``."""
    auto_k = s.n_components == "auto"
    if auto_k and sample_y is None:
        raise ValueError(f"n_components='auto' of {owner} chooses K by the contrast with the "
                         "background; pass background=, or a number of topics.")
    if s.alpha != "auto" and not auto_k:
        return s, None, params["random_state"]
    if sample_y is None:   # no background: no contrast, nothing to choose
        return replace(s, alpha=0.0), None, params["random_state"]
    seed = resolve_seed(params["random_state"])
    k_grid = (tuple(k for k in K_GRID if k <= n_features) or (n_features,)) if auto_k \
        else None
    s, choice = settle(s, sample_x(), sample_y(), seed,
                       alpha_progress(params.get("progress", False)), k_grid)
    return s, choice, seed


def with_alpha(result, s, choice):
    """``result`` with the fit's ``alpha`` and, for ``alpha="auto"``, the ``alpha_path``
    measured on the way; warns when the automatic choice is not one to trust
    (:class:`~bcnmf.exceptions.AlphaSelectionWarning`)."""
    return replace(result, alpha=float(s.alpha), alpha_path=path_table(choice))


def path_table(choice):
    """The ``alpha_path_`` of an automatic choice (a dict of arrays, as scikit-learn's
    ``cv_results_``), or None; warns when the choice is not one to trust
    (:class:`~bcnmf.exceptions.AlphaSelectionWarning`)."""
    import warnings

    import numpy as np

    from .exceptions import AlphaSelectionWarning

    if choice is None:
        return None
    if choice.message is not None:
        warnings.warn(choice.message, AlphaSelectionWarning, stacklevel=5)
    if not choice.table:   # nothing was screened
        return None
    return {key: np.asarray(value) for key, value in choice.table.items()}


def alpha_progress(enabled):
    """The progress of the automatic path (:class:`bcnmf._progress.Progress`, one step per
    alpha), or None."""
    if not enabled:
        return None
    from ._progress import Progress

    return Progress(True, None, "alpha='auto'", "alpha")


def factorize(X, n_components=None, *, background=None, alpha="auto", alpha_scale=None,
              beta_loss="frobenius", mode="stable", init=None, damping=None,
              smoothing=0.1, max_iter=500, tol=1e-4, n_init=1, consensus=False,
              random_state=None, transform_max_iter=1000, block_size=None,
              init_factors=None, device=None, mask=None, background_mask=None,
              checkpoint=None, checkpoint_every=10, resume=None,
              n_shared="auto", engine=None, progress=False) -> FactorizationResult:
    """Functional bcNMF: the fit of :class:`BCNMF`, returning its result.

    Parameters are those of :class:`BCNMF`; ``X`` is the target and
    ``background`` the background (cells x features), as in
    :meth:`BCNMF.fit`.  ``init_factors`` is an optional tuple
    ``(components, codes, background_codes)``.  ``device`` as in
    :class:`BCNMF`: torch inputs, or any input with a device, give a result
    of torch tensors on that device.  ``mask``, ``background_mask`` (True =
    observed; NaN is missing too), ``checkpoint``, ``checkpoint_every`` and
    ``resume`` are those of :meth:`BCNMF.fit`; ``engine`` that of :class:`BCNMF` (dask
    arrays in give a result of dask arrays).

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
    >>> res = factorize(X, 2, background=Y, alpha=1.5, random_state=0, max_iter=50, tol=0)
    >>> res.codes.shape, res.background_codes.shape
    ((30, 2), (20, 2))
    """
    model = BCNMF(n_components, alpha=alpha, alpha_scale=alpha_scale, beta_loss=beta_loss,
                  mode=mode, init=init, damping=damping, smoothing=smoothing,
                  max_iter=max_iter, tol=tol, n_init=n_init, consensus=consensus,
                  random_state=random_state, transform_max_iter=transform_max_iter,
                  block_size=block_size, device=device, engine=engine,
                  n_shared=n_shared, progress=progress)
    params = model.get_params()
    check_params(params, "factorize", BCNMF._parameter_constraints)
    return fit_contrast(model, X, background, params,
                        tuple(init_factors) if init_factors is not None else (None, None, None),
                        (mask, background_mask),
                        checkpointing(checkpoint, checkpoint_every, resume), "factorize")
