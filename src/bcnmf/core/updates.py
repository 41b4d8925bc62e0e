"""The one kernel: a multiplicative sweep over a block of cells.

For a block of cells ``A`` (n x F, dense or CSR) with codes ``C`` (n x K) and
the basis ``B`` (K x F) that target and background share, :func:`sweep_block`

* returns the block's divergence at the current state, computed from products
  the code update needs anyway,
* updates the codes in place (one multiplicative step, basis fixed), and
* returns the block's additive parts of the basis update, computed with the
  new codes.

Every solver path (full batch, restarts, ``transform``) reuses it.  Target
blocks and background blocks produce the same kind of parts; the basis step
(:func:`basis_step`) combines them with the background's numerator and
denominator swapped and weighted by ``alpha``:

* squared error, parts ``cross = C^T A`` and ``second = C^T C``::

      B <- B * (Px + alpha Gy B) / (Gx B + alpha Py)

* generalised KL, parts ``cross = C^T (A / (C B + offset))`` and
  ``second = colsum(C)``::

      B <- B * (Px + alpha sy 1^T) / (sx 1^T + alpha Py)

``offset`` is a per-feature constant added to the prediction of a block (the
smoothing floor of the stable Poisson contrast, zero otherwise).  Stable
mode also appends fixed shared topics to the basis (and their free codes to
every cell's codes): a full sweep visits them like any topic, a held sweep
(:class:`Held`) through their products with the block, and the basis step
updates only the leading, contrastive rows (:meth:`Parts.head`).

The sweep of a block is the kernel :data:`KERNELS` holds for the block's
storage (decided when the block was made, :mod:`bcnmf.core.blocks`) and the
loss: numpy/BLAS for dense numpy blocks, the numba kernels of
:mod:`bcnmf.core._csr_kernels` for scipy CSR blocks, :mod:`bcnmf.core._torch_sparse`
for torch blocks and :func:`bcnmf.core.masked.sweep_masked` for blocks with
missing values.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import partial

import numba
import numpy as np
import scipy.sparse as sp

from . import _csr_kernels, _torch_sparse, masked
from .backend import contiguous, copy, namespace, vdot64
from .blocks import (CSR, DENSE, DENSE_CHUNK_ENTRIES, MASKED, TORCH_CSR, TORCH_DENSE, Block,
                     block_const, data_scale, make_block)
from .step import FROBENIUS, KL, Parts, StepPolicy, basis_policy, mu_step

__all__ = ["FROBENIUS", "KL", "StepPolicy", "Block", "Parts", "BasisView", "KERNELS",
           "block_const", "data_scale", "make_block", "mu_step", "basis_policy", "view_basis",
           "sweep_block", "Held", "held_products", "entry_predictions", "basis_terms", "basis_step"]

# below this many stored entries x components a CSR block is swept serially
_PARALLEL_MIN_WORK = 1 << 18


@dataclass
class BasisView:
    """Per-sweep quantities of the basis shared by every block."""

    basis: np.ndarray     # K x F
    basis_t: np.ndarray   # F x K, C-contiguous
    gram: np.ndarray | None = None     # B B^T (squared error)
    rowsum: np.ndarray | None = None   # B 1 (KL)


def view_basis(basis: np.ndarray, loss: str) -> BasisView:
    bt = contiguous(basis.T)
    if loss == FROBENIUS:
        with _serial_blas(basis):
            gram = basis @ basis.T
        return BasisView(basis, bt, gram=gram)
    return BasisView(basis, bt, rowsum=basis.sum(axis=1))


_BLAS = []   # the threadpoolctl controller, made on first use


def _serial_blas(a):
    """Context running BLAS on one thread for the small K x F x K Gram product.

    Right after a parallel numba sweep, a multithreaded OpenBLAS call on a
    busy machine waits for its worker threads (measured: 0.65 s instead of
    0.4 ms for K = 20, F = 10,000 on 2 loaded cores).  The product is tiny;
    one thread computes the same values (each entry is summed by one thread
    either way)."""
    if not isinstance(a, np.ndarray) or a.shape[0] * a.size < _PARALLEL_MIN_WORK:
        return contextlib.nullcontext()
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController
            _BLAS.append(ThreadpoolController())
        except ImportError:   # pragma: no cover - scikit-learn requires threadpoolctl
            _BLAS.append(None)
    if _BLAS[0] is None:   # pragma: no cover
        return contextlib.nullcontext()
    return _BLAS[0].limit(limits=1, user_api="blas")


def sweep_block(block: Block, codes: np.ndarray, view: BasisView, loss: str,
                policy: StepPolicy, *, update: bool = True, want_parts: bool = True,
                want_div: bool = True, held=None):
    """One sweep over one block: returns ``(divergence_before, parts)``.

    ``codes`` (n x K, C-contiguous, same dtype as the data) is updated in
    place when ``update``.  ``parts`` is ``None`` unless ``want_parts``.
    The divergence is ``None`` when ``want_div`` is False and it is not free
    (KL: its logarithms cost as much as the rest of the sweep).

    ``held`` (unmasked blocks): a sweep whose view holds only the leading
    ``k`` basis rows, the rows after them being fixed (:class:`Held`, with
    the block's products of :func:`held_products`).  The parts are those of
    the ``k`` rows (squared error: ``second`` is ``C_head^T C``, every
    column).  Generalised KL keeps the codes on the fixed rows as they are
    (their prediction is an entry offset) and needs ``want_div=False``;
    squared error updates them too, from the fixed rows' products, so that
    the sweep is the same step as a sweep of every row.

    The kernel is :data:`KERNELS` ``[block.storage, loss]``; a block that is
    not ``resident`` is read once for the sweep.
    """
    if held is not None and (block.masked or (loss == KL and want_div)):
        raise ValueError("a held sweep needs a block without missing values (and, for KL, "
                         "no divergence: want_div=False)")
    if not (block.resident or block.masked):
        block = Block(block.data, block.const, block.offset, block.storage)
    if held is not None and loss == FROBENIUS:
        return _sweep_frobenius_held(block, codes, view, policy, update, want_parts, want_div,
                                     held)
    kernel = KERNELS[block.storage, loss]
    return kernel(block, codes, view, loss, policy, update, want_parts, want_div,
                  None if held is None else held.products)


@dataclass(frozen=True)
class Held:
    """The fixed basis rows of a held sweep: ``tail_t`` (``B[first:].T``,
    C-contiguous), ``first`` (their first row) and one block's ``products``
    (:func:`held_products`)."""

    tail_t: object
    first: int
    products: object = None


def held_products(block: Block, codes, first: int, tail_t, loss: str, out=None):
    """What a held sweep of ``block`` needs from the fixed rows: generalised
    KL, their prediction at the stored entries (:func:`entry_predictions`,
    to be recomputed whenever their codes change); squared error, ``A
    B[first:]^T`` (n x n_fixed, constant for the fit)."""
    if loss == KL:
        return entry_predictions(block, codes, first, tail_t, out)
    if block.storage == TORCH_CSR:
        return _torch_sparse.matmul(block.data, tail_t)
    return contiguous(block.data @ tail_t)


def _sweep_frobenius_held(block, codes, view, policy, update, want_parts, want_div, held):
    """Squared-error sweep with fixed rows ``G`` after the first ``k`` (codes
    ``[C | D]``): the kernel sweeps the head with ``D G B^T`` added to its
    code denominators, and ``D`` takes the same multiplicative step from
    ``A G^T`` (held) and the small Gram products, all from the state entering
    the sweep.  The per-sweep cost is that of the ``k`` free rows."""
    k = view.basis.shape[0]
    xp = namespace(codes)
    head, tail = codes[:, :k], codes[:, k:]
    tail_rows = xp.matrix_transpose(held.tail_t)
    gb = tail_rows @ view.basis_t           # G B^T, n_fixed x k
    gg = tail_rows @ held.tail_t            # G G^T
    ag = held.products                      # A G^T
    den_tail = head @ xp.matrix_transpose(gb) + tail @ gg
    den_head = tail @ gb
    extra = 0.0
    if want_div:
        t64 = xp.astype(tail, xp.float64)
        extra = (-2.0 * vdot64(t64, xp.astype(ag, xp.float64))
                 + 2.0 * vdot64(xp.astype(head, xp.float64), xp.astype(den_head, xp.float64))
                 + vdot64(t64, xp.astype(tail @ gg, xp.float64)))
    kernel = KERNELS[block.storage, FROBENIUS]
    # the numba CSR kernel reads the first k columns of the C-contiguous codes (a strided
    # view would compile another specialisation); the array-API kernels take the view
    div, parts = kernel(block, codes if block.storage == CSR else head, view, FROBENIUS, policy,
                        update, want_parts, want_div, den_head)
    if update:
        mu_step(tail, ag, den_tail, policy, policy.code_floor)
    if parts is not None:
        parts = Parts(parts.cross,
                      xp.concat([parts.second, xp.matrix_transpose(head) @ tail], axis=1))
    return (max(div + extra, 0.0) if want_div else div), parts


def entry_predictions(block: Block, codes, first: int, basis_t, out=None):
    """``(C[:, first:] B[first:])`` at the stored entries of a KL block, in
    the order the KL kernel visits them: one array for a CSR block, a list
    of arrays (one per row chunk) for a dense block.  ``basis_t`` is
    ``B[first:].T`` (C-contiguous).  The ``entry_offset`` of a sweep that
    holds the topics from ``first`` on fixed (:func:`sweep_block`).  ``out``:
    a previous result for the same block, overwritten (numpy blocks)."""
    a = block.data
    if block.storage in (DENSE, TORCH_DENSE):
        n, f = a.shape
        step = max(1, DENSE_CHUNK_ENTRIES // max(f, 1))
        to_csr, storage = _CHUNK_CSR[block.storage]
        return [entry_predictions(Block(to_csr(a[lo:lo + step]), 0.0, None, storage),
                                  codes[lo:lo + step], first, basis_t,
                                  None if out is None else out[c])
                for c, lo in enumerate(range(0, n, step))]
    if block.storage == TORCH_CSR:
        return _torch_sparse.predict(a, codes[:, first:], basis_t,
                                     basis_t.new_zeros(basis_t.shape[0]))
    if block.storage != CSR:
        raise ValueError(f"no entry predictions for a {block.storage!r} block")
    if out is None or out.shape != (a.nnz,) or out.dtype != codes.dtype:
        out = np.empty(a.nnz, dtype=codes.dtype)
    _csr_kernels.entry_dots(a.indices, a.indptr, codes, first, basis_t, out,
                            parallel=a.nnz * basis_t.shape[1] >= _PARALLEL_MIN_WORK)
    return out


def _sweep_dense_frobenius(block, codes, view, loss, policy, update, want_parts, want_div,
                           den_offset):
    """Squared error on a dense block (numpy or torch, through the array API);
    ``den_offset`` (n x K or None) is added to the code denominators (see
    :func:`_sweep_frobenius_held`)."""
    a = block.data
    num = a @ view.basis_t
    den = codes @ view.gram
    xp = namespace(codes)
    c64 = xp.astype(codes, xp.float64)  # n x K: the scalars are summed in float64
    div = (block.const - 2.0 * vdot64(c64, xp.astype(num, xp.float64))
           + vdot64(c64, xp.astype(den, xp.float64)))
    if update:
        mu_step(codes, num, den if den_offset is None else den + den_offset, policy,
                policy.code_floor)
    parts = None
    if want_parts:
        parts = Parts(codes.T @ a, codes.T @ codes)
    return max(div, 0.0), parts


def _sweep_dense_kl(block, codes, view, loss, policy, update, want_parts, want_div,
                    entry_offset, *, to_csr, kl_pass):
    """Dense KL blocks go through a CSR pass (``kl_pass``) one row chunk at a
    time (made CSR by ``to_csr``): the Poisson ratio only matters at nonzero
    entries, and the chunk's CSR copy bounds the extra memory.  (Dense
    in-memory blocks with few nonzeros are stored as CSR once instead,
    :func:`bcnmf.core.source.make_blocks`; this path serves denser, streamed
    and torch blocks.)"""
    a = block.data
    n, f = a.shape
    k = view.basis.shape[0]
    step = max(1, DENSE_CHUNK_ENTRIES // max(f, 1))
    xp = namespace(codes)
    csum_before = xp.sum(codes, axis=0, dtype=xp.float64)
    loglik = 0.0
    cross = xp.zeros((k, f), dtype=codes.dtype,
                     device=_device(codes)) if want_parts else None
    for c, lo in enumerate(range(0, n, step)):
        ll, cr = kl_pass(to_csr(a[lo:lo + step]), block.offset, codes[lo:lo + step], view,
                         policy, update, want_parts, want_div,
                         None if entry_offset is None else entry_offset[c])
        loglik += ll
        if want_parts:
            cross += cr
    div = _kl_divergence(block, n, csum_before, view, loglik) if want_div else None
    parts = Parts(cross, xp.sum(codes[:, :k], axis=0)) if want_parts else None
    return div, parts


def _device(a):
    from array_api_compat import device

    return device(a)


def _kl_divergence(block, n, csum_before, view, loglik):
    xp = namespace(csum_before)
    total_pred = (float(csum_before @ xp.astype(view.rowsum, xp.float64))
                  + n * float(block.offset.sum()))
    return max(block.const - loglik + total_pred, 0.0)


def _kernel_for(loss, a, k, tiled=True):
    """Kernel flavour and number of row chunks for a CSR block: large blocks
    run in parallel with a kernel specialised on ``k``."""
    parallel = a.nnz * k >= _PARALLEL_MIN_WORK
    n_chunks = max(1, min(numba.get_num_threads(), a.shape[0])) if parallel else 1
    return _csr_kernels.kernel(loss, parallel, k if parallel else 0, tiled), n_chunks


def _sweep_csr_frobenius(block, codes, view, loss, policy, update, want_parts, want_div,
                         den_offset):
    """Squared error on a scipy CSR block (numba kernel); the kernel reads
    the first ``k`` code columns (``k`` basis rows in the view) and adds
    ``den_offset`` (n x k or None) to their denominators."""
    a = block.data
    f = a.shape[1]
    k = view.basis.shape[0]
    if den_offset is None:
        den_offset = _NO_DEN_OFFSET.setdefault(codes.dtype, np.empty((0, 0), codes.dtype))
    kernel, n_chunks = _kernel_for(loss, a, k)
    cross = np.zeros((n_chunks, f, k) if want_parts else (1, 1, 1), dtype=codes.dtype)
    cgram = np.zeros((n_chunks, k, k) if want_parts else (1, 1, 1), dtype=codes.dtype)
    ab, quad = kernel(
        a.data, a.indices, a.indptr, codes, view.basis_t, view.gram,
        policy.eps, policy.gamma, policy.code_floor, update, want_parts,
        cross, cgram, n_chunks, _csr_kernels.tile_features(f, k, codes.itemsize), den_offset)
    div = max(block.const - 2.0 * ab + quad, 0.0)
    parts = Parts(cross.sum(axis=0).T.copy(), cgram.sum(axis=0)) if want_parts else None
    return div, parts


def _sweep_torch_csr_frobenius(block, codes, view, loss, policy, update, want_parts, want_div,
                               den_offset):
    """Squared error on a :class:`~bcnmf.core.torch_arrays.TorchCSR` block."""
    ab, quad, cross, cgram = _torch_sparse.frobenius_sweep(
        block.data, codes, view.basis_t, view.gram, policy, update, want_parts, den_offset)
    return max(block.const - 2.0 * ab + quad, 0.0), (Parts(cross, cgram) if want_parts
                                                     else None)


def _sweep_csr_kl(block, codes, view, loss, policy, update, want_parts, want_div,
                  entry_offset, *, kl_pass):
    """Generalised KL on a CSR block (scipy or torch, by ``kl_pass``)."""
    n = block.data.shape[0]
    xp = namespace(codes)
    csum_before = xp.sum(codes, axis=0, dtype=xp.float64)
    loglik, cross = kl_pass(block.data, block.offset, codes, view, policy, update, want_parts,
                            want_div, entry_offset)
    div = _kl_divergence(block, n, csum_before, view, loglik) if want_div else None
    parts = Parts(cross, xp.sum(codes[:, :view.basis.shape[0]], axis=0)) if want_parts \
        else None
    return div, parts


_NO_ENTRY_OFFSET = {}   # an empty array per dtype: the kernels' "no entry offset"
_NO_DEN_OFFSET = {}     # an empty matrix per dtype: the kernels' "no denominator offset"


def _kl_csr_pass(a, offset, codes, view, policy, update, want_parts, want_div,
                 entry_offset=None):
    """KL kernel on one scipy CSR matrix: returns ``(sum a log pred, C^T (A /
    pred))`` (the first is 0 unless ``want_div``, the second None unless
    ``want_parts``); updates ``codes`` in place (its first ``k`` columns, ``k``
    the view's number of basis rows)."""
    f = a.shape[1]
    k = view.basis_t.shape[1]
    if entry_offset is None:
        entry_offset = _NO_ENTRY_OFFSET.setdefault(codes.dtype, np.empty(0, codes.dtype))
    tile = _csr_kernels.tile_features(f, k, codes.itemsize)
    kernel, n_chunks = _kernel_for(KL, a, k, tiled=tile < f)
    cross = np.zeros((n_chunks, f, k) if want_parts else (1, 1, 1), dtype=codes.dtype)
    loglik = kernel(
        a.data, a.indices, a.indptr, codes, view.basis_t, view.rowsum, offset,
        policy.eps, policy.gamma, policy.code_floor, update, want_parts, want_div, cross,
        n_chunks, tile, entry_offset)
    return loglik, (cross.sum(axis=0).T.copy() if want_parts else None)


def _kl_torch_pass(a, offset, codes, view, policy, update, want_parts, want_div,
                   entry_offset=None):
    """:func:`_kl_csr_pass` on a :class:`~bcnmf.core.torch_arrays.TorchCSR`."""
    return _torch_sparse.kl_sweep(a, offset, codes, view.basis_t, view.rowsum, policy, update,
                                  want_parts, want_div, entry_offset)


#: how a dense block's row chunk is made CSR, and that chunk's storage
_CHUNK_CSR = {DENSE: (sp.csr_matrix, CSR), TORCH_DENSE: (_torch_sparse.dense_to_csr, TORCH_CSR)}

#: the sweep kernels, by (storage of the block's data, loss); every kernel is
#: ``kernel(block, codes, view, loss, policy, update, want_parts, want_div,
#: offset) -> (divergence, parts)``, ``offset`` the KL entry offset or the
#: squared-error code denominator offset of a held sweep (None: none)
KERNELS = {
    (DENSE, FROBENIUS): _sweep_dense_frobenius,
    (DENSE, KL): partial(_sweep_dense_kl, to_csr=sp.csr_matrix, kl_pass=_kl_csr_pass),
    (CSR, FROBENIUS): _sweep_csr_frobenius,
    (CSR, KL): partial(_sweep_csr_kl, kl_pass=_kl_csr_pass),
    (TORCH_DENSE, FROBENIUS): _sweep_dense_frobenius,
    (TORCH_DENSE, KL): partial(_sweep_dense_kl, to_csr=_torch_sparse.dense_to_csr,
                               kl_pass=_kl_torch_pass),
    (TORCH_CSR, FROBENIUS): _sweep_torch_csr_frobenius,
    (TORCH_CSR, KL): partial(_sweep_csr_kl, kl_pass=_kl_torch_pass),
    (MASKED, FROBENIUS): masked.sweep_masked,
    (MASKED, KL): masked.sweep_masked,
}


def basis_terms(basis: np.ndarray, target: Parts, background: Parts | None,
                alpha: float, loss: str, full=None):
    """Numerator and denominator of the multiplicative basis step (parts of
    blocks with missing values: :func:`bcnmf.core.masked.basis_terms`).
    ``full``: the whole basis when ``basis`` is its free head and the parts
    are :meth:`Parts.head` (the squared-error ``C^T C B`` needs every row)."""
    full = basis if full is None else full
    if target.masked or (background is not None and background.masked):
        return masked.basis_terms(full, target, background, alpha, loss)
    if loss == FROBENIUS:
        numer = copy(target.cross)
        denom = target.second @ full
        if background is not None and alpha > 0:
            numer += alpha * (background.second @ full)
            denom += alpha * background.cross
    else:
        numer = copy(target.cross)
        denom = copy(namespace(basis).broadcast_to(target.second[:, None], basis.shape))
        if background is not None and alpha > 0:
            numer += alpha * background.second[:, None]
            denom += alpha * background.cross
    return numer, denom


def basis_step(basis: np.ndarray, target: Parts, background: Parts | None,
               alpha: float, loss: str, policy: StepPolicy, full=None) -> None:
    """In-place multiplicative basis step from the summed parts (``full``: see
    :func:`basis_terms`)."""
    numer, denom = basis_terms(basis, target, background, alpha, loss, full)
    policy = basis_policy(policy)
    mu_step(basis, numer, denom, policy, policy.basis_floor)
