"""Checkpoints: atomic writes with a checksum, exact resume,
KeyboardInterrupt keeps the last complete state, SIGKILL mid-fit resumes to the
same answer, corrupted files are refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from bcnmf import BCNMF, factorize
from bcnmf.core import checkpoint as ck
from bcnmf.core.fit import FitSettings, fit_factors
from bcnmf.persistence import load_model
from bcnmf.exceptions import ModelFormatError

RNG = np.random.default_rng(0)
X = RNG.poisson(2.0, (40, 12)).astype(np.float64)
Y = RNG.poisson(2.0, (30, 12)).astype(np.float64)
LOSSES = ["frobenius", "kullback-leibler"]


def settings(loss, mode="stable", max_iter=40, tol=1e-9, n_init=3):
    return FitSettings(n_components=3, loss=loss, alpha=1.0,
                       alpha_scale="raw" if mode == "reference" else "relative", mode=mode,
                       init="uniform" if mode == "reference" else "random", damping=None,
                       smoothing=0.1, max_iter=max_iter, tol=0.0 if mode == "reference" else tol,
                       n_init=n_init)


def assert_same(res, ref):
    for name in ("components", "codes", "background_codes", "restart_objectives",
                 "restart_agreement"):
        assert_array_equal(getattr(res, name), getattr(ref, name), err_msg=name)
    for k in ref.history:
        assert_array_equal(res.history[k], ref.history[k], err_msg=k)
    assert (res.n_iter, res.converged, res.best_restart) == (ref.n_iter, ref.converged,
                                                              ref.best_restart)


def interrupt_after(n_calls):
    calls = {"n": 0}

    def callback(it, basis, record):
        calls["n"] += 1
        if calls["n"] == n_calls:
            raise KeyboardInterrupt
    return callback


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("mode", ["stable", "reference"])
@pytest.mark.parametrize("stop", [1, 2, 3])   # in restart 0, 1, 2 (KL records every 10th)
def test_interrupt_then_resume_is_bit_identical(tmp_path, loss, mode, stop):
    s = settings(loss, mode)
    per_restart = 40 if loss == "frobenius" else 4
    ref, _ = fit_factors(X, Y, s, 0)
    path = tmp_path / "fit.ckpt.npz"
    with pytest.raises(KeyboardInterrupt, match=r"the last complete state is saved in .*"
                                                r"fit\.ckpt\.npz: continue with "
                                                r"fit\(\.\.\., resume="):
        fit_factors(X, Y, s, 0, callback=interrupt_after((stop - 1) * per_restart + 3),
                    checkpoint=path, checkpoint_every=4)
    meta, _ = ck.read(path)
    assert meta["n_done"] == stop - 1 and meta["sweep"] is not None
    res, _ = fit_factors(X, Y, s, 0, resume=path)
    assert_same(res, ref)
    assert not list(tmp_path.glob("*.tmp"))   # no temporary file left behind


def test_resume_through_the_estimator_and_factorize(tmp_path):
    kw = dict(max_iter=30, tol=0, n_init=2, alpha=1.5, random_state=np.random.RandomState(3))
    ref = factorize(X, 3, background=Y, **{**kw, "random_state": np.random.RandomState(3)})
    path = tmp_path / "a.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        factorize(X, 3, background=Y, checkpoint=path, checkpoint_every=5, **kw)
    # a finished checkpoint resumes to the same result, even with a consumed RandomState
    res = factorize(X, 3, background=Y, resume=path,
                    **{**kw, "random_state": np.random.RandomState(9)})
    assert_same(res, ref)
    model = BCNMF(3, **{**kw, "random_state": np.random.RandomState(9)})
    model.fit(X, background=Y, resume=path)
    assert_array_equal(model.components_, ref.components)


def test_checkpoint_every_writes_atomically(tmp_path, monkeypatch):
    """Every write goes through a temporary file in the same directory + os.replace."""
    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append((Path(src).parent, Path(dst)))
        return real(src, dst)
    monkeypatch.setattr(ck.os, "replace", spy)
    path = tmp_path / "x.npz"
    fit_factors(X, Y, settings("frobenius", max_iter=12, n_init=1), 0, checkpoint=path,
                checkpoint_every=5)
    assert len(seen) == 3   # sweeps 5 and 10, and the finished restart
    assert all(parent == tmp_path and dst == path for parent, dst in seen)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_corrupted_checkpoint_is_refused(tmp_path, damage):
    path = tmp_path / "c.npz"
    fit_factors(X, Y, settings("frobenius", max_iter=6, n_init=1), 0, checkpoint=path,
                checkpoint_every=2)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip":   # one byte inside the stored arrays (stored, not compressed)
        raw[len(raw) // 3] ^= 0xFF
    elif damage == "garbage":
        raw = bytearray(b"not a zip file at all" * 10)
    else:
        raw = bytearray()
    path.write_bytes(bytes(raw))
    with pytest.raises(ck.CheckpointError, match=r"(not a readable bcnmf checkpoint|is "
                                                  r"corrupted: the checksum).*Delete it and fit "
                                                  r"again without resume="):
        factorize(X, 3, background=Y, max_iter=6, n_init=1, random_state=0, resume=path, alpha=1.5)


def test_checkpoint_of_another_fit_is_refused(tmp_path):
    path = tmp_path / "c.npz"
    fit_factors(X, Y, settings("frobenius", max_iter=6, n_init=1), 0, checkpoint=path,
                checkpoint_every=2)
    with pytest.raises(ck.CheckpointError, match=r"written by another fit \(different "
                                                  r"X\b.*\); resume with the same data"):
        fit_factors(X * 2, Y, settings("frobenius", max_iter=6, n_init=1), 0, resume=path)
    with pytest.raises(ck.CheckpointError, match=r"different settings"):
        fit_factors(X, Y, settings("frobenius", max_iter=7, n_init=1), 0, resume=path)


def test_checkpoint_of_another_engine_switch_is_refused(tmp_path, monkeypatch):
    """The missing-value prior switch changes the iterates: a checkpoint written with it on
    is refused with it off."""
    from bcnmf.core import masked

    path = tmp_path / "c.npz"
    s = settings("frobenius", max_iter=6, n_init=1)
    fit_factors(X, Y, s, 0, checkpoint=path, checkpoint_every=2)
    monkeypatch.setattr(masked, "PRIOR", not masked.PRIOR)
    with pytest.raises(ck.CheckpointError, match=r"different engine"):
        fit_factors(X, Y, s, 0, resume=path)


def test_checkpoint_every_is_validated(tmp_path):
    with pytest.raises(ValueError, match=r"checkpoint_every must be an int >= 1; got 0"):
        factorize(X, 2, background=Y, checkpoint=tmp_path / "c.npz", checkpoint_every=0, alpha=1.5)


def test_saved_model_checksum_detects_truncation(tmp_path):
    """persistence.py already checksums its arrays; a cut-short model file is refused."""
    model = BCNMF(2, max_iter=10, tol=0, random_state=0, alpha=1.5).fit(X, background=Y)
    path = model.save(tmp_path / "m.npz")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 40])
    with pytest.raises(ModelFormatError, match=r"not a readable bcnmf model file"):
        load_model(path)


_CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from bcnmf.core.fit import fit_factors
    sys.path.insert(0, {tests!r})
    from test_checkpoint import X, Y, settings

    def slow(it, basis, record):
        time.sleep(0.02)

    fit_factors(X, Y, settings({loss!r}, max_iter=400, tol=0.0, n_init=1), 0, callback=slow,
                checkpoint={path!r}, checkpoint_every=1)
""")


@pytest.mark.parametrize("loss", ["frobenius"])
def test_sigkill_mid_fit_then_resume(tmp_path, loss):
    """A fitting subprocess killed with SIGKILL leaves an intact checkpoint (written
    atomically) that resumes to exactly the uninterrupted answer."""
    path = tmp_path / "kill.npz"
    code = _CHILD.format(tests=str(Path(__file__).parent), loss=loss, path=str(path))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            if path.exists():
                meta, _ = ck.read(path)
                if meta["sweep"] is not None and meta["sweep"] >= 5:
                    break
            assert proc.poll() is None, "the child ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    meta, _ = ck.read(path)             # intact after the kill
    assert 5 <= meta["sweep"] < 400
    s = settings(loss, max_iter=400, tol=0.0, n_init=1)
    ref, _ = fit_factors(X, Y, s, 0)
    res, _ = fit_factors(X, Y, s, 0, resume=path)
    assert_same(res, ref)


def test_resume_with_blocks_and_missing_values(tmp_path):
    """The block engine (several code blocks) and masked data resume exactly too."""
    Xm = np.where(np.random.default_rng(5).random(X.shape) < 0.15, np.nan, X)
    s = settings("frobenius", n_init=2)
    ref, _ = fit_factors(Xm, Y, s, 0, block_rows=7)
    path = tmp_path / "b.npz"
    with pytest.raises(KeyboardInterrupt):
        fit_factors(Xm, Y, s, 0, block_rows=7, callback=interrupt_after(50), checkpoint=path,
                    checkpoint_every=3)
    res, _ = fit_factors(Xm, Y, s, 0, block_rows=7, resume=path)
    assert_same(res, ref)
    with pytest.raises(ck.CheckpointError, match=r"different blocks"):
        fit_factors(Xm, Y, s, 0, block_rows=9, resume=path)
