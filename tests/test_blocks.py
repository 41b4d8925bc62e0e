"""Block engine: fits streamed by blocks of cells equal the in-memory fit.

* in-memory dense and CSR inputs with ``block_size`` equal the one-block fit;
* out-of-core inputs (``np.memmap``, zarr, an h5ad opened ``backed="r"``,
  dense and sparse) equal the in-memory fit, are read a block at a time and
  are left unchanged;
* bad values in a streamed block are reported with their rows.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal

from bcnmf import BCNMF, factorize
from bcnmf.core import source as source_mod

LOSSES = ["frobenius", "kullback-leibler"]


def _data(seed=0, n_x=53, n_y=41, n_features=12, density=0.5):
    rng = np.random.default_rng(seed)
    X = sp.random(n_x, n_features, density=density, random_state=rng, format="csr") * 5
    Y = sp.random(n_y, n_features, density=density, random_state=rng, format="csr") * 5
    X = X + sp.csr_matrix(np.outer(rng.random(n_x) < 0.3, rng.random(n_features)))
    return sp.csr_matrix(X), sp.csr_matrix(Y)


def _fit(X, Y, loss, mode="stable", **kw):
    model = BCNMF(3, alpha=0.8, beta_loss=loss, mode=mode, tol=0, max_iter=40,
                  random_state=0, **kw)
    codes = model.fit_transform(X, background=Y)
    return model, codes


def _assert_same_fit(a, b, rtol=1e-9):
    (ma, ca), (mb, cb) = a, b
    assert_allclose(mb.components_, ma.components_, rtol=rtol, atol=1e-13)
    assert_allclose(cb, ca, rtol=rtol, atol=1e-13)
    assert_allclose(mb.background_codes_, ma.background_codes_, rtol=rtol, atol=1e-13)
    for key in ("target", "background", "objective"):
        assert_allclose(mb.history_[key], ma.history_[key], rtol=rtol)
    assert_allclose(mb.alpha_raw_, ma.alpha_raw_, rtol=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("mode", ["stable", "reference"])
@pytest.mark.parametrize("sparse", [False, True])
def test_blocks_in_memory_equal_one_block(loss, mode, sparse):
    X, Y = _data()
    if not sparse:
        X, Y = X.toarray(), Y.toarray()
    whole = _fit(X, Y, loss, mode)
    for block_size in (1, 7, 40):
        _assert_same_fit(whole, _fit(X, Y, loss, mode, block_size=block_size))


def test_factorize_streams_blocks_like_the_estimator():
    X, Y = _data(1)
    res = factorize(X, 3, background=Y, alpha=0.8, tol=0, max_iter=30, random_state=0,
                    block_size=9)
    model = BCNMF(3, alpha=0.8, tol=0, max_iter=30, random_state=0).fit(X, background=Y)
    assert_allclose(res.components, model.components_, rtol=1e-9, atol=1e-13)


def _memmaps(tmp_path, X, Y):
    paths = []
    for name, a in (("x", X), ("y", Y)):
        path = tmp_path / f"{name}.npy"
        np.save(path, a)
        paths.append(path)
    return [np.load(p, mmap_mode="r") for p in paths], paths


@pytest.mark.parametrize("loss", LOSSES)
def test_memmap_is_streamed_and_equals_in_memory(tmp_path, loss, monkeypatch):
    X, Y = (a.toarray() for a in _data(2))
    (mx, my), paths = _memmaps(tmp_path, X, Y)
    before = [p.read_bytes() for p in paths]
    reads = []
    original = source_mod.RowSource.read

    def spy(self, lo, hi, check=False):
        reads.append(hi - lo)
        return original(self, lo, hi, check)

    monkeypatch.setattr(source_mod.RowSource, "read", spy)
    streamed = _fit(mx, my, loss, block_size=10)
    assert reads and max(reads) <= 10      # never more than one block at a time
    n_blocks = -(-X.shape[0] // 10) + -(-Y.shape[0] // 10)
    assert len(reads) >= 40 * n_blocks     # every sweep reads every block again
    monkeypatch.undo()
    _assert_same_fit(_fit(X, Y, loss), streamed)
    assert [p.read_bytes() for p in paths] == before
    # transform streams too and agrees with the in-memory transform
    model = streamed[0]
    assert_allclose(model.transform(mx), model.transform(X), rtol=1e-9, atol=1e-13)


def test_memmap_default_block_size_streams(tmp_path, monkeypatch):
    X, Y = (a.toarray() for a in _data(3))
    (mx, my), _ = _memmaps(tmp_path, X, Y)
    monkeypatch.setattr(source_mod, "BLOCK_ENTRIES", 12 * 8)   # 8 cells per block
    _assert_same_fit(_fit(X, Y, "frobenius"), _fit(mx, my, "frobenius"))


def test_sparse_default_block_size_counts_stored_entries(tmp_path, monkeypatch):
    """Out-of-core CSR (scipy over memory-mapped arrays) is cut into blocks of
    about BLOCK_ENTRIES stored entries, not dense entries, and still equals
    the in-memory fit."""
    X, Y = _data(6, density=0.25)
    mapped = []
    for name, a in (("x", X), ("y", Y)):
        parts = []
        for part in ("data", "indices", "indptr"):
            np.save(tmp_path / f"{name}_{part}.npy", getattr(a, part))
            parts.append(np.load(tmp_path / f"{name}_{part}.npy", mmap_mode="r"))
        mapped.append(sp.csr_matrix(tuple(parts), shape=a.shape, copy=False))
    monkeypatch.setattr(source_mod, "BLOCK_ENTRIES", 12 * 4)   # 4 dense cells
    src = source_mod.RowSource(mapped[0])
    assert source_mod.is_out_of_core(mapped[0])
    rows = source_mod.default_block_rows(src)
    assert rows == 12 * 4 * X.shape[0] // X.nnz > 4        # ~48 stored entries
    assert rows < X.shape[0]
    _assert_same_fit(_fit(X, Y, "kullback-leibler"), _fit(*mapped, "kullback-leibler"))


def test_zarr_array_is_streamed(tmp_path):
    zarr = pytest.importorskip("zarr", reason="zarr is not installed")
    X, Y = (a.toarray() for a in _data(4))
    zx = zarr.open_array(str(tmp_path / "x.zarr"), mode="w", shape=X.shape, chunks=(8, 12),
                         dtype="f8")
    zx[:] = X
    assert source_mod.is_out_of_core(zx)
    _assert_same_fit(_fit(X, Y, "kullback-leibler"),
                     _fit(zx, Y, "kullback-leibler", block_size=8))


@pytest.mark.parametrize("sparse", [False, True])
def test_backed_h5ad_is_streamed(tmp_path, sparse):
    anndata = pytest.importorskip("anndata", reason="anndata is not installed")
    X, Y = _data(5)
    if not sparse:
        X, Y = X.toarray(), Y.toarray()
    path = tmp_path / "target.h5ad"
    anndata.AnnData(X=X).write_h5ad(path)
    backed = anndata.read_h5ad(path, backed="r")
    try:
        assert source_mod.is_out_of_core(backed.X)
        streamed = _fit(backed.X, Y, "kullback-leibler", block_size=16)
    finally:
        backed.file.close()
    _assert_same_fit(_fit(X, Y, "kullback-leibler"), streamed)


@pytest.mark.parametrize("bad, word", [(-1.0, "negative"), (np.nan, "non-finite"),
                                       (np.inf, "non-finite")])
def test_bad_values_in_a_streamed_block_name_the_rows(tmp_path, bad, word):
    X, Y = (a.toarray() for a in _data(6))
    X[23, 4] = bad
    (mx, my), _ = _memmaps(tmp_path, X, Y)
    with pytest.raises(ValueError, match=rf"X has {word} values in rows 20-29"):
        BCNMF(2, block_size=10, max_iter=5, alpha=1.5).fit(mx, background=my)


def test_streamed_input_feature_count_is_checked(tmp_path):
    X, Y = (a.toarray() for a in _data(7))
    (mx, _), _ = _memmaps(tmp_path, X, Y)
    with pytest.raises(ValueError, match="X has 12 features but background has 5"):
        BCNMF(2, max_iter=5, alpha=1.5).fit(mx, background=Y[:, :5])
    model = BCNMF(2, max_iter=5, tol=0, alpha=1.5).fit(mx, background=Y)
    assert model.n_features_in_ == 12
    with pytest.raises(ValueError, match="X has 5 features, but BCNMF is expecting 12"):
        model.transform(np.load(_memmaps(tmp_path, X[:, :5], Y)[1][0], mmap_mode="r"))


def test_csr_over_memory_mapped_arrays_is_streamed(tmp_path):
    X, Y = _data(8)
    parts = []
    for name in ("data", "indices", "indptr"):
        np.save(tmp_path / f"{name}.npy", getattr(X, name))
        parts.append(np.load(tmp_path / f"{name}.npy", mmap_mode="r"))
    mx = sp.csr_matrix(tuple(parts), shape=X.shape, copy=False)
    assert source_mod.is_out_of_core(mx)
    _assert_same_fit(_fit(X, Y, "frobenius"), _fit(mx, Y, "frobenius", block_size=6))


def test_dense_kl_block_is_stored_as_csr_once():
    """A dense in-memory KL block with few nonzeros is converted to CSR once (chunk by
    chunk, the same matrix), not at every sweep; squared error, dense data and blocks with
    missing values stay dense."""
    from bcnmf.core.source import (KL_CSR_DENSITY, RowSource, make_blocks, scan,
                                   as_csr_if_sparse)
    rng = np.random.default_rng(3)
    a = rng.random((300, 23)) * (rng.random((300, 23)) < 0.2)
    for chunk in (23, 100, 1 << 22):
        c = as_csr_if_sparse(a, KL_CSR_DENSITY, chunk_entries=chunk)
        assert sp.isspmatrix_csr(c) and c.has_canonical_format and c.dtype == a.dtype
        assert_array_equal(c.toarray(), a)
    dense = rng.random((50, 23)) + 0.1
    assert as_csr_if_sparse(dense, KL_CSR_DENSITY) is dense
    source = RowSource(a, "X")
    for loss, keep, stored in (("kullback-leibler", False, True), ("kullback-leibler", True, False),
                               ("frobenius", False, False)):
        block, = make_blocks(source, scan(source, loss, None), loss, keep_dense=keep)
        assert sp.issparse(block.data) == stored
