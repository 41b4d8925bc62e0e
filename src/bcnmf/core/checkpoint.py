"""Checkpoints of a fit: the full solver state on disk, written atomically.

A checkpoint is an ``.npz`` file (no pickle) holding

* ``meta``: JSON with the format version, a fingerprint of the fit (shapes,
  dtype, settings, data totals, restart seeds), the restart in progress, the
  sweep number and the stopping-window length;
* the finished restarts (basis, codes, background codes, history, flags);
* the restart in progress: the basis and codes entering the next sweep, the
  objective history so far, the stopping window (the last unit-normalised
  bases) and the last good state (what a divergence would go back to);
* ``checksum``: SHA-256 of everything else.

It is written to a temporary file in the same directory, flushed to disk, and
renamed over the target (``os.replace``), so a fit killed at any moment
leaves either the previous checkpoint or the new one, never a partial file.
A truncated or corrupted file fails the checksum and is refused with
:class:`CheckpointError`.  Resuming restores the state bit for bit, so a
resumed fit ends with exactly the result of an uninterrupted one.

The restart seeds are drawn once from ``random_state`` and stored, so a
consumed ``RandomState`` / ``Generator`` resumes correctly.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

FORMAT = "bcnmf-checkpoint"
VERSION = 1
_HIST = ("iteration", "target", "background", "objective")


class CheckpointError(ValueError):
    """A checkpoint cannot be used: corrupted, truncated, or from another fit."""


def _checksum(arrays: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write(path, meta: dict, arrays: dict) -> Path:
    """Atomically write ``meta`` and ``arrays`` with their checksum."""
    path = Path(path)
    arrays = dict(arrays)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    arrays["checksum"] = np.frombuffer(_checksum(arrays).encode(), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp",
                               dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read(path) -> tuple[dict, dict]:
    """``(meta, arrays)`` of a checkpoint; :class:`CheckpointError` when the
    file is not a complete, intact bcnmf checkpoint."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    expected = "an .npz archive written by fit(..., checkpoint=path)"
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a bcnmf checkpoint ({expected}).")
    raw, arrays = path.read_bytes(), None
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        stored = bytes(arrays.pop("checksum")).decode()
    except Exception as err:   # truncated zip, missing member, bad header ...
        if isinstance(err, KeyError) and arrays is not None:   # an npz, not a checkpoint
            raise CheckpointError(
                f"{path} is not a bcnmf checkpoint ({expected}): found the arrays "
                f"{sorted(arrays)[:6]} and no checksum, a saved model or a data file. Pass "
                "resume= the file that fit(..., checkpoint=path) wrote.") from err
        found = ("an empty file" if not raw else
                 f"content that is not an .npz archive (first bytes {raw[:16]!r})"
                 if not raw.startswith(b"PK") else f"{type(err).__name__}: {err}")
        raise CheckpointError(
            f"{path} is not a readable bcnmf checkpoint ({expected}): found {found}; it may "
            "be truncated or corrupted. Delete it and fit again without resume=.") from err
    if _checksum(arrays) != stored:
        raise CheckpointError(
            f"{path} is corrupted: the checksum of its contents does not match. Delete it and "
            "fit again without resume=.")
    meta = json.loads(bytes(arrays.pop("meta")).decode())
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"{path} is not a bcnmf checkpoint of format version {VERSION}.")
    return meta, arrays


class FitCheckpoint:
    """Checkpointing of one :func:`~bcnmf.core.fit.fit_factors` call.

    ``fingerprint`` (JSON-able) identifies the fit; a resumed checkpoint must
    carry the same.  :meth:`solver` gives the object the engine calls
    (:func:`bcnmf.core.solver.solve`, ``checkpoint=``).
    """

    def __init__(self, path, every: int, resume, fingerprint: dict, seeds):
        self.path = None if path is None else Path(path)
        self.every = int(every)
        self.fingerprint = json.loads(json.dumps(fingerprint))
        self.seeds = np.asarray(seeds)
        self.runs = []          # finished restarts: dicts of arrays + flags
        self.pending = None     # saved state of the restart in progress
        self.restart = 0
        self.snap = None
        if resume is not None:
            self._load(resume)

    # -- resume ---------------------------------------------------------------------------
    def _load(self, resume):
        meta, arrays = read(resume)
        if meta["fingerprint"] != self.fingerprint:
            diff = sorted(k for k in set(meta["fingerprint"]) | set(self.fingerprint)
                          if meta["fingerprint"].get(k) != self.fingerprint.get(k))
            raise CheckpointError(
                f"{resume} was written by another fit (different {', '.join(diff)}); resume "
                "with the same data and parameters, or fit again without resume=.")
        self.seeds = arrays["seeds"]
        for r in range(meta["n_done"]):
            p = f"run{r}_"
            self.runs.append({
                "basis": arrays[p + "basis"], "cx": arrays[p + "cx"],
                "cy": arrays.get(p + "cy"),
                "history": {k: arrays[p + "hist_" + k] for k in _HIST},
                **meta["runs"][r]})
        self.restart = meta["n_done"]
        if meta.get("sweep") is not None:
            n_codes = meta["n_codes"]
            good = None
            if meta["good_sweep"] is not None:
                good = (meta["good_sweep"], (arrays["good_basis"],
                                             [arrays[f"good_codes{i}"] for i in range(n_codes)]))
            self.pending = {
                "sweep": meta["sweep"], "basis": arrays["basis"],
                "codes": [arrays[f"codes{i}"] for i in range(n_codes)],
                "hist": {k: arrays["hist_" + k].tolist() for k in _HIST},
                "recent": list(arrays["recent"]), "good": good}

    # -- bookkeeping ----------------------------------------------------------------------
    def finished(self, out, cx, cy) -> None:
        """Restart ``self.restart`` has ended with ``out`` (a SolveOutput)."""
        self.runs.append({"basis": out.basis.copy(), "cx": cx.copy(),
                          "cy": None if cy is None else cy.copy(),
                          "history": dict(out.history), "n_iter": int(out.n_iter),
                          "converged": bool(out.converged), "diverged": bool(out.diverged)})
        self.restart += 1
        self.pending = None
        self.snap = None
        if self.path is not None:
            self._write(None)

    def solver(self):
        """The engine's hook for the restart in progress."""
        return _SolverHook(self)

    def _write(self, snap):
        meta = {"format": FORMAT, "version": VERSION, "fingerprint": self.fingerprint,
                "n_done": len(self.runs), "sweep": None, "n_codes": 0, "good_sweep": None,
                "runs": [{k: r[k] for k in ("n_iter", "converged", "diverged")}
                         for r in self.runs]}
        arrays = {"seeds": self.seeds}
        for i, r in enumerate(self.runs):
            p = f"run{i}_"
            arrays[p + "basis"] = r["basis"]
            arrays[p + "cx"] = r["cx"]
            if r["cy"] is not None:
                arrays[p + "cy"] = r["cy"]
            for k in _HIST:
                arrays[p + "hist_" + k] = np.asarray(r["history"][k])
        if snap is not None:
            sweep, (basis, codes), hist, recent, good = snap
            meta.update(sweep=int(sweep), n_codes=len(codes))
            arrays["basis"] = basis
            for i, c in enumerate(codes):
                arrays[f"codes{i}"] = c
            for k in _HIST:
                arrays["hist_" + k] = np.asarray(
                    hist[k].values[:hist[k].n], dtype=np.int64 if k == "iteration"
                    else np.float64)
            arrays["recent"] = (np.stack(recent) if recent
                                else np.zeros((0,) + basis.shape, basis.dtype))
            if good is not None:
                meta["good_sweep"] = int(good[0])
                arrays["good_basis"] = good[1][0]
                for i, c in enumerate(good[1][1]):
                    arrays[f"good_codes{i}"] = c
        write(self.path, meta, arrays)


class _Prefix:
    """The first ``n`` entries of a list that may grow later (read at write time)."""

    def __init__(self, values, n):
        self.values, self.n = values, n

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.values[:self.n], dtype=dtype)


class _SolverHook:
    """What :func:`bcnmf.core.solver._solve` calls: ``resume_into`` once,
    ``at`` at the top of every sweep, ``interrupted`` on KeyboardInterrupt."""

    def __init__(self, owner: FitCheckpoint):
        self.owner = owner
        self.start = 0

    def resume_into(self, basis, all_codes, hist, out):
        """Restore the saved state in place; returns ``(sweep, last_good, recent)``
        or ``None`` when there is nothing to resume."""
        p = self.owner.pending
        if p is None:
            return None
        if len(p["codes"]) != len(all_codes):
            raise CheckpointError("the checkpoint was written with another block layout "
                                  "(block_size); resume with the same block_size.")
        basis[...] = p["basis"]
        for c, saved in zip(all_codes, p["codes"]):
            c[...] = saved
        for k in _HIST:
            hist[k][:] = p["hist"][k]
        out.n_iter = self.start = p["sweep"]
        self.owner.pending = None
        return p["sweep"], p["good"], p["recent"]

    def at(self, sweep, entering, hist, recent, last_good):
        """The state ``entering`` sweep ``sweep`` is complete: keep it for an
        interruption, and write it every ``every`` sweeps."""
        n = len(hist["iteration"])   # the history only grows until the loop ends
        snap = (sweep, entering, {k: _Prefix(v, n) for k, v in hist.items()}, list(recent),
                last_good)
        self.owner.snap = snap
        if self.owner.path is not None and sweep > self.start and sweep % self.owner.every == 0:
            self.owner._write(snap)

    def interrupted(self):
        """Write the last complete state (when a path was given) and raise
        KeyboardInterrupt saying where it is."""
        owner = self.owner
        snap = owner.snap
        if owner.path is None or snap is None:
            raise KeyboardInterrupt(
                "bcnmf fit interrupted; pass checkpoint=PATH to keep the state and resume=PATH "
                "to continue it.")
        owner._write(snap)
        raise KeyboardInterrupt(
            f"bcnmf fit interrupted in restart {owner.restart} after {snap[0]} complete sweeps; "
            f"the last complete state is saved in {owner.path}: continue with "
            f"fit(..., resume={str(owner.path)!r}).")


#: the Dask engine keeps codes on the workers, so its checkpoints hold the basis only
BASIS_KIND = "basis"


def write_basis(path, basis, sweep: int, fingerprint: dict) -> Path:
    """Atomically write a basis checkpoint (the Dask engine's: the codes live on
    the workers and are rebuilt from the basis on resume)."""
    meta = {"format": FORMAT, "version": VERSION, "kind": BASIS_KIND, "sweep": int(sweep),
            "fingerprint": fingerprint}
    return write(path, meta, {"basis": np.ascontiguousarray(basis)})


def read_basis(path, fingerprint: dict) -> tuple[np.ndarray, int]:
    """``(basis, sweep)`` of a basis checkpoint written for the same problem
    (shapes, loss, K); :class:`CheckpointError` otherwise."""
    meta, arrays = read(path)
    if meta.get("kind") != BASIS_KIND:
        raise CheckpointError(f"{path} holds a full in-process checkpoint, not a basis "
                              "checkpoint of the Dask engine; resume it without engine='dask'.")
    if meta.get("fingerprint") != fingerprint:
        raise CheckpointError(f"{path} was written for another problem "
                              f"({meta.get('fingerprint')}); this fit is {fingerprint}.")
    return arrays["basis"], int(meta["sweep"])
