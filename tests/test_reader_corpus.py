"""A corpus of damaged and mislabelled input files: every read raises the library's error,
naming the file, the format expected and what was found; good files read as before.

Each case writes a file into ``tmp_path`` and lists fragments that the message must contain
(beyond the file name and the expected format, checked for every case). ``chained`` cases wrap
an error of a third-party reader, which must stay attached as ``__cause__``.
"""

import gzip
import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

import bcnmf
from bcnmf import BCNMF
from bcnmf.core import checkpoint as ck
from bcnmf.exceptions import InputFileError, ModelFormatError
from bcnmf.io import read_table

M = np.array([[0.0, 1.0, 2.5, 0.0],
              [3.0, 0.0, 0.25, 7.0],
              [1.0, 1.0, 0.0, 4.0]])   # samples x features
CELLS = ["c1", "c2", "c3"]
GENES = ["g1", "g2", "g3", "g4"]
CSV = "cell,g1,g2\nc1,0,3\nc2,1,4\n"

EXPECTED = {
    ".csv": "comma-separated table (.csv)",
    ".tsv": "tab-separated table (.tsv)",
    ".txt": "tab-separated table (.txt)",
    ".npz": "NumPy .npz archive",
    ".mtx": "Matrix Market file (.mtx)",
    ".h5ad": "AnnData .h5ad file (HDF5)",
}


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _h5ad_bytes(tmp_path, X=M, layers=None) -> bytes:
    ad = pytest.importorskip("anndata")
    adata = ad.AnnData(X, obs=pd.DataFrame(index=CELLS), var=pd.DataFrame(index=GENES))
    for name, layer in (layers or {}).items():
        adata.layers[name] = layer
    path = tmp_path / "_source.h5ad"
    adata.write_h5ad(path)
    return path.read_bytes()


def _hdf5_bytes(tmp_path, entries) -> bytes:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "_source.h5"
    with h5py.File(path, "w") as f:
        for name in entries:
            f[name] = np.ones(3)
    return path.read_bytes()


def _long_csv() -> bytes:
    return ("cell,a,b\n" + "".join(f"c{i},{i},{i + 1}\n" for i in range(5000))).encode()


# name -> (content: bytes or a function of tmp_path giving bytes, message fragments, chained)
CASES = {
    # delimited tables
    "empty.csv": (b"", ["an empty file (0 bytes)"], False),
    "blank.csv": (b"\n  \n\n", ["no header line (only blank lines)"], True),
    "header_only.csv": (b"cell,g1,g2\n", ["a header line with 2 column names but no data rows"],
                        False),
    "semicolons.csv": (b"cell;g1;g2\nc1;0;3\n",
                       ["no data columns", "has no commas but 2 semicolons"], False),
    "tabs.csv": (b"cell\tg1\tg2\nc1\t0\t3\n", ["has no commas but 2 tabs", "name it .tsv"],
                 False),
    "commas.tsv": (CSV.encode(), ["has no tabs but 2 commas", "name it .csv"], False),
    "commas.txt": (CSV.encode(), ["has no tabs but 2 commas", "name it .csv"], False),
    "spaces.txt": (b"cell g1 g2\nc1 0 3\n", ["has no tabs but 2 spaces",
                                             "comma-separated (.csv) and tab-separated"], False),
    "names_only.csv": (b"cell\nc1\nc2\n", ["no data columns: the first line 'cell' has no "
                                           "commas", "a first column of row names"], False),
    "text_cell.csv": (b"cell,g1,g2\nc1,0,3\nc2,1,abc\nc3,oops,1\n",
                      ["a non-numeric value 'abc' in row 'c2', column 'g2'",
                       "(2 columns hold text)"], False),
    "bool_column.csv": (b"cell,g1,flag\nc1,0,TRUE\nc2,1,FALSE\n",
                        ["a non-numeric value True in row 'c1', column 'flag'"], False),
    "long_row.csv": (b"cell,g1,g2\nc1,0,3\nc2,1,4,9\n",
                     ["rows of different lengths: line 3 has 4 fields, the lines before it 3"],
                     True),
    "short_row.csv": (b"cell,g1,g2\nc1,0,3\nc2,1\n",
                      ["rows of different lengths: line 3 has 2 fields, the header and the "
                       "first column 3"], False),
    "negative.csv": (b"cell,g1,g2\nc1,0,3\nc2,-1.5,4\nc3,-2,0\n",
                     ["2 negative value(s), the first -1.5 at row 'c2', column 'g1'",
                      "non-negative data"], False),
    "infinite.csv": (b"cell,g1,g2\nc1,0,inf\nc2,1,4\n",
                     ["1 infinite value(s), the first inf at row 'c1', column 'g2'"], False),
    "latin1.csv": ("cell,g1\ncaf\xe9,1\n".encode("latin-1"), ["text that is not UTF-8"], True),
    "open_quote.csv": (b'cell,g1\n"c1,1\n', ["text that pandas cannot parse"], True),
    "plain.csv.gz": (CSV.encode(), ["not gzip-compressed data", "Remove .gz"], False),
    "compressed.csv": (_gz(CSV.encode()), ["gzip-compressed data, but the name does not end "
                                           "in .gz", "compressed.csv.gz"], False),
    "cut_short.csv.gz": (_gz(CSV.encode())[:20], ["cannot be decompressed"], True),
    "cut_long.csv.gz": (lambda tmp: _gz(_long_csv())[:len(_gz(_long_csv())) // 2],
                        ["ends early or is corrupted", "truncated"], True),
    "hdf5.csv": (lambda tmp: _h5ad_bytes(tmp), ["an HDF5 file", "name it .h5ad"], False),
    "archive.tsv": (lambda tmp: _npz_bytes(X=M), ["a zip archive", "name it .npz"], False),
    # NumPy archives
    "empty.npz": (b"", ["an empty file (0 bytes)"], False),
    "truncated.npz": (lambda tmp: _npz_bytes(X=M)[:200],
                      ["a zip archive that NumPy cannot read", "truncated"], True),
    "text.npz": (CSV.encode(), ["text beginning 'cell,g1,g2'", "name it .csv"], False),
    "single_array.npz": (lambda tmp: (lambda b: b.getvalue())(
        (lambda b: (np.save(b, M), b)[1])(io.BytesIO())),
        ["a single NumPy .npy array", "numpy.savez"], False),
    "objects.npz": (lambda tmp: _npz_bytes(X=np.array([[1, "a"]], dtype=object)),
                    ["an array of Python objects"], True),
    "strings.npz": (lambda tmp: _npz_bytes(X=np.array([["1", "a"]])),
                    ["a matrix of dtype <U1 (text)"], False),
    "vector.npz": (lambda tmp: _npz_bytes(X=np.ones(4)), ["a matrix of shape (4,)", "2-D"],
                   False),
    "no_rows.npz": (lambda tmp: _npz_bytes(X=np.ones((0, 4))),
                    ["an empty matrix (0 rows x 4 columns)"], False),
    "two_arrays.npz": (lambda tmp: _npz_bytes(a=M, b=M), ["the arrays ['a', 'b']"], False),
    "short_names.npz": (lambda tmp: _npz_bytes(X=M, obs_names=np.array(["a", "b"])),
                        ["2 sample names in obs_names for the 3 samples"], False),
    "negative.npz": (lambda tmp: _npz_bytes(X=-M), ["negative value(s), the first -1.0 at "
                                                    "row 1, column 2"], False),
    "negative_sparse.npz": (lambda tmp: _sparse_npz(tmp, _with(M, {(2, 0): -3.0,
                                                                  (1, 2): -2.0})),
                            ["2 negative value(s), the first -2.0 at row 2, column 3"], False),
    "compressed.npz.gz": (lambda tmp: _gz(_npz_bytes(X=M)), ["not read gzip-compressed"],
                          False),
    "model.npz": (lambda tmp: _model_bytes(tmp), ["a saved bcnmf model", "bcnmf.load"], False),
    # Matrix Market
    "empty.mtx": (b"", ["an empty file (0 bytes)"], False),
    "text.mtx": (CSV.encode(), ["text beginning 'cell,g1,g2'", "'%%MatrixMarket'"], False),
    "truncated.mtx": (b"%%MatrixMarket matrix coordinate real general\n3 3 4\n1 1 1\n2 2 2\n",
                      ["scipy cannot parse", "Truncated"], True),
    "bad_value.mtx": (b"%%MatrixMarket matrix coordinate real general\n2 2 2\n1 1 x\n2 2 2\n",
                      ["scipy cannot parse", "Line 3"], True),
    "negative.mtx": (b"%%MatrixMarket matrix coordinate real general\n2 3 2\n1 1 1.0\n"
                     b"2 3 -4.5\n", ["1 negative value(s), the first -4.5 at row 2, column 3"],
                     False),
    "complex.mtx": (b"%%MatrixMarket matrix coordinate complex general\n2 2 1\n1 1 1.0 2.0\n",
                    ["dtype complex128 (complex numbers)"], False),
    "cut.mtx.gz": (lambda tmp: _gz(_mtx_bytes(tmp))[:25], ["cannot be decompressed"], True),
    # AnnData
    "empty.h5ad": (b"", ["an empty file (0 bytes)"], False),
    "text.h5ad": (CSV.encode(), ["text beginning 'cell,g1,g2'", "name it .csv"], False),
    "archive.h5ad": (lambda tmp: _npz_bytes(X=M), ["a zip archive", "name it .npz"], False),
    "truncated.h5ad": (lambda tmp: (lambda b: b[:len(b) // 2])(_h5ad_bytes(tmp)),
                       ["an HDF5 file that h5py cannot open", "truncated"], True),
    "not_anndata.h5ad": (lambda tmp: _hdf5_bytes(tmp, ["matrix", "other"]),
                         ["an HDF5 file that is not AnnData", "['matrix', 'other']",
                          "scanpy.read_10x_h5"], False),
    "negative.h5ad": (lambda tmp: _h5ad_bytes(tmp, X=M - 1, layers={"counts": M}),
                      ["negative value(s) in X, the first -1.0 at row 'c1', column 'g1'",
                       "one of ['counts']"], False),
    "compressed.h5ad.gz": (lambda tmp: _gz(_h5ad_bytes(tmp)), ["not read gzip-compressed"],
                           False),
}


def _with(matrix, entries):
    """A CSR copy of ``matrix`` with ``entries`` ({(row, column): value}) set."""
    out = np.array(matrix)
    for (i, j), value in entries.items():
        out[i, j] = value
    return sp.csr_matrix(out)


def _sparse_npz(tmp_path, matrix) -> bytes:
    path = tmp_path / "_source_sparse.npz"
    sp.save_npz(path, matrix)
    return path.read_bytes()


def _mtx_bytes(tmp_path) -> bytes:
    path = tmp_path / "_source.mtx"
    scipy.io.mmwrite(path, sp.coo_matrix(M))
    return path.read_bytes()


def _fitted():
    rng = np.random.default_rng(0)
    X, Y = rng.random((20, 4)), rng.random((15, 4))
    return BCNMF(2, alpha=1.0, max_iter=5, tol=0, random_state=0).fit(X, background=Y)


def _model_bytes(tmp_path) -> bytes:
    return _fitted().save(tmp_path / "_source_model.npz").read_bytes()


def _expected(name):
    suffixes = [s.lower() for s in name.split(".")[1:]]
    if suffixes[-1] == "gz":
        suffixes = suffixes[:-1]
    return EXPECTED["." + suffixes[-1]]


@pytest.mark.parametrize("name", CASES)
def test_damaged_file_names_file_format_and_finding(tmp_path, name):
    content, fragments, chained = CASES[name]
    if callable(content):
        content = content(tmp_path)
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputFileError) as info:
        read_table(path)
    message = str(info.value)
    assert message.startswith(f"Cannot read {path} as ")
    assert name in message and _expected(name) in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert (info.value.__cause__ is not None) == chained
    assert path.read_bytes() == content   # the input is never modified


@pytest.mark.parametrize("name, fragments", [
    ("a.xlsx", ["its suffix '.xlsx' is not a supported format", "text beginning 'cell,g1,g2'",
                "supported: .h5ad, .csv, .tsv, .txt, .npz, .mtx"]),
    ("no_suffix", ["it has no suffix", "supported: .h5ad"]),
])
def test_unsupported_suffix_lists_supported_formats(tmp_path, name, fragments):
    path = tmp_path / name
    path.write_text(CSV)
    with pytest.raises(InputFileError) as info:
        read_table(path)
    for fragment in [str(path), *fragments]:
        assert fragment in str(info.value)


def test_directory_is_refused_and_points_at_a_10x_matrix(tmp_path):
    folder = tmp_path / "counts.csv"
    folder.mkdir()
    with pytest.raises(InputFileError, match="it is a directory; expected a data file, one of "
                                             r"\.h5ad, \.csv") as info:
        read_table(folder)
    assert str(folder) in str(info.value) and "10x" not in str(info.value)
    tenx = tmp_path / "filtered"
    tenx.mkdir()
    scipy.io.mmwrite(tenx / "matrix.mtx", sp.coo_matrix(M.T))
    with pytest.raises(InputFileError, match=r"It holds matrix\.mtx \(10x Genomics layout\): "
                                             r"pass .*matrix\.mtx with rows='features'"):
        read_table(tenx)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such file: .*absent.csv"):
        read_table(tmp_path / "absent.csv")


def _ten_x(tmp_path, features, barcodes):
    folder = tmp_path / "10x"
    folder.mkdir()
    scipy.io.mmwrite(folder / "matrix.mtx", sp.coo_matrix(M.T))   # features x cells
    (folder / "features.tsv").write_text("".join(f"{g}\tGene Expression\n" for g in features))
    (folder / "barcodes.tsv").write_text("".join(f"{c}\n" for c in barcodes))
    return folder


def test_10x_side_files_are_named_in_errors(tmp_path):
    folder = _ten_x(tmp_path, GENES, CELLS)
    with pytest.raises(InputFileError) as info:   # features as columns: names do not fit
        read_table(folder / "matrix.mtx")
    message = str(info.value)
    assert str(folder / "barcodes.tsv") in message or str(folder / "features.tsv") in message
    assert "matrix.mtx" in message and "pass rows='features'" in message
    (folder / "features.tsv").write_text("g1\ng2\n")
    with pytest.raises(InputFileError, match=r"features\.tsv as the names of the 4 rows of "
                                             r"matrix\.mtx: found 2 names"):
        read_table(folder / "matrix.mtx", rows="features")
    cells_as_rows = tmp_path / "cells_as_rows"
    cells_as_rows.mkdir()
    scipy.io.mmwrite(cells_as_rows / "matrix.mtx", sp.coo_matrix(M))
    (cells_as_rows / "genes.tsv").write_text("\n".join(GENES) + "\n")
    with pytest.raises(InputFileError, match=r"genes\.tsv as the names of the 3 rows of "
                                             r"matrix\.mtx: found 4 names\. This matrix holds "
                                             r"samples as rows: pass rows='samples'\."):
        read_table(cells_as_rows / "matrix.mtx", rows="features")
    table = read_table(cells_as_rows / "matrix.mtx")
    assert list(table.var_names) == GENES and table.obs_names[0] == "sample_1"
    (folder / "barcodes.tsv").write_text("")
    with pytest.raises(InputFileError, match=r"barcodes\.tsv as the sample names of "
                                             r"matrix\.mtx .*: found an empty file") as info:
        read_table(folder / "matrix.mtx", rows="features")
    assert info.value.__cause__ is not None


def test_h5ad_without_matrix(tmp_path):
    ad = pytest.importorskip("anndata")
    path = tmp_path / "no_x.h5ad"
    ad.AnnData(obs=pd.DataFrame(index=CELLS), var=pd.DataFrame(index=GENES)).write_h5ad(path)
    with pytest.raises(InputFileError, match=r"no_x\.h5ad as an AnnData \.h5ad file \(HDF5\): "
                                             r"found an AnnData file without a matrix X"):
        read_table(path)


# --- good files: each format reads exactly as written ---------------------------------------

def _good_files(tmp_path):
    """{name: (path, read_table keywords)} of M with its names, in every format."""
    frame = pd.DataFrame(M, index=pd.Index(CELLS, name="cell"), columns=GENES)
    files = {}
    for suffix, sep in ((".csv", ","), (".tsv", "\t"), (".txt", "\t")):
        files[suffix] = (tmp_path / f"m{suffix}", {})
        frame.to_csv(files[suffix][0], sep=sep)
    files[".csv.gz"] = (tmp_path / "m.csv.gz", {})
    files[".csv.gz"][0].write_bytes(_gz(frame.to_csv().encode()))
    files["features.tsv"] = (tmp_path / "f.tsv", {"rows": "features"})
    frame.T.to_csv(files["features.tsv"][0], sep="\t")
    files["R-style.tsv"] = (tmp_path / "r.tsv", {})   # header without the row-name field
    files["R-style.tsv"][0].write_text("\t".join(GENES) + "\n" + "".join(
        c + "\t" + "\t".join(str(v) for v in row) + "\n" for c, row in zip(CELLS, M)))
    files[".npz"] = (tmp_path / "m.npz", {})
    np.savez(files[".npz"][0], X=M, obs_names=np.array(CELLS), var_names=np.array(GENES))
    folder = _ten_x(tmp_path, GENES, CELLS)
    files["10x .mtx"] = (folder / "matrix.mtx", {"rows": "features"})
    files["10x .mtx.gz"] = (folder / "matrix.mtx.gz", {"rows": "features"})
    files["10x .mtx.gz"][0].write_bytes(_gz((folder / "matrix.mtx").read_bytes()))
    try:
        import anndata as ad
    except ImportError:   # pragma: no cover - depends on the environment
        return files
    files[".h5ad"] = (tmp_path / "m.h5ad", {})
    ad.AnnData(M, obs=pd.DataFrame(index=CELLS),
               var=pd.DataFrame(index=GENES)).write_h5ad(files[".h5ad"][0])
    return files


def test_good_file_of_every_format_reads_identically(tmp_path):
    files = _good_files(tmp_path)
    assert len(files) >= 9
    for label, (path, kwargs) in files.items():
        table = read_table(path, **kwargs)
        X = table.X.toarray() if sp.issparse(table.X) else table.X
        np.testing.assert_array_equal(X, M, err_msg=label)
        assert list(table.obs_names) == CELLS, label
        assert list(table.var_names) == GENES, label


def test_missing_values_still_read_as_nan(tmp_path):
    """Empty cells and NA are missing values (NaN), not ragged rows."""
    path = tmp_path / "missing.csv"
    path.write_text("cell,g1,g2,g3\nc1,0,,3\nc2,NA,4,\n")
    table = read_table(path)
    expected = np.array([[0.0, np.nan, 3.0], [np.nan, 4.0, np.nan]])
    np.testing.assert_array_equal(table.X, expected)


def test_10x_names_are_read_as_text(tmp_path):
    """Names that look like numbers or NA keep their spelling."""
    folder = _ten_x(tmp_path, ["007", "NA", "1.50", "g4"], CELLS)
    table = read_table(folder / "matrix.mtx", rows="features")
    assert list(table.var_names) == ["007", "NA", "1.50", "g4"]


def test_cli_reports_the_file_in_one_line(tmp_path, capsys):
    from bcnmf.cli import main

    path = tmp_path / "target.csv"
    path.write_text("")
    assert main(["fit", str(path), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"bcnmf: error: Cannot read {path} as a comma-separated table "
                          "(.csv): found an empty file (0 bytes).")


# --- model files and checkpoints ------------------------------------------------------------

MODEL_CASES = {
    "empty.npz": (b"", ["found an empty file (0 bytes)", "save the model again"]),
    "text.npz": (CSV.encode(), ["found text beginning 'cell,g1,g2'", "bcnmf.io.read_table"]),
    "data.npz": (lambda tmp: _npz_bytes(X=M), ["no metadata.json inside (it holds ['X'])",
                                               "bcnmf.io.read_table"]),
    "anndata.npz": (lambda tmp: _h5ad_bytes(tmp), ["found an HDF5 file"]),
    "truncated.npz": (lambda tmp: (lambda b: b[:len(b) // 2])(_model_bytes(tmp)),
                      ["a zip archive that cannot be read", "save the model again"]),
    "checkpoint.npz": (lambda tmp: _checkpoint_bytes(tmp), ["a bcnmf fit checkpoint",
                                                            "resume=path"]),
    "no_settings.npz": (lambda tmp: _model_bytes_without(tmp, "settings"),
                        ["metadata.json without valid ['settings']"]),
}


def _checkpoint_bytes(tmp_path) -> bytes:
    path = ck.write(tmp_path / "_source.ckpt", {"format": ck.FORMAT, "version": ck.VERSION},
                    {"seeds": np.arange(3)})
    return path.read_bytes()


def _model_bytes_without(tmp_path, key) -> bytes:
    buf = io.BytesIO(_model_bytes(tmp_path))
    out = io.BytesIO()
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(out, "w") as dst:
        for member in src.namelist():
            data = src.read(member)
            if member == "metadata.json":
                meta = json.loads(data)
                del meta[key]
                data = json.dumps(meta).encode()
            dst.writestr(member, data)
    return out.getvalue()


@pytest.mark.parametrize("name", MODEL_CASES)
def test_model_file_errors_name_file_and_finding(tmp_path, name):
    content, fragments = MODEL_CASES[name]
    if callable(content):
        content = content(tmp_path)
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ModelFormatError) as info:
        bcnmf.load(path)
    message = str(info.value)
    assert isinstance(info.value, InputFileError)
    assert message.startswith(f"{path} is not a readable bcnmf model file (expected a zip "
                              "archive of .npy arrays and metadata.json, written by model.save)")
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_model_directory_and_missing_file(tmp_path):
    with pytest.raises(ModelFormatError, match="found a directory"):
        bcnmf.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="No such model file: .*absent.npz"):
        bcnmf.load(tmp_path / "absent.npz")


def test_checkpoint_errors_name_file_and_finding(tmp_path):
    with pytest.raises(ck.CheckpointError, match="is a directory, not a bcnmf checkpoint"):
        ck.read(tmp_path)
    model = tmp_path / "model.npz"
    model.write_bytes(_model_bytes(tmp_path))
    with pytest.raises(ck.CheckpointError, match=r"model\.npz is not a bcnmf checkpoint .*: "
                                                 r"found the arrays \[.*\] and no checksum, a "
                                                 r"saved model or a data file") as info:
        ck.read(model)
    assert "Delete" not in str(info.value)   # never advise deleting a model file
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(ck.CheckpointError, match=r"empty\.ckpt is not a readable bcnmf "
                                                 r"checkpoint .*: found an empty file"):
        ck.read(empty)
