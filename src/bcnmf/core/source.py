"""Row sources: the cells of a matrix, read one block of rows at a time.

The engine never needs a whole data matrix at once: a sweep streams blocks of
cells through the kernel and sums their basis parts.  A :class:`RowSource`
wraps anything that can be sliced by rows, in memory or not:

* numpy arrays and scipy.sparse matrices (validated beforehand),
* ``np.memmap`` (e.g. ``np.load(path, mmap_mode="r")``),
* HDF5 datasets (``h5py.Dataset``), including the ``X`` of an AnnData opened
  with ``anndata.read_h5ad(path, backed="r")``, dense or sparse (CSR),
* zarr arrays,

and :func:`scan` reads it once to compute what the fit needs from the data
(totals, per-feature sums, per-block constants), validating every block.
:class:`StreamBlock` is a block that re-reads its rows at every sweep, so the
memory held is the codes and the factors, plus one block at a time.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from .backend import (asarray_like, is_torch, is_torch_sparse, numpy_dtype, to_device,
                      torch_dtype)
from .blocks import CSR, DENSE, TORCH_CSR, TORCH_DENSE, Block, block_const
from .step import FROBENIUS
from .torch_arrays import OnDevice

#: default block size of out-of-core sources, in matrix entries (dense
#: float64: 128 MiB)
BLOCK_ENTRIES = 1 << 24


def is_out_of_core(A) -> bool:
    """Whether ``A`` is a matrix that should be streamed rather than loaded:
    a memory map (or a scipy sparse matrix over memory-mapped arrays), an
    HDF5 dataset (dense or AnnData's backed sparse), or a zarr array (or
    one of these streamed to a torch device, :class:`OnDevice`)."""
    if isinstance(A, (np.memmap, OnDevice)):
        return True
    if sp.issparse(A):   # a scipy matrix over memory-mapped arrays
        return _memory_mapped(getattr(A, "data", None))
    module = type(A).__module__.split(".")[0]
    if module in ("h5py", "zarr"):
        return getattr(A, "ndim", len(getattr(A, "shape", ()))) == 2
    if module == "anndata":   # backed sparse datasets (CSR/CSC over HDF5 or zarr)
        return hasattr(A, "shape") and hasattr(A, "format")
    return False


def _memory_mapped(a) -> bool:
    """Whether an array is a memory map or a view of one."""
    while a is not None:
        if isinstance(a, (np.memmap, mmap.mmap)):
            return True
        a = getattr(a, "base", None)
    return False


def _float_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


class RowSource:
    """A matrix of cells (rows) x features read by blocks of rows.

    ``read(lo, hi)`` returns rows ``lo:hi`` as a C-contiguous float ndarray or
    a canonical CSR matrix of :attr:`dtype` (float32 stays float32, anything
    else becomes float64).  In-memory inputs are returned as views when
    possible.
    """

    def __init__(self, matrix, name: str = "X", dtype=None):
        self.device = None   # a torch device that blocks are moved to after reading
        if isinstance(matrix, OnDevice):
            matrix, self.device = matrix.matrix, matrix.device
        shape = tuple(int(n) for n in matrix.shape)
        if len(shape) != 2:
            raise ValueError(f"{name} must be 2-D (cells x features); got shape {shape}.")
        if shape[0] < 1 or shape[1] < 1:
            raise ValueError(f"{name} has shape {shape}; at least one cell and one feature "
                             "are needed.")
        self.matrix = matrix
        self.name = name
        self.shape = shape
        self.dtype = _float_dtype((numpy_dtype(matrix) if is_torch(matrix) else matrix.dtype)
                                  if dtype is None else dtype)
        fmt = getattr(matrix, "format", None)
        self.sparse = sp.issparse(matrix) or fmt in ("csr", "csc") or is_torch_sparse(matrix)
        on_torch = is_torch(matrix) or self.device is not None
        #: the storage of the blocks :meth:`read` returns (:mod:`bcnmf.core.blocks`)
        self.storage = ((TORCH_CSR if on_torch else CSR) if self.sparse
                        else (TORCH_DENSE if on_torch else DENSE))

    def read(self, lo: int, hi: int, check: bool = False):
        """Rows ``lo:hi``; their values are checked when ``check`` (the
        first pass, :func:`scan`, checks every block)."""
        m = self.matrix
        if is_torch(m):
            return self._read_torch(lo, hi, check)
        if lo == 0 and hi == self.shape[0] and (sp.issparse(m) or isinstance(m, np.ndarray)) \
                and not isinstance(m, np.memmap):
            block = m
        else:
            block = m[lo:hi]
        if sp.issparse(block):
            block = sp.csr_matrix(block, dtype=self.dtype)
            if not block.has_canonical_format:
                block = block.copy()
                block.sum_duplicates()
            values = block.data
        else:
            block = np.ascontiguousarray(block, dtype=self.dtype)
            values = block
        if check and values.size and not (np.isfinite(values).all() and values.min() >= 0):
            bad = "non-finite" if not np.isfinite(values).all() else "negative"
            raise ValueError(
                f"{self.name} has {bad} values in rows {lo}-{hi - 1}; bcNMF needs finite, "
                "non-negative data (counts, intensities, or log1p of them).")
        if self.device is not None:
            block = to_device(block, self.device)
        return block

    def _read_torch(self, lo, hi, check):
        """Rows of a torch matrix (dense tensor or TorchCSR, validated
        beforehand), on its device, in :attr:`dtype`."""
        m = self.matrix
        whole = lo == 0 and hi == self.shape[0]
        if is_torch_sparse(m):
            block = m if whole else m.row_slice(lo, hi)
            if block.dtype != torch_dtype(self.dtype):
                block = block.to(dtype=torch_dtype(self.dtype))
            values = block.data
        else:
            block = (m if whole else m[lo:hi]).to(torch_dtype(self.dtype)).contiguous()
            values = block
        if check and values.numel() and not bool((values.isfinite() & (values >= 0)).all()):
            bad = "non-finite" if not bool(values.isfinite().all()) else "negative"
            raise ValueError(
                f"{self.name} has {bad} values in rows {lo}-{hi - 1}; bcNMF needs finite, "
                "non-negative data (counts, intensities, or log1p of them).")
        return block

    def bounds(self, block_rows: int | None) -> list[tuple[int, int]]:
        """Row ranges of the blocks: one block for ``None``."""
        n = self.shape[0]
        rows = n if block_rows is None else max(1, int(block_rows))
        return [(lo, min(n, lo + rows)) for lo in range(0, n, rows)]


def default_block_rows(source: RowSource) -> int | None:
    """Rows per block: ``None`` (one block) in memory; about
    :data:`BLOCK_ENTRIES` entries per block for out-of-core sources (stored
    entries for sparse ones, when their number is known: a dense-sized block
    of 7%-dense cells is 14x smaller, and every block costs a kernel launch
    and the allocation and sum of its basis parts)."""
    if not is_out_of_core(source.matrix):
        return None
    rows = max(1, BLOCK_ENTRIES // source.shape[1])
    nnz = _stored_entries(source.matrix) if source.sparse else None
    if nnz:
        rows = max(rows, int(BLOCK_ENTRIES * source.shape[0] // nnz))
    return min(rows, source.shape[0])


def _stored_entries(matrix) -> int | None:
    """Number of stored entries of a sparse matrix (scipy, or AnnData's
    backed CSR/CSC dataset), or None when it is not known cheaply."""
    nnz = getattr(matrix, "nnz", None)
    if nnz is None:
        try:
            nnz = matrix.group["data"].shape[0]
        except Exception:   # noqa: BLE001 - any other backed layout: unknown
            return None
    return int(nnz)


@dataclass
class Scan:
    """What a fit needs from one data matrix, from one pass over its blocks."""

    shape: tuple
    dtype: np.dtype
    total: float                 # sum of entries
    sumsq: float                 # sum of squared entries
    colsum: np.ndarray           # per-feature sums (float64)
    bounds: list = field(default_factory=list)
    consts: list = field(default_factory=list)   # per block, see blocks.block_const

    @property
    def mean_entry(self) -> float:
        return self.total / max(self.shape[0] * self.shape[1], 1)

    def scale(self, loss: str) -> float:
        """``D(A | 0)``: squared norm (squared error) or total (KL)."""
        return self.sumsq if loss == FROBENIUS else self.total


def scan(source: RowSource, loss: str, block_rows: int | None) -> Scan:
    """Read every block once: validate it and accumulate the statistics."""
    total = sumsq = 0.0
    colsum = np.zeros(source.shape[1])
    bounds = source.bounds(block_rows)
    consts = []
    for lo, hi in bounds:
        block = source.read(lo, hi, check=True)
        if is_torch(block):
            values = (block.data if is_torch_sparse(block) else block).reshape(-1)
            v64 = values.to(torch_dtype(np.float64))
            colsum += (block.col_sums() if is_torch_sparse(block)
                       else block.sum(dim=0, dtype=v64.dtype)).cpu().numpy()
        else:
            values = (block.data if sp.issparse(block) else block).ravel()
            v64 = values.astype(np.float64, copy=False)
            colsum += np.asarray(block.sum(axis=0, dtype=np.float64)).ravel()
        total += float(v64.sum())
        sumsq += float(v64 @ v64)
        consts.append(block_const(values, loss))
    return Scan(source.shape, source.dtype, total, sumsq, colsum, bounds, consts)


def as_csr_if_sparse(a: np.ndarray, density: float, chunk_entries: int = 1 << 22):
    """``a`` as CSR when at most ``density`` of its entries are nonzero, else
    ``a``; built chunk by chunk of rows, so the transient memory is one
    chunk's (``scipy.sparse.csr_matrix`` of the whole array would hold
    64-bit coordinates of every nonzero at once)."""
    if a.ndim != 2:
        return a
    per_row = np.count_nonzero(a, axis=1)
    nnz = int(per_row.sum())
    if nnz > density * a.size:
        return a
    indptr = np.zeros(a.shape[0] + 1, dtype=np.int64)
    np.cumsum(per_row, out=indptr[1:])
    index_dtype = np.int32 if max(nnz, a.shape[1]) < 2**31 else np.int64
    data = np.empty(nnz, dtype=a.dtype)
    indices = np.empty(nnz, dtype=index_dtype)
    step = max(1, chunk_entries // max(a.shape[1], 1))
    for lo in range(0, a.shape[0], step):
        rows, cols = np.nonzero(a[lo:lo + step])
        start, stop = indptr[lo], indptr[min(lo + step, a.shape[0])]
        data[start:stop] = a[lo:lo + step][rows, cols]
        indices[start:stop] = cols
    return sp.csr_matrix((data, indices, indptr.astype(index_dtype)), shape=a.shape)


class StreamBlock:
    """Rows ``lo:hi`` of a source, read again at every access of ``data``,
    with the constants of :class:`~bcnmf.core.blocks.Block`.

    Attributes
    ----------
    storage : str
        The storage of the rows read (that of the source).
    resident : bool, class attribute
        False: not held in memory.
    masked : bool, class attribute
        False: nothing is missing.
    mask : None, class attribute
        No observation mask.
    """

    resident: ClassVar[bool] = False
    masked: ClassVar[bool] = False
    mask: ClassVar[None] = None

    def __init__(self, source: RowSource, lo: int, hi: int, const: float, offset=None):
        self.source, self.lo, self.hi = source, lo, hi
        self.const = const
        self.offset = offset
        self.storage = source.storage

    @property
    def data(self):
        return self.source.read(self.lo, self.hi)


#: a dense in-memory KL block with at most this fraction of nonzero entries is
#: stored as CSR once (see :func:`make_blocks`): the CSR copy (a value and a
#: 32-bit column index per nonzero) is then no larger than the dense block in
#: float32 and at most three quarters of it in float64
KL_CSR_DENSITY = 0.5


def kernel_layout(data, loss: str):
    """How an in-memory block is kept for the sweeps: a dense numpy KL block
    with at most ``KL_CSR_DENSITY`` nonzero entries as CSR (see
    :func:`make_blocks`), anything else as it is."""
    if loss != FROBENIUS and isinstance(data, np.ndarray):
        return as_csr_if_sparse(data, KL_CSR_DENSITY)
    return data


def make_blocks(source: RowSource, info: Scan, loss: str, offset=None,
                keep_dense: bool = False) -> list:
    """The blocks of a scanned source (a single in-memory block is read once
    and kept).

    The KL kernel visits only the nonzero entries, and a dense block is
    otherwise converted to CSR chunk by chunk at every sweep (most of a dense
    KL sweep's time: 0.37 s per iteration on the speed benchmark's dense
    workload).  So a dense numpy block kept in memory with at most
    ``KL_CSR_DENSITY`` nonzero entries is stored as CSR once (at most 0.75x
    the dense size in float64, 1x in float32), unless ``keep_dense``
    (blocks with missing values, whose weights need the dense layout)."""
    if offset is None and loss != FROBENIUS:
        offset = np.zeros(source.shape[1])
    if offset is not None:
        offset = np.ascontiguousarray(offset, dtype=source.dtype)
        if is_torch(source.matrix) or source.device is not None:
            offset = asarray_like(offset, source.read(0, 1))
    if len(info.bounds) == 1 and not is_out_of_core(source.matrix):
        data = source.read(0, source.shape[0])
        return [Block(data if keep_dense else kernel_layout(data, loss), info.consts[0],
                      offset)]
    return [StreamBlock(source, lo, hi, c, offset) for (lo, hi), c in zip(info.bounds,
                                                                          info.consts)]
