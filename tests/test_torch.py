"""The torch backend (CPU here; CUDA when available): numpy and torch agree,
torch in gives torch out, dtype and device are preserved, errors are clear."""

import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

from bcnmf import BCNMF, MiniBatchBCNMF, factorize, load  # noqa: E402
from bcnmf.core import _torch_sparse  # noqa: E402
from bcnmf.core._torch_sparse import TorchCSR  # noqa: E402
from bcnmf.exceptions import InvalidParameterError  # noqa: E402



def CUDA(test):
    """Marked ``cuda``; skipped with a reason without a GPU."""
    skip = pytest.mark.skipif(not torch.cuda.is_available(),
                              reason="CUDA tests need a GPU (torch.cuda.is_available() is False)")
    return pytest.mark.cuda(skip(test))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread keeps CI fast and predictable on shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _data(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.poisson(1.0, (40, 15)).astype(dtype)
    X[:20, :4] += 4
    Y = rng.poisson(1.0, (30, 15)).astype(dtype)
    return X, Y


def _sparse_tensor(a, layout):
    with warnings.catch_warnings():   # torch: "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        t = torch.as_tensor(a)
        return {"csr": t.to_sparse_csr, "csc": t.to_sparse_csc, "coo": t.to_sparse}[layout]()


def _close(t, a, dtype):
    """Relative (to the largest entry) agreement of a tensor and an array."""
    t = t.cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    tol = 1e-9 if dtype == np.float64 else 2e-3
    scale = max(float(np.abs(a).max()), 1e-300)
    assert t.shape == a.shape
    assert np.abs(t - a).max() / scale <= tol, np.abs(t - a).max() / scale


@pytest.mark.parametrize("loss", ["frobenius", "kullback-leibler"])
@pytest.mark.parametrize("mode", ["stable", "reference"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("alpha,background", [(0.0, True), (1.0, True), (1.0, False)])
def test_numpy_and_torch_cpu_agree(loss, mode, dtype, sparse, alpha, background):
    X, Y = _data(dtype)
    if sparse:
        X, Y = sp.csr_matrix(X), sp.csr_matrix(Y)
    Y = Y if background else None
    kw = dict(beta_loss=loss, mode=mode, alpha=alpha, random_state=3, max_iter=40, tol=0)
    ref = BCNMF(3, **kw)
    codes = ref.fit_transform(X, background=Y)
    model = BCNMF(3, device="cpu", **kw)
    tcodes = model.fit_transform(X, background=Y)
    assert isinstance(tcodes, torch.Tensor) and isinstance(model.components_, torch.Tensor)
    assert tcodes.dtype == (torch.float32 if dtype == np.float32 else torch.float64)
    _close(tcodes, codes, dtype)
    _close(model.components_, ref.components_, dtype)
    if background:
        _close(model.background_codes_, ref.background_codes_, dtype)
    np.testing.assert_array_equal(model.history_["iteration"], ref.history_["iteration"])
    np.testing.assert_allclose(model.history_["objective"], ref.history_["objective"],
                               rtol=1e-9 if dtype == np.float64 else 1e-3,
                               atol=1e-9 * abs(ref.history_["target"][0]))
    new = X[:7]
    _close(model.transform(new), ref.transform(new), dtype)
    _close(model.inverse_transform(tcodes), ref.inverse_transform(codes), dtype)


@pytest.mark.parametrize("loss", ["frobenius", "kullback-leibler"])
def test_stopping_rule_and_polish_agree(loss):
    """Default stable settings (tolerance, code refinement): same sweeps, same result."""
    X, Y = _data()
    ref = BCNMF(3, beta_loss=loss, random_state=0, max_iter=300, alpha=1.5)
    model = BCNMF(3, beta_loss=loss, random_state=0, max_iter=300, device="cpu", alpha=1.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # ConvergenceWarning for both, or neither
        codes = ref.fit_transform(X, background=Y)
        tcodes = model.fit_transform(X, background=Y)
    assert model.n_iter_ == ref.n_iter_
    _close(tcodes, codes, np.float64)


@pytest.mark.parametrize("init", ["random", "uniform"])
def test_random_starts_are_drawn_on_the_host(init):
    """Same seed, same starting factors on both backends: the objective of the
    state entering the first sweep is the same to rounding, for every restart."""
    X, Y = _data()
    kw = dict(init=init, n_init=3, random_state=np.random.RandomState(7), max_iter=1, tol=0,
              mode="reference", alpha=1.5)
    ref = BCNMF(2, **kw).fit(X, background=Y)
    kw["random_state"] = np.random.RandomState(7)
    model = BCNMF(2, device="cpu", **kw).fit(X, background=Y)
    np.testing.assert_allclose(model.restart_objectives_, ref.restart_objectives_,
                               rtol=1e-12)
    np.testing.assert_allclose(model.history_["objective"][0], ref.history_["objective"][0],
                               rtol=1e-12)


@pytest.mark.parametrize("layout", ["strided", "csr", "csc", "coo"])
@pytest.mark.parametrize("tdtype", ["float32", "float64"])
def test_torch_in_torch_out(layout, tdtype):
    X, Y = _data()
    dt = getattr(torch, tdtype)
    if layout == "strided":
        tx, ty = torch.as_tensor(X, dtype=dt), torch.as_tensor(Y, dtype=dt)
    else:
        tx, ty = (_sparse_tensor(a.astype(tdtype), layout) for a in (X, Y))
    model = BCNMF(2, beta_loss="kullback-leibler", random_state=0, max_iter=30, tol=0, alpha=1.5)
    codes = model.fit_transform(tx, background=ty)
    for out in (codes, model.components_, model.background_codes_, model.transform(tx),
                model.transform(ty, as_background=True), model.inverse_transform(codes)):
        assert isinstance(out, torch.Tensor)
        assert out.dtype == dt and out.device == torch.device("cpu")
        assert out.layout == torch.strided
    assert model.n_features_in_ == 15
    # and it is the numpy fit
    ref = BCNMF(2, beta_loss="kullback-leibler", random_state=0, max_iter=30, tol=0, alpha=1.5)
    _close(codes, ref.fit_transform(X.astype(tdtype), background=Y.astype(tdtype)),
           np.dtype(tdtype))


def test_inputs_are_not_modified_and_integer_tensors_become_float64():
    X, Y = _data()
    tx = torch.as_tensor(X).to(torch.int64)
    before = tx.clone()
    codes = BCNMF(2, random_state=0, max_iter=10, tol=0, alpha=1.5).fit_transform(tx)
    assert codes.dtype == torch.float64
    assert torch.equal(tx, before)


def test_numpy_stays_numpy_without_device():
    X, Y = _data()
    model = BCNMF(2, random_state=0, max_iter=10, tol=0, alpha=1.5)
    codes = model.fit_transform(X, background=Y)
    assert isinstance(codes, np.ndarray) and isinstance(model.components_, np.ndarray)
    # a torch-fitted model transforms numpy input on numpy
    tmodel = BCNMF(2, random_state=0, max_iter=10, tol=0, alpha=1.5).fit(torch.as_tensor(X))
    out = tmodel.transform(X)
    assert isinstance(out, np.ndarray)
    _close(torch.as_tensor(out), tmodel.transform(torch.as_tensor(X)).numpy(), np.float64)


def test_mixed_inputs_follow_the_tensor():
    X, Y = _data()
    codes = BCNMF(2, random_state=0, max_iter=10, tol=0, alpha=1.5).fit_transform(
        X, background=torch.as_tensor(Y, dtype=torch.float32))
    assert isinstance(codes, torch.Tensor) and codes.dtype == torch.float64


def test_factorize_device_matches_estimator():
    X, Y = _data()
    res = factorize(X, 3, background=Y, random_state=1, max_iter=25, tol=0, device="cpu", alpha=1.5)
    model = BCNMF(3, random_state=1, max_iter=25, tol=0, device=torch.device("cpu"), alpha=1.5)
    codes = model.fit_transform(X, background=Y)
    assert isinstance(res.components, torch.Tensor)
    assert torch.equal(res.codes, codes) and torch.equal(res.components, model.components_)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("loss", ["frobenius", "kullback-leibler"])
def test_block_engine_on_torch(sparse, loss):
    """Blocks of torch cells sum to the one-block fit."""
    X, Y = _data()
    if sparse:
        X, Y = sp.csr_matrix(X), sp.csr_matrix(Y)
    kw = dict(beta_loss=loss, random_state=0, max_iter=20, tol=0, device="cpu", alpha=1.5)
    whole = BCNMF(3, **kw).fit(X, background=Y)
    blocks = BCNMF(3, block_size=7, **kw).fit(X, background=Y)
    _close(blocks.components_, whole.components_.numpy(), np.float64)


@pytest.mark.parametrize("loss", ["frobenius", "kullback-leibler"])
def test_out_of_core_blocks_stream_to_the_device(tmp_path, loss):
    """A memory map with device=: numpy reads and checks each block, torch sweeps it."""
    X, Y = _data()
    np.save(tmp_path / "x.npy", X)
    mx = np.load(tmp_path / "x.npy", mmap_mode="r")
    kw = dict(beta_loss=loss, random_state=0, max_iter=15, tol=0, device="cpu", alpha=1.5)
    ref = BCNMF(2, **kw)
    codes = ref.fit_transform(X, background=Y)
    model = BCNMF(2, block_size=9, **kw)
    streamed = model.fit_transform(mx, background=Y)
    assert isinstance(streamed, torch.Tensor) and isinstance(model.components_, torch.Tensor)
    _close(streamed, codes.numpy(), np.float64)
    _close(model.transform(mx), ref.transform(X).numpy(), np.float64)


def test_torch_csr_round_trip_and_slices():
    rng = np.random.default_rng(1)
    a = sp.random(9, 5, density=0.4, random_state=1, format="csr") * 3
    t = TorchCSR.from_scipy(a, torch.device("cpu"))
    assert (t.to_scipy() != a).nnz == 0
    assert (TorchCSR.from_torch(t.to_torch()).to_scipy() != a).nnz == 0
    s = t.row_slice(2, 7)
    assert (s.to_scipy() != a[2:7]).nnz == 0
    np.testing.assert_allclose(s.row_sums().numpy(), np.asarray(a[2:7].sum(axis=1)).ravel())
    np.testing.assert_allclose(t.col_sums().numpy(), np.asarray(a.sum(axis=0)).ravel())
    # the transposed structure: C^T A from the transpose's CSR
    c = rng.random((9, 2))
    np.testing.assert_allclose((t._csr(t.data, transposed=True) @ torch.as_tensor(c)).numpy(),
                               a.T @ c)
    d = rng.random((4, 3)) * (rng.random((4, 3)) > 0.5)
    np.testing.assert_array_equal(_torch_sparse.dense_to_csr(torch.as_tensor(d))
                                  .to_scipy().toarray(), d)


def test_save_load_stores_numpy_and_the_device(tmp_path):
    from bcnmf.persistence import read_metadata

    X, Y = _data(np.float32)
    model = BCNMF(2, random_state=0, max_iter=20, tol=0, device=torch.device("cpu"), alpha=1.5).fit(
        X, background=Y)
    path = model.save(tmp_path / "m.npz")
    meta = read_metadata(path)
    assert meta["device"] == "cpu" and meta["params"]["device"] == "cpu"
    host = load(path)
    assert host.device is None and isinstance(host.components_, np.ndarray)
    assert host.components_.dtype == np.float32
    np.testing.assert_array_equal(host.components_, model.components_.numpy())
    _close(host.transform(X), model.transform(X).numpy(), np.float32)
    dev = load(path, device="cpu")
    assert isinstance(dev.components_, torch.Tensor) and isinstance(dev.transform(X),
                                                                    torch.Tensor)
    assert torch.equal(dev.transform(X), model.transform(X))


def test_minibatch_rejects_tensors_clearly():
    X, Y = _data()
    with pytest.raises(NotImplementedError, match="MiniBatchBCNMF fits numpy"):
        MiniBatchBCNMF(2).fit(torch.as_tensor(X))
    with pytest.raises(NotImplementedError, match="use BCNMF"):
        MiniBatchBCNMF(2).partial_fit(X, background=torch.as_tensor(Y))


def test_estimators_without_device_refuse_tensors():
    from bcnmf import CombinedBCNMF

    X, Y = _data()
    with pytest.raises(NotImplementedError, match="CombinedBCNMF fits numpy"):
        CombinedBCNMF(2).fit(torch.as_tensor(X), background=Y)
    model = MiniBatchBCNMF(2, max_iter=2, tol=0, max_no_improvement=None,
                           random_state=0).fit(X)
    with pytest.raises(NotImplementedError, match="device parameter"):
        model.transform(torch.as_tensor(X))


def test_estimator_contract_with_device():
    from sklearn.base import clone

    X, _ = _data()
    model = BCNMF(2, device="cpu", max_iter=5, tol=0, random_state=0, alpha=1.5)
    twin = clone(model)
    assert twin.get_params()["device"] == "cpu" and not hasattr(twin, "components_")
    assert twin.fit(X) is twin
    assert model.set_params(device=None).get_params()["device"] is None


def test_check_estimator_on_torch_cpu():
    """scikit-learn's checks with device="cpu": all pass but the two that read a
    numpy dtype from the output (torch in or device= gives tensors out, by design)."""
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(BCNMF(2, max_iter=20, device="cpu", alpha=1.5), on_fail=None)
    failed = {r["check_name"] for r in results if r["status"] == "failed"}
    assert failed <= {"check_transformer_preserve_dtypes", "check_fit_idempotent"}, failed
    assert len(results) > 40


def test_errors():
    X, _ = _data()
    with pytest.raises(InvalidParameterError, match="'device' parameter"):
        BCNMF(2, device=3, alpha=1.5).fit(X)
    with pytest.raises(ValueError, match="device='tpu'"):
        BCNMF(2, device="tpu", alpha=1.5).fit(X)
    bad = torch.as_tensor(X).clone()
    bad[3, 2] = -1.0
    with pytest.raises(ValueError, match="row 3, column 2"):
        BCNMF(2, alpha=1.5).fit(bad)
    bad[3, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        BCNMF(2, alpha=1.5).fit(bad)
    with pytest.raises(ValueError, match="2-D"):
        BCNMF(2, alpha=1.5).fit(torch.ones(5))
    with pytest.raises(ValueError, match="features"):
        BCNMF(2, alpha=1.5).fit(torch.as_tensor(X), background=torch.ones((4, 3)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_unavailable_is_a_clear_error():
    X, _ = _data()
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        BCNMF(2, device="cuda", alpha=1.5).fit(X)


def test_missing_torch_is_a_clear_error(monkeypatch):
    X, _ = _data()
    monkeypatch.setitem(sys.modules, "torch", None)   # import torch now fails
    with pytest.raises(ImportError, match="pip install"):
        BCNMF(2, device="cpu", alpha=1.5).fit(X)


@CUDA
@pytest.mark.parametrize("loss", ["frobenius", "kullback-leibler"])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cuda_agrees_with_numpy(loss, sparse, dtype):
    X, Y = _data(dtype)
    if sparse:
        X, Y = sp.csr_matrix(X), sp.csr_matrix(Y)
    kw = dict(beta_loss=loss, random_state=2, max_iter=40, tol=0, alpha=1.5)
    ref = BCNMF(3, **kw)
    codes = ref.fit_transform(X, background=Y)
    model = BCNMF(3, device="cuda", **kw)
    tcodes = model.fit_transform(X, background=Y)
    assert tcodes.device.type == "cuda" and model.components_.device.type == "cuda"
    _close(tcodes, codes, dtype)
    _close(model.components_, ref.components_, dtype)
    out = model.transform(X[:5])
    assert out.device.type == "cuda"
    _close(out, ref.transform(X[:5]), dtype)


@CUDA
def test_cuda_tensor_in_cuda_tensor_out():
    X, Y = _data(np.float32)
    tx, ty = torch.as_tensor(X, device="cuda"), torch.as_tensor(Y, device="cuda")
    model = BCNMF(2, random_state=0, max_iter=20, tol=0, alpha=1.5)
    codes = model.fit_transform(tx, background=ty)
    for out in (codes, model.components_, model.transform(tx), model.inverse_transform(codes)):
        assert out.device.type == "cuda" and out.dtype == torch.float32
