"""Numba kernels for one multiplicative sweep over the rows of a CSR block.

Each kernel fuses, row by row, the three things a sweep needs from a block of
cells so that the sparse data are read only at their nonzeros:

1. the divergence term of the current state (free by-product of the code
   numerator),
2. the multiplicative code update of the row,
3. the row's contribution to the basis numerator/denominator parts, computed
   with the *updated* codes (the authors' order: codes first, then basis).

Rows are split into ``n_chunks`` contiguous chunks processed in parallel; each
chunk scatters into its own slice of the ``cross`` accumulator, which the
caller sums, so there are no races.  The basis is passed transposed
(``basis_t``, n_features x n_components, C-contiguous) so that the loadings of
one feature are contiguous.
"""

import numba
import numpy as np

_JIT = dict(nogil=True, cache=True)


@numba.njit(inline="always")
def _mu(x, num, den, eps, gamma, floor):
    r = num / (den + eps)
    if gamma != 1.0:
        r = max(r, eps) ** gamma
    return max(x * r, floor)


@numba.njit(parallel=True, **_JIT)
def frobenius_sweep_csr(data, indices, indptr, codes, basis_t, gram, eps, gamma,
                        floor, update, want_parts, cross, cgram, n_chunks):
    """Squared-error sweep; returns (sum_i <c_i, a_i B^T>, sum_i c_i G c_i^T)
    at the codes *before* the update.  ``gram`` is B B^T."""
    n, k = codes.shape
    ab_acc = np.zeros(n_chunks)
    quad_acc = np.zeros(n_chunks)
    step = (n + n_chunks - 1) // n_chunks
    for c in numba.prange(n_chunks):
        num = np.empty(k)
        den = np.empty(k)
        lo = c * step
        hi = min(n, lo + step)
        ab = 0.0
        quad = 0.0
        for i in range(lo, hi):
            for q in range(k):
                num[q] = 0.0
            for p in range(indptr[i], indptr[i + 1]):
                a = data[p]
                j = indices[p]
                for q in range(k):
                    num[q] += a * basis_t[j, q]
            for q in range(k):
                s = 0.0
                for r in range(k):
                    s += codes[i, r] * gram[r, q]
                den[q] = s
                ab += codes[i, q] * num[q]
                quad += codes[i, q] * s
            if update:
                for q in range(k):
                    codes[i, q] = _mu(codes[i, q], num[q], den[q], eps, gamma, floor)
            if want_parts:
                for p in range(indptr[i], indptr[i + 1]):
                    a = data[p]
                    j = indices[p]
                    for q in range(k):
                        cross[c, j, q] += a * codes[i, q]
                for q in range(k):
                    cq = codes[i, q]
                    for r in range(k):
                        cgram[c, q, r] += cq * codes[i, r]
        ab_acc[c] = ab
        quad_acc[c] = quad
    return ab_acc.sum(), quad_acc.sum()


@numba.njit(parallel=True, **_JIT)
def kl_sweep_csr(data, indices, indptr, codes, basis_t, basis_rowsum, offset, eps,
                 gamma, floor, update, want_parts, cross, n_chunks):
    """Generalised-KL sweep; returns sum_ij a_ij log(pred_ij) at the codes
    *before* the update, where pred = C B + offset (offset per feature)."""
    n, k = codes.shape
    ll_acc = np.zeros(n_chunks)
    step = (n + n_chunks - 1) // n_chunks
    for c in numba.prange(n_chunks):
        num = np.empty(k)
        lo = c * step
        hi = min(n, lo + step)
        ll = 0.0
        for i in range(lo, hi):
            for q in range(k):
                num[q] = 0.0
            for p in range(indptr[i], indptr[i + 1]):
                a = data[p]
                j = indices[p]
                pred = offset[j]
                for q in range(k):
                    pred += codes[i, q] * basis_t[j, q]
                pred += eps
                ll += a * np.log(pred)
                ratio = a / pred
                for q in range(k):
                    num[q] += ratio * basis_t[j, q]
            if update:
                for q in range(k):
                    codes[i, q] = _mu(codes[i, q], num[q], basis_rowsum[q], eps, gamma, floor)
            if want_parts:
                for p in range(indptr[i], indptr[i + 1]):
                    a = data[p]
                    j = indices[p]
                    pred = offset[j]
                    for q in range(k):
                        pred += codes[i, q] * basis_t[j, q]
                    ratio = a / (pred + eps)
                    for q in range(k):
                        cross[c, j, q] += ratio * codes[i, q]
        ll_acc[c] = ll
    return ll_acc.sum()
