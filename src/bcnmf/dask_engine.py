"""Dask engine: the full-batch bcNMF update as a map-reduce on a Dask cluster.

Every sweep is one round trip between the client and the cluster:

* **map**, one task per chunk of cells (a ``dask.array`` chunked along cells
  only, with dense numpy or scipy.sparse CSR chunks): the chunk's codes take
  one step of the kernel (:func:`bcnmf.core.updates.sweep_block`), which also
  returns the chunk's divergence and its additive parts of the basis step;
* **reduce**: the parts (``K x n_features``, ``K x K`` or ``K``) are summed by
  a tree reduction and only the sum travels to the client;
* the client takes the basis step (:func:`~bcnmf.core.updates.basis_step`),
  normalises it and sends the new ``K x n_features`` basis out with the next
  sweep.

The data chunks and the codes never leave the workers: the codes of every
chunk are persisted there (Dask futures) and the client holds only handles
to them.  The gauge fix (``codes *= scale``) is applied lazily, by the next
task that touches a chunk, so it costs no extra round trip.

Everything else is the in-memory engine's (:mod:`bcnmf.core.fit`,
:mod:`bcnmf.core.solver`): relative alpha, step policy, Poisson offsets,
the shared topics of stable Poisson and their held sweeps, missing values
(:mod:`bcnmf.core.masked`: masked chunks and the prior at missing entries,
whose data-only part is summed over the chunks at set-up), stopping rule,
history, divergence handling, code refinement, restarts and their
selection.  The loop is :func:`bcnmf.core.solver.solve`, with :class:`OnDask`
as its executor; ``tests/test_dask.py`` checks that both engines return the
same fit.

Faults.  Persisted codes keep their lineage (the initial codes are a task,
regenerated from the host random generator's state at the chunk's first
draw, and every later version is a task of the previous version, the data
chunk and that sweep's basis), so when a worker is lost Dask recomputes the
chunks it held and the fit returns the same answer.  Recomputing a chunk
replays its sweeps since the start, so a late loss costs up to one fit of
that chunk.

Only imported when used: ``import bcnmf`` does not import dask.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from .core import masked
from .core.fit import (FitSettings, _drawn, _restart_seeds, _stack_offset, cell_total_ratio,
                       choose_run, consensus_state, contrastive_start, fill_missing, finish,
                       prepare, shared_options, transform_codes)
from .core.checkpoint import read_basis, write_basis
from .core.init import codes_for_basis
from .core.solver import Contrast, gauge_scale, refine_block, solve
from .core.shared_count import sample_rows
from .core.source import RowSource, Scan
from .core.updates import (FROBENIUS, Block, Held, block_const, held_products, sweep_block,
                           view_basis)

#: number of partial results combined by one task of the tree reductions
FAN_IN = 8
#: default rows per chunk when a numpy/scipy input is sent to the Dask engine
#: (about this many matrix entries per chunk)
CHUNK_ENTRIES = 1 << 24


def is_dask_array(A) -> bool:
    """Whether ``A`` is a ``dask.array.Array`` (without importing dask)."""
    mod = sys.modules.get("dask.array")
    return mod is not None and isinstance(A, mod.Array)


def current_client():
    """The current ``distributed.Client``, or None (dask's default scheduler)."""
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


def _require_dask():
    try:
        import dask.array  # noqa: F401
    except ImportError as err:  # pragma: no cover - exercised without dask
        raise ImportError("The Dask engine needs dask: pip install 'bcnmf[dask]' "
                          "(dask[array] and distributed).") from err


def as_cell_chunks(A, name: str = "X", chunk_rows: int | None = None):
    """``A`` as a dask array chunked along cells only.

    A dask array is rechunked to a single chunk along features if needed; a
    numpy array or scipy sparse matrix is wrapped with ``chunk_rows`` cells
    per chunk (default: about :data:`CHUNK_ENTRIES` entries per chunk)."""
    _require_dask()
    import dask.array as da

    if not is_dask_array(A):
        if not (isinstance(A, np.ndarray) or sp.issparse(A)):
            raise TypeError(f"The Dask engine takes {name} as a dask array, a numpy array or a "
                            f"scipy sparse matrix; got {type(A).__name__}.")
        if A.ndim != 2:
            raise ValueError(f"{name} must be 2-D (cells x features); got shape {A.shape}.")
        rows = chunk_rows or max(1, CHUNK_ENTRIES // max(A.shape[1], 1))
        if sp.issparse(A):
            A = sp.csr_matrix(A)
            return da.from_array(A, chunks=(rows, -1), asarray=False,
                                 meta=sp.csr_matrix((0, 0), dtype=A.dtype))
        return da.from_array(A, chunks=(rows, -1))
    if A.ndim != 2:
        raise ValueError(f"{name} must be 2-D (cells x features); got shape {A.shape}.")
    if any(np.isnan(n) for n in A.shape):
        raise ValueError(f"{name} has unknown chunk sizes (shape {A.shape}); call "
                         f"{name}.compute_chunk_sizes() first.")
    if A.shape[0] < 1 or A.shape[1] < 1:
        raise ValueError(f"{name} has shape {A.shape}; at least one cell and one feature "
                         "are needed.")
    dtype = np.dtype(A.dtype)
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)
            or dtype == np.bool_):
        raise ValueError(f"{name} has dtype {dtype}; the Dask engine takes real numbers only "
                         "(float, integer or boolean).")
    if chunk_rows is not None:
        A = A.rechunk({0: chunk_rows})
    if len(A.chunks[1]) > 1:
        A = A.rechunk({1: -1})
    return A


# --------------------------------------------------------------------------- worker side
# Functions below run on the workers, one chunk at a time.

_QUIET = dict(over="ignore", under="ignore", invalid="ignore", divide="ignore")


def _mask_name(name: str) -> str:
    """The keyword of ``name``'s observation mask."""
    return "mask" if name == "X" else f"{name}_mask"


def _observed_chunk(chunk, mask, name: str, lo: int):
    """The observation mask of a chunk (True = observed): ``mask`` (its rows
    of the user's mask, or None) and not NaN, as
    :func:`bcnmf.core.masked.observed`; None when no mask was given and
    nothing is missing.  Sparse chunks take no missing values."""
    if not sp.issparse(chunk):
        return masked.observed(np.asarray(chunk), mask)
    hi = lo + chunk.shape[0]
    if mask is not None:
        raise ValueError(f"{_mask_name(name)} was given with sparse chunks of {name} (rows "
                         f"{lo}-{hi - 1}); BCNMF fits around missing values in dense input "
                         "only: pass dense chunks, or impute the missing entries.")
    if np.isnan(chunk.data).any():
        raise ValueError(f"{name} is sparse and contains NaN in rows {lo}-{hi - 1}; BCNMF "
                         "fits around missing values (NaN) in dense input only: pass dense "
                         "chunks (NaN marking the missing entries), or impute them, or drop "
                         "the affected cells or features.")
    return None


def _prepare_chunk(chunk, dtype, name, lo, mask=None):
    """A chunk as the kernel takes it and its observation mask: ``(block,
    observed)``.

    ``block`` is a validated C-contiguous float ndarray or canonical CSR of
    ``dtype``, with zeros at the missing entries (NaN of dense chunks, and
    entries where ``mask`` is False, whatever their values; the chunk itself
    is not modified); ``observed`` is :func:`_observed_chunk`'s mask."""
    if not (isinstance(chunk, np.ndarray) or sp.issparse(chunk)):
        raise TypeError(f"{name} has a chunk of type {type(chunk).__name__} at rows {lo}-; "
                        "the Dask engine takes numpy or scipy.sparse chunks.")
    hi = lo + chunk.shape[0]
    observed = _observed_chunk(chunk, mask, name, lo)
    if observed is not None:
        chunk = masked.filled(chunk, observed)
    block = RowSource(chunk, name, dtype).read(0, chunk.shape[0])
    values = (block.data if sp.issparse(block) else block).ravel()
    if values.size and not (np.isfinite(values).all() and values.min() >= 0):
        bad = "non-finite" if not np.isfinite(values).all() else "negative"
        raise ValueError(
            f"{name} has {bad} values in rows {lo}-{hi - 1}; bcNMF needs finite, "
            "non-negative data (counts, intensities, or log1p of them).")
    return block, observed


def _scan_chunk(block, observed, loss):
    """``(total, sumsq, colsum, [const], n_observed, missing)`` of a prepared
    chunk: the statistics of :func:`scan`, the per-feature numbers of observed
    entries and whether the chunk has an observation mask."""
    values = (block.data if sp.issparse(block) else block).ravel()
    v64 = values.astype(np.float64, copy=False)
    colsum = np.asarray(block.sum(axis=0, dtype=np.float64)).ravel()
    n_obs = (np.full(block.shape[1], float(block.shape[0])) if observed is None
             else observed.sum(axis=0, dtype=np.float64))
    return (float(v64.sum()), float(v64 @ v64), colsum, [block_const(values, loss)], n_obs,
            observed is not None)


def _add_scans(*parts):
    total = sum(p[0] for p in parts)
    sumsq = sum(p[1] for p in parts)
    colsum, n_obs = parts[0][2].copy(), parts[0][4].copy()
    for p in parts[1:]:
        colsum += p[2]
        n_obs += p[4]
    return (total, sumsq, colsum, [c for p in parts for c in p[3]], n_obs,
            any(p[5] for p in parts))


def _full_mask(observed, shape):
    """A chunk's observation mask on a dataset with missing values (all True
    for a chunk with none)."""
    return np.ones(shape, dtype=bool) if observed is None else observed


def _spread_task(block, mask, mean):
    """The chunk's part of the prior's spread (:func:`bcnmf.core.masked.spread_sumsq`)."""
    return masked.spread_sumsq(block, mask, mean)


def _kernel_block(data, mask, const, payload):
    """The kernel's block of a chunk: its data with the dataset's offset,
    and with its observation mask and the dataset's prior when the dataset
    has missing values (:func:`bcnmf.core.masked.wrap_blocks`)."""
    _, _, _, offset, prior = payload
    block = Block(data, const, offset)
    return block if mask is None else masked.MaskedBlock(block, mask, prior)


def _codes_of(state):
    """The codes of a chunk from what its last task returned: the codes, or
    the ``(codes, statistics)`` pair of a sweep task (persisted
    as it is, so that no task per chunk is spent taking the codes out)."""
    return state[0] if isinstance(state, tuple) else state


def _scaled(codes, scales):
    """A copy of the codes with the pending gauge scales applied in order:
    each ``(start, scale)`` is ``codes[:, start:start + len(scale)] *=
    scale`` (what :meth:`bcnmf.core.executor.InMemory.scale` does in
    place)."""
    codes = _codes_of(codes).copy()
    for start, scale in scales:
        stop = start + scale.shape[0]
        if start == 0 and stop == codes.shape[1]:
            codes *= scale
        else:
            codes[:, start:stop] *= scale
    return codes


def _colsum(codes):
    return _codes_of(codes).sum(axis=0, dtype=np.float64)


def _add_arrays(*arrays):
    return sum(arrays)   # a new array: the inputs are not modified


def _with_shared(codes, scales, extra, row):
    """A chunk's codes with the shared topics' codes appended: ``extra``
    (the chunk's own, for the background) or ``row`` repeated (the target's
    starting codes, :func:`bcnmf.core.fit._augment`)."""
    codes = _scaled(codes, scales)
    if extra is None:
        extra = np.broadcast_to(row, (codes.shape[0], row.shape[0]))
    extra = np.asarray(_codes_of(extra), dtype=codes.dtype)
    return np.ascontiguousarray(np.concatenate([codes, extra], axis=1))


def _sweep_task(block, mask, codes, scales, const, payload, want_div):
    """One sweep of one chunk: ``(new codes, (divergence, parts))``."""
    basis, loss, policy = payload[:3]
    with np.errstate(**_QUIET):
        codes = _scaled(codes, scales)
        div, parts = sweep_block(_kernel_block(block, mask, const, payload), codes,
                                 view_basis(basis, loss), loss, policy, want_div=want_div)
    return codes, (div, parts)


def _held_sweep_task(block, state, scales, const, payload, want_div, tail_t, first):
    """One held sweep of one chunk (:func:`bcnmf.core.updates.sweep_block`
    with ``held``): the products of the fixed rows with the chunk
    (:func:`~bcnmf.core.updates.held_products`) are computed once (KL: after
    the codes on the fixed rows last changed) and then carried with the
    chunk's state (datasets without missing values only, see
    :attr:`OnDask.can_hold`).  Returns ``(new codes, (div, parts), products)``,
    the divergence None for KL."""
    head, loss, policy = payload[:3]
    with np.errstate(**_QUIET):
        codes = _scaled(state, scales)   # (the scales touch the free columns only)
        block = _kernel_block(block, None, const, payload)
        products = state[2] if isinstance(state, tuple) and len(state) == 3 else \
            held_products(block, codes, first, tail_t, loss)
        div, parts = sweep_block(block, codes, view_basis(head, loss), loss, policy,
                                 want_div=want_div and loss == FROBENIUS,
                                 held=Held(tail_t, first, products))
    return codes, (div, parts), products


def _eval_task(block, mask, codes, scales, const, payload):
    """Divergence of one chunk at the current state (no update)."""
    basis, loss, policy = payload[:3]
    with np.errstate(**_QUIET):
        codes = _scaled(codes, scales) if scales else _codes_of(codes)
        return sweep_block(_kernel_block(block, mask, const, payload), codes,
                           view_basis(basis, loss), loss, policy, update=False,
                           want_parts=False)[0]


def _refine_task(block, mask, codes, scales, payload, max_iter, tol):
    """:func:`~bcnmf.core.solver.refine_block` on one chunk: its new codes."""
    basis, loss, policy = payload[:3]
    with np.errstate(**_QUIET):
        codes = _scaled(codes, scales)
        refine_block(_kernel_block(block, mask, 0.0, payload), codes, view_basis(basis, loss),
                     loss, policy, max_iter, tol)
    return codes


def _add_sweeps(*stats):
    """Sum of ``(divergence, parts)`` pairs (None divergence stays None; the
    sum has the parts' class, :class:`~bcnmf.core.masked.MaskedParts` for
    chunks with missing values)."""
    div = 0.0
    first = stats[0][1]
    parts = type(first)(first.cross.copy(), np.array(first.second, copy=True))
    for i, (d, p) in enumerate(stats):
        div = None if d is None or div is None else div + d
        if i:
            parts += p
    return div, parts


def _add_floats(*values):
    return float(sum(values))


def _draw_codes(state, bitgen, rows, k, method, factor, dtype):
    """Initial codes of a chunk: the host generator's draws for these rows,
    replayed from its state at the chunk's first draw."""
    rng = np.random.Generator(bitgen())
    rng.bit_generator.state = state
    draws = rng.random((rows, k)) if method == "uniform" else \
        factor * np.abs(rng.standard_normal((rows, k)))
    return np.ascontiguousarray(draws, dtype=dtype)


def _codes_for_basis_task(block, mask, basis):
    """A chunk's starting codes for ``basis`` as ``transform`` starts them (on
    the observed entries when the dataset has missing values)."""
    if mask is None:
        return codes_for_basis(block, basis)
    return masked.start_codes(block, mask, basis)


def _as_codes(a, dtype):
    return np.array(a, dtype=dtype, order="C")


def _transform_chunk(chunk, mask, payload, block_info=None):
    """:func:`bcnmf.core.fit.transform_codes` on one chunk (``mask``: its rows
    of the observation mask, or None)."""
    basis, s, policy, offset, max_iter, tol, prior, prior_given = payload
    if chunk.shape[0] == 0:
        return np.zeros((0, basis.shape[0]), dtype=basis.dtype)
    lo = block_info[0]["array-location"][0][0] if block_info else 0
    observed = _observed_chunk(chunk, mask, "X", lo)
    if observed is not None and not prior_given:
        hi = lo + chunk.shape[0]
        raise ValueError(f"X has missing values (NaN) in rows {lo}-{hi - 1}; the codes of "
                         "cells with missing values depend on the fitted model's missing-value "
                         "prior, which this transform of a dask array was not given: transform "
                         "a numpy array (missing values are supported there), or impute them.")
    return transform_codes(chunk, basis, s, policy, offset, max_iter, tol, mask=observed,
                           prior=prior)[0]


# --------------------------------------------------------------------------- client side

class Runner:
    """Runs the per-sweep graphs: persists the new codes on the cluster and
    brings the small reduced results back, in one round trip.

    ``client`` is a ``distributed.Client`` or None (dask's default
    scheduler, e.g. threads).  ``bytes_fetched`` counts what came back to
    the client (its pickled size)."""

    def __init__(self, client=None):
        self.client = client
        self.bytes_fetched = 0
        self.round_trips = 0

    def run(self, keep, fetch=None):
        """Persist the delayed objects in ``keep``; compute ``fetch`` (small,
        optional) and return ``(persisted keep, value of fetch)``."""
        import pickle

        import dask

        if fetch is None:   # persist and wait until done
            if self.client is None:
                return list(dask.persist(*keep)), None
            from distributed import futures_of, wait

            kept = self.client.persist(list(keep))
            wait(futures_of(kept))
            return list(kept), None
        if self.client is None:
            *kept, got = dask.persist(*keep, fetch)
            value = got.compute()
        else:
            from distributed import futures_of

            *kept, got = self.client.persist(list(keep) + [fetch])
            value = self.client.gather(futures_of(got)[0])
        self.bytes_fetched += len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        self.round_trips += 1
        return list(kept), value


def _delayed(f, nout=None):
    import dask

    return dask.delayed(f, pure=True, nout=nout)


def _tree(items, combine):
    """Tree reduction of delayed objects (``FAN_IN`` per task)."""
    while len(items) > 1:
        items = [_delayed(combine)(*items[i:i + FAN_IN]) for i in range(0, len(items),
                                                                         FAN_IN)]
    return items[0]


def _pack(*items):
    return items


def _payload(basis, loss, policy, offset, prior=None):
    """The per-sweep constants of one dataset as one small task of the graph:
    ``(basis, loss, policy, offset, prior)``, ``prior`` the dataset's
    :class:`~bcnmf.core.masked.MissingPrior` (or None).

    The basis, the offset and the prior are keys named by their content, so
    the target and background payloads of a sweep share one copy of the
    basis, the offsets and priors are sent once per fit, and the scheduler
    keeps one basis per sweep for the lineage of the codes."""
    import dask

    basis = dask.delayed(np.array(basis, copy=True), pure=True)
    if offset is not None:
        offset = dask.delayed(offset, pure=True)
    if prior is not None:
        prior = dask.delayed(prior, pure=True)
    return _delayed(_pack)(basis, loss, policy, offset, prior)


@dataclass
class _Side:
    """One dataset on the cluster: persisted prepared chunks and their rows
    and constants; with missing values, the persisted observation mask of
    every chunk (``masks``, else None) and the dataset's prior (``prior``,
    None also when :data:`bcnmf.core.masked.PRIOR` is off)."""

    chunks: list
    bounds: list
    info: Scan | None = None
    offset: np.ndarray | None = None
    masks: list | None = None
    prior: masked.MissingPrior | None = None

    @property
    def consts(self):
        return self.info.consts

    @property
    def chunk_masks(self) -> list:
        """The observation mask of every chunk (None for each without missing values)."""
        return [None] * len(self.chunks) if self.masks is None else self.masks


@dataclass
class _Codes:
    """Handles to the persisted codes of both datasets, and the gauge scales
    still to be applied to each (``(start, scale)`` pairs, in order)."""

    x: list
    y: list
    sx: tuple = ()
    sy: tuple = ()


def mask_chunks(mask, A, name: str = "X"):
    """An observation mask (True = observed) of the dask array ``A`` as a
    dask array with ``A``'s chunks: ``mask`` is a numpy or a dask bool array
    of ``A``'s shape."""
    import dask.array as da

    mname = _mask_name(name)
    if not is_dask_array(mask):
        mask = np.asarray(mask)
    if tuple(mask.shape) != tuple(A.shape):
        raise ValueError(f"{mname} must have the shape of {name}, {tuple(A.shape)}; got "
                         f"{tuple(mask.shape)}.")
    if np.dtype(mask.dtype) != np.bool_:
        raise ValueError(f"{mname} must be a boolean array (True = observed, False = "
                         f"missing); got dtype {mask.dtype}.")
    return mask.rechunk(A.chunks) if is_dask_array(mask) else da.from_array(mask, A.chunks)


def _load(runner, A, name, loss, dtype=None, mask=None):
    """Prepare, validate, persist and scan a dask array: ``_Side`` with its
    ``Scan``.  One round trip; two more with missing values (NaN entries, or
    ``mask``, a numpy or dask bool array, False): the prior's spread about
    the observed means, and the masks persisted."""
    A = as_cell_chunks(A, name)
    dtype = np.dtype(A.dtype if dtype is None else dtype)
    dtype = dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)
    bounds, lo = [], 0
    for n in A.chunks[0]:
        bounds.append((lo, lo + n))
        lo += n
    masks = ([None] * len(bounds) if mask is None
             else mask_chunks(mask, A, name).to_delayed().ravel())
    prepared = [_delayed(_prepare_chunk, nout=2)(c, dtype, name, b[0], m)
                for c, b, m in zip(A.to_delayed().ravel(), bounds, masks)]
    chunks, observed = [p[0] for p in prepared], [p[1] for p in prepared]
    stats = _tree([_delayed(_scan_chunk)(c, o, loss) for c, o in prepared], _add_scans)
    kept, (total, sumsq, colsum, consts, n_obs, missing) = runner.run(chunks + observed, stats)
    chunks, observed = kept[:len(bounds)], kept[len(bounds):]
    info = Scan(tuple(int(n) for n in A.shape), dtype, total, sumsq, colsum, bounds, consts)
    side = _Side(chunks, bounds, info)
    if missing:
        _with_missing(runner, side, observed, n_obs, name)
    return side


def _with_missing(runner, side: _Side, observed, n_obs, name: str) -> None:
    """Set up a dataset with missing values as :func:`bcnmf.core.fit.fit_factors`
    does: per-feature sums over the observed entries
    (:func:`~bcnmf.core.masked.observed_colsum`), every chunk's mask
    persisted and the dataset's prior (:func:`~bcnmf.core.masked.fit_prior`,
    its spread summed over the chunks)."""
    n, f = side.info.shape
    if not n_obs.sum() > 0:
        raise ValueError(f"Input {name} has no observed values: all {n * f} entries are "
                         "missing (NaN or masked).")
    colsum = side.info.colsum
    side.info.colsum = masked.rescaled_colsum(colsum, n_obs, n)
    masks = [_delayed(_full_mask)(o, (hi - lo, f)) for o, (lo, hi) in zip(observed, side.bounds)]
    if not masked.PRIOR:
        side.masks, _ = runner.run(masks)
        return
    mean = masked.observed_mean(colsum, n_obs)
    spread = _tree([_delayed(_spread_task)(c, m, mean) for c, m in zip(side.chunks, masks)],
                   _add_arrays)
    side.masks, sumsq = runner.run(masks, spread)
    side.prior = masked.prior_from_sums(mean, sumsq, n_obs)


def _initial_codes(x: _Side, y: _Side | None, s: FitSettings, seed, dtype):
    """Random start drawn on the host as :func:`bcnmf.core.init.initial_factors`
    draws it (same generator, same order, same values), without holding the
    codes: each chunk's codes are a task that replays the generator from its
    state at the chunk's first draw.  Returns ``(basis, _Codes)``."""
    rng = np.random.default_rng(seed)
    k, nf = s.n_components, x.info.shape[1]
    # the scales of initial_factors: floored at the working dtype's tiny, and an all-zero
    # target takes its scale from the background
    tiny = float(np.finfo(np.float32 if "float32" in str(dtype) else np.float64).tiny)
    bitgen = type(rng.bit_generator)

    def chunk_tasks(side, factor):
        tasks = []
        for lo, hi in side.bounds:
            state = rng.bit_generator.state
            tasks.append(_delayed(_draw_codes)(state, bitgen, hi - lo, k, s.init, factor,
                                                dtype))
            # advance the host generator past this chunk's draws
            rng.random((hi - lo, k)) if s.init == "uniform" else \
                rng.standard_normal((hi - lo, k))
        return tasks

    if s.init == "uniform":
        basis = rng.random((k, nf))
        cx = chunk_tasks(x, 1.0)
        cy = chunk_tasks(y, 1.0) if y is not None else []
    else:
        mean_x = x.info.mean_entry
        if not mean_x > 0 and y is not None:
            mean_x = y.info.mean_entry
        avg = np.sqrt(max(mean_x, tiny) / k)
        basis = avg * np.abs(rng.standard_normal((k, nf)))
        cx = chunk_tasks(x, avg)
        cy = chunk_tasks(y, max(y.info.mean_entry, tiny) / (k * avg)) if y is not None else []
    return np.ascontiguousarray(basis, dtype=dtype), _Codes(cx, cy)


def _given_codes(side: _Side | None, codes, basis, dtype):
    """Chunk tasks for user-given codes: a numpy array (split into the
    chunks), a dask array (rechunked to the chunks), or None (each cell's
    mass split evenly over the topics of ``basis``, as ``transform`` starts)."""
    if side is None:
        return []
    if codes is None:
        import dask

        b = dask.delayed(np.array(basis, copy=True), pure=True)
        return [_delayed(_codes_for_basis_task)(c, m, b)
                for c, m in zip(side.chunks, side.chunk_masks)]
    if is_dask_array(codes):
        codes = codes.rechunk((tuple(hi - lo for lo, hi in side.bounds), -1))
        return [_delayed(_as_codes)(c, dtype) for c in codes.to_delayed().ravel()]
    codes = np.asarray(codes)
    return [_delayed(_as_codes)(codes[lo:hi], dtype) for lo, hi in side.bounds]


def _sweep_graph(side: _Side, codes, scales, payload, want_div, held=None):
    """One sweep task per chunk: a full sweep, or with ``held = (tail_t,
    first)`` a held sweep (:func:`_held_sweep_task`)."""
    new = []
    for block, mask, c, const in zip(side.chunks, side.chunk_masks, codes, side.consts):
        if held is None:
            new.append(_delayed(_sweep_task)(block, mask, c, scales, const, payload, want_div))
        else:
            new.append(_delayed(_held_sweep_task)(block, c, scales, const, payload, want_div,
                                                  *held))
    # the statistics are taken out where the chunk lives, so that the reduction moves
    # parts between workers, never codes
    return new, _tree([r[1] for r in new], _add_sweeps)


class OnDask:
    """The Dask executor of :func:`bcnmf.core.solver.solve`: the chunks of
    both datasets and their codes persisted on the cluster, one round trip
    per sweep (:class:`bcnmf.core.executor.InMemory` answers the same
    questions in this process).

    The codes are held as handles (:class:`_Codes`); a snapshot is the
    handle itself, since every sweep makes new persisted codes.  Gauge
    scales are not applied at once but recorded in the state and applied by
    the next task that touches a chunk."""

    def __init__(self, runner: Runner, x: _Side, y: _Side | None, state: _Codes, loss: str,
                 policy):
        self.runner, self.x, self.y, self.state = runner, x, y, state
        self.loss, self.policy = loss, policy
        self._tail = None

    @property
    def has_background(self) -> bool:
        return self.y is not None

    @property
    def can_hold(self) -> bool:
        """Whether sweeps may hold the codes on fixed rows (not with missing
        values: the masked sweep has no entry offsets)."""
        return all(side is None or side.masks is None for side in (self.x, self.y))

    def snapshot(self):
        return self.state

    def restore(self, saved) -> None:
        self.state = saved

    def scale(self, side: str, scale, start: int = 0) -> None:
        pending = (start, np.array(scale, copy=True))
        st = self.state
        if side == "target":
            self.state = _Codes(st.x, st.y, st.sx + (pending,), st.sy)
        else:
            self.state = _Codes(st.x, st.y, st.sx, st.sy + (pending,))

    def _payload(self, side: _Side, basis):
        return _payload(basis, self.loss, self.policy, side.offset, side.prior)

    def sweep(self, bx, by, want_div: bool, held=None):
        """One sweep of both datasets: ``((dx, px), (dy, py))``.  ``held =
        (tail_t, first)``: a held sweep (the bases hold the free rows only)."""
        import dask

        if held is not None:
            if self._tail is None:
                self._tail = dask.delayed(np.ascontiguousarray(held[0]), pure=True)
            held = (self._tail, held[1])
        st = self.state
        nx, sx = _sweep_graph(self.x, st.x, st.sx, self._payload(self.x, bx), want_div, held)
        if self.y is not None:
            ny, sy = _sweep_graph(self.y, st.y, st.sy, self._payload(self.y, by), want_div,
                                  held)
        else:
            ny, sy = [], (0.0, None)
        kept, (statx, staty) = self.runner.run(nx + ny, dask.delayed(tuple)([sx, sy]))
        self.state = _Codes(kept[:len(nx)], kept[len(nx):])
        return statx, staty

    def evaluate(self, bx, by):
        """Divergences ``(D_X, D_Y)`` at the current state."""
        import dask

        st = self.state

        def side_div(side, codes, scales, basis):
            p = self._payload(side, basis)
            return _tree([_delayed(_eval_task)(b, m, c, scales, const, p)
                          for b, m, c, const in zip(side.chunks, side.chunk_masks, codes,
                                                    side.consts)],
                         _add_floats)

        dy = side_div(self.y, st.y, st.sy, by) if self.y is not None else 0.0
        _, (dx, dy) = self.runner.run([], dask.delayed(tuple)(
            [side_div(self.x, st.x, st.sx, bx), dy]))
        return float(dx), float(dy)

    def refine(self, bx, by, max_iter: int, tol: float) -> None:
        """:func:`bcnmf.core.solver.refine_codes` on the cluster: every cell is
        refined until it moved by at most ``tol`` in one sweep (cells are
        independent, so each chunk runs to its end in one task)."""
        st = self.state
        new = [_delayed(_refine_task)(b, m, c, st.sx, self._payload(self.x, bx), max_iter, tol)
               for b, m, c in zip(self.x.chunks, self.x.chunk_masks, st.x)]
        if self.y is not None:
            new += [_delayed(_refine_task)(b, m, c, st.sy, self._payload(self.y, by), max_iter,
                                           tol)
                    for b, m, c in zip(self.y.chunks, self.y.chunk_masks, st.y)]
        kept, _ = self.runner.run(new)
        self.state = _Codes(kept[:len(self.x.chunks)], kept[len(self.x.chunks):])


def _as_array(runner, side: _Side, codes, scales, k, dtype):
    """Persisted dask array of the final codes (pending scales applied)."""
    import dask.array as da

    final = [_delayed(_scaled)(c, scales) if scales else _delayed(_codes_of)(c)
             for c in codes]
    codes, _ = runner.run(final)
    parts = [da.from_delayed(c, shape=(hi - lo, k), dtype=dtype)
             for c, (lo, hi) in zip(codes, side.bounds)]
    return da.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]


@dataclass
class DaskRun:
    """What :func:`fit_factors_dask` learnt about the run (for tests and
    benchmarks): round trips and bytes brought back to the client."""

    round_trips: int = 0
    bytes_fetched: int = 0


def fit_factors_dask(X, Y, s: FitSettings, random_state=None, init_factors=None,
                     callback=None, client=None, chunk_rows=None, consensus=False,
                     mask=None, background_mask=None):
    """:func:`bcnmf.core.fit.fit_factors` on Dask.

    ``X`` and ``Y`` are dask arrays (or numpy/scipy matrices, wrapped with
    ``chunk_rows`` cells per chunk) chunked along cells.  ``client`` is a
    ``distributed.Client``; None uses the current client if any, else dask's
    default scheduler.  ``init_factors`` is ``(basis, codes, background_codes)``
    where the codes may be numpy or dask arrays, or both None (start from the
    basis alone: each cell's mass split evenly over the topics, as
    ``transform`` starts; this is how a fit resumes from a saved basis).
    ``consensus`` (with ``n_init > 1``): the consensus of the restarts, as
    :func:`bcnmf.core.fit.fit_factors` computes it, its codes refined on the
    workers.

    Missing values, as in :func:`bcnmf.core.fit.fit_factors`: NaN entries of
    dense chunks, and the entries where ``mask`` / ``background_mask`` (numpy
    or dask bool arrays of the data's shape, True = observed) are False, are
    left out of every sum, with the prior at missing entries of each dataset
    (``diagnostics["missing_prior"]``); the prior's weights are computed per
    chunk, as in memory per block of ``block_rows`` cells.  Sparse chunks take
    no missing values.

    Returns ``(FactorizationResult, diagnostics)`` as ``fit_factors``, with
    the codes as persisted dask arrays (chunked as ``X`` and ``Y``) and
    ``diagnostics["dask"]`` a :class:`DaskRun`.
    """
    _require_dask()
    client = current_client() if client is None else client
    runner = Runner(client)
    if chunk_rows is not None or not is_dask_array(X):
        X = as_cell_chunks(X, "X", chunk_rows)
    if Y is not None and (chunk_rows is not None or not is_dask_array(Y)):
        Y = as_cell_chunks(Y, "background", chunk_rows)
    x = _load(runner, X, "X", s.loss, mask=mask)
    dtype = x.info.dtype
    y = (_load(runner, Y, "background", s.loss, dtype, background_mask) if Y is not None
         else None)
    info_y = y.info if y is not None else None
    prep = prepare(x.info, info_y, s, sample=lambda: _host_sample(Y, background_mask))
    alpha_raw, policy, opts, n_shared = prep.alpha_raw, prep.policy, prep.opts, prep.n_shared
    offset_x, offset_y = prep.offsets
    k = s.n_components
    for side, offset in ((x, offset_x), (y, offset_y)):
        if side is not None and s.loss != FROBENIUS:
            offset = np.zeros(side.info.shape[1]) if offset is None else offset
            side.offset = np.ascontiguousarray(offset, dtype=dtype)
    shared = _shared_fit(runner, x, y, n_shared, s, policy) if n_shared else None
    start = None
    if init_factors is None and s.init == "contrastive" and y is not None:
        start = np.ascontiguousarray(contrastive_start(
            (_host_sample(X, mask), _host_sample(Y, background_mask)), x.info, info_y, s,
            alpha_raw, shared), dtype=dtype)
    runs = []
    for r, seed in enumerate(_restart_seeds(random_state, s.n_init)):
        if init_factors is not None:
            basis = np.array(init_factors[0], dtype=dtype, order="C")
            state = _Codes(_given_codes(x, init_factors[1], basis, dtype),
                           _given_codes(y, init_factors[2], basis, dtype))
        elif start is not None and r == 0:
            basis = start.copy()
            state = _Codes(_given_codes(x, None, basis, dtype),
                           _given_codes(y, None, basis, dtype))
        else:
            basis, state = _initial_codes(x, y, replace(s, init=_drawn(s.init)), seed, dtype)
        executor = OnDask(runner, x, y, state, s.loss, policy)
        if opts.normalize:
            with np.errstate(over="ignore", invalid="ignore"):
                scale = gauge_scale(basis, policy.basis_floor)
            executor.scale("target", scale)
            executor.scale("background", scale)
        if shared is not None:
            basis = _augment(basis, executor, shared)
        out = solve(executor, Contrast(basis, opts, y is not None), opts, callback)
        runs.append((out, executor))
    objectives = np.array([o.history["objective"][-1] for o, _ in runs])
    best, agreement, stability, merged = choose_run([o.basis[:k] for o, _ in runs], objectives,
                                                    s.mode, consensus)
    out, executor = runs[best]
    del runs
    if merged is not None and consensus:
        consensus_state(out, merged, executor, opts, s)
    state = executor.state
    width = out.basis.shape[0]
    codes = _as_array(runner, x, state.x, state.sx, width, dtype)
    bg_codes = (_as_array(runner, y, state.y, state.sy, width, dtype) if y is not None
                else None)
    components, shared_codes = out.basis, None
    if shared is not None:   # the model's shared topics travel with its offsets
        offset_x, offset_y = (_stack_offset(o, shared[0]) for o in (offset_x, offset_y))
        shared_codes = (codes[:, k:], bg_codes[:, k:])
        components, codes, bg_codes = out.basis[:k].copy(), codes[:, :k], bg_codes[:, :k]
    return finish(out, components, codes, bg_codes, alpha_raw,
                  (objectives, agreement, best, stability), info_y, s,
                  offsets=(offset_x, offset_y), policy=policy, shared_codes=shared_codes,
                  missing_prior=(x.prior, None if y is None else y.prior),
                  dask=DaskRun(runner.round_trips, runner.bytes_fetched))


def _host_sample(Y, mask):
    """:func:`bcnmf.core.fit.host_sample` of a dask array: the sampled
    rows computed to this process, missing entries (NaN, ``mask`` False)
    filled by :func:`~bcnmf.core.fit.fill_missing`."""
    rows = sample_rows(Y.shape[0])
    sample = Y[rows].compute()
    if mask is not None or (not sp.issparse(sample) and np.isnan(sample).any()):
        observed = np.ones(sample.shape, dtype=bool) if mask is None else \
            np.asarray(mask[rows].compute() if is_dask_array(mask) else np.asarray(mask)[rows])
        sample = fill_missing(sample, observed)
    return sample


def _shared_fit(runner, x: _Side, y: _Side, n_topics: int, s: FitSettings, policy):
    """:func:`bcnmf.core.fit.shared_basis` on the cluster: a KL NMF of the
    background alone from the same host draws.  Returns ``(basis, persisted
    background codes, starting row of the target's codes)``, the last as
    :func:`bcnmf.core.fit._augment` computes it."""
    dtype = y.info.dtype
    basis, state = _initial_codes(y, None, replace(s, n_components=n_topics, init="random"),
                                  0, dtype)
    executor = OnDask(runner, y, None, state, s.loss, policy)
    executor.scale("target", gauge_scale(basis, policy.basis_floor))
    opts = shared_options(s, policy)
    out = solve(executor, Contrast(basis, opts, False), opts)
    state = executor.state
    codes = [_delayed(_scaled)(c, state.sx) for c in state.x]
    total = _tree([_delayed(_colsum)(c) for c in codes], _add_arrays)
    codes, colsum = runner.run(codes, total)
    row = (colsum / y.info.shape[0]).astype(dtype) * cell_total_ratio(x.info, y.info)
    return out.basis, codes, row


def _augment(basis, executor: OnDask, shared):
    """:func:`bcnmf.core.fit._augment` on the cluster: the shared topics
    appended to a run's starting basis (returned) and to the executor's codes
    (pending scales applied on the way)."""
    g, codes_y, row = shared
    st = executor.state
    basis = np.ascontiguousarray(np.concatenate([basis, g.astype(basis.dtype)]))
    cx = [_delayed(_with_shared)(c, st.sx, None, row) for c in st.x]
    cy = [_delayed(_with_shared)(c, st.sy, d, None) for c, d in zip(st.y, codes_y)]
    executor.state = _Codes(cx, cy)
    return basis


#: :func:`transform_dask` was not given the model's missing-value prior
_PRIOR_NOT_GIVEN = object()


def transform_dask(X, basis, s: FitSettings, policy, offset, max_iter: int, tol: float,
                   mask=None, prior=_PRIOR_NOT_GIVEN):
    """Codes of the cells of a dask array with the basis fixed, as a lazy
    dask array (one task per chunk, :func:`bcnmf.core.fit.transform_codes`
    on the chunk).  Each cell is refined until it has converged by the rule
    of :func:`bcnmf.core.solver.refine_codes`, in a chunk as in memory, so
    the codes equal the in-memory transform's (up to the rounding of dense
    products over different row counts).

    Missing values: ``prior`` is the fitted model's
    :class:`~bcnmf.core.masked.MissingPrior` of the matrix (None for a model
    fitted on complete data).  With it, NaN entries of dense chunks and the
    entries where ``mask`` (a numpy or dask bool array of ``X``'s shape, True
    = observed) is False are left out and each cell's codes are solved with
    that prior, as :func:`~bcnmf.core.fit.transform_codes` solves them.
    Without it, ``mask`` is refused and a chunk with NaN raises when
    computed: the codes of such cells depend on the model's prior."""
    import dask

    X = as_cell_chunks(X, "X")
    prior_given = prior is not _PRIOR_NOT_GIVEN
    if mask is not None:
        if not prior_given:
            raise ValueError("mask= needs prior=, the fitted model's missing-value prior "
                             "(None for a model fitted on complete data).")
        mask = mask_chunks(mask, X)
    k = basis.shape[0]
    payload = dask.delayed((basis, s, policy, offset, max_iter, tol,
                            prior if prior_given else None, prior_given), pure=True,
                           traverse=False)
    return X.map_blocks(_transform_chunk, mask, payload, dtype=basis.dtype,
                        chunks=(X.chunks[0], (k,)), meta=np.empty((0, 0), dtype=basis.dtype))


def checkpoint_hooks(s: FitSettings, X, Y, init, checkpoint, checkpoint_every, resume):
    """Basis checkpoints of the Dask engine: ``(init, callback)``.  ``resume``
    starts from the saved basis; ``checkpoint`` is written at recorded sweeps at
    least ``checkpoint_every`` sweeps apart (and at the last one)."""
    if s.n_init > 1:
        raise ValueError("checkpoint= and resume= on the Dask engine need n_init=1 (a basis "
                         "checkpoint belongs to one restart).")
    fingerprint = {"n_features": int(X.shape[1]), "n_target": int(X.shape[0]),
                   "n_background": None if Y is None else int(Y.shape[0]),
                   "n_components": s.n_components, "loss": s.loss}
    if resume is not None:
        if init is not None:
            raise ValueError("Pass either resume= or init_components=, not both.")
        basis, _ = read_basis(resume, fingerprint)
        init = (basis, None, None)
    if checkpoint is None:
        return init, None
    last = [-checkpoint_every]

    def callback(sweep, basis, record):
        if sweep - last[0] >= checkpoint_every:   # the fitted topics, not the shared
            write_basis(checkpoint, basis[:s.n_components], sweep, fingerprint)
            last[0] = sweep
    return init, callback
