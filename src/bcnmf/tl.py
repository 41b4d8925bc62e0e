"""Tools for AnnData, following scanpy's conventions (``bcnmf.tl``).

``adata`` first, keyword-only options, ``key_added`` and ``copy``: with ``copy=False`` (default)
the results are written into the given object(s) and None is returned; with ``copy=True`` the
inputs are left untouched and annotated copies are returned.

anndata is imported only when these functions run.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._prep import align_features, check_poisson_input, same_kind, take_columns
from ._validation import LOSS_ALIASES
from .core.backend import to_numpy
from .estimator import BCNMF
from .io import _anndata_matrix
from .persistence import json_params

__all__ = ["bcnmf"]

_DEFAULT_KEY = "bcnmf"


def _anndata_class():
    try:
        from anndata import AnnData
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("bcnmf.tl needs anndata: pip install 'bcnmf[anndata]'.") from None
    return AnnData


def _check_adata(adata, name):
    AnnData = _anndata_class()
    if not isinstance(adata, AnnData):
        raise TypeError(f"{name} must be an AnnData object; got {type(adata).__name__}.")
    if adata.isbacked:
        raise ValueError(
            f"{name} is backed (opened with backed='r'): bcnmf.tl.bcnmf selects cells and "
            f"genes and writes its results into the object, so it needs the data in memory; "
            f"load it with {name} = {name}.to_memory(). To stream data too large for memory, "
            "fit bcnmf.BCNMF on the backed X of separate target and background files with "
            "the same genes: BCNMF(...).fit(target.X, background=background.X).")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"{name} is empty ({adata.n_obs} cells x {adata.n_vars} genes).")


def _background_mask(adata, groupby, background):
    if not isinstance(groupby, str):
        raise TypeError(f"groupby must be the name of a column of adata.obs; got {groupby!r}.")
    if groupby not in adata.obs.columns:
        raise KeyError(f"groupby={groupby!r} is not a column of adata.obs; columns: "
                       f"{list(adata.obs.columns)[:20]}.")
    if background is None:
        raise TypeError("Pass background=: the value(s) of adata.obs[groupby] that mark "
                        "background cells, or a background AnnData (then without groupby).")
    values = [background] if isinstance(background, (str, numbers.Number)) else list(background)
    column = adata.obs[groupby]
    present = set(column.astype(str).unique())
    wanted = [str(v) for v in values]
    missing = [v for v in wanted if v not in present]
    if missing:
        shown = sorted(present)[:20]
        raise ValueError(f"background value(s) {missing} not found in adata.obs[{groupby!r}]; "
                         f"values present: {shown}.")
    mask = column.astype(str).isin(wanted).to_numpy()
    if mask.all():
        raise ValueError(f"Every cell has adata.obs[{groupby!r}] in {wanted}: no target cells "
                         "left (the target is every cell not in background).")
    return mask, wanted


def _mask_var(adata, mask_var):
    """Column positions used for fitting (``mask_var``: None, bool array or var column)."""
    if mask_var is None:
        return np.arange(adata.n_vars)
    if isinstance(mask_var, str):
        if mask_var not in adata.var.columns:
            raise KeyError(f"mask_var={mask_var!r} is not a column of adata.var.")
        mask = adata.var[mask_var].to_numpy()
    else:
        mask = np.asarray(mask_var)
    if mask.dtype != bool or mask.shape != (adata.n_vars,):
        raise ValueError(f"mask_var must be a boolean array of length n_vars={adata.n_vars} or "
                         "the name of a boolean column of adata.var.")
    if not mask.any():
        raise ValueError("mask_var selects no genes.")
    return np.flatnonzero(mask)


def _rows(M, mask):
    return M[np.flatnonzero(mask)]


def _poisson_hint(adata, layer, use_raw):
    options = []
    if layer is None and not use_raw:
        if adata.layers:
            options.append(f"layer=... (layers: {sorted(adata.layers)})")
        if adata.raw is not None:
            options.append("use_raw=True")
    return ": pass " + " or ".join(options) if options else ""


def _record(model, *, source, n_target, n_background, n_features, extra):
    rec = {
        # h5ad cannot store None: such parameters are left out
        "params": {k: v for k, v in json_params(model).items() if v is not None},
        "alpha": float(model.alpha_),
        "alpha_raw": float(model.alpha_raw_),
        "n_iter": int(model.n_iter_),
        "objective": float(model.objective_),
        "history": {k: np.asarray(v) for k, v in model.history_.items()},
        "source": source,
        "n_target": int(n_target),
        "n_background": int(n_background),
        "n_features_used": int(n_features),
    }
    if model.alpha_path_ is not None:
        rec["alpha_path"] = {k: np.asarray(v) for k, v in model.alpha_path_.items()}
    rec.update({k: v for k, v in extra.items() if v is not None})
    return rec


def _write(adata, key, codes, loadings_rows, components, record):
    codes, components = to_numpy(codes), to_numpy(components)  # torch fits: host numpy
    loadings = np.zeros((adata.n_vars, components.shape[0]), dtype=components.dtype)
    loadings[loadings_rows] = components.T
    adata.obsm[f"X_{key}"] = codes
    adata.varm[key] = loadings
    adata.uns[key] = record


def bcnmf(adata, groupby=None, *, background=None, n_components=10, alpha="auto",
          beta_loss="frobenius", layer=None, use_raw=False, mask_var=None, min_overlap=0.5,
          key_added=None, random_state=0, enrichment=True, n_permutations=1000,
          sample_key=None, copy=False, **kwargs):
    r"""Background-contrastive NMF of an AnnData object.

    Two forms:

    - **one object**: ``bcnmf(adata, "condition", background="control")``: cells whose
      ``adata.obs[groupby]`` is in ``background`` (a value or a list of values) form the
      background, all the others the target;
    - **two objects**: ``bcnmf(target_adata, background=background_adata)``: the objects are
      aligned on their shared ``var_names`` (target order); genes found in only one are
      dropped with a :class:`~bcnmf.exceptions.FeatureAlignmentWarning` saying how many, and
      too small an overlap is an error.

    Fits :class:`bcnmf.BCNMF` (objective :math:`D(X \mid H_X W) - \alpha D(Y \mid H_Y W)`)
    and writes, for key ``k = key_added or "bcnmf"``:

    - ``obsm["X_k"]`` (n_obs, n_components): codes of every cell (background cells get their
      background codes), so ``sc.pl.embedding(adata, basis="k")`` plots topics;
    - ``varm["k"]`` (n_vars, n_components): loadings (``components_`` transposed), zero for
      genes not used (outside ``mask_var`` or dropped by the alignment);
    - ``uns["k"]``: parameters, the fit's ``alpha`` (with ``alpha="auto"`` the chosen one,
      and ``alpha_path``: its measurements per alpha), applied ``alpha_raw``, ``n_iter``,
      final ``objective``, ``history`` (target and background divergences and objective per sweep), how the
      cells were split and, with ``enrichment=True``, ``uns["k"]["enrichment"]``: the
      :func:`bcnmf.topic_enrichment` table (one row per topic: usage in target and
      background, effect size, permutation p-value and BH q-value, ``enriched``, and which
      ``test`` made it: ``"cells"``, or ``"samples"`` with ``sample_key``); ``sample_key``
      is recorded in ``uns["k"]["sample_key"]``.

    In the two-object form both objects are annotated (the background with its own codes and
    loadings over its own genes); with ``copy=True`` a ``(target, background)`` pair of copies
    is returned.

    Parameters
    ----------
    adata : AnnData
        Cells x genes. Sparse matrices stay sparse (the fit reads them at their nonzeros).
    groupby : str, optional
        Column of ``adata.obs`` that marks the background cells (one-object form).
    background : value, list of values, or AnnData
        Background value(s) of ``adata.obs[groupby]``, or the background AnnData.
    n_components : int, default=10
        Number of topics.
    alpha : "auto" or float, default="auto"
        Contrast weight (relative scale by default; see :class:`bcnmf.BCNMF`). ``"auto"``
        chooses it without labels; the choice and its measurements are stored in
        ``uns[key]["alpha"]`` and ``uns[key]["alpha_path"]``.
    beta_loss : {"frobenius", "poisson", "kullback-leibler"}, default="frobenius"
        ``"frobenius"`` for log-normalised data; ``"poisson"`` for raw counts. For the Poisson
        loss, read the counts from a layer or ``.raw``: obviously log-transformed input
        (scanpy's ``log1p`` record, ``log1p`` of counts, ``normalize_total`` + ``log1p``) is
        refused with a message saying where counts might be.
    layer : str, optional
        Use ``adata.layers[layer]`` instead of ``adata.X`` (e.g. ``"counts"``).
    use_raw : bool, default=False
        Use ``adata.raw`` (restricted to ``adata.var_names``) instead of ``adata.X``.
    mask_var : str or ndarray of bool, optional
        Genes to fit on: a boolean column of ``adata.var`` (e.g. ``"highly_variable"``) or a
        boolean array. Default: all genes.
    min_overlap : float in (0, 1] or int, default=0.5
        Two-object form: smallest accepted number of shared genes, as a fraction of the smaller
        gene set or an absolute count.
    key_added : str, optional
        Key of the results (default ``"bcnmf"``).
    random_state : int, RandomState, Generator or None, default=0
        Seed of the initialisation (0 by default, so results are reproducible, as in scanpy).
    enrichment : bool, default=True
        Also compute the topic enrichment statistics (:func:`bcnmf.topic_enrichment`: cells
        shuffled between target and background, or whole samples with ``sample_key``) into
        ``uns[key]["enrichment"]``.
    n_permutations : int, default=1000
        Permutations of the enrichment test.
    sample_key : str, optional
        Column of ``obs`` holding the sample (donor, animal, well) of every cell; in the
        two-object form both objects need it.  The enrichment test is then made at the level
        of samples (``samples=`` and ``background_samples=`` of
        :func:`bcnmf.topic_enrichment`: per-sample mean usage, the samples shuffled between
        the conditions), which is valid when cells of one sample are not independent.  Each
        side needs at least 2 samples, and a sample may not occur on both sides.  Without
        it, cells are shuffled as if independent.  The fit itself does not use it.
    copy : bool, default=False
        Return annotated copies instead of writing into the input(s).
    **kwargs
        Further :class:`bcnmf.BCNMF` parameters (``mode``, ``max_iter``, ``tol``, ``n_init``,
        ``alpha_scale``, ``smoothing``, ``damping``, ``init``, ``transform_max_iter``,
        ``device``). With ``device="cpu"``/``"cuda"`` the fit runs on torch; what is written
        into the AnnData is numpy all the same.

    Raises
    ------
    KeyError
        If ``groupby`` or ``sample_key`` is not a column of ``obs`` (the message lists the
        columns).
    ValueError
        For a backed AnnData (``read_h5ad(..., backed="r")``): the tool selects cells and
        genes and writes into the object, so it needs ``adata.to_memory()``. Data too large
        for memory can be streamed by the estimator itself:
        ``BCNMF(...).fit(target.X, background=background.X)`` on two backed files.

    Returns
    -------
    None, AnnData, or tuple of AnnData
        None with ``copy=False``; the annotated copy (one-object form) or the
        ``(target, background)`` copies (two-object form) with ``copy=True``.

    Examples
    --------
    >>> import numpy as np, anndata as ad, pandas as pd
    >>> import bcnmf
    >>> rng = np.random.default_rng(0)
    >>> X = rng.poisson(1.0, size=(80, 12)).astype(np.float32)
    >>> X[:20, :3] += 5                                  # a target-only program
    >>> obs = pd.DataFrame({"condition": ["treated"] * 40 + ["control"] * 40},
    ...                    index=[f"cell{i}" for i in range(80)])
    >>> adata = ad.AnnData(X, obs=obs)
    >>> bcnmf.tl.bcnmf(adata, "condition", background="control", n_components=2,
    ...                alpha=1.0, max_iter=1000)
    >>> adata.obsm["X_bcnmf"].shape, adata.varm["bcnmf"].shape
    ((80, 2), (12, 2))
    """
    _check_adata(adata, "adata")
    if beta_loss not in LOSS_ALIASES:
        raise ValueError(f"beta_loss must be one of {sorted(LOSS_ALIASES)}; got {beta_loss!r}.")
    if key_added is not None and (not isinstance(key_added, str) or not key_added):
        raise TypeError(f"key_added must be a non-empty string; got {key_added!r}.")
    key = key_added or _DEFAULT_KEY
    poisson = LOSS_ALIASES[beta_loss] == "kullback-leibler"
    two_objects = isinstance(background, _anndata_class())
    model = BCNMF(n_components, alpha=alpha, beta_loss=beta_loss, random_state=random_state,
                  **kwargs)
    if two_objects:
        samples = None
        if sample_key is not None:
            samples = (_sample_column(adata, sample_key, "adata"),
                       _sample_column(background, sample_key, "background"))
            _precheck_samples(samples, enrichment)
        return _fit_two(adata, background, model, groupby=groupby, layer=layer,
                        use_raw=use_raw, mask_var=mask_var, min_overlap=min_overlap, key=key,
                        poisson=poisson, copy=copy,
                        enrichment=(enrichment, n_permutations, random_state, samples),
                        sample_key=sample_key)
    is_bg, values = _background_mask(adata, groupby, background)
    samples = None
    if sample_key is not None:
        column = _sample_column(adata, sample_key, "adata")
        samples = (column[~is_bg], column[is_bg])
        _precheck_samples(samples, enrichment)
    cols = _mask_var(adata, mask_var)
    M, source, log1p = _anndata_matrix(adata, layer, use_raw)
    M = take_columns(M, cols)
    if poisson:
        check_poisson_input(M, f"adata.{source}", log1p_recorded=log1p,
                            hint=_poisson_hint(adata, layer, use_raw))
    Xt, Xb = _rows(M, ~is_bg), _rows(M, is_bg)
    codes_t = to_numpy(model.fit_transform(Xt, background=Xb))  # device=...: torch -> numpy
    if copy:
        adata = adata.copy()
    codes = np.empty((adata.n_obs, codes_t.shape[1]), dtype=codes_t.dtype)
    codes[~is_bg] = codes_t
    codes[is_bg] = to_numpy(model.background_codes_)
    table = _enrichment(model, Xt, Xb, enrichment, n_permutations, random_state, samples)
    record = _record(model, source=source,
                     n_target=Xt.shape[0], n_background=Xb.shape[0], n_features=cols.size,
                     extra={"groupby": groupby, "background": values, "form": "groupby",
                            "sample_key": sample_key, "enrichment": table})
    _write(adata, key, codes, cols, model.components_, record)
    return adata if copy else None


def _sample_column(adata, sample_key, name):
    """``adata.obs[sample_key]`` as a 1-D array (one sample label per cell)."""
    if not isinstance(sample_key, str):
        raise TypeError(f"sample_key must be the name of a column of obs; got "
                        f"{sample_key!r}.")
    if sample_key not in adata.obs.columns:
        raise KeyError(f"sample_key={sample_key!r} is not a column of {name}.obs; columns: "
                       f"{list(adata.obs.columns)[:20]}.")
    return adata.obs[sample_key].to_numpy()


def _precheck_samples(samples, enabled):
    """Refuse bad sample labels before the fit rather than after it (the few-samples
    warning is left to the enrichment itself)."""
    import warnings

    from .topics import _check_samples

    if not enabled:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _check_samples(samples[0], samples[1], len(samples[0]), len(samples[1]), 1.0)


def _enrichment(model, Xt, Xb, enabled, n_permutations, random_state, samples=None):
    """The topic enrichment table (a DataFrame h5ad can store), or None."""
    if not enabled:
        return None
    from .topics import topic_enrichment

    seed = random_state if isinstance(random_state, (int, np.integer)) else 0
    samples_t, samples_b = (None, None) if samples is None else samples
    table = topic_enrichment(model, Xt, background=Xb, samples=samples_t,
                             background_samples=samples_b, n_permutations=n_permutations,
                             random_state=seed)
    table.index = table.index.astype(str)
    return table


def _fit_two(adata, bdata, model, *, groupby, layer, use_raw, mask_var, min_overlap, key,
             poisson, copy, enrichment=(True, 1000, 0, None), sample_key=None):
    if groupby is not None:
        raise TypeError("With a background AnnData, leave groupby=None (groupby splits one "
                        "object into target and background).")
    _check_adata(bdata, "background")
    cols = _mask_var(adata, mask_var)
    names = np.asarray(adata.var_names)[cols]
    t_pos, b_idx, _ = align_features(names, np.asarray(bdata.var_names),
                                     min_overlap=min_overlap,
                                     min_features=model.n_components
                                     if isinstance(model.n_components, int) else 1)
    t_idx = cols[t_pos]
    Mt, source_t, log1p_t = _anndata_matrix(adata, layer, use_raw, "adata")
    Mb, source_b, log1p_b = _anndata_matrix(bdata, layer, use_raw, "background")
    Xt = take_columns(Mt, t_idx)
    Xb = take_columns(Mb, b_idx)
    if poisson:
        check_poisson_input(Xt, f"adata.{source_t}", log1p_recorded=log1p_t,
                            hint=_poisson_hint(adata, layer, use_raw))
        check_poisson_input(Xb, f"background.{source_b}", log1p_recorded=log1p_b,
                            hint=_poisson_hint(bdata, layer, use_raw))
    Xt, Xb = same_kind(Xt, Xb)
    codes_t = to_numpy(model.fit_transform(Xt, background=Xb))
    if copy:
        adata, bdata = adata.copy(), bdata.copy()
    common = dict(source=source_t, n_target=Xt.shape[0], n_background=Xb.shape[0],
                  n_features=t_idx.size)
    table = _enrichment(model, Xt, Xb, *enrichment)
    _write(adata, key, codes_t, t_idx, model.components_,
           _record(model, **common, extra={"form": "two objects", "role": "target",
                                           "sample_key": sample_key, "enrichment": table}))
    _write(bdata, key, model.background_codes_, b_idx, model.components_,
           _record(model, **common, extra={"form": "two objects", "role": "background",
                                           "sample_key": sample_key,
                                           "enrichment": None if table is None
                                           else table.copy()}))
    return (adata, bdata) if copy else None
