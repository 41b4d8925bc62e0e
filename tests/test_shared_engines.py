"""Shared topics on every in-process engine, for both losses.

A fit with shared topics (stable mode with a background, ``n_shared``) is the same fit up
to rounding whatever holds the data: a dense block, a CSR block, blocks of cells
(``block_size``), a memory map streamed from disk, torch tensors (``device="cpu"``).
Checked here: ``components_``, ``transform``, ``shared_components_`` and the objective
history agree across engines; ``n_shared="auto"`` counts the same background rows on every
engine; squared-error held sweeps (``A G^T`` cached per block) stay exact over several
blocks; and negative controls: the shared topics change the fit, and their codes move
during a squared-error fit (so the comparisons cannot pass vacuously).  The Dask engine is
covered by tests/test_dask.py.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal

from bcnmf import BCNMF
from bcnmf._inputs import resolve_settings
from bcnmf.core import executor as executor_module
from bcnmf.core import shared_count as shared_count_module
from bcnmf.core import source as source_mod
from bcnmf.core.fit import CELLS_PER_SHARED, MAX_SHARED, fit_factors, split_offset
from bcnmf.datasets import make_contrastive_counts

LOSSES = ["frobenius", "kullback-leibler"]
N_SHARED = 3
K = 2
MAX_ITER = 30
#: cells per streamed block: the 80 target and 80 background cells make 4 blocks each
BLOCK = 25
#: engine agreement.  Not bit-equal: the CSR kernels (numba) and BLAS sum the products in
#: different orders, blocks add their basis parts block by block, torch reduces in its own
#: order; over 30 multiplicative sweeps these differences stay near 1e-14 relative.
RTOL = 1e-8


@lru_cache(maxsize=None)
def _data():
    sim = make_contrastive_counts(8.0, n_genes=240, n_target=80, n_background=80,
                                  random_state=0)
    X, Y = np.asarray(sim.X, dtype=np.float64), np.asarray(sim.Y, dtype=np.float64)
    X.setflags(write=False)
    Y.setflags(write=False)
    return X, Y


def _model(loss, n_shared=N_SHARED, max_iter=MAX_ITER, **kw):
    return BCNMF(K, alpha=1.5, beta_loss=loss, n_shared=n_shared, max_iter=max_iter, tol=0,
                 random_state=0, transform_max_iter=50, **kw)


def _numpy(a):
    if hasattr(a, "detach"):   # a torch tensor
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _outputs(model, X):
    """What every engine must agree on, as numpy arrays."""
    return {"components": _numpy(model.components_),
            "transform": _numpy(model.transform(X)),
            "shared": _numpy(model.shared_components_),
            "objective": np.asarray(model.history_["objective"]),
            "iteration": np.asarray(model.history_["iteration"])}


@lru_cache(maxsize=None)
def _reference(loss):
    """The dense in-memory fit (one block), read only."""
    X, Y = _data()
    model = _model(loss).fit(X, background=Y)
    assert model.n_shared_ == N_SHARED
    return _outputs(model, X)


def _assert_same(got, ref, rtol=RTOL):
    assert_array_equal(got["iteration"], ref["iteration"])
    for name in ("components", "transform", "shared", "objective"):
        a, b = got[name], ref[name]
        assert a.shape == b.shape, name
        # entries near the code floor carry no relative precision: an absolute floor far
        # below the tolerance of the largest entry
        assert_allclose(a, b, rtol=rtol, atol=1e-10 * np.abs(b).max(), err_msg=name)


def _memmaps(tmp_path, *arrays):
    out = []
    for i, a in enumerate(arrays):
        path = tmp_path / f"a{i}.npy"
        np.save(path, a)
        out.append(np.load(path, mmap_mode="r"))
    return out


def _torch():
    return pytest.importorskip("torch", reason="the torch engine needs PyTorch "
                                               "(pip install 'bcnmf[torch]')")


@pytest.fixture
def torch_one_thread():
    """torch, pinned to one thread (fast and predictable on shared cores); skips
    without torch."""
    torch = _torch()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(before)


# 1. dense == CSR == blocks == memory map ---------------------------------------------------

@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("engine", ["csr", "blocks", "csr-blocks"])
def test_in_memory_engines_equal_the_dense_fit(loss, engine):
    X, Y = _data()
    if engine.startswith("csr"):
        X, Y = sp.csr_matrix(X), sp.csr_matrix(Y)
    kw = {"block_size": BLOCK} if engine.endswith("blocks") else {}
    model = _model(loss, **kw).fit(X, background=Y)
    assert model.n_shared_ == N_SHARED
    _assert_same(_outputs(model, X), _reference(loss))


@pytest.mark.parametrize("loss", LOSSES)
def test_memmap_is_streamed_and_equals_the_dense_fit(tmp_path, loss, monkeypatch):
    """Out of core, every block is read again at every sweep (held squared-error sweeps
    recompute ``A G^T`` from that read) and the fit is still the in-memory one."""
    X, Y = _data()
    mx, my = _memmaps(tmp_path, X, Y)
    reads = []
    original = source_mod.RowSource.read

    def spy(self, lo, hi, check=False):
        reads.append(hi - lo)
        return original(self, lo, hi, check)

    monkeypatch.setattr(source_mod.RowSource, "read", spy)
    model = _model(loss, block_size=BLOCK).fit(mx, background=my)
    assert reads and max(reads) <= BLOCK
    assert len(reads) >= MAX_ITER * 8   # 4 + 4 blocks, every sweep
    monkeypatch.undo()
    assert model.n_shared_ == N_SHARED
    _assert_same(_outputs(model, mx), _reference(loss))


# 2. torch CPU == numpy ---------------------------------------------------------------------

@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("layout", ["dense", "csr-blocks"])
def test_torch_cpu_equals_numpy(loss, layout, torch_one_thread):
    torch = torch_one_thread
    X, Y = _data()
    kw = {"device": "cpu"}
    if layout == "csr-blocks":
        X, Y = sp.csr_matrix(X), sp.csr_matrix(Y)
        kw["block_size"] = BLOCK
    model = _model(loss, **kw).fit(X, background=Y)
    assert isinstance(model.components_, torch.Tensor)
    assert model.components_.dtype == torch.float64
    assert model.n_shared_ == N_SHARED
    got = _outputs(model, X)
    assert isinstance(model.transform(X[:3]), torch.Tensor)
    # same tolerance as numpy: float64 throughout, only the reduction order differs
    _assert_same(got, _reference(loss))


# 3. n_shared="auto" counts the same rows on every engine -----------------------------------

@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("engine", ["csr", "blocks", "memmap", "torch"])
def test_auto_count_is_the_same_on_every_engine(loss, engine, tmp_path, monkeypatch,
                                                request):
    """With at most 30 sampled rows (of 80), the sample is spread over every block of
    25 cells: a streamed engine must gather the same rows to count the same programs and
    fit the same shared topics."""
    if engine == "torch":
        request.getfixturevalue("torch_one_thread")
    monkeypatch.setattr(shared_count_module, "MAX_ROWS", 30)
    X, Y = _data()
    rows = shared_count_module.sample_rows(Y.shape[0])
    assert rows.size == 30 and len(set(rows // BLOCK)) >= 3
    # the oracle: twice the programs counted on exactly those rows, within the cap
    cap = min(Y.shape[0], Y.shape[1] // 8, MAX_SHARED, Y.shape[0] // CELLS_PER_SHARED)
    expected = min(2 * shared_count_module.shared_count(Y[rows], loss, cap).count, cap)

    # the shared topics are fitted before the first sweep: a few sweeps are enough
    ref = _model(loss, "auto", max_iter=3).fit(X, background=Y)
    assert ref.n_shared_ == expected
    assert ref.n_shared_ >= 1 and ref.shared_components_.shape == (expected, Y.shape[1])
    kw = {}
    if engine == "csr":
        X, Y = sp.csr_matrix(X), sp.csr_matrix(Y)
    elif engine == "blocks":
        kw["block_size"] = BLOCK
    elif engine == "memmap":
        X, Y = _memmaps(tmp_path, X, Y)
        kw["block_size"] = BLOCK
    else:
        kw["device"] = "cpu"
    model = _model(loss, "auto", max_iter=3, **kw).fit(X, background=Y)
    assert model.n_shared_ == ref.n_shared_
    assert_allclose(model.shared_components_, ref.shared_components_, rtol=RTOL,
                    atol=1e-10 * ref.shared_components_.max())


# 4. held squared-error sweeps over several blocks ------------------------------------------

@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("block_size", [20, 30])
def test_held_squared_error_sweeps_are_exact_over_several_blocks(sparse, block_size,
                                                                 monkeypatch):
    """Every squared-error sweep with shared topics is held (the codes on ``G`` step from
    ``A G^T`` cached per block); with the background in 3 or 4 blocks the fit is the
    one-block fit."""
    X, Y = _data()
    if sparse:
        X, Y = sp.csr_matrix(X), sp.csr_matrix(Y)
    seen = []
    original = executor_module.sweep_block

    def spy(block, codes, view, *args, held=None, **kw):
        seen.append((held is not None, codes.shape[0]))
        return original(block, codes, view, *args, held=held, **kw)

    monkeypatch.setattr(executor_module, "sweep_block", spy)
    model = _model("frobenius", block_size=block_size).fit(X, background=Y)
    monkeypatch.undo()
    n_blocks = -(-Y.shape[0] // block_size)
    assert n_blocks >= 3
    held = [rows for is_held, rows in seen if is_held]
    assert len(held) == MAX_ITER * (-(-X.shape[0] // block_size) + n_blocks)
    assert max(held) == block_size
    _assert_same(_outputs(model, X), _reference("frobenius"))


# 5. negative controls ------------------------------------------------------------------------

@pytest.mark.parametrize("loss", LOSSES)
def test_without_shared_topics_the_fit_differs(loss):
    """n_shared=0 is a different fit, far outside the tolerance of the comparisons above."""
    X, Y = _data()
    ref = _reference(loss)
    model = _model(loss, n_shared=0).fit(X, background=Y)
    assert model.n_shared_ == 0 and model.shared_components_ is None
    none = _outputs(model, X)
    for name in ("components", "transform", "objective"):
        gap = np.abs(none[name] - ref[name]).max() / np.abs(ref[name]).max()
        assert gap > 1e3 * RTOL, (name, gap)


def _settings(loss, max_iter):
    X, _ = _data()
    return resolve_settings(K, X.shape[1], _model(loss, max_iter=max_iter).get_params(),
                            contrastive=True)


def test_shared_codes_move_during_a_squared_error_fit():
    """The fit's own codes on the shared topics (``fit_factors``' ``shared_codes``, the
    estimator's fit: same components): the target's start from one row repeated (the
    background's mean code, scaled) and end different per cell; both keep moving between
    sweep 10 and sweep 30; and they are the fitted state (the last records are the squared
    errors of the full model ``C B + D G`` with them), over several blocks."""
    X, Y = _data()
    runs = {}
    for max_iter in (10, MAX_ITER):
        res, diag = fit_factors(X, Y, _settings("frobenius", max_iter), random_state=0,
                                block_rows=20)
        runs[max_iter] = res, diag["shared_codes"]
    res, (dx, dy) = runs[MAX_ITER]
    model = _model("frobenius", block_size=20).fit(X, background=Y)
    assert_array_equal(res.components, model.components_)
    g = model.shared_components_
    assert dx.shape == (X.shape[0], N_SHARED) and dy.shape == (Y.shape[0], N_SHARED)
    # moved away from the start (every target row equal) ...
    spread = np.ptp(dx, axis=0) / dx.mean(axis=0)
    assert np.all(spread > 1.0), spread
    # ... and still moving after sweep 10
    _, (dx10, dy10) = runs[10]
    for a, b in ((dx, dx10), (dy, dy10)):
        assert np.abs(a - b).max() > 1e-3 * np.abs(a).max()
    # the reported codes are the fitted state of the full model
    assert_allclose(res.history["target"][-1],
                    np.sum((X - res.codes @ res.components - dx @ g) ** 2), rtol=1e-10)
    assert_allclose(res.history["background"][-1],
                    np.sum((Y - res.background_codes @ res.components - dy @ g) ** 2),
                    rtol=1e-10)
    # and their shared topics are the model's
    assert_array_equal(split_offset(model.fit_state_.offsets[0])[1], g)
