"""Array backends: the namespace, device and dtype of the arrays a fit runs on.

The numerical core is written once against the array API
(`array-api-compat <https://data-apis.org/array-api-compat/>`_): every
function takes its namespace from its inputs (:func:`namespace`), never from
global state, and allocates with the inputs' device and dtype.  Two backends
exist:

* numpy (and scipy.sparse CSR): dense blocks through numpy/BLAS, CSR blocks
  through the numba kernels of :mod:`bcnmf.core._csr_kernels`;
* torch (CPU or CUDA), dense tensors or sparse blocks held as
  :class:`~bcnmf.core.torch_arrays.TorchCSR`, swept by
  :mod:`bcnmf.core._torch_sparse`.

The few operations the array API lacks (in-place clipping, ``vdot``) live
here, with the exact numpy expression on the numpy path so that numpy results
do not depend on this layer.  Random draws are made on the host with numpy
and moved (:func:`asarray_like`), so both backends start from the same
factors.  torch is imported on first use only.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .torch_arrays import (OnDevice, TorchCSR, host_tensor, loaded_torch, torch_dtype,
                           torch_module)

__all__ = ["torch_module", "torch_dtype", "host_tensor", "is_torch", "is_torch_sparse",
           "namespace", "device_of", "resolve_device", "numpy_dtype", "to_numpy",
           "asarray_like", "to_device", "copy", "contiguous", "maximum_", "vdot64",
           "all_finite"]


def is_torch(a) -> bool:
    """Whether ``a`` is a torch tensor, a :class:`TorchCSR` or an
    :class:`OnDevice` matrix (never imports torch: none of them exists before
    torch is imported)."""
    torch = loaded_torch()
    return torch is not None and isinstance(a, (torch.Tensor, TorchCSR, OnDevice))


def is_torch_sparse(a) -> bool:
    """A torch sparse matrix: a :class:`TorchCSR` or a sparse torch tensor."""
    torch = loaded_torch()
    return torch is not None and (isinstance(a, TorchCSR) or (
        isinstance(a, torch.Tensor) and a.layout != torch.strided))


def namespace(*arrays):
    """The array-API namespace of the (non-None) arrays: numpy for ndarrays and
    scipy.sparse, ``array_api_compat.torch`` for tensors.  Mixing raises."""
    torch_args = [a for a in arrays if a is not None and is_torch(a)]
    if not torch_args:
        from array_api_compat import numpy as xp

        return xp
    if len(torch_args) != len([a for a in arrays if a is not None]):
        raise TypeError("Mixed numpy and torch arrays; pass all inputs on one backend "
                        "(or use device= to move numpy inputs to torch).")
    from array_api_compat import torch as xp

    return xp


def device_of(a):
    """The torch device of ``a``, or ``None`` for host (numpy) arrays."""
    return a.device if is_torch(a) else None


def resolve_device(device):
    """Validate ``device`` (None, "cpu", "cuda", "cuda:N" or a torch.device)
    and return a ``torch.device`` (or None)."""
    if device is None:
        return None
    torch = torch_module()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={device!r} is not a torch device ({err}); expected None, "
                         "'cpu', 'cuda', 'cuda:N' or a torch.device.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} was requested but CUDA is not available "
                           "(torch.cuda.is_available() is False); use device='cpu' or None.")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r}: bcnmf runs on 'cpu' and 'cuda' torch devices "
                         "only.")
    return dev


def numpy_dtype(a) -> np.dtype:
    """numpy dtype of an array or tensor (torch float32 -> np.float32, ...)."""
    dtype = a.dtype
    if is_torch(a):
        return np.dtype(str(dtype).replace("torch.", ""))
    return np.dtype(dtype)


def to_numpy(a):
    """Host numpy copy (or view) of ``a``: tensors leave their device; numpy,
    scipy.sparse and None pass through.  A :class:`TorchCSR` becomes scipy CSR."""
    if a is None or not is_torch(a):
        return a
    if isinstance(a, TorchCSR):
        return a.to_scipy()
    if a.layout != loaded_torch().strided:
        a = a.to_dense()
    return a.detach().cpu().numpy()


def asarray_like(a, like):
    """``a`` (numpy, torch or None) on the backend, device and dtype of
    ``like``: host draws are moved to the device; with a numpy ``like``, numpy
    ``a`` is returned unchanged and a tensor comes back to the host."""
    if a is None:
        return None
    if not is_torch(like):
        return to_numpy(a)
    torch = torch_module()
    dtype = like.dtype if like.dtype in (torch.float32, torch.float64) else torch.float64
    if isinstance(a, torch.Tensor):
        return a.to(device=like.device, dtype=dtype).contiguous()
    return host_tensor(a, like.device).to(dtype).contiguous()


def to_device(A, device):
    """A matrix (numpy, scipy.sparse or torch) as a torch matrix on ``device``
    (a ``torch.device``): dense stays dense, sparse becomes :class:`TorchCSR`."""
    torch = torch_module()
    if isinstance(A, TorchCSR):
        return A.to(device)
    if sp.issparse(A):
        return TorchCSR.from_scipy(sp.csr_matrix(A), device)
    if isinstance(A, torch.Tensor):
        if A.layout != torch.strided:
            return TorchCSR.from_torch(A).to(device)
        return A.to(device)
    return host_tensor(np.asarray(A), device)


def copy(a):
    """A copy of a dense array or tensor."""
    return a.clone() if is_torch(a) else a.copy()


def contiguous(a):
    return a.contiguous() if is_torch(a) else np.ascontiguousarray(a)


def maximum_(x, floor) -> None:
    """In place ``x <- max(x, floor)`` (scalar floor)."""
    if is_torch(x):
        x.clamp_(min=floor)
    else:
        np.maximum(x, floor, out=x)


def vdot64(a, b) -> float:
    """``sum(a * b)`` of two same-shape arrays, as a Python float (numpy: ``np.vdot``)."""
    if is_torch(a):
        return float((a.reshape(-1) * b.reshape(-1)).sum())
    return float(np.vdot(a, b))


def all_finite(a) -> bool:
    if a is None:
        return True
    if is_torch(a):
        return bool(loaded_torch().isfinite(a).all())
    return bool(np.all(np.isfinite(a)))
