"""Numba kernels for one multiplicative sweep over the rows of a CSR block.

Each kernel fuses, row by row, the three things a sweep needs from a block of
cells so that the sparse data are read only at their nonzeros:

1. the divergence term of the current state (a by-product of the code
   numerator; the KL log-likelihood is skipped when ``want_div`` is False,
   since the logarithm costs as much as the rest of the sweep),
2. the multiplicative code update of the row,
3. the row's contribution to the basis numerator/denominator parts, computed
   with the *updated* codes (the authors' order: codes first, then basis).

Cache blocking: with many features the rows of ``basis_t`` and of the parts
that the entries of a row touch do not stay in cache (K = 20, 10,000 features:
2 x 1.6 MB per thread).  So a chunk is swept in groups of rows, and within a
group features are visited tile by tile (``tile`` features, see
:func:`tile_features`): the group's code numerators over all tiles, then the
group's code updates, then its parts tile by tile.  Every row's entries and
every feature's rows are still summed in storage order, so the results do not
depend on ``tile`` (bit for bit); only the KL log-likelihood, one running sum
over all entries, is computed untiled (``want_div``).

Rows are split into ``n_chunks`` contiguous chunks processed in parallel; each
chunk scatters into its own slice of the ``cross`` accumulator, which the
caller sums, so there are no races.  The basis is passed transposed
(``basis_t``, n_features x n_components, C-contiguous) so that the loadings of
one feature are contiguous.

Each kernel is written once and compiled in flavours (:func:`kernel`):

* ``parallel`` or serial: small blocks run serially, where starting the
  thread pool (busy-waiting OpenMP threads on an oversubscribed machine)
  costs more than the work;
* specialised on the number of components or generic: a specialised kernel
  sees ``K`` as a compile-time constant, so its loops over components are
  unrolled and vectorised (about 1.5-2x faster).  Generic kernels
  (``K = 0``: read from the basis) serve small blocks, so that odd values of
  K do not each cost a compilation.

Compiled kernels are cached on disk by numba (closure constants are part of
the cache key).
"""

import functools

import numba
import numpy as np

# fast-math without 'nnan'/'ninf' (non-finite values must propagate to be
# detected) and without 'reassoc' (it folds the partial sums of _dot back
# into one dependent chain)
_JIT = dict(nogil=True, cache=True, error_model="numpy",
            fastmath={"nsz", "arcp", "contract", "afn"})


@numba.njit(inline="always")
def _mu(x, num, den, eps, gamma, floor):
    r = num / (den + eps)
    if gamma != 1.0:
        r = max(r, eps) ** gamma
    return max(x * r, floor)


@numba.njit(inline="always")
def _dot(x, y, k):
    """``x[:k] . y[:k]`` with four independent partial sums: a single running
    sum is a chain of k dependent multiply-adds, the critical path of the
    KL sweep."""
    s0 = s1 = s2 = s3 = 0.0
    q = 0
    while q + 4 <= k:
        s0 += x[q] * y[q]
        s1 += x[q + 1] * y[q + 1]
        s2 += x[q + 2] * y[q + 2]
        s3 += x[q + 3] * y[q + 3]
        q += 4
    while q < k:
        s0 += x[q] * y[q]
        q += 1
    return (s0 + s1) + (s2 + s3)


def _make_frobenius(K, parallel):
    @numba.njit(parallel=parallel, **_JIT)
    def frobenius_sweep_csr(data, indices, indptr, codes, basis_t, gram, eps, gamma,
                            floor, update, want_parts, cross, cgram, n_chunks, tile):
        """Squared-error sweep; returns (sum_i <c_i, a_i B^T>, sum_i c_i G c_i^T)
        at the codes *before* the update.  ``gram`` is B B^T."""
        n = codes.shape[0]
        k = K if K > 0 else codes.shape[1]
        n_features = basis_t.shape[0]
        ab_acc = np.zeros(n_chunks)
        quad_acc = np.zeros(n_chunks)
        step = (n + n_chunks - 1) // n_chunks
        for c in numba.prange(n_chunks):
            num = np.empty((_GROUP, k))
            den = np.empty(k)
            cursor = np.empty(_GROUP, dtype=indptr.dtype)
            cr = cross[c]
            cg = cgram[c]
            ab = 0.0
            quad = 0.0
            stop = min(n, (c + 1) * step)
            for g0 in range(c * step, stop, _GROUP):
                g1 = min(stop, g0 + _GROUP)
                # code numerators: features tile by tile (each row's entries
                # are still added in storage order)
                num[:g1 - g0] = 0.0
                for i in range(g0, g1):
                    cursor[i - g0] = indptr[i]
                for f1 in range(tile, n_features + tile, tile):
                    for i in range(g0, g1):
                        nu = num[i - g0]
                        p = cursor[i - g0]
                        end = indptr[i + 1]
                        while p < end and indices[p] < f1:
                            a = data[p]
                            bj = basis_t[indices[p]]
                            for q in range(k):
                                nu[q] += a * bj[q]
                            p += 1
                        cursor[i - g0] = p
                for i in range(g0, g1):
                    ci = codes[i]
                    nu = num[i - g0]
                    for q in range(k):
                        s = 0.0
                        for r in range(k):
                            s += ci[r] * gram[r, q]
                        den[q] = s
                        ab += ci[q] * nu[q]
                        quad += ci[q] * s
                    if update:
                        for q in range(k):
                            ci[q] = _mu(ci[q], nu[q], den[q], eps, gamma, floor)
                    if want_parts:
                        for q in range(k):
                            cq = ci[q]
                            for r in range(k):
                                cg[q, r] += cq * ci[r]
                if want_parts:
                    # basis parts with the new codes, tile by tile (each
                    # feature still receives the rows in order)
                    for i in range(g0, g1):
                        cursor[i - g0] = indptr[i]
                    for f1 in range(tile, n_features + tile, tile):
                        for i in range(g0, g1):
                            ci = codes[i]
                            p = cursor[i - g0]
                            end = indptr[i + 1]
                            while p < end and indices[p] < f1:
                                a = data[p]
                                crj = cr[indices[p]]
                                for q in range(k):
                                    crj[q] += a * ci[q]
                                p += 1
                            cursor[i - g0] = p
            ab_acc[c] = ab
            quad_acc[c] = quad
        return ab_acc.sum(), quad_acc.sum()

    return frobenius_sweep_csr


def _make_kl(K, parallel):
    @numba.njit(parallel=parallel, **_JIT)
    def kl_sweep_csr(data, indices, indptr, codes, basis_t, basis_rowsum, offset, eps,
                     gamma, floor, update, want_parts, want_div, cross, n_chunks, tile,
                     entry_offset):
        """Generalised-KL sweep; returns sum_ij a_ij log(pred_ij) at the codes
        *before* the update (0 unless ``want_div``), where
        pred = C B + offset (offset per feature) + entry_offset (per stored
        entry, when it is not empty).  Only the first ``basis_t.shape[1]``
        columns of ``codes`` are read and updated."""
        n = codes.shape[0]
        k = K if K > 0 else basis_t.shape[1]
        per_entry = entry_offset.shape[0] > 0
        n_features = basis_t.shape[0]
        # the log-likelihood is one running sum in storage order: no tiles then
        tile1 = n_features if want_div else tile
        ll_acc = np.zeros(n_chunks)
        step = (n + n_chunks - 1) // n_chunks
        for c in numba.prange(n_chunks):
            num = np.empty((_GROUP, k))
            cursor = np.empty(_GROUP, dtype=indptr.dtype)
            cr = cross[c]
            ll = 0.0
            stop = min(n, (c + 1) * step)
            for g0 in range(c * step, stop, _GROUP):
                g1 = min(stop, g0 + _GROUP)
                num[:g1 - g0] = 0.0
                for i in range(g0, g1):
                    cursor[i - g0] = indptr[i]
                for f1 in range(tile1, n_features + tile1, tile1):
                    for i in range(g0, g1):
                        ci = codes[i]
                        nu = num[i - g0]
                        p = cursor[i - g0]
                        end = indptr[i + 1]
                        while p < end and indices[p] < f1:
                            a = data[p]
                            j = indices[p]
                            bj = basis_t[j]
                            pred = offset[j] + eps + _dot(ci, bj, k)
                            if per_entry:
                                pred += entry_offset[p]
                            if want_div:
                                ll += a * np.log(pred)
                            ratio = a / pred
                            for q in range(k):
                                nu[q] += ratio * bj[q]
                            p += 1
                        cursor[i - g0] = p
                if update:
                    for i in range(g0, g1):
                        ci = codes[i]
                        nu = num[i - g0]
                        for q in range(k):
                            ci[q] = _mu(ci[q], nu[q], basis_rowsum[q], eps, gamma, floor)
                if want_parts:
                    for i in range(g0, g1):
                        cursor[i - g0] = indptr[i]
                    for f1 in range(tile, n_features + tile, tile):
                        for i in range(g0, g1):
                            ci = codes[i]
                            p = cursor[i - g0]
                            end = indptr[i + 1]
                            while p < end and indices[p] < f1:
                                j = indices[p]
                                bj = basis_t[j]
                                pred = offset[j] + eps + _dot(ci, bj, k)
                                if per_entry:
                                    pred += entry_offset[p]
                                ratio = data[p] / pred
                                crj = cr[j]
                                for q in range(k):
                                    crj[q] += ratio * ci[q]
                                p += 1
                            cursor[i - g0] = p
            ll_acc[c] = ll
        return ll_acc.sum()

    return kl_sweep_csr


def _make_kl_rows(K, parallel):
    """The KL sweep row by row, without feature tiles: when every feature fits
    in one tile the tiled kernel's bookkeeping (row groups, cursors, a bound
    check per entry) costs ~20% of the sweep for nothing.  Same sums in the
    same order, so the same bits (tested)."""
    @numba.njit(parallel=parallel, **_JIT)
    def kl_sweep_csr_rows(data, indices, indptr, codes, basis_t, basis_rowsum, offset, eps,
                          gamma, floor, update, want_parts, want_div, cross, n_chunks, tile,
                          entry_offset):
        n = codes.shape[0]
        k = K if K > 0 else basis_t.shape[1]
        per_entry = entry_offset.shape[0] > 0
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
                    pred = offset[j] + eps + _dot(ci, bj, k)
                    if per_entry:
                        pred += entry_offset[p]
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
                        pred = offset[j] + eps + _dot(ci, bj, k)
                        if per_entry:
                            pred += entry_offset[p]
                        ratio = data[p] / pred
                        crj = cr[j]
                        for q in range(k):
                            crj[q] += ratio * ci[q]
            ll_acc[c] = ll
        return ll_acc.sum()

    return kl_sweep_csr_rows


@numba.njit(parallel=True, **_JIT)
def entry_dots(indices, indptr, codes, first, basis_t, out):
    """``out[p] = codes[i, first:] . basis_t[j]`` for every stored entry ``p``
    of row ``i``, column ``j``: the prediction of some of the topics (the
    columns of ``codes`` from ``first`` on) at the stored entries only."""
    n = indptr.shape[0] - 1
    k = basis_t.shape[1]
    for i in numba.prange(n):
        ci = codes[i, first:]
        for p in range(indptr[i], indptr[i + 1]):
            out[p] = _dot(ci, basis_t[indices[p]], k)


#: rows whose code numerators are gathered together, feature tile by tile
_GROUP = 256
#: bytes of basis and basis parts per feature tile (about half a 1 MiB L2)
_TILE_BYTES = 1 << 19


def tile_features(n_features: int, n_components: int, itemsize: int) -> int:
    """Features per tile: the basis rows and the part rows of one tile stay in
    cache while a group of rows is swept.  Tiling changes no result: every
    row's entries and every feature's rows are still summed in order."""
    return max(64, min(n_features, _TILE_BYTES // max(1, 2 * n_components * itemsize)))


_FACTORIES = {"frobenius": _make_frobenius, "kullback-leibler": _make_kl,
              "kullback-leibler rows": _make_kl_rows}


def kernel(loss: str, parallel: bool, n_components: int = 0, tiled: bool = True):
    """The sweep kernel for ``loss``; ``n_components > 0`` specialises it;
    ``tiled=False`` (KL only) is the row-by-row flavour for data whose
    features all fit in one tile."""
    name = loss if tiled or loss == "frobenius" else loss + " rows"
    return _compiled(name, int(n_components), bool(parallel))


@functools.lru_cache(maxsize=None)
def _compiled(name: str, n_components: int, parallel: bool):
    return _FACTORIES[name](n_components, parallel)
