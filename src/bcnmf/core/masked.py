"""Missing values: the multiplicative sweep with an observation mask.

A masked block carries its data with zeros at the missing entries and a
boolean mask ``M`` (True = observed).  Every sum of the model runs over the
observed entries only (weighted multiplicative updates with weights ``M``):

* squared error, divergence ``sum M (A - P)^2`` with ``P = C B``;
  code step ``C <- C * (M*A) B^T / (M*P) B^T``;
  basis parts ``cross = C^T (M*A)`` and ``second = C^T (M*P)`` (K x F);
* generalised KL, divergence ``sum M (a log(a/p) - a + p)`` with
  ``P = C B + offset``; code step ``C <- C * (M*A/P) B^T / M B^T``;
  basis parts ``cross = C^T (M*A/P)`` and ``second = C^T M`` (K x F).

The basis step is the unmasked one with the ``second`` parts already
multiplied out per feature (:func:`basis_terms`): for squared error
``B <- B * (Px + alpha Sy) / (Sx + alpha Py)`` with ``S = C^T (M * C B)``,
for KL ``B <- B * (Px + alpha C_Y^T M_Y) / (C_X^T M_X + alpha Py)``.  With an
all-True mask these are the unmasked updates (the same numbers up to
rounding).  :func:`bcnmf.core.updates.sweep_block` and
:func:`bcnmf.core.updates.basis_terms` dispatch here.

A fit (:func:`bcnmf.core.fit.fit_factors`) adds a weak prior at the missing
entries (:class:`MissingPrior`): each missing entry counts as a pseudo-
observation of the cell-scaled feature mean ``mu_ij = s_i m_j`` with weight
``lambda_j = sigma_j^2 / (sigma_j^2 + tau_j^2)``, where ``sigma_j^2`` is the
model's current mean squared residual on the observed entries of feature
``j`` and ``tau_j^2`` the spread of those entries around ``mu``.  This is the
Gaussian marginal of the missing value (prior ``N(mu, tau^2)``, model noise
``sigma^2``) relative to an observed entry: where the model explains a
feature well the weight goes to 0 (the missing entries are left out), where
it explains little of it (a contrastive fit explains little of most
features) the prediction there is held near the feature's level instead of
being free.  Without it the codes of a cell are ill-posed along any topic
whose mass sits on the cell's missing features: measured on ``mice_protein``
(``benchmarks/missing.py``), cells with 43 of 77 proteins missing
got codes three times the others' and raw-code clustering isolated them, and
with 20% of entries missing at random the clustering fell to ARI 0.
``lambda`` is recomputed from the state entering every sweep (no hidden
state: restarts and checkpoints are unaffected), over the cells of the block
being swept (one block for in-memory data); ``mu`` and ``tau`` come from the
whole matrix.  ``transform`` reuses the fit's :class:`MissingPrior` of the
matrix (kept on the model and saved with it; lambda then comes from the
transformed cells' residuals), so that it gives the fit's codes; a model fitted
on complete data has none, and its ``transform`` solves codes on the observed
entries only.

Dense data only: a masked block is a dense array (sparse input with missing
values is refused at the boundary).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from .blocks import DENSE_CHUNK_ENTRIES, MASKED
from .source import is_out_of_core
from .step import FROBENIUS, Parts, mu_step


class MaskedBlock:
    """A block (:class:`~bcnmf.core.blocks.Block` or a streamed
    :class:`~bcnmf.core.source.StreamBlock`) whose data hold zeros at missing
    entries, with its observation mask.

    Attributes
    ----------
    inner : Block or StreamBlock
        The block of the data.
    mask : ndarray of bool
        True = observed.
    prior : MissingPrior or None
        The prior at the missing entries.
    storage : str, class attribute
        ``"masked"``: swept by :func:`sweep_masked`.
    masked : bool, class attribute
        True.
    resident : bool
        Whether the data are held in memory (that of ``inner``).
    """

    storage: ClassVar[str] = MASKED
    masked: ClassVar[bool] = True

    def __init__(self, inner, mask: np.ndarray, prior: "MissingPrior | None" = None):
        self.inner = inner
        self.mask = mask
        self.prior = prior
        self.resident = inner.resident
        self.prior_terms = None   # cached by :func:`_prior_terms`

    @property
    def data(self):
        return self.inner.data

    @property
    def const(self):
        return self.inner.const

    @property
    def offset(self):
        return self.inner.offset


@dataclass
class MaskedParts(Parts):
    """Basis parts of masked blocks: ``second`` is K x F (see the module)."""

    masked: ClassVar[bool] = True


def observed(A, mask=None):
    """The observation mask of a validated dense matrix: ``mask`` (True =
    observed) and not NaN; ``None`` when no mask was given and nothing is
    missing (the unmasked engine then runs).  Out-of-core sources are not
    scanned here (their blocks are checked as they are read)."""
    if A is None or sp.issparse(A) or not isinstance(A, np.ndarray) or is_out_of_core(A):
        return None if mask is None else np.asarray(mask, dtype=bool)
    nan = np.isnan(A)
    if mask is None:
        return ~nan if nan.any() else None
    return np.asarray(mask, dtype=bool) & ~nan


def filled(A, mask):
    """A copy of ``A`` with zeros at the missing entries (the caller's array
    is never modified)."""
    return np.where(mask, A, 0).astype(A.dtype, copy=False)


def observed_colsum(colsum, mask):
    """Per-feature sums rescaled to the number of cells, as if the missing
    entries held the feature's observed mean (features never observed: 0)."""
    return rescaled_colsum(colsum, mask.sum(axis=0, dtype=np.float64), mask.shape[0])


def rescaled_colsum(colsum, n_obs, n: int):
    """:func:`observed_colsum` from the per-feature observed counts ``n_obs``
    and the number of cells ``n`` (for masks held in parts)."""
    out = np.zeros_like(colsum)
    ok = n_obs > 0
    out[ok] = colsum[ok] * n / n_obs[ok]
    return out


@dataclass(frozen=True)
class MissingPrior:
    """The data-only part of the prior at missing entries (see the module):
    per-feature observed means ``mean`` (m_j) and spreads ``tau2`` (tau_j^2)
    of one matrix."""

    mean: np.ndarray   # F, float64
    tau2: np.ndarray   # F, float64


def row_scale(a, mask, mean):
    """``s_i``: a cell's observed total over the feature means of its observed
    features (1 for a complete average cell; 0 for a cell with nothing
    observed)."""
    ref = mask.astype(np.float64) @ mean
    tot = np.asarray(a.sum(axis=1), dtype=np.float64).ravel()
    return np.where(ref > 0, tot / np.where(ref > 0, ref, 1.0), 0.0)


def missing_prior(A, mask) -> MissingPrior:
    """:class:`MissingPrior` of a dense matrix ``A`` (zeros at the missing
    entries) and its observation mask, in row chunks (float64 sums)."""
    n_obs = mask.sum(axis=0, dtype=np.float64)
    mean = observed_mean(A.sum(axis=0, dtype=np.float64), n_obs)
    return prior_from_sums(mean, spread_sumsq(A, mask, mean), n_obs)


def observed_mean(colsum, n_obs):
    """Per-feature means over the observed entries (``m_j``; 0 for features
    never observed) from the per-feature sums and observed counts."""
    mean = np.zeros(n_obs.shape[0])
    ok = n_obs > 0
    mean[ok] = colsum[ok] / n_obs[ok]
    return mean


def spread_sumsq(A, mask, mean):
    """Per-feature sums of ``(a_ij - s_i m_j)^2`` over the observed entries of
    the rows of ``A`` (zeros at the missing entries), in row chunks: additive
    over row blocks, so a matrix held in parts sums those of its parts."""
    n, f = A.shape
    sq = np.zeros(f)
    step = max(1, DENSE_CHUNK_ENTRIES // max(f, 1))
    for lo in range(0, n, step):
        a, m = A[lo:lo + step], mask[lo:lo + step]
        mu = row_scale(a, m, mean)[:, None] * mean[None, :]
        sq += np.sum(np.where(m, (a - mu) ** 2, 0.0), axis=0)
    return sq


def prior_from_sums(mean, sumsq, n_obs) -> MissingPrior:
    """:class:`MissingPrior` from the observed means, the summed
    :func:`spread_sumsq` and the per-feature observed counts of a matrix."""
    tau2 = np.zeros(mean.shape[0])
    ok = n_obs > 0
    tau2[ok] = sumsq[ok] / n_obs[ok]
    return MissingPrior(mean, tau2)


def _prior_terms(block):
    """Data-only per-block terms of the prior, made on first use and kept (two
    n x F arrays besides the data): the missing indicator (float), ``s_i``
    times it, and the observed count per feature."""
    if block.prior_terms is None:
        a = block.data
        scale = row_scale(a, block.mask, block.prior.mean).astype(a.dtype)
        miss = (~block.mask).astype(a.dtype)
        block.prior_terms = (miss, miss * scale[:, None],
                             block.mask.sum(axis=0, dtype=np.float64))
    return block.prior_terms


def prior_weights(block, codes, view, a_all=None):
    """``(mean * lambda, lambda)`` of a block at the current state (both F):
    the prior's pseudo-observation at a missing entry ``(i, j)`` is ``s_i m_j``
    with weight ``lambda_j``.  ``a_all``: the block's data when already read."""
    if a_all is None:
        a_all = block.data
    if sp.issparse(a_all):
        a_all = a_all.toarray()
    n_obs = _prior_terms(block)[2]
    n, f = a_all.shape
    step = max(1, DENSE_CHUNK_ENTRIES // max(f, 1))
    sq = np.zeros(f)
    for lo in range(0, n, step):
        pred = codes[lo:lo + step] @ view.basis
        if block.offset is not None:
            pred += block.offset
        r = a_all[lo:lo + step] - block.mask[lo:lo + step] * pred   # M * (A - P)
        sq += np.einsum("ij,ij->j", r, r, dtype=np.float64)
    prior = block.prior
    sigma2 = np.where(n_obs > 0, sq / np.maximum(n_obs, 1.0), 0.0)
    total = sigma2 + prior.tau2
    lam = np.where(total > 0, sigma2 / np.where(total > 0, total, 1.0), 0.0)
    dtype = a_all.dtype
    return (prior.mean * lam).astype(dtype), lam.astype(dtype)


#: the prior at missing entries in fits (False: missing entries only left out; kept as a
#: switch for the ablation in benchmarks/missing.py)
PRIOR = True


def fit_prior(A, mask) -> MissingPrior | None:
    """The prior a fit uses for a dense matrix with missing entries (None when
    :data:`PRIOR` is off)."""
    return missing_prior(A, mask) if PRIOR else None


def wrap_blocks(blocks, bounds, mask, prior: MissingPrior | None = None):
    """Masked blocks for the blocks of a scanned source and their row ranges
    (with the prior at missing entries when given)."""
    return [MaskedBlock(b, np.ascontiguousarray(mask[lo:hi]), prior) for b, (lo, hi) in
            zip(blocks, bounds)]


def sweep_masked(block, codes, view, loss, policy, update, want_parts, want_div,
                 entry_offset=None):
    """The kernel of :func:`~bcnmf.core.updates.sweep_block` for a
    :class:`MaskedBlock` (both losses; ``entry_offset`` must be None: topics
    are not held fixed on blocks with missing values)."""
    if entry_offset is not None:
        raise ValueError("a block with missing values takes no entry offset")
    a_all = block.data
    if sp.issparse(a_all):
        a_all = a_all.toarray()
    m_all = block.mask
    n, f = a_all.shape
    k = codes.shape[1]
    lam = None
    if block.prior is not None and (update or want_parts):
        mean_lam, lam = prior_weights(block, codes, view, a_all)
        miss_all, smiss_all, _ = _prior_terms(block)
    step = max(1, DENSE_CHUNK_ENTRIES // max(f, 1))
    div = 0.0
    cross = np.zeros((k, f), dtype=codes.dtype) if want_parts else None
    second = np.zeros((k, f), dtype=codes.dtype) if want_parts else None
    for lo in range(0, n, step):
        a, c = a_all[lo:lo + step], codes[lo:lo + step]
        m = m_all[lo:lo + step]
        w = m.astype(codes.dtype)
        pw = None   # the prior: pseudo-observations mu (weight lambda) at missing entries
        if lam is not None:   # (lambda * mu, lambda) at missing entries, 0 elsewhere
            pw = (smiss_all[lo:lo + step] * mean_lam, miss_all[lo:lo + step] * lam)
        if loss == FROBENIUS:
            d = _frobenius_chunk(a, w, c, view, policy, update, want_parts, cross, second,
                                 pw)
        else:
            d = _kl_chunk(a, w, c, view, block.offset, policy, update, want_parts, want_div,
                          cross, second, pw)
        div = None if d is None or div is None else div + d
    parts = MaskedParts(cross, second) if want_parts else None
    return (None if div is None else max(div, 0.0)), parts


def _frobenius_chunk(a, w, c, view, policy, update, want_parts, cross, second, pw=None):
    """Weighted squared error: weight ``w`` (the mask) on the data and, with a
    prior ``pw = (lambda * mu, lambda)`` (zero at observed entries), weight
    ``lambda`` on the pseudo-observations ``mu``.  The divergence returned is
    that of the observed entries (the data fit, without the prior)."""
    pred = c @ view.basis
    wp = w * pred                      # M * P
    resid = (a - wp).ravel()           # M * (A - P): the data are 0 where missing
    r64 = resid.astype(np.float64, copy=False)
    div = float(np.sum(r64 * r64))     # not BLAS ddot: threaded ddot stalls on loaded machines
    target = a if pw is None else a + pw[0]      # sum of weights x values
    weight = w if pw is None else w + pw[1]
    if update:
        mu_step(c, target @ view.basis_t, (weight * pred) @ view.basis_t, policy,
                policy.code_floor)
    if want_parts:
        cross += c.T @ target
        second += c.T @ (weight * (c @ view.basis))
    return div


def _kl_chunk(a, w, c, view, offset, policy, update, want_parts, want_div, cross, second,
              pw=None):
    """Weighted generalised KL, as :func:`_frobenius_chunk` (the prior's
    pseudo-counts ``mu`` with weight ``lambda``)."""
    eps = policy.eps
    base = c @ view.basis + offset
    pred = base + eps
    div = None
    pos = a > 0
    if want_div:
        ap = a[pos].astype(np.float64)
        div = (float(np.sum(ap * np.log(ap))) - float(np.sum(a, dtype=np.float64))
               - float(np.sum(ap * np.log(pred[pos].astype(np.float64))))
               + float(np.sum(w * base, dtype=np.float64)))
    counts, weight = (a, w) if pw is None else (a + pw[0], w + pw[1])
    pos = counts > 0
    if update:
        ratio = np.where(pos, counts / pred, 0).astype(c.dtype, copy=False)
        mu_step(c, ratio @ view.basis_t, weight @ view.basis_t, policy, policy.code_floor)
    if want_parts:
        pred = c @ view.basis + offset + eps
        cross += c.T @ np.where(pos, counts / pred, 0).astype(c.dtype, copy=False)
        second += c.T @ weight
    return div


def basis_terms(basis, target, background, alpha, loss):
    """:func:`~bcnmf.core.updates.basis_terms` when any part is masked; plain
    parts are multiplied out to the K x F form."""

    def per_feature(parts):
        if isinstance(parts, MaskedParts):
            return parts.second
        if loss == FROBENIUS:
            return parts.second @ basis
        return np.broadcast_to(parts.second[:, None], parts.cross.shape)

    numer = target.cross.copy()
    denom = np.array(per_feature(target), copy=True)
    if background is not None and alpha > 0:
        numer += alpha * per_feature(background)
        denom += alpha * background.cross
    return numer, denom


def start_codes(data, mask, basis):
    """:func:`~bcnmf.core.init.codes_for_basis` on the observed entries: each
    cell's observed mass split evenly over the topics, relative to the basis
    mass on the cell's observed features."""
    k = basis.shape[0]
    rowsum = np.asarray(data.sum(axis=1), dtype=np.float64).ravel()
    bsum = mask.astype(np.float64) @ basis.T.astype(np.float64)   # n x K
    bsum[bsum <= 0] = 1.0
    return np.ascontiguousarray(rowsum[:, None] / (k * bsum), dtype=basis.dtype)
