"""torch versions of the CSR sweeps (CPU and CUDA), for sparse blocks held as
:class:`TorchCSR`.

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

import numpy as np

from .backend import torch_module
from .updates import mu_step as _mu

class TorchCSR:
    """A sparse matrix on a torch device in CSR form, with its row index per
    stored entry (``rows``) kept for the gathers.  Canonical: column indices
    sorted within rows, no duplicates.  Attribute names follow scipy
    (``data``, ``indices``, ``indptr``)."""

    def __init__(self, data, indices, indptr, shape, rows=None):
        torch = torch_module()
        self.data = data
        self.indices = indices
        self.indptr = indptr
        self.shape = (int(shape[0]), int(shape[1]))
        if rows is None:
            counts = indptr[1:] - indptr[:-1]
            rows = torch.repeat_interleave(
                torch.arange(self.shape[0], device=data.device), counts)
        self.rows = rows

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_scipy(cls, a, device):
        from .backend import host_tensor

        a = a.tocsr()
        if not a.has_canonical_format:
            a = a.copy()
            a.sum_duplicates()
        return cls(host_tensor(a.data, device), host_tensor(a.indices.astype(np.int64), device),
                   host_tensor(a.indptr.astype(np.int64), device), a.shape)

    @classmethod
    def from_torch(cls, t):
        """From a sparse torch tensor (COO, CSR or CSC), summing duplicates."""
        import warnings

        torch = torch_module()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)   # "sparse CSR support is in beta"
            coo = (t if t.layout == torch.sparse_coo else t.to_sparse_coo()).coalesce()
        idx = coo.indices()
        rows, cols = idx[0].contiguous(), idx[1].contiguous()
        n = coo.shape[0]
        counts = torch.bincount(rows, minlength=n)
        indptr = torch.zeros(n + 1, dtype=torch.int64, device=coo.device)
        indptr[1:] = torch.cumsum(counts, 0)
        return cls(coo.values().contiguous(), cols, indptr, coo.shape, rows)

    def to_scipy(self):
        import scipy.sparse as sp

        return sp.csr_matrix((self.data.detach().cpu().numpy(),
                              self.indices.cpu().numpy(), self.indptr.cpu().numpy()),
                             shape=self.shape)

    def to_torch(self):
        """As a ``torch.sparse_csr`` tensor."""
        import warnings

        torch = torch_module()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(self.indptr, self.indices, self.data, self.shape)

    # -- array-like -------------------------------------------------------------------------
    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self):
        return self.data.device

    @property
    def nnz(self) -> int:
        return int(self.data.shape[0])

    def to(self, device=None, dtype=None):
        data = self.data.to(device=device, dtype=dtype)
        return TorchCSR(data, self.indices.to(device), self.indptr.to(device), self.shape,
                        self.rows.to(device))

    def row_slice(self, lo: int, hi: int) -> "TorchCSR":
        start, stop = int(self.indptr[lo]), int(self.indptr[hi])
        return TorchCSR(self.data[start:stop], self.indices[start:stop],
                        self.indptr[lo:hi + 1] - start, (hi - lo, self.shape[1]),
                        self.rows[start:stop] - lo)

    def row_sums(self):
        """Per-row sums in float64 (a dense tensor)."""
        torch = torch_module()
        out = torch.zeros(self.shape[0], dtype=torch.float64, device=self.device)
        return out.index_add_(0, self.rows, self.data.to(torch.float64))

    def col_sums(self):
        """Per-feature sums in float64 (a dense tensor)."""
        torch = torch_module()
        out = torch.zeros(self.shape[1], dtype=torch.float64, device=self.device)
        return out.index_add_(0, self.indices, self.data.to(torch.float64))

    def _csr(self, values, transposed=False):
        """A ``torch.sparse_csr`` tensor with this structure (or its transpose's)
        holding ``values`` given in this matrix's storage order."""
        import warnings

        torch = torch_module()
        if transposed:
            indptr, indices, perm = self._transpose()
            shape = (self.shape[1], self.shape[0])
            if values is self.data:   # the data themselves: permuted once per block
                if getattr(self, "_data_t", None) is None:
                    self._data_t = values[perm]
                values = self._data_t
            else:
                values = values[perm]
        else:
            indptr, indices, shape = self.indptr, self.indices, self.shape
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)   # "sparse CSR support is in beta"
            return torch.sparse_csr_tensor(indptr, indices, values, shape)

    def _transpose(self):
        """CSR structure of the transpose ``(indptr, indices, perm)``: stored
        value ``perm[p]`` of this matrix is the transpose's value ``p``."""
        if getattr(self, "_t", None) is None:
            torch = torch_module()
            cols, perm = torch.sort(self.indices, stable=True)   # rows stay sorted
            counts = torch.bincount(cols, minlength=self.shape[1])
            indptr = torch.zeros(self.shape[1] + 1, dtype=torch.int64, device=self.device)
            indptr[1:] = torch.cumsum(counts, 0)
            self._t = (indptr, self.rows[perm].contiguous(), perm)
        return self._t

    def __repr__(self):
        return f"TorchCSR(shape={self.shape}, nnz={self.nnz}, dtype={self.dtype}, " \
               f"device={self.device})"


def dense_to_csr(a) -> TorchCSR:
    """The nonzeros of a dense 2-D tensor as :class:`TorchCSR`."""
    torch = torch_module()
    rows, cols = torch.nonzero(a, as_tuple=True)
    counts = torch.bincount(rows, minlength=a.shape[0])
    indptr = torch.zeros(a.shape[0] + 1, dtype=torch.int64, device=a.device)
    indptr[1:] = torch.cumsum(counts, 0)
    return TorchCSR(a[rows, cols], cols, indptr, a.shape, rows)


def frobenius_sweep(a: TorchCSR, codes, basis_t, gram, policy, update, want_parts):
    """Squared error: returns ``(sum_i <c_i, a_i B^T>, sum_i c_i G c_i^T, cross, cgram)``
    at the codes before the update; ``cross`` (K x F) ``= C^T A`` and
    ``cgram = C^T C`` with the updated codes (None unless ``want_parts``)."""
    torch = torch_module()
    num = a._csr(a.data) @ basis_t
    den = codes @ gram
    c64 = codes.to(torch.float64)
    ab = float((c64 * num.to(torch.float64)).sum())
    quad = float((c64 * den.to(torch.float64)).sum())
    if update:
        _mu(codes, num, den, policy, policy.code_floor)
    if not want_parts:
        return ab, quad, None, None
    cross_t = a._csr(a.data, transposed=True) @ codes
    return ab, quad, cross_t.T.contiguous(), codes.T @ codes


def _predict(a: TorchCSR, codes, basis_t, shift):
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
        pred = _predict(a, head, basis_t, shift)
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
        pred = _predict(a, head, basis_t, shift)
        if entry_offset is not None:
            pred = pred + entry_offset
        cross = (a._csr(a.data / pred, transposed=True) @ head).T.contiguous()
    return loglik, cross
