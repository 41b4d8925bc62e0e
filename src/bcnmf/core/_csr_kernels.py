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
  K do not each cost a compilation.  The kernels are source templates
  (:func:`_expand`): specialised, they also hold a row's codes and
  numerators in scalar locals rather than arrays, which the compiler cannot
  keep in registers (another 1.3-1.4x on the KL sweep).

Compiled kernels are cached on disk by numba (:func:`_compile_template`).
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


# The kernels are written once, as templates, and expanded per number of
# components (:func:`_expand`): a specialised kernel keeps the row's codes and
# numerators in scalar locals (registers) instead of arrays that every entry
# loads and stores (measured: a held sweep of the speed workload, K = 10 and
# 3,000 features, 0.019 -> 0.014 s); the generic kernel loops over arrays.
# Both add the same terms in the same order (equal to rounding, tested).

# Squared-error sweep; returns (sum_i <c_i, a_i B^T>, sum_i c_i G c_i^T) at the
# codes *before* the update.  ``gram`` is B B^T.  Only the first k columns of
# ``codes`` are read and updated; ``den_offset`` (n x k, or 0 x 0 for none) is
# added to their denominators.
_FROBENIUS = """
def {name}(data, indices, indptr, codes, basis_t, gram, eps, gamma, floor, update,
           want_parts, cross, cgram, n_chunks, tile, den_offset):
    n = codes.shape[0]
    has_offset = den_offset.shape[0] > 0
    k = {k}
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
                    {load_n}
                    p = cursor[i - g0]
                    end = indptr[i + 1]
                    while p < end and indices[p] < f1:
                        a = data[p]
                        bj = basis_t[indices[p]]
                        {load_b}
                        {acc_n}
                        p += 1
                    {store_n}
                    cursor[i - g0] = p
            for i in range(g0, g1):
                ci = codes[i]
                nu = num[i - g0]
                for q in range(k):
                    s = 0.0
                    for r in range(k):
                        s += ci[r] * gram[r, q]
                    den[q] = s + den_offset[i, q] if has_offset else s
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
                        {load_c}
                        p = cursor[i - g0]
                        end = indptr[i + 1]
                        while p < end and indices[p] < f1:
                            a = data[p]
                            crj = cr[indices[p]]
                            {acc_cross}
                            p += 1
                        cursor[i - g0] = p
        ab_acc[c] = ab
        quad_acc[c] = quad
    return ab_acc.sum(), quad_acc.sum()
"""


# Generalised-KL sweep; returns sum_ij a_ij log(pred_ij) at the codes *before*
# the update (0 unless ``want_div``), where pred = C B + offset (offset per
# feature) + entry_offset (per stored entry, when it is not empty).  Only the
# first ``basis_t.shape[1]`` columns of ``codes`` are read and updated.
_KL_TILED = """
def {name}(data, indices, indptr, codes, basis_t, basis_rowsum, offset, eps,
           gamma, floor, update, want_parts, want_div, cross, n_chunks, tile,
           entry_offset):
    n = codes.shape[0]
    k = {k}
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
                    {load_c}
                    {load_n}
                    p = cursor[i - g0]
                    end = indptr[i + 1]
                    while p < end and indices[p] < f1:
                        a = data[p]
                        j = indices[p]
                        bj = basis_t[j]
                        {load_b}
                        pred = offset[j] + eps + {dot}
                        if per_entry:
                            pred += entry_offset[p]
                        if want_div:
                            ll += a * np.log(pred)
                        ratio = a / pred
                        {acc_n}
                        p += 1
                    {store_n}
                    cursor[i - g0] = p
            if update:
                for i in range(g0, g1):
                    ci = codes[i]
                    nu = num[i - g0]
                    {load_c}
                    {load_n}
                    {update}
            if want_parts:
                for i in range(g0, g1):
                    cursor[i - g0] = indptr[i]
                for f1 in range(tile, n_features + tile, tile):
                    for i in range(g0, g1):
                        ci = codes[i]
                        {load_c}
                        p = cursor[i - g0]
                        end = indptr[i + 1]
                        while p < end and indices[p] < f1:
                            j = indices[p]
                            bj = basis_t[j]
                            {load_b}
                            pred = offset[j] + eps + {dot}
                            if per_entry:
                                pred += entry_offset[p]
                            ratio = data[p] / pred
                            crj = cr[j]
                            {acc_cross}
                            p += 1
                        cursor[i - g0] = p
        ll_acc[c] = ll
    return ll_acc.sum()
"""

# The KL sweep row by row, without feature tiles: when every feature fits in
# one tile the tiled kernel's bookkeeping (row groups, cursors, a bound check
# per entry) costs ~20% of the sweep for nothing.  Same sums in the same
# order, so the same bits (tested).
_KL_ROWS = """
def {name}(data, indices, indptr, codes, basis_t, basis_rowsum, offset, eps,
           gamma, floor, update, want_parts, want_div, cross, n_chunks, tile,
           entry_offset):
    n = codes.shape[0]
    k = {k}
    per_entry = entry_offset.shape[0] > 0
    ll_acc = np.zeros(n_chunks)
    step = (n + n_chunks - 1) // n_chunks
    for c in numba.prange(n_chunks):
        nu = np.empty(k)
        cr = cross[c]
        ll = 0.0
        for i in range(c * step, min(n, (c + 1) * step)):
            ci = codes[i]
            {load_c}
            {zero_n}
            for p in range(indptr[i], indptr[i + 1]):
                a = data[p]
                j = indices[p]
                bj = basis_t[j]
                {load_b}
                pred = offset[j] + eps + {dot}
                if per_entry:
                    pred += entry_offset[p]
                if want_div:
                    ll += a * np.log(pred)
                ratio = a / pred
                {acc_n}
            if update:
                {update}
            if want_parts:
                for p in range(indptr[i], indptr[i + 1]):
                    j = indices[p]
                    bj = basis_t[j]
                    {load_b}
                    pred = offset[j] + eps + {dot}
                    if per_entry:
                        pred += entry_offset[p]
                    ratio = data[p] / pred
                    crj = cr[j]
                    {acc_cross}
        ll_acc[c] = ll
    return ll_acc.sum()
"""


def _dot_unrolled(k: int) -> str:
    """The sum :func:`_dot` computes, written out over the locals ``c{q}``,
    ``b{q}`` (the same four partial sums, added in the same order)."""
    partial = [[], [], [], []]
    for q in range(k):
        partial[q % 4 if q < k - k % 4 else 0].append(f"c{q} * b{q}")
    sums = []
    for terms in partial:
        expr = "0.0"
        for t in terms:
            expr = f"({expr} + {t})"
        sums.append(expr)
    return f"(({sums[0]} + {sums[1]}) + ({sums[2]} + {sums[3]}))"


def _expand(template: str, name: str, k: int, weight: str) -> str:
    """Source of one kernel: ``k > 0`` unrolls the loops over components into
    scalar locals, ``k = 0`` loops over arrays (K read from the basis).
    ``weight`` names the per-entry factor of the accumulations (the Poisson
    ratio, or the stored value for squared error)."""
    def each(fmt):
        return "; ".join(fmt.format(q=q) for q in range(k))

    if k == 0:
        macros = dict(
            k="basis_t.shape[1]", load_c="pass", load_b="pass", load_n="pass",
            store_n="pass", zero_n="nu[:] = 0.0", dot="_dot(ci, bj, k)",
            acc_n=f"for q in range(k): nu[q] += {weight} * bj[q]",
            acc_cross=f"for q in range(k): crj[q] += {weight} * ci[q]",
            update="for q in range(k): "
                   "ci[q] = _mu(ci[q], nu[q], basis_rowsum[q], eps, gamma, floor)")
    else:
        macros = dict(
            k=str(k), load_c=each("c{q} = ci[{q}]"), load_b=each("b{q} = bj[{q}]"),
            load_n=each("n{q} = nu[{q}]"), store_n=each("nu[{q}] = n{q}"),
            zero_n=each("n{q} = 0.0"), dot=_dot_unrolled(k),
            acc_n=each("n{q} += " + weight + " * b{q}"),
            acc_cross=each("crj[{q}] += " + weight + " * c{q}"),
            update=each("c{q} = _mu(c{q}, n{q}, basis_rowsum[{q}], eps, gamma, floor); "
                        "ci[{q}] = c{q}"))
    return template.format(name=name, **macros)


def _compile_template(template: str, name: str, k: int, parallel: bool, weight: str):
    """Compile an expanded template.  Its code object is attributed to this
    file so that numba's on-disk cache works as for the kernels written
    here (the cache index is keyed by the function's name and bytecode, and
    goes stale when this file changes)."""
    name = f"{name}_k{k}_{'parallel' if parallel else 'serial'}"
    namespace = {"np": np, "numba": numba, "_mu": _mu, "_dot": _dot, "_GROUP": _GROUP,
                 "__name__": __name__}
    exec(compile(_expand(template, name, k, weight), __file__, "exec"), namespace)
    return numba.njit(parallel=parallel, **_JIT)(namespace[name])


_ENTRY_DOTS = """
def {name}(indices, indptr, codes, first, basis_t, out):
    n = indptr.shape[0] - 1
    k = {k}
    for i in numba.prange(n):
        ci = codes[i, first:]
        {load_c}
        for p in range(indptr[i], indptr[i + 1]):
            bj = basis_t[indices[p]]
            {load_b}
            out[p] = {dot}
"""


def entry_dots(indices, indptr, codes, first, basis_t, out, parallel=True):
    """``out[p] = codes[i, first:] . basis_t[j]`` for every stored entry ``p``
    of row ``i``, column ``j``: the prediction of some of the topics (the
    columns of ``codes`` from ``first`` on) at the stored entries only.
    ``parallel`` runs rows in parallel with a kernel specialised on the
    number of topics (``basis_t.shape[1]``), else serially and generic."""
    k = basis_t.shape[1] if parallel else 0
    _compiled("entry dots", k, bool(parallel))(indices, indptr, codes, first, basis_t, out)


#: rows whose code numerators are gathered together, feature tile by tile
_GROUP = 256
#: bytes of basis and basis parts per feature tile (about half a 1 MiB L2)
_TILE_BYTES = 1 << 19


def tile_features(n_features: int, n_components: int, itemsize: int) -> int:
    """Features per tile: the basis rows and the part rows of one tile stay in
    cache while a group of rows is swept.  Tiling changes no result: every
    row's entries and every feature's rows are still summed in order."""
    return max(64, min(n_features, _TILE_BYTES // max(1, 2 * n_components * itemsize)))


#: kernel name -> (template, function name, weight of the accumulations)
_TEMPLATES = {"frobenius": (_FROBENIUS, "frobenius_sweep_csr", "a"),
              "kullback-leibler": (_KL_TILED, "kl_sweep_csr", "ratio"),
              "kullback-leibler rows": (_KL_ROWS, "kl_sweep_csr_rows", "ratio"),
              "entry dots": (_ENTRY_DOTS, "entry_dots", "ratio")}


def kernel(loss: str, parallel: bool, n_components: int = 0, tiled: bool = True):
    """The sweep kernel for ``loss``; ``n_components > 0`` specialises it;
    ``tiled=False`` (KL only) is the row-by-row flavour for data whose
    features all fit in one tile."""
    name = loss if tiled or loss == "frobenius" else loss + " rows"
    return _compiled(name, int(n_components), bool(parallel))


@functools.lru_cache(maxsize=None)
def _compiled(name: str, n_components: int, parallel: bool):
    template, function, weight = _TEMPLATES[name]
    return _compile_template(template, function, n_components, parallel, weight)
