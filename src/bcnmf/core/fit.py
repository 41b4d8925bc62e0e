"""Fitting pipeline on validated arrays: scale alpha, build blocks, run the
restarts through the engine, pick one.  Shared by :class:`bcnmf.BCNMF` and
:func:`bcnmf.factorize`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..matching import consensus_basis, restart_agreement  # noqa: F401 (re-exported)
from . import guard, masked
from .backend import asarray_like, copy, is_torch, is_torch_sparse, namespace, to_numpy
from .checkpoint import FitCheckpoint
from .init import codes_for_basis, contrastive_basis, initial_factors
from .executor import InMemory
from .result import FactorizationResult
from .shared_count import sample_rows, shared_count
from .solver import (Contrast, SolveOutput, SolverOptions, gauge_scale, normalize_basis,
                     refine_codes, solve)
from .source import (RowSource, Scan, StreamBlock, default_block_rows, kernel_layout,
                     make_blocks, scan)
from .updates import FROBENIUS, Block, StepPolicy, view_basis

#: the authors' denominators: 1e-10 (squared error) and 1e-16 (Poisson)
EPS = {FROBENIUS: 1e-10, "kullback-leibler": 1e-16}
#: stable mode: lower bound of the L1-normalised basis entries
BASIS_FLOOR = 1e-12
#: stable mode: lower bound of codes, relative to the mean cell total
CODE_FLOOR_REL = 1e-12
#: sweeps between recorded objectives: the squared-error objective is a
#: by-product of the sweep; the KL one needs a logarithm per stored entry,
#: which costs as much as the sweep itself
EVAL_EVERY = {FROBENIUS: 1, "kullback-leibler": 10}
#: KL background divergence per background count above which the contrast is
#: said to run away (a sound fit is near or below ~1 nat per count; the
#: bounded stable contrast cannot exceed about log(1 / smoothing))
RUNAWAY_NATS_PER_COUNT = 10.0
#: shared topics (see :func:`shared_basis`): at most this
#: many sweeps of their background NMF (basis-change rule with the fit's ``tol``,
#: 1e-4 when it is 0)
SHARED_MAX_ITER = 200
#: Poisson: the codes on the shared topics are updated every this many sweeps
#: (and at every evaluation) and held fixed in between, when the sweeps visit
#: only the contrastive topics (``SolverOptions.shared_every``; squared error
#: updates them at every held sweep, see :class:`~bcnmf.core.updates.Held`)
SHARED_EVERY = 10


@dataclass(frozen=True)
class FitSettings:
    """Validated, resolved settings of one fit."""

    n_components: int | str   # "auto" until core.alpha_path.settle replaces it
    loss: str
    alpha: float | str   # "auto" until core.alpha_path.settle replaces it
    alpha_scale: str
    mode: str
    init: str
    damping: float | None
    smoothing: float
    max_iter: int
    tol: float
    n_init: int
    code_max_iter: int = 1000
    n_shared: int | str = 0


@dataclass(frozen=True)
class FitState:
    """What a fitted estimator needs from its fit beyond its public attributes,
    to transform new cells and to be saved: the resolved ``settings``, the
    step ``policy``, the prediction ``offsets`` of the target and of the
    background (with shared topics, see :func:`split_offset`) and the
    ``missing_prior`` of each (:class:`~bcnmf.core.masked.MissingPrior` of a
    fit with missing values, else None).  Estimators keep it in
    ``fit_state_``."""

    settings: FitSettings
    policy: StepPolicy
    offsets: tuple = (None, None)
    missing_prior: tuple = (None, None)

    @classmethod
    def of(cls, settings: FitSettings, diag: dict) -> "FitState":
        """The state of a fit from its settings and the engine's diagnostics."""
        return cls(settings, diag["policy"], diag["offsets"],
                   diag.get("missing_prior", (None, None)))


def raw_alpha(x: Scan, y: Scan | None, s: FitSettings) -> float:
    """Convert ``alpha`` to the weight applied to the sums.

    ``alpha_scale="relative"``: ``alpha * S(X) / S(Y)`` with ``S`` the
    squared Frobenius norm (squared error) or the total (KL), so that alpha = 1
    weighs target and background equally whatever their sizes and scales.
    """
    if y is None or s.alpha_scale == "raw":
        return float(s.alpha)
    sy = y.scale(s.loss)
    if sy <= 0:
        raise ValueError("The background is all zeros, so alpha_scale='relative' is "
                         "undefined; pass a non-zero background or alpha_scale='raw'.")
    return float(s.alpha) * x.scale(s.loss) / sy


def step_policy(x: Scan, s: FitSettings) -> StepPolicy:
    gamma = 1.0 if s.damping is None else float(s.damping)
    if s.mode == "reference":
        return StepPolicy(eps=EPS[s.loss], gamma=gamma)
    total = x.total / max(x.shape[0], 1)
    # stable mode is scale-equivariant: the epsilons act as on the data divided by their
    # mean entry m (basis rows have unit L1 norm, codes carry the scale): squared-error code
    # denominators scale as m, its basis denominators as m^2, KL predictions and basis
    # denominators as m.  KL code denominators are basis row sums (about 1) and share the
    # kernel's eps, so for KL the scaling stops at m = 1 (above it an absolute 1e-16 is
    # already negligible).  Floored at the dtype's tiny so that they never vanish.
    m = x.mean_entry if x.mean_entry > 0 else 1.0
    tiny = float(np.finfo(np.float32 if "float32" in str(x.dtype) else np.float64).tiny)
    eps = max(EPS[s.loss] * (m if s.loss == FROBENIUS else min(m, 1.0)), tiny)
    basis_eps = max(EPS[s.loss] * m * m, tiny) if s.loss == FROBENIUS else eps
    return StepPolicy(eps=eps, gamma=gamma,
                      code_floor=CODE_FLOOR_REL * max(total, float(np.finfo(np.float32).tiny)),
                      basis_floor=BASIS_FLOOR, basis_eps=basis_eps)


def contrast_offsets(x: Scan, y: Scan | None, s: FitSettings):
    """Stable Poisson contrast: both predictions get a per-feature floor,
    ``C_X B + mu_X`` and ``C_Y B + mu_Y`` with ``mu_j = smoothing * mean_i A_ij``.

    This bounds the objective below by ``-alpha D(Y | mu_Y)``, which the
    authors' objective lacks (it runs to minus infinity by driving basis
    entries on background features to zero), while keeping the contrast
    symmetric: dropping a feature from the basis costs at most
    ``D(X_j | mu_X,j)`` in the target and gains at most ``alpha D(Y_j | mu_Y,j)``.
    Returns ``(offset_x, offset_y)``, ``(None, None)`` when not applicable.
    """
    if y is None or s.loss == FROBENIUS or s.mode == "reference" or s.smoothing == 0:
        return None, None
    return s.smoothing * x.colsum / x.shape[0], s.smoothing * y.colsum / y.shape[0]


#: the most shared topics ``n_shared="auto"`` fits
MAX_SHARED = 50
#: ``n_shared="auto"`` fits at most one shared topic per this many background cells
CELLS_PER_SHARED = 10


def shared_cap(s: FitSettings, info_y: Scan | None) -> int:
    """The most shared topics a fit can have: none without a background, in
    reference mode or for the unbounded Poisson contrast (``smoothing=0``);
    else at most the background's number of cells and an eighth of the
    features.  The cap keeps the shared topics low-rank next to the
    features: on small problems of low rank (12 planted features of rank 3,
    K = 3) two or three shared topics already make the per-cell codes
    non-unique (``transform`` then lands 3-8 % away from the fitted codes at
    any tolerance), one does not."""
    if info_y is None or s.mode == "reference" or (s.loss != FROBENIUS and s.smoothing <= 0):
        return 0
    return max(0, min(info_y.shape[0], info_y.shape[1] // 8))


def shared_topic_count(s: FitSettings, info_y: Scan | None, sample=None) -> int:
    """Number of shared topics of a fit: ``s.n_shared`` within
    :func:`shared_cap`.  ``"auto"``: twice the background's programs counted
    on a sample of its cells (``sample()``: a host matrix of at most
    :data:`~bcnmf.core.shared_count.MAX_ROWS` background rows, see
    :func:`host_sample`; :func:`~bcnmf.core.shared_count.shared_count`),
    at most one per :data:`CELLS_PER_SHARED` background cells and
    :data:`MAX_SHARED`.  The margin serves the background's NMF, whose only
    job is to span the programs: fitted with exactly as many topics as
    programs it can merge two of them and split another.  Measured with
    ``benchmarks/alpha_robustness.py``: on the cell-type
    simulation (six programs, Poisson, alpha 1.5) seven shared topics score
    ARI 0.34, twelve 0.78 and twenty 0.80."""
    cap = shared_cap(s, info_y)
    if cap == 0:
        return 0
    if s.n_shared == "auto":
        cap = min(cap, MAX_SHARED, max(1, info_y.shape[0] // CELLS_PER_SHARED))
        return min(2 * int(shared_count(sample(), s.loss, cap).count), cap)
    return min(int(s.n_shared), cap)


def host_sample(A, mask=None, block_rows=None, name="background"):
    """The rows of ``A`` that ``n_shared="auto"`` is counted on (of the
    background) and ``alpha="auto"`` is chosen on (of both datasets), as a
    host matrix (numpy or scipy CSR): the rows of
    :func:`~bcnmf.core.shared_count.sample_rows` (at most
    :data:`~bcnmf.core.shared_count.MAX_ROWS`, spread over the whole
    matrix), read one block of ``block_rows`` rows at a time (default: as
    the fit reads them) from any in-memory, out-of-core or torch matrix,
    missing entries (``mask`` False) filled by :func:`fill_missing`."""
    source = RowSource(A, name)
    rows = sample_rows(source.shape[0])
    parts = []
    for lo, hi in source.bounds(default_block_rows(source) if block_rows is None
                                else block_rows):
        take = rows[(rows >= lo) & (rows < hi)]
        if take.size:
            block = source.read(lo, hi)
            if is_torch(block):
                block = block.to_scipy() if is_torch_sparse(block) else to_numpy(block)
            parts.append(block[take - lo])
    sample = sp.vstack(parts, format="csr") if sp.issparse(parts[0]) else np.vstack(parts)
    return sample if mask is None else fill_missing(sample, np.asarray(mask)[rows])


def fill_missing(sample, observed):
    """A dense copy of ``sample`` whose entries outside ``observed`` (and NaN)
    take their feature's mean over the observed entries of the sample (0
    for a feature never observed)."""
    sample = np.array(sample.toarray() if sp.issparse(sample) else sample, dtype=np.float64)
    observed = observed & ~np.isnan(sample)
    counts = observed.sum(axis=0)
    means = np.where(observed, sample, 0.0).sum(axis=0) / np.maximum(counts, 1)
    return np.where(observed, sample, means[None, :])


def shared_basis(blocks_y, info_y: Scan, n_topics: int, s: FitSettings,
                   policy: StepPolicy, like=None):
    """The shared topics of a stable fit with a background: an NMF of the
    background alone with the fit's loss (its prediction floor included for
    Poisson), ``n_topics`` rows with unit L1 norm, from a fixed seed (a
    data-only constant of the fit, like the floor).  Returns ``(basis,
    background_codes)``.

    Both predictions then read ``C B + D G (+ mu)`` with ``G`` fixed and the
    codes ``D`` free per cell: the expression the background shares with the
    target is explained in target cells too, so it no longer drives the
    contrastive topics ``B`` and their codes (docs/model.md).  ``B`` stays
    penalised for whatever the background
    can still use on top of ``G``."""
    basis, cy, _ = initial_factors(info_y, None, n_topics, "random",
                                   np.random.default_rng(0), info_y.dtype)
    if like is not None:
        basis, cy = asarray_like(basis, like), asarray_like(cy, like)
    normalize_basis(basis, [cy], policy.basis_floor)
    opts = shared_options(s, policy)
    out = solve(InMemory(_pairs(blocks_y, info_y, cy), [], s.loss, policy),
                Contrast(basis, opts, False), opts)
    return out.basis, cy


def shared_options(s: FitSettings, policy: StepPolicy) -> SolverOptions:
    """The loop's settings for the shared topics' background NMF."""
    return SolverOptions(loss=s.loss, alpha=0.0, policy=policy, normalize=True,
                         max_iter=SHARED_MAX_ITER, tol=s.tol if s.tol > 0 else 1e-4,
                         eval_every=SHARED_MAX_ITER)


def cell_total_ratio(info_x: Scan, info_y: Scan) -> float:
    """The target's mean cell total over the background's: the factor from the
    mean background code on the shared topics to the target's starting code
    (:func:`_augment`)."""
    return (info_x.total / max(info_x.shape[0], 1)) / max(
        info_y.total / max(info_y.shape[0], 1), float(np.finfo(np.float64).tiny))


def _augment(basis, cx, cy, shared, info_x: Scan, info_y: Scan):
    """Append the fixed shared topics to a run's starting factors: their
    background codes start from the shared fit, the target's from the mean
    background code scaled to the target's mean cell total."""
    g, dy = shared
    xp = namespace(basis)
    mean_dy = xp.mean(dy, axis=0) * cell_total_ratio(info_x, info_y)
    dx = xp.broadcast_to(mean_dy[None, :], (cx.shape[0], dy.shape[1]))
    if is_torch(basis):
        def cat(parts, axis):
            return xp.concat(parts, axis=axis).contiguous()
    else:
        def cat(parts, axis):
            return np.ascontiguousarray(np.concatenate(parts, axis=axis))
    return cat([basis, g], 0), cat([cx, dx], 1), cat([cy, dy], 1)


def _options(s: FitSettings, alpha_raw: float, policy: StepPolicy,
             n_free: int | None = None) -> SolverOptions:
    reference = s.mode == "reference"
    return SolverOptions(loss=s.loss, alpha=alpha_raw, policy=policy,
                         normalize=not reference, max_iter=s.max_iter,
                         tol=0.0 if reference else s.tol,
                         polish_iter=0 if reference else s.code_max_iter,
                         eval_every=EVAL_EVERY[s.loss], n_free=n_free,
                         shared_every=1 if n_free is None else SHARED_EVERY)


@dataclass(frozen=True)
class Prepared:
    """What every engine derives from the scans before its first sweep: the
    raw contrast weight, the step policy, the loop's settings, the number of
    shared topics and the prediction offsets ``(target, background)``."""

    alpha_raw: float
    policy: StepPolicy
    opts: SolverOptions
    n_shared: int
    offsets: tuple


def prepare(info_x: Scan, info_y: Scan | None, s: FitSettings,
            contrast: bool = True, sample=None) -> Prepared:
    """The set-up of a fit from the scans of its data, for every engine and
    variant: relative alpha (:func:`raw_alpha`), step policy
    (:func:`step_policy`), shared topics (:func:`shared_topic_count`) and
    offsets (:func:`contrast_offsets`); ``sample`` gives the background rows
    that ``n_shared="auto"`` is counted on (:func:`shared_topic_count`).
    ``contrast=False`` (models that fit the background instead of
    subtracting it): no contrast weight, no shared topics, no offsets."""
    policy = step_policy(info_x, s)
    if not contrast:
        return Prepared(0.0, policy, _options(s, 0.0, policy), 0, (None, None))
    alpha_raw = raw_alpha(info_x, info_y, s)
    n_shared = shared_topic_count(s, info_y, sample)
    opts = _options(s, alpha_raw, policy, s.n_components if n_shared else None)
    return Prepared(alpha_raw, policy, opts, n_shared, contrast_offsets(info_x, info_y, s))


def _restart_seeds(random_state, n_init):
    if isinstance(random_state, np.random.Generator):
        return random_state.integers(0, 2**31 - 1, size=n_init)
    rs = random_state if isinstance(random_state, np.random.RandomState) \
        else np.random.RandomState(random_state)
    return rs.randint(0, 2**31 - 1, size=n_init)


def _select(objectives, agreement, mode) -> int:
    """Reference: lowest final objective (the authors' rule).  Stable: the
    medoid restart, the one agreeing best with the others (ties, e.g. two
    restarts, broken by the objective), which does not reward a run for
    being more degenerate than the rest."""
    objectives = np.asarray(objectives)
    if mode == "reference" or len(objectives) < 3:
        return int(np.argmin(objectives))
    best = agreement.max()
    tied = np.flatnonzero(agreement >= best - 1e-9)
    return int(tied[np.argmin(objectives[tied])])


def choose_run(bases, objectives, mode: str, consensus: bool = False):
    """The restart a fit returns, for every engine: ``(best, agreement,
    stability, merged)``.  ``bases`` are the restarts' fitted topics (numpy),
    ``objectives`` their final objectives.  ``best`` is :func:`_select`'s
    choice (the medoid restart with ``consensus``); with several restarts,
    ``stability`` is its per-topic agreement with the others and ``merged``
    the consensus basis (:func:`bcnmf.matching.consensus_basis`), else both
    None."""
    agreement = restart_agreement(bases)
    best = _select(objectives, agreement, mode)
    if len(bases) > 1 and consensus:
        best = int(np.argmax(agreement))  # the medoid is the reference
    stability = merged = None
    if len(bases) > 1:
        merged, stability, _ = consensus_basis(bases, reference=best)
    return best, agreement, stability, merged


def _scanned(A, name, loss, block_rows, dtype=None):
    source = RowSource(A, name, dtype)
    rows = default_block_rows(source) if block_rows is None else block_rows
    return source, scan(source, loss, rows)


def _fingerprint(s: FitSettings, info_x: Scan, info_y, alpha_raw, mask_x, mask_y) -> dict:
    """What identifies a fit for :mod:`bcnmf.core.checkpoint` (the data by their
    shapes, dtype, totals and missing entries; the settings, and the engine
    switches that change the iterates: the missing-value prior and the
    shared schedule)."""
    fp = {"settings": repr(s), "alpha_raw": alpha_raw, "dtype": str(info_x.dtype),
          "blocks": [len(info_x.bounds), 0 if info_y is None else len(info_y.bounds)],
          "engine": {"missing_prior": bool(masked.PRIOR), "shared_every": SHARED_EVERY}}
    for name, info, m in (("X", info_x, mask_x), ("background", info_y, mask_y)):
        if info is not None:
            fp[name] = [list(info.shape), info.total, info.sumsq,
                        None if m is None else int(m.sum())]
    return fp


def _pairs(blocks, info: Scan, codes):
    return [(b, codes[lo:hi]) for b, (lo, hi) in zip(blocks, info.bounds)]


def _drawn(init: str) -> str:
    """The drawn start of a restart: ``init="contrastive"`` starts the first
    restart from the contrast's relaxation and the others (and a fit without a
    background or with missing values) from random draws."""
    return "random" if init == "contrastive" else init


def contrastive_start(samples, info_x: Scan, info_y: Scan, s: FitSettings, alpha_raw: float,
                      shared):
    """The contrastive start (:func:`bcnmf.core.init.contrastive_basis`) of a
    fit, computed on the host samples ``(X, Y)`` of its data: the fit's raw
    alpha weighs the samples as it weighs the whole data (a sum over ``n``
    cells is about ``n / n_sample`` times the sample's), and the shared
    topics ``shared`` (``(topics, codes)`` or None) are projected out."""
    sx, sy = samples
    weight = alpha_raw * (sx.shape[0] / info_x.shape[0]) * (info_y.shape[0] / sy.shape[0])
    topics = None if shared is None else to_numpy(shared[0])
    return contrastive_basis(sx, sy, s.n_components, weight, s.loss, topics)


def even_codes(source, info: Scan, basis, mask=None):
    """Starting codes for ``basis`` of every cell of ``source``, block by
    block: each cell's total split evenly over the topics
    (:func:`bcnmf.core.init.codes_for_basis`); with missing values (``mask``
    False, ``source`` zero there) on the observed entries, as ``transform``
    and the Dask engine start them (:func:`bcnmf.core.masked.start_codes`)."""
    parts = []
    for lo, hi in info.bounds:
        block = source.read(lo, hi)
        if is_torch(block):
            block = block.to_scipy() if is_torch_sparse(block) else to_numpy(block)
        parts.append(codes_for_basis(block, basis) if mask is None
                     else masked.start_codes(block, mask[lo:hi], basis))
    return np.ascontiguousarray(np.concatenate(parts, axis=0))


def fit_factors(X, Y, s: FitSettings, random_state=None, init_factors=None,
                callback=None, block_rows=None, mask=None, background_mask=None,
                checkpoint=None, checkpoint_every=10, resume=None, consensus=False):
    """Run ``n_init`` restarts; return ``(FactorizationResult, diagnostics)``.

    ``X`` and ``Y`` are validated in-memory matrices or out-of-core row
    sources (see :mod:`bcnmf.core.source`); they are swept by blocks of
    ``block_rows`` cells (default: one block in memory, about
    ``BLOCK_ENTRIES`` entries per block out of core).  ``diagnostics`` holds
    flags the caller turns into warnings: ``diverged`` (non-finite values
    met), ``converged``, and ``runaway`` (KL background divergence per count
    when it exceeds ``RUNAWAY_NATS_PER_COUNT``, else None), plus the
    ``policy``, the prediction ``offsets`` that ``transform`` reuses (with
    shared topics, see :func:`shared_basis`, each offset is a ``(1 + n, F)``
    array: the floor, then the topics; ``shared_codes`` holds the target's and
    the background's codes on them, else None) and the ``missing_prior``
    (target, background; None for a matrix without missing entries).

    Missing values (dense input): NaN entries of ``X`` and ``Y``, and the
    entries where ``mask`` / ``background_mask`` (True = observed) are False,
    are left out of every sum (:mod:`bcnmf.core.masked`).

    ``checkpoint`` (a path) receives the solver state every
    ``checkpoint_every`` sweeps and on KeyboardInterrupt; ``resume`` (a path)
    continues such a state to exactly the uninterrupted result
    (:mod:`bcnmf.core.checkpoint`).

    With ``n_init > 1`` the per-topic stability of the selected restart (mean
    Hungarian-matched cosine similarity of its topics with the other
    restarts) is returned as ``topic_stability``.  ``consensus=True`` (and
    ``n_init > 1``) returns the consensus instead of one run: every restart is
    matched to the medoid restart, matched topics are averaged
    (:func:`bcnmf.matching.consensus_basis`), and the codes are refined with
    that basis fixed (:func:`refine_codes`, from the medoid's codes); the last
    record of ``history`` then describes the consensus state."""
    mask_x, mask_y = masked.observed(X, mask), masked.observed(Y, background_mask)
    # resource guard: whole-matrix copies that do not fit switch to blocks of cells
    rows_x = guard.block_rows_for(X, "X", block_rows, None, mask_x is not None)
    rows_y = (guard.block_rows_for(Y, "background", block_rows, None, mask_y is not None)
              if Y is not None else None)
    contrastive = init_factors is None and s.init == "contrastive" and Y is not None
    sample_y = functools.cache(lambda: host_sample(Y, mask_y, rows_y))   # read once
    X = X if mask_x is None else masked.filled(X, mask_x)
    Y = Y if mask_y is None else masked.filled(Y, mask_y)
    source_x, info_x = _scanned(X, "X", s.loss, rows_x)
    dtype = info_x.dtype
    source_y, info_y = (_scanned(Y, "background", s.loss, rows_y, dtype) if Y is not None
                        else (None, None))
    for info, m in ((info_x, mask_x), (info_y, mask_y)):
        if m is not None:   # per-feature means over the observed entries
            info.colsum = masked.observed_colsum(info.colsum, m)
    prep = prepare(info_x, info_y, s, sample=sample_y)
    alpha_raw, policy, opts, n_shared = prep.alpha_raw, prep.policy, prep.opts, prep.n_shared
    offset_x, offset_y = prep.offsets
    k = s.n_components
    blocks_x = make_blocks(source_x, info_x, s.loss, offset_x, keep_dense=mask_x is not None)
    blocks_y = (make_blocks(source_y, info_y, s.loss, offset_y, keep_dense=mask_y is not None)
                if Y is not None else [])
    prior_x = masked.fit_prior(X, mask_x) if mask_x is not None else None
    prior_y = masked.fit_prior(Y, mask_y) if mask_y is not None else None
    if mask_x is not None:
        blocks_x = masked.wrap_blocks(blocks_x, info_x.bounds, mask_x, prior_x)
    if mask_y is not None:
        blocks_y = masked.wrap_blocks(blocks_y, info_y.bounds, mask_y, prior_y)
    shared = None
    if n_shared:
        like = source_x.read(0, 1) if is_torch(X) else None
        shared = shared_basis(blocks_y, info_y, n_shared, s, policy, like)
    runs = []
    seeds = _restart_seeds(random_state, s.n_init)
    ckpt = None
    if checkpoint is not None or resume is not None:
        if is_torch(X):
            raise ValueError("checkpoint= and resume= need the numpy backend; fit without a "
                             "torch device, or without checkpoints.")
        ckpt = FitCheckpoint(checkpoint, checkpoint_every, resume,
                             _fingerprint(s, info_x, info_y, alpha_raw, mask_x, mask_y), seeds)
        seeds = ckpt.seeds
    for r, seed in enumerate(seeds):
        if ckpt is not None and r < len(ckpt.runs):   # finished before the checkpoint
            saved = ckpt.runs[r]
            runs.append((SolveOutput(saved["basis"], saved["history"], saved["n_iter"],
                                     saved["converged"], saved["diverged"]),
                         saved["cx"], saved["cy"]))
            continue
        if init_factors is not None:
            basis, cx, cy = (None if a is None else np.array(to_numpy(a), dtype=dtype,
                                                             order="C")
                             for a in init_factors)
        elif contrastive and r == 0:
            # missing entries: filled by their feature's observed mean in the samples, left
            # out of the starting codes
            samples = (host_sample(X, mask_x, rows_x, "X"), sample_y())
            basis = np.ascontiguousarray(contrastive_start(samples, info_x, info_y, s, alpha_raw,
                                                           shared), dtype=dtype)
            cx, cy = (even_codes(src, info, basis, m) for src, info, m in
                      ((source_x, info_x, mask_x), (source_y, info_y, mask_y)))
        else:
            basis, cx, cy = initial_factors(info_x, info_y, s.n_components, _drawn(s.init),
                                            np.random.default_rng(seed), dtype)
        if is_torch(X):   # drawn on the host (same seeds as numpy), then moved
            like = source_x.read(0, 1)   # a torch block (also for OnDevice sources)
            basis, cx, cy = (asarray_like(a, like) for a in (basis, cx, cy))
        if opts.normalize:
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught by solve
                normalize_basis(basis, [c for c in (cx, cy) if c is not None],
                                policy.basis_floor)
        if shared is not None:
            basis, cx, cy = _augment(basis, cx, cy, shared, info_x, info_y)
        background = _pairs(blocks_y, info_y, cy) if Y is not None else []
        out = solve(InMemory(_pairs(blocks_x, info_x, cx), background, s.loss, policy),
                    Contrast(basis, opts, Y is not None), opts, callback=callback,
                    checkpoint=None if ckpt is None else ckpt.solver())
        runs.append((out, cx, cy))
        if ckpt is not None:
            ckpt.finished(out, cx, cy)
    objectives = np.array([o.history["objective"][-1] for o, _, _ in runs])
    best, agreement, stability, merged = choose_run(
        [to_numpy(o.basis[:k]) for o, _, _ in runs], objectives, s.mode, consensus)
    out, cx, cy = runs[best]
    if merged is not None and consensus:
        background = _pairs(blocks_y, info_y, cy) if cy is not None else []
        consensus_state(out, merged, InMemory(_pairs(blocks_x, info_x, cx), background, s.loss,
                                              policy), opts, s)
    components, shared_codes = out.basis, None
    if shared is not None:   # the model's shared topics travel with its offsets
        offset_x, offset_y = (_stack_offset(o, shared[0]) for o in (offset_x, offset_y))
        shared_codes = (copy(cx[:, k:]), copy(cy[:, k:]))
        components, cx, cy = (copy(a) for a in (out.basis[:k], cx[:, :k], cy[:, :k]))
    return finish(out, components, cx, cy, alpha_raw, (objectives, agreement, best, stability),
                  info_y, s, offsets=(offset_x, offset_y), policy=policy,
                  missing_prior=(prior_x, prior_y), shared_codes=shared_codes)


def finish(out, components, codes, background_codes, alpha_raw, restarts, info_y, s, **diag):
    """``(FactorizationResult, diagnostics)`` of the selected run ``out`` (a
    :class:`~bcnmf.core.solver.SolveOutput`), for every engine.  ``restarts``:
    ``(objectives, agreement, best, stability)``; ``diag``: the engine's extra
    diagnostics (offsets, policy, ...)."""
    objectives, agreement, best, stability = restarts
    result = FactorizationResult(
        components=components, codes=codes, background_codes=background_codes,
        history=out.history, n_iter=out.n_iter, alpha_raw=alpha_raw, converged=out.converged,
        restart_objectives=objectives, restart_agreement=agreement, best_restart=best,
        topic_stability=stability)
    runaway = runaway_per_count(out.history, info_y, s, alpha_raw)
    return result, {"diverged": out.diverged, "converged": out.converged,
                    "runaway": runaway, **diag}


def _stack_offset(offset, g):
    """A model's prediction offset with shared topics: a ``(1 + n, F)``
    array, the per-feature floor then the fixed topics (see
    :func:`split_offset`)."""
    g = to_numpy(g)
    offset = np.zeros(g.shape[1], g.dtype) if offset is None else offset
    return np.ascontiguousarray(np.vstack([np.asarray(offset, dtype=g.dtype)[None, :], g]))


def split_offset(offset):
    """``(floor, shared)`` of a model's prediction offset: a per-feature
    floor (or None) and the fixed shared topics (``(n, F)`` or None)."""
    if offset is None or np.ndim(offset) == 1:
        return offset, None
    return offset[0], offset[1:]


def runaway_per_count(history, info_y: Scan | None, s: FitSettings, alpha_raw: float):
    """KL background divergence per background count when it exceeds
    ``RUNAWAY_NATS_PER_COUNT`` (the contrast is running away), else None."""
    if info_y is None or s.loss == FROBENIUS or alpha_raw <= 0:
        return None
    total = info_y.total
    per_count = history["background"][-1] / total if total > 0 else 0.0
    return per_count if per_count > RUNAWAY_NATS_PER_COUNT else None


def consensus_state(out, merged, executor, opts: SolverOptions, s: FitSettings) -> None:
    """Replace the reference run's basis by the consensus basis (in place) and
    refine the codes with it fixed, on the run's executor (any engine); the
    final record of ``out.history`` is replaced by the new state."""
    k = merged.shape[0]
    out.basis[:k] = asarray_like(merged, out.basis)
    if opts.normalize:
        scale = gauge_scale(out.basis[:k], opts.policy.basis_floor)
        executor.scale("target", scale)
        executor.scale("background", scale)
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        executor.refine(out.basis, out.basis, s.code_max_iter, s.tol if s.tol > 0 else 1e-4)
        dx, dy = executor.evaluate(out.basis, out.basis)
    record = Contrast(out.basis, opts, executor.has_background).record(dx, dy, {})
    history = {k: np.array(v, copy=True) for k, v in out.history.items()}
    for name, value in record.items():
        history[name][-1] = value
    out.history = history


def transform_codes(A, basis, s: FitSettings, policy: StepPolicy, offset, max_iter: int,
                    tol: float, block_rows=None, mask=None, prior=None, full=False):
    """Codes of new cells with the basis fixed (a convex problem per cell),
    from a deterministic start, with the prediction offset of the model they
    belong to (stable Poisson with a background; else None).  ``A`` is an
    in-memory matrix or an out-of-core source, swept by blocks as in
    :func:`fit_factors`.  Stops when the relative L1 change of the codes is at
    most ``tol`` (see :func:`refine_codes`).  Returns ``(codes, n_iter)``.
    Missing entries (NaN, or ``mask`` False) are left out: codes are solved
    on the observed entries, with the fit's prior at missing entries when
    ``prior`` (a :class:`~bcnmf.core.masked.MissingPrior`) is given.  With
    shared topics in ``offset`` (see :func:`split_offset`) their codes are
    solved too and dropped, unless ``full`` (then the codes on the shared
    topics follow the others)."""
    obs = masked.observed(A, mask)
    block_rows = guard.block_rows_for(A, "X", block_rows, basis.dtype, obs is not None)
    A = A if obs is None else masked.filled(A, obs)
    source = RowSource(A, "X")
    rows = default_block_rows(source) if block_rows is None else block_rows
    k = basis.shape[0]
    offset, shared = split_offset(offset)
    if shared is not None:   # solve the shared codes too, return the contrastive ones
        xp = namespace(basis)
        g = asarray_like(shared, basis)
        basis = xp.concat([basis, g], axis=0) if is_torch(basis) else \
            np.ascontiguousarray(np.concatenate([basis, np.asarray(g, dtype=basis.dtype)]))
    if offset is None and s.loss != FROBENIUS:
        offset = np.zeros(source.shape[1], dtype=source.dtype)
    offset = asarray_like(offset, basis)
    xp = namespace(basis)
    codes = xp.empty((source.shape[0], basis.shape[0]), dtype=basis.dtype,
                     device=getattr(basis, "device", None))
    pairs = []
    for lo, hi in source.bounds(rows):
        data = source.read(lo, hi, check=True)
        codes[lo:hi] = codes_for_basis(data, basis)
        if rows is None and obs is None:
            data = kernel_layout(data, s.loss)   # as make_blocks keeps it
        block = (Block(data, 0.0, offset) if rows is None
                 else StreamBlock(source, lo, hi, 0.0, offset))
        if obs is not None:
            block = masked.MaskedBlock(block, np.ascontiguousarray(obs[lo:hi]), prior)
            codes[lo:hi] = masked.start_codes(data, obs[lo:hi], basis)
        pairs.append((block, codes[lo:hi]))
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        n_iter = refine_codes(pairs, view_basis(basis, s.loss), s.loss, policy, max_iter, tol)
    if shared is not None and not full:
        codes = copy(codes[:, :k])
    return codes, n_iter
