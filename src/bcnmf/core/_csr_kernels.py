"""Numba kernels for one multiplicative sweep over the rows of a CSR block.

Each kernel fuses, row by row, the three things a sweep needs from a block of
cells so that the sparse data are read only at their nonzeros:

1. the divergence term of the current state (a by-product of the code
   numerator; the KL log-likelihood is skipped when ``want_div`` is False),
2. the multiplicative code update of the row,
3. the row's contribution to the basis numerator/denominator parts, computed
   with the *updated* codes (the authors' order: codes first, then basis).

Rows are split into ``n_chunks`` contiguous chunks processed in parallel; each
chunk scatters into its own slice of the ``cross`` accumulator, which the
caller sums, so there are no races.  Each kernel is compiled twice: a
parallel version for large blocks and a serial one (``*_serial``) for small
blocks, where starting the thread pool (busy-waiting OpenMP threads on an
oversubscribed machine) costs more than the work.  The basis is passed transposed
(``basis_t``, n_features x n_components, C-contiguous) so that the loadings of
one feature are contiguous.
"""

import numba
import numpy as np

_JIT = dict(nogil=True, cache=True, fastmath=True, error_model="numpy")


@numba.njit(inline="always")
def _mu(x, num, den, eps, gamma, floor):
    r = num / (den + eps)
    if gamma != 1.0:
        r = max(r, eps) ** gamma
    return max(x * r, floor)


def _frobenius_sweep_csr(data, indices, indptr, codes, basis_t, gram, eps, gamma,
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
        cr = cross[c]
        cg = cgram[c]
        ab = 0.0
        quad = 0.0
        for i in range(c * step, min(n, (c + 1) * step)):
            ci = codes[i]
            num[:] = 0.0
            for p in range(indptr[i], indptr[i + 1]):
                a = data[p]
                bj = basis_t[indices[p]]
                for q in range(k):
                    num[q] += a * bj[q]
            for q in range(k):
                s = 0.0
                for r in range(k):
                    s += ci[r] * gram[r, q]
                den[q] = s
                ab += ci[q] * num[q]
                quad += ci[q] * s
            if update:
                for q in range(k):
                    ci[q] = _mu(ci[q], num[q], den[q], eps, gamma, floor)
            if want_parts:
                for p in range(indptr[i], indptr[i + 1]):
                    a = data[p]
                    crj = cr[indices[p]]
                    for q in range(k):
                        crj[q] += a * ci[q]
                for q in range(k):
                    cq = ci[q]
                    for r in range(k):
                        cg[q, r] += cq * ci[r]
        ab_acc[c] = ab
        quad_acc[c] = quad
    return ab_acc.sum(), quad_acc.sum()


def _kl_sweep_csr(data, indices, indptr, codes, basis_t, basis_rowsum, offset, eps,
                 gamma, floor, update, want_parts, want_div, cross, n_chunks):
    """Generalised-KL sweep; returns sum_ij a_ij log(pred_ij) at the codes
    *before* the update (0 unless ``want_div``), where
    pred = C B + offset (offset per feature)."""
    n, k = codes.shape
    ll_acc = np.zeros(n_chunks)
    step = (n + n_chunks - 1) // n_chunks
    for c in numba.prange(n_chunks):
        num = np.empty(k)
        cr = cross[c]
        ll = 0.0
        for i in range(c * step, min(n, (c + 1) * step)):
            ci = codes[i]
            num[:] = 0.0
            for p in range(indptr[i], indptr[i + 1]):
                a = data[p]
                j = indices[p]
                bj = basis_t[j]
                pred = offset[j] + eps
                for q in range(k):
                    pred += ci[q] * bj[q]
                if want_div:
                    ll += a * np.log(pred)
                ratio = a / pred
                for q in range(k):
                    num[q] += ratio * bj[q]
            if update:
                for q in range(k):
                    ci[q] = _mu(ci[q], num[q], basis_rowsum[q], eps, gamma, floor)
            if want_parts:
                for p in range(indptr[i], indptr[i + 1]):
                    j = indices[p]
                    bj = basis_t[j]
                    pred = offset[j] + eps
                    for q in range(k):
                        pred += ci[q] * bj[q]
                    ratio = data[p] / pred
                    crj = cr[j]
                    for q in range(k):
                        crj[q] += ratio * ci[q]
        ll_acc[c] = ll
    return ll_acc.sum()


frobenius_sweep_csr = numba.njit(parallel=True, **_JIT)(_frobenius_sweep_csr)
frobenius_sweep_csr_serial = numba.njit(parallel=False, **_JIT)(_frobenius_sweep_csr)
kl_sweep_csr = numba.njit(parallel=True, **_JIT)(_kl_sweep_csr)
kl_sweep_csr_serial = numba.njit(parallel=False, **_JIT)(_kl_sweep_csr)
