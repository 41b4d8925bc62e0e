"""Blocks of cells: their data, the storage the data are held in, and their
data-only constants.

The storage of a block's data is decided once, when the block is made, and
picks the sweep kernel (:data:`bcnmf.core.updates.KERNELS`, keyed by storage
and loss):

* :data:`DENSE`: a numpy array, swept with numpy/BLAS;
* :data:`CSR`: a scipy.sparse CSR matrix, swept by the numba kernels of
  :mod:`bcnmf.core._csr_kernels`;
* :data:`TORCH_DENSE`: a dense torch tensor (CPU or CUDA);
* :data:`TORCH_CSR`: a :class:`~bcnmf.core.torch_arrays.TorchCSR`, swept by
  :mod:`bcnmf.core._torch_sparse`;
* :data:`MASKED`: dense data with missing entries and their observation
  mask (:class:`bcnmf.core.masked.MaskedBlock`).

Every block class declares what it is: ``storage``, ``resident`` (held in
memory, or re-read at every access of ``data``: a
:class:`~bcnmf.core.source.StreamBlock`), ``masked`` and ``mask`` (None
when nothing is missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from .backend import asarray_like, is_torch, is_torch_sparse, namespace
from .step import FROBENIUS
from .torch_arrays import TorchCSR

DENSE = "dense"
CSR = "csr"
TORCH_DENSE = "torch-dense"
TORCH_CSR = "torch-csr"
MASKED = "masked"

#: dense temporaries (predictions, ratios) are limited to this many entries per chunk
DENSE_CHUNK_ENTRIES = 1 << 22


def storage_of(data) -> str:
    """The storage of a block's data: :data:`CSR` (scipy.sparse),
    :data:`TORCH_CSR`, :data:`TORCH_DENSE` or :data:`DENSE` (anything else
    is swept as a numpy array)."""
    if sp.issparse(data):
        return CSR
    if isinstance(data, TorchCSR):
        return TORCH_CSR
    if is_torch_sparse(data):
        raise TypeError("A sparse torch tensor cannot be swept; convert it with "
                        "TorchCSR.from_torch.")
    return TORCH_DENSE if is_torch(data) else DENSE


@dataclass
class Block:
    """A block of cells held in memory and its data-only constants.

    Attributes
    ----------
    data : ndarray, scipy CSR matrix, torch tensor or TorchCSR
    const : float
        ``||A||_F^2`` (squared error) or ``sum(a log a - a)`` (KL).
    offset : array or None
        The per-feature constant added to predictions (KL only).
    storage : str
        How ``data`` are held (see the module); given, or decided from
        ``data`` when the block is made.
    resident : bool, class attribute
        True: the data are held in memory.
    masked : bool, class attribute
        False: nothing is missing.
    mask : None, class attribute
        No observation mask.
    """

    data: object
    const: float
    offset: np.ndarray | None = None
    storage: str | None = None

    resident: ClassVar[bool] = True
    masked: ClassVar[bool] = False
    mask: ClassVar[None] = None

    def __post_init__(self):
        if self.storage is None:
            self.storage = storage_of(self.data)


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
    """Wrap a validated block (ndarray, CSR, tensor or TorchCSR) with its constants."""
    storage = storage_of(data)
    values = data.data if storage in (CSR, TORCH_CSR) else data
    const = block_const(values, loss)
    if loss == FROBENIUS:
        return Block(data, const, None, storage)
    if offset is None:
        offset = np.zeros(data.shape[1])
    if storage in (TORCH_DENSE, TORCH_CSR):
        return Block(data, const, asarray_like(offset, values), storage)
    return Block(data, const, np.ascontiguousarray(offset, dtype=values.dtype), storage)
