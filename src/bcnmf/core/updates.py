"""The one kernel: a multiplicative sweep over a block of cells.

For a block of cells ``A`` (n x F, dense or CSR) with codes ``C`` (n x K) and
the shared basis ``B`` (K x F), :func:`sweep_block`

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
Poisson also appends fixed nuisance topics to the basis (and their free codes
to every cell's codes): the kernel sweeps them like any topic, and the basis
step updates only the leading, contrastive rows (:meth:`Parts.head`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import numba
import numpy as np
import scipy.sparse as sp

from . import _csr_kernels
from .backend import contiguous, copy, is_torch, is_torch_sparse, maximum_, namespace, vdot64

FROBENIUS = "frobenius"
KL = "kullback-leibler"

# dense temporaries (pred, ratio) are limited to this many entries per chunk
_DENSE_CHUNK_ENTRIES = 1 << 22
# below this many stored entries x components a CSR block is swept serially
_PARALLEL_MIN_WORK = 1 << 18


@dataclass(frozen=True)
class StepPolicy:
    """Numerical policy of the multiplicative steps (one place for epsilons).

    ``eps`` is added to every denominator (and to KL predictions), ``gamma``
    is the damping exponent applied as ``max(r, eps) ** gamma``, and the
    floors are lower bounds applied after each step (0 means none).
    ``basis_eps``, when set, replaces ``eps`` in the basis step (stable mode
    scales the two differently with the data, see ``core.fit.step_policy``).
    """

    eps: float
    gamma: float = 1.0
    code_floor: float = 0.0
    basis_floor: float = 0.0
    basis_eps: float | None = None


@dataclass
class Block:
    """A block of cells and its data-only constants.

    ``const`` is ``||A||_F^2`` (squared error) or ``sum(a log a - a)`` (KL);
    ``offset`` is the per-feature constant added to predictions (KL only).
    """

    data: object
    const: float
    offset: np.ndarray | None = None


def block_const(values, loss: str) -> float:
    """The data-only constant of a block from its (stored) values:
    ``||A||_F^2`` (squared error) or ``sum(a log a - a)`` (KL)."""
    xp = namespace(values)
    v = xp.astype(xp.reshape(xp.asarray(values), (-1,)), xp.float64, copy=False)
    if loss == FROBENIUS:
        return float(v @ v)
    pos = v[v > 0]
    return float(xp.sum(pos * xp.log(pos)) - xp.sum(v))


def data_scale(A, loss: str) -> float:
    """``D(A | 0)`` of an in-memory matrix (dense or scipy.sparse), in float64:
    the squared Frobenius norm (squared error) or the total (KL)."""
    v = (A.data if sp.issparse(A) else np.asarray(A)).ravel().astype(np.float64, copy=False)
    return float(v @ v) if loss == FROBENIUS else float(v.sum())


def make_block(data, loss: str, offset=None) -> Block:
    """Wrap a validated block (ndarray or CSR) with its constants."""
    values = data.data if sp.issparse(data) or is_torch_sparse(data) else data
    if loss == FROBENIUS:
        return Block(data, block_const(values, loss), None)
    if offset is None:
        offset = np.zeros(data.shape[1])
    if is_torch(values):
        from .backend import asarray_like

        return Block(data, block_const(values, loss), asarray_like(offset, values))
    return Block(data, block_const(values, loss),
                 np.ascontiguousarray(offset, dtype=values.dtype))


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


@dataclass
class Parts:
    """Additive sufficient statistics of a basis step (sum over blocks)."""

    cross: np.ndarray    # K x F
    second: np.ndarray   # K x K (squared error) or K (KL)

    def __iadd__(self, other: "Parts") -> "Parts":
        self.cross += other.cross
        self.second += other.second
        return self

    def head(self, k: int) -> "Parts":
        """The parts of the first ``k`` basis rows (generalised KL, whose
        ``second`` has one entry, or one row, per basis row)."""
        return type(self)(self.cross[:k], self.second[:k])


def mu_step(x: np.ndarray, num: np.ndarray, den: np.ndarray, policy: StepPolicy,
            floor: float) -> None:
    """In place ``x <- max(x * r, floor)`` with ``r = num / (den + eps)``,
    damped to ``max(r, eps) ** gamma`` when ``gamma != 1``."""
    r = num / (den + policy.eps)
    if policy.gamma != 1.0:
        maximum_(r, policy.eps)
        r **= policy.gamma
    x *= r
    if floor > 0:
        maximum_(x, floor)


def sweep_block(block: Block, codes: np.ndarray, view: BasisView, loss: str,
                policy: StepPolicy, *, update: bool = True, want_parts: bool = True,
                want_div: bool = True, entry_offset=None):
    """One sweep over one block: returns ``(divergence_before, parts)``.

    ``codes`` (n x K, C-contiguous, same dtype as the data) is updated in
    place when ``update``.  ``parts`` is ``None`` unless ``want_parts``.
    The divergence is ``None`` when ``want_div`` is False and it is not free
    (KL: its logarithms cost as much as the rest of the sweep).

    ``entry_offset`` (KL, unmasked blocks): the prediction of topics held
    fixed for this sweep at the block's stored entries
    (:func:`entry_predictions`).  The view then holds only the leading
    ``k`` basis rows: only the first ``k`` columns of ``codes`` are updated,
    the parts are those of the ``k`` rows, and ``want_div`` must be False.
    """
    masked = getattr(block, "mask", None) is not None
    if entry_offset is not None and (want_div or loss != KL or masked):
        raise ValueError("an entry offset needs a KL sweep of a block without missing values "
                         "and without the divergence (want_div=False)")
    if masked:   # missing values: core/masked.py
        from .masked import sweep_masked
        return sweep_masked(block, codes, view, loss, policy, update, want_parts, want_div)
    block = Block(block.data, block.const, block.offset)   # streamed blocks: one read
    if sp.issparse(block.data) or is_torch_sparse(block.data):
        return _sweep_csr(block, codes, view, loss, policy, update, want_parts, want_div,
                          entry_offset)
    if loss == FROBENIUS:
        return _sweep_dense_frobenius(block, codes, view, policy, update, want_parts)
    return _sweep_dense_kl(block, codes, view, policy, update, want_parts, want_div,
                           entry_offset)


def entry_predictions(block: Block, codes, first: int, basis_t, out=None):
    """``(C[:, first:] B[first:])`` at the stored entries of a KL block, in
    the order the KL kernel visits them: one array for a CSR block, a list
    of arrays (one per row chunk) for a dense block.  ``basis_t`` is
    ``B[first:].T`` (C-contiguous).  The ``entry_offset`` of a sweep that
    holds the topics from ``first`` on fixed (:func:`sweep_block`).  ``out``:
    a previous result for the same block, overwritten (numpy blocks)."""
    a = block.data
    if not (sp.issparse(a) or is_torch_sparse(a)):
        n, f = a.shape
        step = max(1, _DENSE_CHUNK_ENTRIES // max(f, 1))
        to_csr = _dense_chunk_csr(a)
        return [entry_predictions(Block(to_csr(a[lo:lo + step]), 0.0), codes[lo:lo + step],
                                  first, basis_t, None if out is None else out[c])
                for c, lo in enumerate(range(0, n, step))]
    if is_torch(a):
        from ._torch_sparse import _predict

        return _predict(a, codes[:, first:], basis_t, basis_t.new_zeros(basis_t.shape[0]))
    if out is None or out.shape != (a.nnz,) or out.dtype != codes.dtype:
        out = np.empty(a.nnz, dtype=codes.dtype)
    _csr_kernels.entry_dots(a.indices, a.indptr, codes, first, basis_t, out,
                            parallel=a.nnz * basis_t.shape[1] >= _PARALLEL_MIN_WORK)
    return out


def _dense_chunk_csr(a):
    if is_torch(a):
        from ._torch_sparse import dense_to_csr

        return dense_to_csr
    return sp.csr_matrix


def _sweep_dense_frobenius(block, codes, view, policy, update, want_parts):
    a = block.data
    num = a @ view.basis_t
    den = codes @ view.gram
    xp = namespace(codes)
    c64 = xp.astype(codes, xp.float64)  # n x K: the scalars are summed in float64
    div = (block.const - 2.0 * vdot64(c64, xp.astype(num, xp.float64))
           + vdot64(c64, xp.astype(den, xp.float64)))
    if update:
        mu_step(codes, num, den, policy, policy.code_floor)
    parts = None
    if want_parts:
        parts = Parts(codes.T @ a, codes.T @ codes)
    return max(div, 0.0), parts


def _sweep_dense_kl(block, codes, view, policy, update, want_parts, want_div,
                    entry_offset=None):
    """Dense KL blocks go through the CSR kernel one row chunk at a time: the
    Poisson ratio only matters at nonzero entries, and the chunk's CSR copy
    bounds the extra memory.  (Dense in-memory blocks with few nonzeros are
    stored as CSR once instead, :func:`bcnmf.core.source.make_blocks`; this
    path serves denser, streamed and torch blocks.)"""
    a = block.data
    n, f = a.shape
    k = view.basis.shape[0]
    step = max(1, _DENSE_CHUNK_ENTRIES // max(f, 1))
    xp = namespace(codes)
    csum_before = xp.sum(codes, axis=0, dtype=xp.float64)
    loglik = 0.0
    cross = xp.zeros((k, f), dtype=codes.dtype,
                     device=_device(codes)) if want_parts else None
    to_csr = _dense_chunk_csr(a)
    for c, lo in enumerate(range(0, n, step)):
        ll, cr = _kl_csr_pass(to_csr(a[lo:lo + step]), block.offset,
                              codes[lo:lo + step], view, policy, update, want_parts,
                              want_div, None if entry_offset is None else entry_offset[c])
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


def _sweep_csr(block, codes, view, loss, policy, update, want_parts, want_div,
               entry_offset=None):
    a = block.data
    n, f = a.shape
    k = codes.shape[1]
    if loss == FROBENIUS and is_torch(a):
        from ._torch_sparse import frobenius_sweep

        ab, quad, cross, cgram = frobenius_sweep(a, codes, view.basis_t, view.gram, policy,
                                                 update, want_parts)
        return max(block.const - 2.0 * ab + quad, 0.0), (Parts(cross, cgram) if want_parts
                                                         else None)
    if loss == FROBENIUS:
        kernel, n_chunks = _kernel_for(loss, a, k)
        cross = np.zeros((n_chunks, f, k) if want_parts else (1, 1, 1), dtype=codes.dtype)
        cgram = np.zeros((n_chunks, k, k) if want_parts else (1, 1, 1), dtype=codes.dtype)
        ab, quad = kernel(
            a.data, a.indices, a.indptr, codes, view.basis_t, view.gram,
            policy.eps, policy.gamma, policy.code_floor, update, want_parts,
            cross, cgram, n_chunks, _csr_kernels.tile_features(f, k, codes.itemsize))
        div = max(block.const - 2.0 * ab + quad, 0.0)
        parts = Parts(cross.sum(axis=0).T.copy(), cgram.sum(axis=0)) if want_parts else None
        return div, parts
    xp = namespace(codes)
    csum_before = xp.sum(codes, axis=0, dtype=xp.float64)
    loglik, cross = _kl_csr_pass(a, block.offset, codes, view, policy, update, want_parts,
                                 want_div, entry_offset)
    div = _kl_divergence(block, n, csum_before, view, loglik) if want_div else None
    parts = Parts(cross, xp.sum(codes[:, :view.basis.shape[0]], axis=0)) if want_parts \
        else None
    return div, parts


_NO_ENTRY_OFFSET = {}   # an empty array per dtype: the kernels' "no entry offset"


def _kl_csr_pass(a, offset, codes, view, policy, update, want_parts, want_div,
                 entry_offset=None):
    """KL kernel on one CSR matrix: returns ``(sum a log pred, C^T (A / pred))``
    (the first is 0 unless ``want_div``, the second None unless
    ``want_parts``); updates ``codes`` in place (its first ``k`` columns, ``k``
    the view's number of basis rows)."""
    if is_torch(a):
        from ._torch_sparse import kl_sweep

        return kl_sweep(a, offset, codes, view.basis_t, view.rowsum, policy, update,
                        want_parts, want_div, entry_offset)
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


def basis_terms(basis: np.ndarray, target: Parts, background: Parts | None,
                alpha: float, loss: str):
    """Numerator and denominator of the multiplicative basis step."""
    if hasattr(target, "mask_parts") or hasattr(background, "mask_parts"):
        from .masked import basis_terms as masked_terms
        return masked_terms(basis, target, background, alpha, loss)
    if loss == FROBENIUS:
        numer = copy(target.cross)
        denom = target.second @ basis
        if background is not None and alpha > 0:
            numer += alpha * (background.second @ basis)
            denom += alpha * background.cross
    else:
        numer = copy(target.cross)
        denom = copy(namespace(basis).broadcast_to(target.second[:, None], basis.shape))
        if background is not None and alpha > 0:
            numer += alpha * background.second[:, None]
            denom += alpha * background.cross
    return numer, denom


def basis_policy(policy: StepPolicy) -> StepPolicy:
    """The policy of basis steps: ``basis_eps`` in place of ``eps`` when set."""
    return policy if policy.basis_eps is None else replace(policy, eps=policy.basis_eps)


def basis_step(basis: np.ndarray, target: Parts, background: Parts | None,
               alpha: float, loss: str, policy: StepPolicy) -> None:
    """In-place multiplicative basis step from the summed parts."""
    numer, denom = basis_terms(basis, target, background, alpha, loss)
    policy = basis_policy(policy)
    mu_step(basis, numer, denom, policy, policy.basis_floor)
