"""The array types of the torch backend, and torch imported on first use.

* :class:`TorchCSR`: a sparse matrix on a torch device in CSR form (swept by
  :mod:`bcnmf.core._torch_sparse`);
* :class:`OnDevice`: an out-of-core matrix whose blocks are moved to a torch
  device as they are read (:class:`bcnmf.core.source.RowSource`).

Nothing here imports torch at import time: an instance of either class
exists only after torch was imported to make it, so
:func:`bcnmf.core.backend.is_torch` tests for them only when torch is in
``sys.modules``.
"""

from __future__ import annotations

import importlib
import sys

import numpy as np


def torch_module(required: bool = True):
    """The torch module, imported on first use; ``None`` when not installed and
    not ``required`` (else a clear ImportError)."""
    try:
        return importlib.import_module("torch")
    except ImportError:
        if not required:
            return None
        raise ImportError("This needs PyTorch, which is not installed: pip install "
                          "'bcnmf[torch]' (or torch>=2.1).") from None


def loaded_torch():
    """The torch module when it has been imported already, else ``None``
    (never imports it)."""
    return sys.modules.get("torch")


def torch_dtype(dtype):
    """torch float dtype of a numpy dtype: float32 stays float32, anything
    else becomes float64."""
    torch = torch_module()
    return torch.float32 if np.dtype(dtype) == np.float32 else torch.float64


def host_tensor(a, device):
    """A numpy array as a tensor on ``device`` (CPU: sharing memory when it
    can; read-only arrays, e.g. memory maps, are copied, since torch tensors
    are always writable)."""
    torch = torch_module()
    a = np.ascontiguousarray(a)
    if not a.flags.writeable:
        a = a.copy()
    return torch.as_tensor(a, device=device)


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


class OnDevice:
    """An out-of-core matrix whose blocks are moved to a torch ``device`` as
    they are read (numpy reads and checks them, torch sweeps them); it looks
    like a torch matrix (``dtype`` is the torch dtype of the blocks)."""

    def __init__(self, matrix, device):
        self.matrix = matrix
        self.device = device
        self.shape = tuple(matrix.shape)

    @property
    def dtype(self):
        return torch_dtype(self.matrix.dtype)
