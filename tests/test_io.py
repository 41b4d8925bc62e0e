"""bcnmf.io: readers of .h5ad/.csv/.tsv/.npz/.mtx in both orientations, and writers."""

import gzip
import shutil

import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

from bcnmf.exceptions import InputFileError
from bcnmf.io import read_table, write_table

rng = np.random.default_rng(0)
M = rng.poisson(1.5, size=(6, 4)).astype(float)  # samples x features
CELLS = [f"c{i}" for i in range(6)]
GENES = ["g0", "g1", "g2", "g3"]


def _check(table, sparse=None):
    X = table.X.toarray() if sp.issparse(table.X) else table.X
    np.testing.assert_array_equal(X, M)
    assert list(table.obs_names) == CELLS and list(table.var_names) == GENES
    assert table.has_var_names
    if sparse is not None:
        assert sp.issparse(table.X) == sparse


@pytest.mark.parametrize("suffix, sep", [(".csv", ","), (".tsv", "\t"), (".txt", "\t")])
def test_delimited_both_orientations(tmp_path, suffix, sep):
    frame = pd.DataFrame(M, index=CELLS, columns=GENES)
    frame.to_csv(tmp_path / f"s{suffix}", sep=sep)
    frame.T.to_csv(tmp_path / f"f{suffix}", sep=sep)
    _check(read_table(tmp_path / f"s{suffix}"), sparse=False)
    _check(read_table(tmp_path / f"f{suffix}", rows="features"))
    wrong = read_table(tmp_path / f"f{suffix}")  # without the flag: features as samples
    assert wrong.shape == (4, 6)


def test_gzipped_csv(tmp_path):
    pd.DataFrame(M, index=CELLS, columns=GENES).to_csv(tmp_path / "a.csv.gz")
    _check(read_table(tmp_path / "a.csv.gz"))


def test_csv_errors(tmp_path):
    frame = pd.DataFrame(M, index=CELLS, columns=GENES)
    frame["label"] = "x"
    frame.to_csv(tmp_path / "bad.csv")
    with pytest.raises(InputFileError, match="non-numeric value 'x' in row 'c0', column 'label'"):
        read_table(tmp_path / "bad.csv")
    (tmp_path / "one.csv").write_text("a\nb\n")
    with pytest.raises(InputFileError, match="no data columns"):
        read_table(tmp_path / "one.csv")


def test_npz_dense_with_names_and_sparse(tmp_path):
    np.savez(tmp_path / "d.npz", X=M, obs_names=np.array(CELLS), var_names=np.array(GENES))
    _check(read_table(tmp_path / "d.npz"), sparse=False)
    np.savez(tmp_path / "t.npz", X=M.T, obs_names=np.array(CELLS), var_names=np.array(GENES))
    _check(read_table(tmp_path / "t.npz", rows="features"))
    sp.save_npz(tmp_path / "s.npz", sp.csr_matrix(M))
    table = read_table(tmp_path / "s.npz")
    assert sp.issparse(table.X) and not table.has_var_names
    np.testing.assert_array_equal(table.X.toarray(), M)
    assert table.var_names[0] == "feature_1"
    np.savez(tmp_path / "odd.npz", a=M, b=M)
    with pytest.raises(InputFileError, match=r"found the arrays \['a', 'b'\]"):
        read_table(tmp_path / "odd.npz")


def test_mtx_10x_layout(tmp_path):
    folder = tmp_path / "10x"
    folder.mkdir()
    scipy.io.mmwrite(folder / "matrix.mtx", sp.coo_matrix(M.T))  # features x cells
    with gzip.open(folder / "matrix.mtx.gz", "wb") as out, open(folder / "matrix.mtx", "rb") as f:
        shutil.copyfileobj(f, out)
    pd.DataFrame({"id": GENES, "symbol": [g.upper() for g in GENES],
                  "type": "Gene Expression"}).to_csv(folder / "features.tsv", sep="\t",
                                                     header=False, index=False)
    pd.Series(CELLS).to_csv(folder / "barcodes.tsv", sep="\t", header=False, index=False)
    for name in ("matrix.mtx", "matrix.mtx.gz"):
        _check(read_table(folder / name, rows="features"), sparse=True)
    generic = tmp_path / "plain.mtx"
    scipy.io.mmwrite(generic, sp.coo_matrix(M))
    table = read_table(generic)
    assert not table.has_var_names and table.shape == M.shape


def test_h5ad_layers_and_raw(tmp_path):
    ad = pytest.importorskip("anndata")
    adata = ad.AnnData(np.log1p(M), obs=pd.DataFrame({"group": ["a", "b"] * 3}, index=CELLS),
                       var=pd.DataFrame(index=GENES))
    adata.layers["counts"] = M.copy()
    adata.uns["log1p"] = {"base": None}
    adata.write_h5ad(tmp_path / "a.h5ad")
    table = read_table(tmp_path / "a.h5ad", layer="counts")
    _check(table)
    assert not table.log1p_recorded and "layers['counts']" in table.source
    assert list(table.obs["group"]) == ["a", "b"] * 3
    assert read_table(tmp_path / "a.h5ad").log1p_recorded
    with pytest.raises(KeyError, match="no layer 'nope'"):
        read_table(tmp_path / "a.h5ad", layer="nope")
    with pytest.raises(ValueError, match="always cells x genes"):
        read_table(tmp_path / "a.h5ad", rows="features")
    raw = adata.copy()
    raw.raw = ad.AnnData(np.hstack([M, M]), obs=raw.obs,
                         var=pd.DataFrame(index=GENES[::-1] + ["x0", "x1", "x2", "x3"]))
    raw.write_h5ad(tmp_path / "r.h5ad")
    table = read_table(tmp_path / "r.h5ad", use_raw=True)  # restricted to var_names, in order
    np.testing.assert_array_equal(table.X, M[:, ::-1])


def test_general_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_table(tmp_path / "missing.csv")
    (tmp_path / "a.xlsx").write_text("x")
    with pytest.raises(InputFileError, match="'.xlsx' is not a supported format"):
        read_table(tmp_path / "a.xlsx")
    (tmp_path / "a.csv").write_text("x,a\ny,1\n")
    with pytest.raises(ValueError, match="rows must be"):
        read_table(tmp_path / "a.csv", rows="cells")
    with pytest.raises(ValueError, match=".h5ad files only"):
        read_table(tmp_path / "a.csv", layer="counts")


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".npz"])
def test_write_then_read(tmp_path, suffix):
    path = write_table(tmp_path / f"out{suffix}", M, CELLS, GENES)
    _check(read_table(path))
    with pytest.raises(ValueError, match="use a .csv"):
        write_table(tmp_path / "out.h5ad", M, CELLS, GENES)
