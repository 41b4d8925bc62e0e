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

Dense data only: a masked block is a dense array (sparse input with missing
values is refused at the boundary).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .source import is_out_of_core
from .updates import _DENSE_CHUNK_ENTRIES, FROBENIUS, Parts, mu_step


class MaskedBlock:
    """A block (:class:`~bcnmf.core.updates.Block` or a streamed block) whose
    data hold zeros at missing entries, with ``mask`` (bool, True = observed)."""

    def __init__(self, inner, mask: np.ndarray):
        self.inner = inner
        self.mask = mask

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

    mask_parts = True   # marks these parts for updates.basis_terms


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
    n_obs = mask.sum(axis=0, dtype=np.float64)
    n = mask.shape[0]
    out = np.zeros_like(colsum)
    ok = n_obs > 0
    out[ok] = colsum[ok] * n / n_obs[ok]
    return out


def wrap_blocks(blocks, bounds, mask):
    """Masked blocks for the blocks of a scanned source and their row ranges."""
    return [MaskedBlock(b, np.ascontiguousarray(mask[lo:hi])) for b, (lo, hi) in
            zip(blocks, bounds)]


def sweep_masked(block, codes, view, loss, policy, update, want_parts, want_div):
    """:func:`~bcnmf.core.updates.sweep_block` for a :class:`MaskedBlock`."""
    a_all = block.data
    if sp.issparse(a_all):
        a_all = a_all.toarray()
    m_all = block.mask
    n, f = a_all.shape
    k = codes.shape[1]
    step = max(1, _DENSE_CHUNK_ENTRIES // max(f, 1))
    div = 0.0
    cross = np.zeros((k, f), dtype=codes.dtype) if want_parts else None
    second = np.zeros((k, f), dtype=codes.dtype) if want_parts else None
    for lo in range(0, n, step):
        a, c = a_all[lo:lo + step], codes[lo:lo + step]
        w = m_all[lo:lo + step].astype(codes.dtype)
        if loss == FROBENIUS:
            d = _frobenius_chunk(a, w, c, view, policy, update, want_parts, cross, second)
        else:
            d = _kl_chunk(a, w, c, view, block.offset, policy, update, want_parts, want_div,
                          cross, second)
        div = None if d is None or div is None else div + d
    parts = MaskedParts(cross, second) if want_parts else None
    return (None if div is None else max(div, 0.0)), parts


def _frobenius_chunk(a, w, c, view, policy, update, want_parts, cross, second):
    wp = w * (c @ view.basis)          # M * P
    resid = (a - wp).ravel()           # M * (A - P): the data are 0 where missing
    r64 = resid.astype(np.float64, copy=False)
    div = float(np.sum(r64 * r64))     # not BLAS ddot: threaded ddot stalls on loaded machines
    if update:
        mu_step(c, a @ view.basis_t, wp @ view.basis_t, policy, policy.code_floor)
    if want_parts:
        cross += c.T @ a
        second += c.T @ (w * (c @ view.basis))
    return div


def _kl_chunk(a, w, c, view, offset, policy, update, want_parts, want_div, cross, second):
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
    if update:
        ratio = np.where(pos, a / pred, 0).astype(c.dtype, copy=False)
        mu_step(c, ratio @ view.basis_t, w @ view.basis_t, policy, policy.code_floor)
    if want_parts:
        pred = c @ view.basis + offset + eps
        cross += c.T @ np.where(pos, a / pred, 0).astype(c.dtype, copy=False)
        second += c.T @ w
    return div


def basis_terms(basis, target, background, alpha, loss):
    """:func:`~bcnmf.core.updates.basis_terms` when any part is masked; plain
    parts are multiplied out to the K x F form."""

    def per_feature(parts):
        if isinstance(parts, MaskedParts):
            return parts.second
        if loss == FROBENIUS:
            return parts.second @ basis
        return np.broadcast_to(parts.second[:, None], basis.shape)

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
