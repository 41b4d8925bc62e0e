"""Dask engine: fits on a real ``distributed.LocalCluster`` equal the in-memory fit.

* both losses, dense and sparse chunks, with and without background, stable
  (stopping rule and code refinement) and reference mode;
* ``transform`` of a dask array is a dask array equal to the numpy transform;
* a worker killed by its process id in the middle of a fit: the fit completes
  with the same result (lost codes are recomputed from their lineage);
* only the factors and the K x n_features basis parts reach the client;
* random starts drawn on the host equal :func:`initial_factors`, a fit
  resumed from a basis alone equals the in-memory fit from that basis, zarr
  on disk and AnnData with a dask-backed ``X`` fit as their in-memory data;
* missing values (NaN in dense chunks, numpy or dask masks): the fit equals
  the in-memory fit with blocks of the chunks' rows (both losses, with and
  without background, with shared topics, from a basis alone), the model
  carries the same prior and transforms as in memory; sparse chunks with
  missing values and bad masks are refused.
"""

from __future__ import annotations

import os
import pickle
import signal
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal

da = pytest.importorskip("dask.array", reason="dask is not installed (pip install "
                         "'bcnmf[dask]')")
distributed = pytest.importorskip("distributed", reason="distributed is not installed "
                                  "(pip install 'bcnmf[dask]')")

from bcnmf import BCNMF, factorize  # noqa: E402
from bcnmf.core import fit as core_fit  # noqa: E402
from bcnmf.core.fit import fit_factors  # noqa: E402
from bcnmf.core.init import codes_for_basis, initial_factors  # noqa: E402
from bcnmf.core.source import RowSource, scan  # noqa: E402
from bcnmf.dask_engine import (_initial_codes, _load, OnDask, Runner,  # noqa: E402
                               fit_factors_dask, transform_dask)
from bcnmf._inputs import resolve_settings as _settings  # noqa: E402
from bcnmf.exceptions import InvalidParameterError  # noqa: E402

LOSSES = ["frobenius", "kullback-leibler"]
K = 3


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       memory_limit="1GiB", dashboard_address=":0")
    c = distributed.Client(cluster)
    c.wait_for_workers(2)
    yield c
    c.close()
    cluster.close()


def _data(seed=0, n_x=120, n_y=90, n_features=16, density=0.4):
    rng = np.random.default_rng(seed)
    X = sp.random(n_x, n_features, density=density, random_state=rng, format="csr") * 5
    Y = sp.random(n_y, n_features, density=density, random_state=rng, format="csr") * 5
    X = X + sp.csr_matrix(np.outer(rng.random(n_x) < 0.3, rng.random(n_features)))
    return sp.csr_matrix(X), sp.csr_matrix(Y)


def _chunked(A, rows=32):
    if sp.issparse(A):
        return da.from_array(A, chunks=(rows, -1), asarray=False,
                             meta=sp.csr_matrix((0, 0), dtype=A.dtype))
    return da.from_array(A, chunks=(rows, -1))


def _settings_for(loss, mode="stable", **kw):
    kw.setdefault("transform_max_iter", 30)
    kw.setdefault("n_shared", 0)   # (tested apart: their schedule differs)
    p = BCNMF(K, alpha=0.8, beta_loss=loss, mode=mode, **kw).get_params()
    return _settings(K, 16, p)


def _assert_same(local, dist, rtol=1e-9):
    assert dist.n_iter == local.n_iter
    assert dist.converged == local.converged
    assert_allclose(dist.components, local.components, rtol=rtol, atol=1e-13)
    assert_allclose(np.asarray(dist.codes), local.codes, rtol=rtol, atol=1e-12)
    if local.background_codes is None:
        assert dist.background_codes is None
    else:
        assert_allclose(np.asarray(dist.background_codes), local.background_codes,
                        rtol=rtol, atol=1e-12)
    assert_allclose(dist.history["iteration"], local.history["iteration"])
    for key in ("target", "background", "objective"):
        assert_allclose(dist.history[key], local.history[key], rtol=rtol, atol=1e-9)
    assert_allclose(dist.alpha_raw, local.alpha_raw, rtol=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("with_background", [True, False])
def test_cluster_fit_equals_in_memory_fit(client, loss, sparse, with_background):
    X, Y = _data()
    if not sparse:
        X, Y = X.toarray(), Y.toarray()
    Y = Y if with_background else None
    # stable mode with tol > 0: stopping rule, gauge fix and code refinement
    s = _settings_for(loss, max_iter=25, tol=0.05)
    local, _ = fit_factors(X, Y, s, random_state=0)
    assert local.converged   # the stopping rule fires inside the run
    dist, diag = fit_factors_dask(_chunked(X), None if Y is None else _chunked(Y, 40), s,
                                  random_state=0, client=client)
    assert isinstance(dist.codes, da.Array)
    assert dist.codes.chunks[0] == _chunked(X).chunks[0]
    _assert_same(local, dist)
    assert diag["dask"].round_trips < local.n_iter + 20


@pytest.mark.parametrize("loss", LOSSES)
def test_reference_mode_and_restarts_equal_in_memory(client, loss):
    X, Y = _data(1)
    s = _settings_for(loss, mode="reference", max_iter=12, n_init=3)
    local, _ = fit_factors(X, Y, s, random_state=3)
    dist, _ = fit_factors_dask(_chunked(X), _chunked(Y), s, random_state=3, client=client)
    _assert_same(local, dist)
    assert dist.best_restart == local.best_restart
    assert_allclose(dist.restart_objectives, local.restart_objectives, rtol=1e-9)
    assert_allclose(dist.topic_stability, local.topic_stability, rtol=1e-9)


@pytest.mark.parametrize("loss", LOSSES)
def test_consensus_restarts_equal_in_memory(client, loss):
    """consensus=True: the medoid restart's basis replaced by the matched average, the
    codes refined with it on the workers, as in memory."""
    X, Y = _data(2)
    s = _settings_for(loss, max_iter=15, tol=0.05, n_init=3)
    local, _ = fit_factors(X, Y, s, random_state=5, consensus=True)
    plain, _ = fit_factors(X, Y, s, random_state=5)
    assert not np.allclose(local.components, plain.components)   # the consensus moved it
    dist, _ = fit_factors_dask(_chunked(X), _chunked(Y), s, random_state=5, client=client,
                               consensus=True)
    _assert_same(local, dist)
    assert dist.best_restart == local.best_restart


def test_estimator_dask_in_dask_out_and_transform(client):
    X, Y = _data(2)
    Xd = _chunked(X.toarray())
    Yd = _chunked(Y.toarray())
    local = BCNMF(K, alpha=0.8, max_iter=20, tol=0, random_state=0, transform_max_iter=400)
    codes_local = local.fit_transform(X.toarray(), background=Y.toarray())
    model = BCNMF(K, alpha=0.8, max_iter=20, tol=0, random_state=0, transform_max_iter=400)
    codes = model.fit_transform(Xd, background=Yd)
    assert isinstance(codes, da.Array) and isinstance(model.background_codes_, da.Array)
    assert_allclose(model.components_, local.components_, rtol=1e-9, atol=1e-13)
    assert_allclose(codes.compute(), codes_local, rtol=1e-9, atol=1e-12)
    # transform of a dask array: a lazy dask array, equal to the numpy transform
    # (every cell stops by its own rule, in a chunk as in memory)
    new = X.toarray()[::2] * 1.5
    t = model.transform(_chunked(new, 25))
    assert isinstance(t, da.Array) and t.chunks[0] == _chunked(new, 25).chunks[0]
    assert_allclose(t.compute(), local.transform(new), rtol=1e-9, atol=1e-12)
    # sparse chunks too
    ts = model.transform(_chunked(sp.csr_matrix(new), 25))
    assert_allclose(ts.compute(), local.transform(new), rtol=1e-9, atol=1e-12)


def test_engine_dask_on_numpy_returns_numpy(client):
    X, Y = _data(3)
    local = BCNMF(K, alpha=0.8, max_iter=15, tol=0, random_state=1)
    codes_local = local.fit_transform(X, background=Y)
    model = BCNMF(K, alpha=0.8, max_iter=15, tol=0, random_state=1, engine="dask",
                  block_size=50)
    codes = model.fit_transform(X, background=Y)
    assert isinstance(codes, np.ndarray) and isinstance(model.background_codes_, np.ndarray)
    assert_allclose(codes, codes_local, rtol=1e-9, atol=1e-12)
    assert_allclose(model.components_, local.components_, rtol=1e-9, atol=1e-13)


def test_factorize_on_dask_is_the_estimator_fit(client):
    """factorize is BCNMF's fit: dask arrays in, the Dask engine, dask codes out."""
    X, Y = _data(3)
    kw = dict(alpha=0.8, max_iter=15, tol=0, random_state=1)
    model = BCNMF(K, **kw)
    codes = model.fit_transform(_chunked(X), background=_chunked(Y))
    res = factorize(_chunked(X), K, background=_chunked(Y), **kw)
    assert isinstance(res.codes, da.Array) and isinstance(res.background_codes, da.Array)
    assert_allclose(res.codes.compute(), codes.compute(), rtol=1e-12, atol=1e-14)
    assert_allclose(res.components, model.components_, rtol=1e-12, atol=1e-14)


def test_engine_parameter_is_checked():
    X, Y = _data()
    with pytest.raises(InvalidParameterError, match="'engine'.*'spark'"):
        BCNMF(K, engine="spark", alpha=1.5).fit(X.toarray())
    with pytest.raises(ValueError, match="engine='local' cannot fit dask arrays"):
        BCNMF(K, engine="local", alpha=1.5).fit(_chunked(X.toarray()))
    Xd = _chunked(X.toarray())
    with pytest.raises(ValueError, match=r"mask must have the shape of X, \(120, 16\)"):
        BCNMF(K, alpha=1.5).fit(Xd, mask=np.ones((3, 3), dtype=bool))
    with pytest.raises(ValueError, match="device='cpu' and the Dask engine"):
        BCNMF(K, device="cpu", alpha=1.5).fit(Xd)


@pytest.mark.parametrize("loss, every", [("kullback-leibler", core_fit.SHARED_EVERY),
                                         ("kullback-leibler", 1), ("frobenius", 1)])
def test_n_shared_on_dask_equal_in_memory(client, monkeypatch, loss, every):
    """Stable mode with a background carries the fixed shared topics on
    the Dask engine too (their background NMF, the augmented starts, the
    head-only basis step and gauge, the held sweeps, whose chunks carry the
    shared topics' products: KL entry offsets between their updates,
    squared error ``A G^T`` at every sweep): the same fit as in memory,
    with the default schedule and with updates at every sweep."""
    monkeypatch.setattr(core_fit, "SHARED_EVERY", every)
    X, Y = _data(3)
    s = _settings_for(loss, max_iter=25, tol=0.05, n_shared=2)
    local, ldiag = fit_factors(X, Y, s, random_state=0)
    assert local.n_iter > core_fit.SHARED_EVERY + 1   # held sweeps on both sides of an update
    dist, ddiag = fit_factors_dask(_chunked(X), _chunked(Y, 40), s, random_state=0,
                                   client=client)
    assert dist.components.shape == (K, X.shape[1])
    _assert_same(local, dist)
    for a, b in zip(ldiag["offsets"], ddiag["offsets"]):   # floor, then the 2 topics
        assert a.shape == b.shape == (3, X.shape[1])
        assert_allclose(b, a, rtol=1e-9, atol=1e-15)
    for a, b in zip(ldiag["shared_codes"], ddiag["shared_codes"]):
        assert a.shape[1] == 2
        assert_allclose(np.asarray(b), a, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("loss", ["kullback-leibler", "frobenius"])
def test_estimator_on_dask_fits_and_transforms_with_n_shared(client, loss):
    X, Y = _data(4)
    kw = dict(beta_loss=loss, max_iter=20, tol=0, random_state=0,
              n_shared=2, transform_max_iter=400, alpha=1.5)
    local = BCNMF(K, **kw)
    codes_local = local.fit_transform(X, background=Y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the same model: nothing to warn about
        model = BCNMF(K, engine="dask", block_size=50, **kw)
        codes = model.fit_transform(X, background=Y)
    assert_allclose(model.components_, local.components_, rtol=1e-9, atol=1e-13)
    assert_allclose(codes, codes_local, rtol=1e-9, atol=1e-12)
    new = X[::2] * 1.5
    for as_background in (False, True):
        expected = local.transform(new, as_background=as_background)
        assert_allclose(model.transform(new, as_background=as_background), expected,
                        rtol=1e-9, atol=1e-12)
        assert_allclose(model.transform(_chunked(new, 25), as_background=as_background)
                        .compute(), expected, rtol=1e-9, atol=1e-12)


def test_worker_killed_mid_fit_gives_the_same_result(client):
    X, Y = _data(4, n_x=200, n_y=150)
    s = _settings_for("frobenius", max_iter=12, tol=0)
    local, _ = fit_factors(X, Y, s, random_state=0)
    pids = client.run(os.getpid)
    victim = next(iter(pids.values()))
    killed = []

    def kill_after(iteration, basis, record):
        if iteration == 4 and not killed:
            os.kill(victim, signal.SIGKILL)
            killed.append(iteration)

    dist, _ = fit_factors_dask(_chunked(X), _chunked(Y), s, random_state=0, client=client,
                               callback=kill_after)
    assert killed == [4]
    _assert_same(local, dist)
    # the codes are still reachable (recomputed if they lived on the lost worker)
    assert_allclose(dist.codes.compute(), local.codes, rtol=1e-9, atol=1e-12)
    assert victim not in client.run(os.getpid).values()
    client.wait_for_workers(2, timeout=60)   # the nanny restarts it for later tests


def test_only_factors_and_basis_parts_reach_the_client(client, monkeypatch):
    n_x, n_y, n_features = 2000, 1500, 16
    X, Y = _data(5, n_x=n_x, n_y=n_y, n_features=n_features, density=0.5)
    gathered = []
    real_gather = distributed.Client.gather

    def recording_gather(self, futures, *args, **kwargs):
        value = real_gather(self, futures, *args, **kwargs)
        gathered.append(len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)))
        return value

    monkeypatch.setattr(distributed.Client, "gather", recording_gather)
    s = _settings_for("kullback-leibler", max_iter=8, tol=0.05)
    dist, diag = fit_factors_dask(_chunked(X, 500), _chunked(Y, 500), s, random_state=0,
                                  client=client)
    assert len(gathered) == diag["dask"].round_trips > 8
    assert sum(gathered) == diag["dask"].bytes_fetched
    # per round trip: the summed parts of both datasets (K x F cross, K second,
    # a divergence) or the scan's F column sums, a few objects' overhead
    parts_bytes = 8 * (2 * (K * n_features + K * K + K) + n_features)
    assert max(gathered) <= parts_bytes + 4096
    codes_bytes = 8 * K * (n_x + n_y)
    data_bytes = 12 * (X.nnz + Y.nnz)
    assert sum(gathered) < codes_bytes / 2 and sum(gathered) < data_bytes / 10
    # the codes stay on the workers: their chunks are futures held by the cluster
    futures = distributed.futures_of(dist.codes)
    assert len(futures) == len(dist.codes.chunks[0])
    assert all(f.status == "finished" for f in futures)
    assert set(client.who_has(futures).keys()) == {f.key for f in futures}


def test_bad_values_are_reported_with_their_rows(client):
    X, Y = _data()
    X = X.toarray()
    X[70, 3] = -1.0
    with pytest.raises(ValueError, match=r"X has negative values in rows 64-95"):
        BCNMF(K, max_iter=3, alpha=1.5).fit(_chunked(X), background=_chunked(Y.toarray()))


@pytest.mark.parametrize("init", ["random", "uniform"])
def test_host_draws_equal_initial_factors(init):
    # threaded scheduler: no cluster needed
    X, Y = _data(6)
    s = _settings_for("frobenius", init=init)
    runner = Runner(None)
    x = _load(runner, _chunked(X, 17), "X", s.loss)
    y = _load(runner, _chunked(Y, 23), "background", s.loss)
    basis, codes = _initial_codes(x, y, s, 11, np.float64)
    import dask

    cx = np.concatenate(dask.compute(*codes.x))
    cy = np.concatenate(dask.compute(*codes.y))
    info_x = scan(RowSource(X), s.loss, None)
    info_y = scan(RowSource(Y, "background"), s.loss, None)
    b0, cx0, cy0 = initial_factors(info_x, info_y, K, init, np.random.default_rng(11),
                                   np.float64)
    assert_allclose(basis, b0, rtol=1e-15)
    assert_allclose(cx, cx0, rtol=1e-15)
    assert_allclose(cy, cy0, rtol=1e-15)


def test_resume_from_a_basis_alone(client):
    """A fit restarted from a saved basis (codes started as transform starts
    them) equals the in-memory fit from that basis and those codes."""
    X, Y = _data(7)
    first = BCNMF(K, alpha=0.8, max_iter=10, tol=0, random_state=0).fit(X, background=Y)
    saved = first.components_.copy()
    local = BCNMF(K, alpha=0.8, max_iter=10, tol=0)
    local.fit(X, background=Y, init_components=saved,
              init_codes=codes_for_basis(X, saved),
              init_background_codes=codes_for_basis(Y, saved))
    resumed = BCNMF(K, alpha=0.8, max_iter=10, tol=0)
    resumed.fit(_chunked(X), background=_chunked(Y), init_components=saved)
    assert_allclose(resumed.components_, local.components_, rtol=1e-9, atol=1e-13)
    assert_allclose(resumed.history_["objective"], local.history_["objective"], rtol=1e-9)
    assert_allclose(saved, first.components_)   # the saved basis is not modified


def test_divergence_handling_equals_in_memory():
    # the overflow guard returns the same last finite state (threaded scheduler)
    rng = np.random.default_rng(0)
    X = (rng.random((60, 10)) * 1e15).astype(np.float32)
    Y = (rng.random((50, 10)) * 1e15).astype(np.float32)
    p = BCNMF(K, alpha=1e10, alpha_scale="raw", mode="reference", max_iter=30).get_params()
    s = _settings(K, 10, p)
    local, dl = fit_factors(X, Y, s, random_state=0)
    dist, dd = fit_factors_dask(_chunked(X, 16), _chunked(Y, 16), s, random_state=0,
                                client=None)
    assert dd["diverged"] == dl["diverged"]
    assert dist.n_iter == local.n_iter
    assert_allclose(dist.components, local.components, rtol=1e-5)
    assert_allclose(dist.history["objective"], local.history["objective"], rtol=1e-4)


def test_zarr_on_disk_and_anndata_with_dask_x(client, tmp_path):
    zarr = pytest.importorskip("zarr", reason="zarr is not installed")
    X, Y = _data(8)
    X, Y = X.toarray(), Y.toarray()
    local = BCNMF(K, alpha=0.8, max_iter=10, tol=0, random_state=0)
    codes_local = local.fit_transform(X, background=Y)
    for name, A in (("x.zarr", X), ("y.zarr", Y)):
        z = zarr.open(str(tmp_path / name), mode="w", shape=A.shape, chunks=(32, A.shape[1]),
                      dtype=A.dtype)
        z[:] = A
    Xz, Yz = da.from_zarr(str(tmp_path / "x.zarr")), da.from_zarr(str(tmp_path / "y.zarr"))
    model = BCNMF(K, alpha=0.8, max_iter=10, tol=0, random_state=0)
    codes = model.fit_transform(Xz, background=Yz)
    assert_allclose(codes.compute(), codes_local, rtol=1e-9, atol=1e-12)
    anndata = pytest.importorskip("anndata", reason="anndata is not installed")
    adata = anndata.AnnData(X=Xz)
    assert isinstance(adata.X, da.Array)
    model = BCNMF(K, alpha=0.8, max_iter=10, tol=0, random_state=0)
    codes = model.fit_transform(adata.X, background=Yz)
    assert_allclose(model.components_, local.components_, rtol=1e-9, atol=1e-13)


def test_tl_on_anndata_with_dask_x(client):
    anndata = pytest.importorskip("anndata", reason="anndata is not installed")
    import bcnmf

    X, Y = _data(9)
    dense = np.vstack([X.toarray(), Y.toarray()])
    condition = np.r_[np.full(X.shape[0], "case"), np.full(Y.shape[0], "control")]
    adata = anndata.AnnData(X=da.from_array(dense, chunks=(50, -1)))
    adata.obs["condition"] = condition
    memory = anndata.AnnData(X=dense)
    memory.obs["condition"] = condition
    kw = dict(n_components=K, alpha=0.8, max_iter=10, tol=0, random_state=0)
    bcnmf.tl.bcnmf(adata, "condition", background="control", **kw)
    bcnmf.tl.bcnmf(memory, "condition", background="control", **kw)
    assert isinstance(adata.X, da.Array)   # the data stay lazy
    assert_allclose(np.asarray(adata.obsm["X_bcnmf"]), memory.obsm["X_bcnmf"], rtol=1e-9,
                    atol=1e-12)


def test_client_side_checkpoint_and_resume(client, tmp_path):
    """The Dask engine writes basis checkpoints; a fit interrupted at the client
    resumes from the last one (equal to starting from that basis) instead of
    from scratch; a checkpoint of another problem is refused."""
    from bcnmf.core.checkpoint import CheckpointError, read

    X, Y = _data(8)
    path = tmp_path / "basis.ckpt"
    first = BCNMF(K, alpha=0.8, max_iter=9, tol=0, random_state=0, engine="dask")
    first.fit(X, background=Y, checkpoint=path, checkpoint_every=4)
    meta, arrays = read(path)
    assert meta["kind"] == "basis" and meta["sweep"] == 8
    resumed = BCNMF(K, alpha=0.8, max_iter=5, tol=0, random_state=0, engine="dask")
    resumed.fit(X, background=Y, resume=path)
    again = BCNMF(K, alpha=0.8, max_iter=5, tol=0, random_state=0, engine="dask")
    again.fit(X, background=Y, init_components=arrays["basis"])
    assert_allclose(resumed.components_, again.components_, rtol=1e-12)
    fresh = BCNMF(K, alpha=0.8, max_iter=5, tol=0, random_state=0, engine="dask")
    fresh.fit(X, background=Y)
    # progress kept: the resumed fit starts where the first one was, not from a random start
    assert resumed.history_["objective"][0] < fresh.history_["objective"][0]
    with pytest.raises(CheckpointError, match="another problem"):
        BCNMF(K + 1, alpha=0.8, max_iter=3, tol=0, engine="dask").fit(
            X, background=Y, resume=path)
    with pytest.raises(ValueError, match="n_init=1"):
        BCNMF(K, n_init=2, engine="dask", alpha=1.5).fit(X, background=Y, checkpoint=path)


# --------------------------------------------------------------------------- missing values

def _missing(how, seed=0):
    """Dense ``(X, Y, mask, background_mask)`` with about 15 % / 10 % of the
    entries missing: NaN (masks None), or masks with junk under False (NaN,
    Inf and negative values, which a mask makes ignored)."""
    X, Y = _data(seed)
    X, Y = X.toarray(), Y.toarray()
    rng = np.random.default_rng(seed + 100)
    mx, my = rng.random(X.shape) > 0.15, rng.random(Y.shape) > 0.1
    if how == "nan":
        X[~mx], Y[~my] = np.nan, np.nan
        return X, Y, None, None
    junk = np.array([np.nan, np.inf, -1.0])
    X[~mx] = junk[rng.integers(0, 3, size=(~mx).sum())]
    Y[~my] = junk[rng.integers(0, 3, size=(~my).sum())]
    return X, Y, mx, my


def _assert_same_prior(local, dist):
    for a, b in zip(local, dist):
        assert (a is None) == (b is None)
        if a is not None:
            assert_allclose(b.mean, a.mean, rtol=1e-12)
            assert_allclose(b.tau2, a.tau2, rtol=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("with_background", [True, False])
@pytest.mark.parametrize("how", ["nan", "mask"])
def test_missing_values_fit_equals_in_memory(client, loss, with_background, how):
    """With blocks of the chunks' rows the in-memory fit sees the same blocks,
    so the prior's weights (computed per block) are the same: the same fit."""
    X, Y, mask, bg_mask = _missing(how)
    if not with_background:
        Y = bg_mask = None
    given = [None if a is None else a.copy() for a in (X, Y)]
    s = _settings_for(loss, max_iter=25, tol=0.05)
    local, ldiag = fit_factors(X, Y, s, random_state=0, block_rows=32, mask=mask,
                               background_mask=bg_mask)
    assert ldiag["missing_prior"][0] is not None
    dmask = None if mask is None else da.from_array(mask, chunks=(20, -1))   # rechunked
    dist, ddiag = fit_factors_dask(_chunked(X), None if Y is None else _chunked(Y), s,
                                   random_state=0, client=client, mask=dmask,
                                   background_mask=bg_mask)
    _assert_same(local, dist)
    _assert_same_prior(ldiag["missing_prior"], ddiag["missing_prior"])
    for a, b in zip((X, Y), given):   # the caller's arrays keep their values
        if a is not None:
            assert_array_equal(a, b)


@pytest.mark.parametrize("how", ["nan", "mask"])
def test_missing_values_contrastive_start_equals_in_memory(client, how):
    """The contrastive start with missing values: the same samples (missing entries at the
    observed means) and the same starting codes (on the observed entries) on both engines."""
    X, Y, mask, bg_mask = _missing(how, seed=2)
    s = _settings_for("frobenius", max_iter=25, tol=0.05, init="contrastive")
    local, _ = fit_factors(X, Y, s, random_state=0, block_rows=32, mask=mask,
                           background_mask=bg_mask)
    dist, _ = fit_factors_dask(_chunked(X), _chunked(Y), s, random_state=1, client=client,
                               mask=mask, background_mask=bg_mask)
    _assert_same(local, dist)


def test_missing_values_with_n_shared_equal_in_memory(client):
    """Stable Poisson with shared topics and missing values: no held sweeps
    (masked blocks take no entry offsets), the same fit as in memory."""
    X, Y, _, _ = _missing("nan", seed=3)
    s = _settings_for("kullback-leibler", max_iter=25, tol=0.05, n_shared=2)
    local, _ = fit_factors(X, Y, s, random_state=0, block_rows=32)
    assert local.n_iter > core_fit.SHARED_EVERY + 1
    dist, _ = fit_factors_dask(_chunked(X), _chunked(Y), s, random_state=0, client=client)
    _assert_same(local, dist)


def test_held_sweeps_need_complete_data():
    # threaded scheduler: no cluster needed
    X, _, _, _ = _missing("nan")
    runner = Runner(None)
    with_nan = _load(runner, _chunked(X), "X", "frobenius")
    complete = _load(runner, _chunked(np.nan_to_num(X)), "X", "frobenius")
    assert with_nan.masks is not None and complete.masks is None
    assert OnDask(runner, complete, complete, None, "frobenius", None).can_hold
    assert not OnDask(runner, with_nan, None, None, "frobenius", None).can_hold
    assert not OnDask(runner, complete, with_nan, None, "frobenius", None).can_hold


def test_estimator_on_dask_with_missing_values(client):
    """BCNMF with masks and NaN on the Dask engine: numpy in (engine="dask")
    and dask in (a dask mask of other chunks), the same fit and prior as in
    memory with ``block_size`` rows per block; the fitted model transforms
    numpy data with missing values as in memory.  A dask array with missing
    values is transformed with the model's prior (``BCNMF.transform``, or
    :func:`transform_dask` given the prior); :func:`transform_dask` without a
    prior refuses it."""
    X, Y, mask, bg_mask = _missing("mask", seed=4)
    X[5, 2] = np.nan   # NaN under a True mask: missing too
    kw = dict(alpha=0.8, max_iter=20, tol=0, random_state=0, transform_max_iter=400,
              block_size=32)
    local = BCNMF(K, **kw)
    codes_local = local.fit_transform(X, background=Y, mask=mask, background_mask=bg_mask)
    given = X.copy()
    model = BCNMF(K, engine="dask", **kw)
    codes = model.fit_transform(X, background=Y, mask=mask, background_mask=bg_mask)
    assert isinstance(codes, np.ndarray)
    assert_allclose(model.components_, local.components_, rtol=1e-9, atol=1e-13)
    assert_allclose(codes, codes_local, rtol=1e-9, atol=1e-12)
    assert_array_equal(X, given)
    _assert_same_prior(local.fit_state_.missing_prior, model.fit_state_.missing_prior)
    new = np.where(mask, X, np.nan)[::2] * 1.5
    expected = local.transform(new)
    assert_allclose(model.transform(new), expected, rtol=1e-9, atol=1e-12)
    on_dask = BCNMF(K, **kw)
    codes_d = on_dask.fit_transform(_chunked(X, 40), background=_chunked(Y, 40),
                                    mask=da.from_array(mask, chunks=(25, -1)),
                                    background_mask=bg_mask)
    assert isinstance(codes_d, da.Array) and codes_d.chunks[0] == _chunked(X).chunks[0]
    assert_allclose(codes_d.compute(), codes_local, rtol=1e-9, atol=1e-12)
    _assert_same_prior(local.fit_state_.missing_prior, on_dask.fit_state_.missing_prior)
    state = on_dask.fit_state_
    args = (on_dask.components_, state.settings, state.policy, state.offsets[0],
            on_dask.transform_max_iter, on_dask.tol)
    t = transform_dask(_chunked(new), *args, prior=on_dask.fit_state_.missing_prior[0])
    assert_allclose(t.compute(), expected, rtol=1e-9, atol=1e-12)
    t = transform_dask(_chunked(X[::2] * 1.5), *args, mask=mask[::2],
                       prior=on_dask.fit_state_.missing_prior[0])
    assert_allclose(t.compute(), expected, rtol=1e-9, atol=1e-12)
    # the estimator's transform of dask arrays solves missing entries with the fit's prior
    assert_allclose(on_dask.transform(_chunked(new)).compute(), expected, rtol=1e-9,
                    atol=1e-12)
    assert_allclose(on_dask.transform(_chunked(X[::2] * 1.5), mask=mask[::2]).compute(),
                    expected, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match=r"X has missing values \(NaN\) in rows \d+-\d+; .*"
                                         "prior"):
        transform_dask(_chunked(new), *args).compute()   # no prior given
    with pytest.raises(ValueError, match="mask= needs prior="):
        transform_dask(_chunked(new), *args, mask=mask[::2])


def test_resume_from_a_basis_alone_with_missing_values(client):
    """Codes started from a basis alone on data with missing values start on
    the observed entries (as ``transform`` starts them): the in-memory fit
    from that basis and those codes."""
    from bcnmf.core import masked

    X, Y, _, _ = _missing("nan", seed=7)
    saved = BCNMF(K, alpha=0.8, max_iter=5, tol=0, random_state=0).fit(
        X, background=Y).components_
    starts = [masked.start_codes(np.nan_to_num(A), ~np.isnan(A), saved) for A in (X, Y)]
    local = BCNMF(K, alpha=0.8, max_iter=10, tol=0, block_size=32)
    local.fit(X, background=Y, init_components=saved, init_codes=starts[0],
              init_background_codes=starts[1])
    resumed = BCNMF(K, alpha=0.8, max_iter=10, tol=0)
    resumed.fit(_chunked(X), background=_chunked(Y), init_components=saved)
    assert_allclose(resumed.components_, local.components_, rtol=1e-9, atol=1e-13)
    assert_allclose(resumed.history_["objective"], local.history_["objective"], rtol=1e-9)


def test_missing_values_refused_where_in_memory_refuses_them():
    """Sparse chunks take no missing values; masks of another shape or dtype,
    a matrix with nothing observed and Inf at an observed entry are refused
    (on the client where the metadata tell, else naming the chunk's rows)."""
    X, _ = _data()
    s = _settings_for("frobenius", max_iter=2)
    nan_sparse = X.copy()
    nan_sparse.data[3] = np.nan
    with pytest.raises(ValueError, match=r"X is sparse and contains NaN in rows 0-31; BCNMF "
                                         "fits around missing values \\(NaN\\) in dense"):
        fit_factors_dask(_chunked(nan_sparse), None, s)
    with pytest.raises(ValueError, match=r"mask was given with sparse chunks of X \(rows "
                                         r"\d+-\d+\); BCNMF fits around missing values in "
                                         "dense input only"):
        fit_factors_dask(_chunked(X), None, s, mask=np.ones(X.shape, dtype=bool))
    dense = X.toarray()
    with pytest.raises(ValueError, match=r"background_mask must have the shape of "
                                         r"background, \(120, 16\); got \(120, 15\)"):
        fit_factors_dask(_chunked(dense), _chunked(dense), s,
                         background_mask=np.ones((120, 15), dtype=bool))
    with pytest.raises(ValueError, match="mask must be a boolean array .* got dtype float64"):
        fit_factors_dask(_chunked(dense), None, s, mask=da.ones(dense.shape, chunks=(32, -1)))
    with pytest.raises(ValueError, match="Input X has no observed values: all 1920 entries"):
        fit_factors_dask(_chunked(np.full_like(dense, np.nan)), None, s)
    dense[40, 1] = np.inf
    with pytest.raises(ValueError, match=r"X has non-finite values in rows 32-63"):
        fit_factors_dask(_chunked(dense), None, s, mask=np.isfinite(dense) | (dense > 0))
