"""Determinism.

Guarantees, each asserted here (``docs/reliability.md`` states them for users):

* a fixed ``random_state`` (int, RandomState or Generator seeded alike) gives bit-identical
  results on repeated runs, in this process and in a fresh interpreter;
* CSR, CSC and COO input give bit-identical results (all become the same canonical CSR);
  C- and Fortran-ordered dense input agree to float tolerance;
* the number of numba threads (which sets how many row chunks the parallel CSR kernel
  sums) and of BLAS threads change results only within float tolerance; a fixed thread
  count is bit-reproducible.

Not guaranteed: the same result for the cells in another order (initial codes are drawn
per row, so a permutation starts elsewhere).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from threadpoolctl import threadpool_limits

from bcnmf import BCNMF, factorize
from bcnmf.core import updates

LOSSES = ["frobenius", "kullback-leibler"]
MODES = ["stable", "reference"]


def data(seed=0, n_x=40, n_y=30, n_features=12):
    rng = np.random.default_rng(seed)
    X = rng.poisson(2.0, (n_x, n_features)) * (rng.random((n_x, n_features)) < 0.6)
    Y = rng.poisson(2.0, (n_y, n_features)) * (rng.random((n_y, n_features)) < 0.6)
    return X.astype(np.float64), Y.astype(np.float64)


def fields(res):
    out = {"components": res.components, "codes": res.codes,
           "background_codes": res.background_codes,
           "restart_objectives": res.restart_objectives}
    out.update({f"history[{k}]": v for k, v in res.history.items()})
    return out


def assert_same(a, b, rtol=None):
    fa, fb = fields(a), fields(b)
    for key in fa:
        if rtol is None:
            assert_array_equal(fa[key], fb[key], err_msg=key)
        else:
            assert_allclose(fa[key], fb[key], rtol=rtol, atol=rtol * np.abs(fa[key]).max(),
                            err_msg=key)


KW = dict(max_iter=30, tol=0, alpha=1.0, n_init=3)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sparse", [False, True])
def test_repeated_runs_are_bit_identical(loss, mode, sparse):
    X, Y = data()
    if sparse:
        X, Y = sp.csr_matrix(X), sp.csr_matrix(Y)
    kw = dict(beta_loss=loss, mode=mode, **KW)
    first = factorize(X, 3, background=Y, random_state=7, **kw)
    assert_same(first, factorize(X, 3, background=Y, random_state=7, **kw))
    # a seeded RandomState or Generator is as reproducible as its int
    assert_same(factorize(X, 3, background=Y, random_state=np.random.RandomState(7), **kw),
                factorize(X, 3, background=Y, random_state=np.random.RandomState(7), **kw))
    assert_same(factorize(X, 3, background=Y, random_state=np.random.default_rng(7), **kw),
                factorize(X, 3, background=Y, random_state=np.random.default_rng(7), **kw))
    # the estimator gives the same bits as the function, and so does refitting it
    model = BCNMF(3, random_state=7, **kw)
    assert_array_equal(model.fit_transform(X, background=Y), first.codes)
    assert_array_equal(model.fit(X, background=Y).components_, first.components)


def test_another_seed_gives_another_start():
    """The test above could pass with a seed that is ignored; it is not."""
    X, Y = data()
    a = factorize(X, 3, background=Y, random_state=1, **KW)
    b = factorize(X, 3, background=Y, random_state=2, **KW)
    assert not np.array_equal(a.components, b.components)


_SUBPROCESS = """
import hashlib, numpy as np, scipy.sparse as sp
from bcnmf import factorize
rng = np.random.default_rng(0)
X = rng.poisson(2.0, (40, 12)).astype(float); Y = rng.poisson(2.0, (30, 12)).astype(float)
h = hashlib.sha256()
for loss in ("frobenius", "kullback-leibler"):
    for Xi, Yi in ((X, Y), (sp.csr_matrix(X), sp.csr_matrix(Y))):
        r = factorize(Xi, 3, background=Yi, beta_loss=loss, max_iter=20, tol=0, alpha=1.0,
                      random_state=3, n_init=2)
        for a in (r.components, r.codes, r.background_codes):
            h.update(np.ascontiguousarray(a).tobytes())
print(h.hexdigest())
"""


def test_fresh_interpreters_agree_bit_for_bit():
    """Two new processes (numba kernels loaded from its cache or compiled) print the same
    digest of the results as this process computes."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    digests = [subprocess.run([sys.executable, "-c", _SUBPROCESS], env=env, check=True,
                              capture_output=True, text=True, timeout=300).stdout.strip()
               for _ in range(2)]
    namespace = {}
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(_SUBPROCESS, namespace)  # noqa: S102 - our own constant source
    assert len(digests[0]) == 64
    assert digests[0] == digests[1] == out.getvalue().strip()


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("mode", MODES)
def test_sparse_formats_are_bit_identical(loss, mode):
    X, Y = data(1)
    kw = dict(beta_loss=loss, mode=mode, random_state=0, **KW)
    csr = factorize(sp.csr_matrix(X), 3, background=sp.csr_matrix(Y), **kw)
    assert_same(csr, factorize(sp.csc_matrix(X), 3, background=sp.csc_matrix(Y), **kw))
    # COO with the entries shuffled and one split into duplicates that sum to it
    coo = sp.coo_matrix(X)
    rng = np.random.default_rng(0)
    order = rng.permutation(coo.nnz)
    row, col, val = coo.row[order], coo.col[order], coo.data[order]
    row, col = np.append(row, row[0]), np.append(col, col[0])
    val = np.append(val, 0.0)
    shuffled = sp.coo_matrix((val, (row, col)), shape=X.shape)
    assert_same(csr, factorize(shuffled, 3, background=sp.coo_matrix(Y), **kw))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-9), (np.float32, 1e-3)])
def test_c_and_fortran_order_agree(loss, mode, dtype, rtol):
    X, Y = (a.astype(dtype) for a in data(2))
    kw = dict(beta_loss=loss, mode=mode, random_state=0, **KW)
    c = factorize(np.ascontiguousarray(X), 3, background=np.ascontiguousarray(Y), **kw)
    f = factorize(np.asfortranarray(X), 3, background=np.asfortranarray(Y), **kw)
    assert_same(c, f, rtol=rtol)
    # and dense agrees with CSR to the same tolerance
    assert_same(c, factorize(sp.csr_matrix(X), 3, background=sp.csr_matrix(Y), **kw), rtol=rtol)


@pytest.fixture
def restore_threads():
    before = numba.get_num_threads()
    yield
    numba.set_num_threads(before)


def big_block(seed=0):
    """Sparse counts large enough for the parallel kernel at K = 4."""
    rng = np.random.default_rng(seed)
    n, f = 1500, 400
    X = sp.random(n, f, density=0.25, random_state=rng, format="csr",
                  data_rvs=lambda m: rng.poisson(3.0, m) + 1.0)
    Y = sp.random(n // 2, f, density=0.25, random_state=rng, format="csr",
                  data_rvs=lambda m: rng.poisson(3.0, m) + 1.0)
    return X, Y


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs >= 2 numba threads")
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("container", ["csr", "dense"])
def test_numba_thread_count(loss, container, restore_threads):
    """1 vs 2 numba threads: different row chunks (different summation order), same
    result within float tolerance; each count is bit-reproducible."""
    X, Y = big_block()
    k = 4
    assert X.nnz * k >= updates._PARALLEL_MIN_WORK  # the parallel kernel runs
    if container == "dense":
        if loss == "frobenius":
            pytest.skip("dense squared error runs in BLAS, not numba (see the BLAS test)")
        X, Y = X.toarray(), Y.toarray()
    kw = dict(beta_loss=loss, random_state=0, max_iter=15, tol=0, alpha=1.0)
    runs = {}
    for threads in (1, 2):
        numba.set_num_threads(threads)
        probe = sp.csr_matrix(X[:2000])
        assert updates._kernel_for(updates.KL, probe, k)[1] == threads  # chunks = threads
        runs[threads] = factorize(X, k, background=Y, **kw)
        assert_same(runs[threads], factorize(X, k, background=Y, **kw))  # bit-reproducible
    assert_same(runs[1], runs[2], rtol=1e-9)


@pytest.mark.parametrize("loss", LOSSES)
def test_blas_thread_count(loss):
    """Dense products go through BLAS; 1 thread vs the default agree within tolerance."""
    rng = np.random.default_rng(3)
    X, Y = rng.gamma(1.0, 2.0, (300, 200)), rng.gamma(1.0, 2.0, (200, 200))
    kw = dict(beta_loss=loss, random_state=0, max_iter=15, tol=0, alpha=1.0)
    default = factorize(X, 6, background=Y, **kw)
    with threadpool_limits(limits=1):
        single = factorize(X, 6, background=Y, **kw)
    assert_same(default, single, rtol=1e-9)
