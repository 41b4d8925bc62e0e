"""torch versions of the CSR sweeps (CPU and CUDA), for sparse blocks held as
:class:`~bcnmf.core.torch_arrays.TorchCSR`.

They compute what the numba kernels of :mod:`bcnmf.core._csr_kernels`
compute, touching the data only at stored entries, with torch's sparse
kernels instead of row loops (cuSPARSE on CUDA, MKL or native on CPU):

* ``A B^T`` and the KL numerator ``(A / pred) B^T`` are CSR x dense products;
* the basis parts ``C^T A`` and ``C^T (A / pred)`` are products of the
  transposed matrix (kept as a second CSR structure, built once per block,
  with the permutation that reorders the stored values) with the codes;
* the KL prediction at the stored entries ``(C B)_ij`` is a sampled dense
  product (``torch.sparse.sampled_addmm``, SDDMM), never the dense ``n x F``.

Temporaries are vectors over the stored entries (prediction, ratio), as
large as the block itself, and ``n x K`` / ``F x K`` products.  Sums of
scalars (divergences) are accumulated in float64.  The KL sweep evaluates the
prediction twice (old codes: numerator and log-likelihood; new codes: basis
part), the order of the numba kernel.  An earlier version gathered the
loadings of every stored entry and scattered with ``index_add_``; on CPU it
was 7-14x slower than these kernels.
"""

from __future__ import annotations

from .step import mu_step as _mu
from .torch_arrays import TorchCSR, dense_to_csr, torch_module

__all__ = ["TorchCSR", "dense_to_csr", "frobenius_sweep", "kl_sweep", "predict"]


def frobenius_sweep(a: TorchCSR, codes, basis_t, gram, policy, update, want_parts,
                    den_offset=None):
    """Squared error: returns ``(sum_i <c_i, a_i B^T>, sum_i c_i G c_i^T, cross, cgram)``
    at the codes before the update; ``cross`` (K x F) ``= C^T A`` and
    ``cgram = C^T C`` with the updated codes (None unless ``want_parts``).
    ``den_offset`` (n x K) is added to the code denominators."""
    torch = torch_module()
    num = a._csr(a.data) @ basis_t
    den = codes @ gram
    c64 = codes.to(torch.float64)
    ab = float((c64 * num.to(torch.float64)).sum())
    quad = float((c64 * den.to(torch.float64)).sum())
    if update:
        _mu(codes, num, den if den_offset is None else den + den_offset, policy,
            policy.code_floor)
    if not want_parts:
        return ab, quad, None, None
    cross_t = a._csr(a.data, transposed=True) @ codes
    return ab, quad, cross_t.T.contiguous(), codes.T @ codes


def matmul(a: TorchCSR, dense):
    """``A @ dense`` (n x m)."""
    return a._csr(a.data) @ dense


def predict(a: TorchCSR, codes, basis_t, shift):
    """``(C B)_ij + shift_j`` at the stored entries (storage order)."""
    torch = torch_module()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cb = torch.sparse.sampled_addmm(a._csr(a.data), codes, basis_t.T.contiguous(),
                                        beta=0.0)
    return cb.values() + shift[a.indices]


def kl_sweep(a: TorchCSR, offset, codes, basis_t, rowsum, policy, update, want_parts,
             want_div, entry_offset=None):
    """Generalised KL with ``pred = C B + offset + eps`` at stored entries:
    returns ``(sum a log pred, cross)`` at the codes before the update (the
    first is 0 unless ``want_div``), ``cross = C^T (A / pred)`` (K x F) with
    the updated codes (None unless ``want_parts``); codes updated in place.
    With ``entry_offset`` (one value per stored entry) it is added to the
    prediction, and only the first ``basis_t.shape[1]`` columns of ``codes``
    are used and updated."""
    torch = torch_module()
    shift = offset + policy.eps
    head = codes[:, :basis_t.shape[1]]
    loglik = 0.0
    if update or want_div:
        pred = predict(a, head, basis_t, shift)
        if entry_offset is not None:
            pred = pred + entry_offset
        if want_div:
            loglik = float((a.data.to(torch.float64) * torch.log(pred).to(torch.float64))
                           .sum())
        if update:
            num = a._csr(a.data / pred) @ basis_t
            _mu(head, num, rowsum[None, :], policy, policy.code_floor)
    cross = None
    if want_parts:
        pred = predict(a, head, basis_t, shift)
        if entry_offset is not None:
            pred = pred + entry_offset
        cross = (a._csr(a.data / pred, transposed=True) @ head).T.contiguous()
    return loglik, cross
