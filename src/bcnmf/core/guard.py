"""Resource guard: no dense intermediate larger than a fraction of available memory.

Before the fit copies a whole data matrix (a dtype or memory-order conversion
of in-memory dense data, the zero-filled copy and mask of data with missing
values, a block of an out-of-core source), it compares the copy's size with
``memory_fraction`` x the memory available now (``MemAvailable`` of
``/proc/meminfo``, else ``os.sysconf``; no psutil).  Above the limit it
switches to the block engine (blocks of cells small enough to fit), and when
that is impossible it stops with :class:`MemoryLimitError`, which says how to
proceed, instead of being killed by the operating system.

Configure with :func:`set_config` (also ``bcnmf.set_config``), the
``BCNMF_MEMORY_FRACTION`` environment variable, or :func:`config_context`.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

_CONFIG = {"memory_fraction": None}
#: default fraction of the available memory one dense intermediate may take
DEFAULT_FRACTION = 0.5


class MemoryLimitError(MemoryError):
    """A dense intermediate would exceed the configured share of available memory."""


def get_config() -> dict:
    """The current settings: ``{"memory_fraction": float}``."""
    frac = _CONFIG["memory_fraction"]
    if frac is None:
        env = os.environ.get("BCNMF_MEMORY_FRACTION")
        frac = float(env) if env else DEFAULT_FRACTION
    return {"memory_fraction": frac}


def set_config(memory_fraction=None) -> None:
    """Set the share of available memory (0 < f <= 1) one dense intermediate may
    take before bcnmf switches to blocks of cells or stops with an error;
    ``None`` restores the default (0.5, or ``BCNMF_MEMORY_FRACTION``)."""
    if memory_fraction is not None:
        f = memory_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
            raise ValueError(f"memory_fraction must be a real in (0, 1]; got {f!r}.")
        memory_fraction = float(f)
    _CONFIG["memory_fraction"] = memory_fraction


@contextlib.contextmanager
def config_context(memory_fraction=None):
    """Temporarily :func:`set_config`."""
    old = _CONFIG["memory_fraction"]
    set_config(memory_fraction)
    try:
        yield
    finally:
        _CONFIG["memory_fraction"] = old


def available_memory() -> int | None:
    """Bytes of memory available now, or None when it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def limit_bytes() -> float:
    """The largest dense intermediate allowed now (inf when memory is unknown)."""
    avail = available_memory()
    return float("inf") if avail is None else get_config()["memory_fraction"] * avail


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**20 else f"{n:.0f} bytes"


def _explain(nbytes: float, limit: float) -> str:
    f = get_config()["memory_fraction"]
    return (f"{_gib(nbytes)}, more than memory_fraction={f:g} of the {_gib(limit / f)} "
            "available")


def check(nbytes: float, what: str, how: str) -> None:
    """Raise :class:`MemoryLimitError` when ``nbytes`` exceed the limit."""
    limit = limit_bytes()
    if nbytes > limit:
        raise MemoryLimitError(f"{what} would need a dense array of {_explain(nbytes, limit)}. "
                               f"{how} (or raise the limit with "
                               "bcnmf.set_config(memory_fraction=...)).")


def _copied(A, dtype) -> bool:
    """Whether reading an in-memory dense ``A`` as C-ordered ``dtype`` copies it."""
    return not (A.flags.c_contiguous and A.dtype == dtype)


def block_rows_for(A, name: str, block_rows, dtype, missing: bool = False):
    """Rows per block for ``A`` under the guard: ``block_rows`` unchanged when
    the whole-matrix copies fit; else blocks small enough to fit (a dense copy
    of one block at a time); ``dtype`` None means ``A``'s working dtype.
    Raises :class:`MemoryLimitError` when even one cell does not fit, or when
    data with missing values (which need a zero-filled copy and a mask of the
    whole matrix) do not fit."""
    if not isinstance(A, np.ndarray) or A.ndim != 2:
        return block_rows
    if dtype is None:   # the engine's working dtype: float32 stays, the rest is float64
        dtype = A.dtype if A.dtype in (np.float32, np.float64) else np.float64
    n, f = A.shape
    item = np.dtype(dtype).itemsize
    limit = limit_bytes()
    if missing:
        check(n * f * (item + 1),
              f"{name} has missing values: the masked fit's zero-filled copy and mask",
              "Impute or drop the missing values, or fit fewer cells")
    rows = n if block_rows is None else int(block_rows)
    per_block = rows * f * item
    if not _copied(A, dtype) and not isinstance(A, np.memmap):
        return block_rows   # read in place: no copy
    if per_block <= limit:
        return block_rows
    fit_rows = int(limit // (f * item))
    if fit_rows < 1:
        check(f * item, f"One cell of {name} ({f} features)",
              "Select fewer features, or pass sparse input")
    return fit_rows
