"""Reading and writing data matrices: .h5ad, .csv/.tsv, .npz and Matrix Market (.mtx).

:func:`read_table` returns a :class:`Table` (samples x features, with names); the command line
reads every input through it. :func:`write_run` writes a run folder (the output of
``bcnmf fit`` and ``bcnmf demo``, read by ``bcnmf report``). Saved models are handled by
:mod:`bcnmf.persistence` (``model.save(path)`` / :func:`bcnmf.load`).

Orientation: data are samples x features (cells as rows) unless ``rows="features"`` says the
file holds features as rows (as 10x Genomics ``matrix.mtx`` files and many expression tables
do). ``.h5ad`` files are always cells x genes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .exceptions import _FOUND, _HEAD, InputFileError, _describe, _first_line, _signature

__all__ = ["FORMATS", "RUN_FILES", "Table", "read_table", "write_table", "write_run"]

#: suffixes understood by :func:`read_table` (each may also end in ``.gz``, except .h5ad/.npz)
FORMATS = (".h5ad", ".csv", ".tsv", ".txt", ".npz", ".mtx")
_ROWS = ("samples", "features")


@dataclass(frozen=True, eq=False)
class Table:
    """A data matrix read from a file, samples x features.

    Attributes
    ----------
    X : ndarray or scipy.sparse.csr_matrix of shape (n_samples, n_features)
    obs_names : ndarray of str, shape (n_samples,)
    var_names : ndarray of str, shape (n_features,)
    obs : pandas.DataFrame or None
        Per-sample annotations (``.h5ad`` only), indexed like ``obs_names``.
    has_var_names : bool
        False when the file carried no feature names and ``var_names`` were generated; such
        tables can be matched to others by position only.
    log1p_recorded : bool
        True when an ``.h5ad`` file's ``uns`` carries scanpy's ``log1p`` record and ``X`` was
        read (not a layer or ``.raw``).
    source : str
        Where the matrix came from (path, plus layer or ``.raw``).
    """

    X: object
    obs_names: np.ndarray
    var_names: np.ndarray
    obs: object = None
    has_var_names: bool = True
    log1p_recorded: bool = False
    source: str = ""

    @property
    def shape(self):
        return self.X.shape


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


# ---------------------------------------------------------------------------------------------
# what a file should hold and what it holds: every reader error names the file, the format
# expected from its name and what was found there
# ---------------------------------------------------------------------------------------------

#: the format each suffix promises, as error messages name it
_EXPECTED = {
    ".h5ad": "an AnnData .h5ad file (HDF5)",
    ".csv": "a comma-separated table (.csv)",
    ".tsv": "a tab-separated table (.tsv)",
    ".txt": "a tab-separated table (.txt)",
    ".npz": "a NumPy .npz archive (scipy.sparse.save_npz output or an array 'X')",
    ".mtx": "a Matrix Market file (.mtx)",
}
#: the content signature each suffix needs (after gzip decompression for csv/tsv/txt/mtx)
_NEEDS = {".h5ad": "hdf5", ".csv": "text", ".tsv": "text", ".txt": "text", ".npz": "zip",
          ".mtx": "mtx"}
#: where a file of each signature belongs, when its name says otherwise
_BELONGS = {
    "hdf5": "If it is an AnnData file, name it .h5ad.",
    "zip": "If it is a NumPy archive, name it .npz (a saved bcnmf model is read with "
           "bcnmf.load).",
    "npy": "Save the matrix in an .npz archive instead: numpy.savez(path, X=matrix).",
    "mtx": "If it is a Matrix Market file, name it .mtx.",
}
_SEPARATORS = {",": "commas", "\t": "tabs", ";": "semicolons", "|": "vertical bars",
               " ": "spaces"}


def _error(path, expected, found, hint=""):
    return InputFileError(f"Cannot read {path} as {expected}: found {found}."
                          + (f" {hint}" if hint else ""))


class _Input:
    """A file being read: its path, its format from the suffix, and its first bytes."""

    def __init__(self, path: Path, kind: str):
        self.path, self.kind = path, kind
        self.gz = path.name.lower().endswith(".gz")
        self.expected = _EXPECTED[kind] + (", gzip-compressed" if self.gz else "")
        self.head = b""

    def error(self, found, hint=""):
        return _error(self.path, self.expected, found, hint)


def _sniff(inp: _Input) -> None:
    """Check that the file's content is of the format its name says; keep its first bytes
    (decompressed for ``.gz`` names) in ``inp.head``."""
    import gzip
    import zlib

    with open(inp.path, "rb") as f:
        head = f.read(_HEAD)
    signature = _signature(head)
    if inp.gz:
        if inp.kind in (".h5ad", ".npz"):
            raise inp.error(_describe(signature, head),
                            f"{inp.kind} files are not read gzip-compressed: decompress it "
                            "first (gunzip).")
        if signature != "gzip":
            raise inp.error(f"{_describe(signature, head)}, not gzip-compressed data",
                            "Remove .gz from its name if it is not compressed.")
        try:
            with gzip.open(inp.path, "rb") as f:
                head = f.read(_HEAD)
        except (OSError, EOFError, zlib.error) as err:
            raise inp.error(f"gzip-compressed data that cannot be decompressed "
                            f"({type(err).__name__}: {err})",
                            "The file may be truncated or corrupted.") from err
        signature = _signature(head)
        if signature == "empty":
            raise inp.error("gzip-compressed empty content")
    elif signature == "gzip" and inp.kind not in (".h5ad", ".npz"):
        raise inp.error("gzip-compressed data, but the name does not end in .gz",
                        f"Name it {inp.path.name}.gz.")
    inp.head = head
    if signature == _NEEDS[inp.kind]:
        return
    if signature == "empty":
        raise inp.error(_FOUND["empty"])
    hint = _BELONGS.get(signature, "")
    if signature == "text" and any(s in _first_line(head, None) for s in (",", "\t")):
        hint = "If it is a delimited table, name it .csv (commas) or .tsv (tabs)."
    if signature == "text" and inp.kind == ".mtx":
        hint = f"A Matrix Market file begins with the line '%%MatrixMarket'. {hint}".strip()
    raise inp.error(_describe(signature, head), hint)


def _position(i, j, row_names, col_names) -> str:
    row = f"row {row_names[i]!r}" if row_names is not None else f"row {i + 1}"
    col = f"column {col_names[j]!r}" if col_names is not None else f"column {j + 1}"
    return f"{row}, {col}"


def _first(mask_of, X):
    """(row, column, count) of the first entry of X where ``mask_of(values)`` holds."""
    if sp.issparse(X):
        coo = sp.coo_matrix(X)
        hits = np.flatnonzero(mask_of(coo.data))
        order = np.lexsort((coo.col[hits], coo.row[hits]))
        k = hits[order[0]]
        return int(coo.row[k]), int(coo.col[k]), hits.size
    hits = np.argwhere(mask_of(np.asarray(X)))
    return int(hits[0][0]), int(hits[0][1]), len(hits)


def _check_values(inp, X, row_names=None, col_names=None, where=None, hint=""):
    """Refuse an empty matrix, a dtype that is not real numbers, infinities and negative
    values, naming the first offending entry by its row and column in the file. NaN (a
    missing value, which the estimators fit around in dense input) is kept. ``where`` names
    the matrix inside the file (``.h5ad``: ``X``, a layer or ``raw``)."""
    at = f" in {where}" if where else ""
    if 0 in X.shape:
        raise inp.error(f"an empty matrix{at} ({X.shape[0]} rows x {X.shape[1]} columns)")
    dtype = X.dtype
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)
            or dtype == bool):
        what = {"U": "text", "S": "bytes", "O": "Python objects", "c": "complex numbers"}.get(
            dtype.kind, "not real numbers")
        raise inp.error(f"a matrix{at} of dtype {dtype} ({what})",
                        "Expected real numbers (integer or floating point).")
    values = X.data if sp.issparse(X) else np.asarray(X)
    if values.size == 0 or dtype == bool:
        return
    lowest = np.fmin.reduce(values, axis=None)
    highest = np.fmax.reduce(values, axis=None)
    for bad, what, test, default in (
            (np.isinf(lowest) or np.isinf(highest), "infinite", np.isinf,
             "bcNMF needs finite, non-negative numbers; a missing value may be NaN "
             "(an empty cell)."),
            (lowest < 0, "negative", lambda v: v < 0,
             "bcNMF needs non-negative data (counts, intensities, or log1p of them).")):
        if bad:
            i, j, n = _first(test, X)
            value = X[i, j]
            value = (value.toarray() if sp.issparse(value) else np.asarray(value)).item()
            raise inp.error(f"{n} {what} value(s){at}, the first {value} at "
                            f"{_position(i, j, row_names, col_names)}",
                            hint if what == "negative" and hint else default)


def _names(values, prefix, n, inp, source=None):
    """Names of the n rows or columns, or generated ones (and whether they were given)."""
    if values is None:
        return np.array([f"{prefix}_{i + 1}" for i in range(n)], dtype=object), False
    values = np.asarray(values).astype(str).astype(object)
    if values.shape != (n,):
        raise inp.error(f"{values.size} {prefix} names"
                        + (f" in {source}" if source else "")
                        + f" for the {n} {prefix}s of the matrix")
    return values, True


def _orient(X, rows, row_names, col_names):
    """(X, sample names, feature names) with samples as rows."""
    if rows == "features":
        X = X.T
        row_names, col_names = col_names, row_names
    if sp.issparse(X):
        X = sp.csr_matrix(X)
    return X, row_names, col_names


def _read_delimited(inp: _Input, rows: str):
    import gzip
    import re
    import zlib

    import pandas as pd

    sep = "," if inp.kind == ".csv" else "\t"
    try:
        df = pd.read_csv(inp.path, sep=sep, index_col=0, float_precision="round_trip")
    except pd.errors.EmptyDataError as err:
        raise inp.error("no header line (only blank lines)") from err
    except pd.errors.ParserError as err:
        text = str(err).replace("Error tokenizing data. C error: ", "").strip()
        ragged = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
        if ragged:
            n, line, saw = ragged.groups()
            raise inp.error(f"rows of different lengths: line {line} has {saw} fields, the "
                            f"lines before it {n}",
                            "Every row must have as many fields as the header row (plus the "
                            "row name).") from err
        raise inp.error(f"text that pandas cannot parse ({text})") from err
    except UnicodeDecodeError as err:
        raise inp.error(f"text that is not UTF-8 ({err.reason} at byte {err.start})",
                        "Save it with UTF-8 encoding.") from err
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise inp.error(f"gzip-compressed data that ends early or is corrupted "
                        f"({type(err).__name__}: {err})",
                        "The file may be truncated.") from err
    layout = ("Expected a header row, a first column of row names and numbers in every "
              "other cell.")
    if df.shape[1] == 0:
        line = _first_line(inp.head, None)
        shown = line if len(line) <= 60 else line[:60] + "..."
        others = [(s, line.count(s)) for s in _SEPARATORS if s != sep and s in line]
        found = (f"no data columns: the first line {shown!r} has no "
                 f"{_SEPARATORS[sep]}")
        if others:
            s, count = others[0]
            found += f" but {count} {_SEPARATORS[s]}"
            hint = {"\t": "It looks tab-separated: name it .tsv.",
                    ",": "It looks comma-separated: name it .csv."}.get(
                s, "bcnmf reads comma-separated (.csv) and tab-separated (.tsv, .txt) tables: "
                   "write it with one of those separators.")
        else:
            hint = layout
        raise inp.error(found, hint)
    if df.shape[0] == 0:
        raise inp.error(f"a header line with {df.shape[1]} column names but no data rows")
    bad = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])
           or pd.api.types.is_bool_dtype(df[c])]
    if bad:
        first = []   # (row, column) of the first non-number of each text column
        for j, name in enumerate(bad):
            column = df[name]
            if column.dtype == object:
                offending = (column.notna() & pd.to_numeric(column, errors="coerce").isna())
                rows_bad = np.flatnonzero(offending.to_numpy())
                first.append((int(rows_bad[0]) if rows_bad.size else 0, j))
            else:   # true/false
                first.append((0, j))
        i, j = min(first)
        column = df[bad[j]]
        more = f" ({len(bad)} columns hold text)" if len(bad) > 1 else ""
        value = column.iloc[i]
        value = value.item() if isinstance(value, np.generic) else value
        raise inp.error(f"a non-numeric value {value!r} in row {df.index[i]!r}, "
                        f"column {bad[j]!r}{more}",
                        f"{layout} Annotation columns belong in a separate file (or in obs "
                        "of an .h5ad file).")
    X = df.to_numpy(dtype=np.float64)
    if not np.isfinite(np.add.reduce(X, axis=None)) and np.isnan(X).any():
        short = _short_row(inp, sep, df.shape[1] + 1)
        if short is not None:
            line, n = short
            raise inp.error(f"rows of different lengths: line {line} has {n} fields, the header "
                            f"and the first column {df.shape[1] + 1}",
                            "Missing values are empty cells between separators "
                            "(for example 'x,1,,3').")
    row_names, col_names = df.index.to_numpy(), df.columns.to_numpy()
    _check_values(inp, X, row_names, col_names)
    X, r, c = _orient(X, rows, row_names, col_names)
    obs, _ = _names(r, "sample", X.shape[0], inp)
    var, _ = _names(c, "feature", X.shape[1], inp)
    return Table(X, obs, var, source=str(inp.path))


def _short_row(inp: _Input, sep: str, n: int):
    """(line number, field count) of the first data line with fewer than ``n`` fields (which
    pandas would fill with NaN), or None."""
    import csv
    import gzip

    opener = gzip.open if inp.gz else open
    with opener(inp.path, "rt", newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter=sep)
        next(reader, None)   # the header
        for fields in reader:
            if fields and len(fields) < n:
                return reader.line_num, len(fields)
    return None


def _read_npz(inp: _Input, rows: str):
    import zipfile
    import zlib

    path = inp.path
    sparse = False
    try:
        # np.load is given an open file: on a damaged archive it would leave its own open
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as data:
            keys = set(data.files)
            if "metadata.json" in keys:
                raise inp.error("a saved bcnmf model (it holds metadata.json)",
                                "Load it with bcnmf.load(path).")
            if {"meta", "checksum"} <= keys:
                raise inp.error("a bcnmf fit checkpoint (it holds meta and checksum)",
                                "Resume it with fit(..., resume=path).")
            if {"format", "shape", "data", "indices", "indptr"} <= keys:
                sparse, X = True, None
            elif "X" in keys:
                X = data["X"]
            elif len(keys) == 1:
                X = data[next(iter(keys))]
            else:
                raise inp.error(f"the arrays {sorted(keys)}",
                                "Expected a scipy.sparse.save_npz file or an npz with an array "
                                "'X' (optional 'obs_names', 'var_names').")
            obs_names = data["obs_names"] if "obs_names" in keys else None
            var_names = data["var_names"] if "var_names" in keys else None
        if sparse:
            with open(path, "rb") as fh:
                X = sp.load_npz(fh)
    except InputFileError:
        raise
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise inp.error("an array of Python objects, which bcnmf does not unpickle",
                            "Store numbers (and names as strings): numpy.savez(path, X=matrix, "
                            "obs_names=np.asarray(names, dtype=str)).") from err
        raise inp.error(f"a zip archive that NumPy cannot read ({type(err).__name__}: {err})",
                        "The file may be truncated or corrupted.") from err
    except (zipfile.BadZipFile, EOFError, zlib.error, KeyError, OSError) as err:
        raise inp.error(f"a zip archive that NumPy cannot read ({type(err).__name__}: {err})",
                        "The file may be truncated or corrupted.") from err
    if not sp.issparse(X) and np.ndim(X) != 2:
        raise inp.error(f"a matrix of shape {np.shape(X)}", "The matrix must be 2-D.")
    _check_values(inp, X)
    X, _, _ = _orient(X, rows, None, None)
    obs, _ = _names(obs_names, "sample", X.shape[0], inp, "obs_names")
    var, has = _names(var_names, "feature", X.shape[1], inp, "var_names")
    return Table(X, obs, var, has_var_names=has, source=str(path))


def _sibling(directory: Path, stems):
    for stem in stems:
        for name in (stem, stem + ".gz"):
            if (directory / name).is_file():
                return directory / name
    return None


def _first_column(path: Path, role: str, matrix: Path):
    import zlib

    import pandas as pd

    expected = f"the {role} names of {matrix.name} (a tab-separated list, names first)"
    try:
        column = pd.read_csv(path, sep="\t", header=None, usecols=[0], dtype=str,
                             keep_default_na=False).iloc[:, 0].to_numpy()
    except pd.errors.EmptyDataError as err:
        raise _error(path, expected, "an empty file") from err
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, zlib.error, OSError) as err:
        raise _error(path, expected, f"content pandas cannot parse ({type(err).__name__}: "
                                     f"{err})") from err
    return column, path


def _read_mtx(inp: _Input, rows: str):
    import scipy.io

    path = inp.path
    try:
        X = scipy.io.mmread(path)
    except MemoryError:   # pragma: no cover - depends on the machine
        raise
    except Exception as err:   # scipy's parsers raise several types for damaged files
        raise inp.error(f"a Matrix Market file that scipy cannot parse ({type(err).__name__}: "
                        f"{err})", "The file may be truncated or corrupted.") from err
    X = sp.csr_matrix(X)
    _check_values(inp, X)
    d = path.parent
    # 10x Genomics layout: matrix.mtx(.gz) next to features.tsv / genes.tsv and barcodes.tsv,
    # features as rows; generic .mtx files get generated names
    feature_file = _sibling(d, ("features.tsv", "genes.tsv"))
    barcode_file = _sibling(d, ("barcodes.tsv",))
    feat = _first_column(feature_file, "feature", path) if feature_file is not None else None
    cells = _first_column(barcode_file, "sample", path) if barcode_file is not None else None
    row_names, col_names = (feat, cells) if rows == "features" else (cells, feat)
    sides = (row_names, col_names)   # each (names, file they came from) or None
    for side, n, axis in zip(sides, X.shape, ("rows", "columns")):
        if side is None or len(side[0]) == n:
            continue
        transposed = all(other is None or len(other[0]) == m
                         for other, m in zip(sides[::-1], X.shape))
        hint = ""
        if transposed:
            hint = ("10x Genomics matrix.mtx files hold features as rows: pass rows='features' "
                    "(bcnmf --rows features)." if rows == "samples" else
                    "This matrix holds samples as rows: pass rows='samples'.")
        raise _error(side[1], f"the names of the {n} {axis} of {path.name}",
                     f"{len(side[0])} names", hint)
    X, r, c = _orient(X, rows, *[None if x is None else x[0] for x in (row_names, col_names)])
    obs, _ = _names(r, "sample", X.shape[0], inp)
    var, has = _names(c, "feature", X.shape[1], inp)
    return Table(X, obs, var, has_var_names=has, source=str(path))


def _read_h5ad(inp: _Input, layer, use_raw):
    path = inp.path
    try:
        import anndata
        import h5py
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(f"Reading {path.name} (.h5ad) needs anndata: "
                          "pip install 'bcnmf[anndata]'.") from None
    try:
        with h5py.File(path, "r") as f:
            entries = sorted(f.keys())
    except OSError as err:
        raise inp.error(f"an HDF5 file that h5py cannot open ({err})",
                        "The file may be truncated or corrupted: write it again.") from err
    if not {"obs", "var"} <= set(entries):
        shown = entries[:8] + (["..."] if len(entries) > 8 else [])
        raise inp.error(f"an HDF5 file that is not AnnData (top-level entries {shown}, no "
                        "'obs' and 'var')",
                        "A 10x Genomics .h5 file? Read it with scanpy.read_10x_h5 and save it "
                        "with adata.write_h5ad." if "matrix" in entries else "")
    try:
        adata = anndata.read_h5ad(path)
    except MemoryError:   # pragma: no cover - depends on the machine
        raise
    except Exception as err:   # anndata, h5py and pandas raise many types for damaged files
        raise inp.error(f"an AnnData file that anndata cannot read ({type(err).__name__}: "
                        f"{err})", "The file may be truncated or corrupted.") from err
    X, source, log1p = _anndata_matrix(adata, layer, use_raw, str(path))
    if X is None:
        raise inp.error("an AnnData file without a matrix X",
                        f"Pass layer= naming one of its layers {sorted(adata.layers)}."
                        if len(adata.layers) else "")
    obs_names = np.asarray(adata.obs_names, dtype=object)
    var_names = np.asarray(adata.var_names, dtype=object)
    hint = ("bcNMF needs non-negative data (counts, intensities, or log1p of them); pass "
            "layer= (bcnmf --layer) naming the counts"
            + (f", one of {sorted(adata.layers)}." if len(adata.layers) else "."))
    _check_values(inp, X, obs_names, var_names, where=source, hint=hint)
    return Table(X, obs_names, var_names, obs=adata.obs, log1p_recorded=log1p,
                 source=f"{path}: {source}")


def _anndata_matrix(adata, layer, use_raw, where="adata"):
    """(matrix over adata.var_names, where it came from: ``X``, ``layers['name']`` or ``raw``,
    scanpy's log1p record applies) from X, a layer or .raw; ``where`` names adata in errors."""
    if layer is not None and use_raw:
        raise ValueError("Pass either layer or use_raw=True, not both.")
    if layer is not None:
        if layer not in adata.layers:
            raise KeyError(f"{where} has no layer {layer!r}; layers: {sorted(adata.layers)}.")
        return adata.layers[layer], f"layers[{layer!r}]", False
    if use_raw:
        if adata.raw is None:
            raise ValueError(f"use_raw=True but {where} has no .raw; pass layer= instead.")
        raw_names = adata.raw.var_names
        missing = ~np.isin(np.asarray(adata.var_names), np.asarray(raw_names))
        if missing.any():
            raise ValueError(f"{int(missing.sum())} of {where}'s var_names are not in .raw "
                             f"(e.g. {adata.var_names[missing][0]!r}).")
        idx = raw_names.get_indexer(adata.var_names)
        return adata.raw.X[:, idx], "raw", False
    return adata.X, "X", "log1p" in adata.uns


def _supported() -> str:
    return f"{', '.join(FORMATS)} (.csv, .tsv, .txt and .mtx may end in .gz)"


def read_table(path, *, rows="samples", layer=None, use_raw=False) -> Table:
    """Read a data matrix with its sample and feature names.

    Parameters
    ----------
    path : str or path-like
        ``.h5ad`` (AnnData; needs ``anndata``), ``.csv`` / ``.tsv`` / ``.txt`` (optionally
        ``.gz``; first row feature or sample names, first column the other names; empty
        cells and ``NA`` are read as NaN, a missing value),
        ``.npz`` (``scipy.sparse.save_npz`` output, or an array ``X`` with optional string
        arrays ``obs_names`` and ``var_names``), ``.mtx`` (optionally ``.gz``; names from
        ``features.tsv``/``genes.tsv`` and ``barcodes.tsv`` beside it, 10x style).
    rows : {"samples", "features"}, default="samples"
        What the rows of a csv/tsv/npz/mtx file are (10x ``matrix.mtx``: ``"features"``).
        ``.h5ad`` files are always samples x features.
    layer : str, optional
        ``.h5ad`` only: read this layer instead of ``X``.
    use_raw : bool, default=False
        ``.h5ad`` only: read ``.raw`` (restricted to the file's ``var_names``).

    Returns
    -------
    Table

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    bcnmf.exceptions.InputFileError
        When the file cannot be read as the format its name says: a directory, an
        unsupported suffix, an empty, truncated or corrupted file, content of another format
        (a CSV named ``.h5ad``, text that is not gzip-compressed named ``.gz``), a table with
        the wrong separator, rows of different lengths or a non-numeric cell, or a matrix
        with infinite or negative values. The message names the file, the format expected
        and what was found (the offending value with its row and column); the underlying
        reader's error is chained.

    Examples
    --------
    >>> import os, tempfile
    >>> from bcnmf.io import read_table
    >>> path = os.path.join(tempfile.mkdtemp(), "counts.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("cell,g1,g2\\nc1,0,3\\nc2,1,x\\n")
    >>> read_table(path)  # doctest: +ELLIPSIS, +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    bcnmf.exceptions.InputFileError: Cannot read ...counts.csv as a comma-separated table ...:
    found a non-numeric value 'x' in row 'c2', column 'g2'. ...
    """
    path = Path(path)
    if rows not in _ROWS:
        raise ValueError(f"rows must be 'samples' or 'features'; got {rows!r}.")
    if path.is_dir():
        inside = _sibling(path, ("matrix.mtx",))
        raise InputFileError(
            f"Cannot read {path}: it is a directory; expected a data file, one of "
            f"{_supported()}."
            + (f" It holds {inside.name} (10x Genomics layout): pass {inside} with "
               "rows='features'." if inside is not None else ""))
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}")
    kind = _suffix(path)
    if kind not in _EXPECTED:
        with open(path, "rb") as f:
            head = f.read(_HEAD)
        raise InputFileError(
            f"Cannot read {path}: "
            + (f"its suffix {kind!r} is not a supported format" if kind else "it has no suffix")
            + f" (found {_describe(_signature(head), head)}); supported: {_supported()}.")
    if kind != ".h5ad" and (layer is not None or use_raw):
        raise ValueError(f"layer / use_raw apply to .h5ad files only, not {path.name}.")
    if kind == ".h5ad" and rows != "samples":
        raise ValueError(".h5ad files are always cells x genes; rows='features' does not "
                         "apply to them.")
    inp = _Input(path, kind)
    _sniff(inp)
    if kind == ".h5ad":
        return _read_h5ad(inp, layer, use_raw)
    if kind in (".csv", ".tsv", ".txt"):
        return _read_delimited(inp, rows)
    if kind == ".npz":
        return _read_npz(inp, rows)
    return _read_mtx(inp, rows)


def write_table(path, matrix, row_names, col_names, *, index_label="name") -> Path:
    """Write a dense matrix with names as ``.csv``, ``.tsv`` or ``.npz`` (by suffix).

    ``.npz`` holds ``X``, ``obs_names`` (rows) and ``var_names`` (columns), readable by
    :func:`read_table`.
    """
    from .core.backend import to_numpy

    path = Path(path)
    kind = _suffix(path)
    matrix = np.asarray(to_numpy(matrix))  # torch tensors (device fits) come to the host
    if kind == ".npz":
        np.savez_compressed(path, X=matrix, obs_names=np.asarray(row_names, dtype=str),
                            var_names=np.asarray(col_names, dtype=str))
        return path
    if kind not in (".csv", ".tsv", ".txt"):
        raise ValueError(f"Cannot write {path.name!r}: use a .csv, .tsv or .npz file name.")
    import pandas as pd

    df = pd.DataFrame(matrix, index=pd.Index(np.asarray(row_names, dtype=str),
                                             name=index_label),
                      columns=np.asarray(col_names, dtype=str))
    df.to_csv(path, sep="," if kind == ".csv" else "\t")
    return path


#: files of a run folder, by role
RUN_FILES = {
    "model": "model.npz",
    "components": "components.csv",
    "target_codes": "target_codes.csv",
    "background_codes": "background_codes.csv",
    "history": "history.csv",
    "params": "params.json",
}


def write_run(run_dir, model, target_codes, *, target_names=None, background_names=None,
              feature_names=None, inputs=None, warnings=()) -> dict:
    """Write a fitted model and its results into a run folder.

    Files (see :data:`RUN_FILES`): ``model.npz`` (:func:`bcnmf.load`), ``components.csv``
    (topics x features), ``target_codes.csv`` and ``background_codes.csv`` (cells x topics),
    ``history.csv`` (iteration, target, background, objective), ``params.json`` (the
    estimator's parameters, the fitted ``n_iter_``, ``alpha_``, ``alpha_raw_``,
    ``objective_``, the bcnmf version, ``inputs`` and ``warnings``) and, for a model fitted
    with ``alpha="auto"``, ``alpha_path.csv`` (its ``alpha_path_``, one row per alpha).

    Parameters
    ----------
    run_dir : str or path-like
        Created if needed; files of the same names are overwritten.
    model : BCNMF
        Fitted estimator.
    target_codes : ndarray of shape (n_target, n_components)
    target_names, background_names, feature_names : sequence of str, optional
        Row names of the codes and feature names (default: generated, or
        ``model.feature_names_in_``).
    inputs : dict, optional
        JSON-able description of the inputs.
    warnings : sequence of str
        Warnings raised by the fit.

    Returns
    -------
    dict of {role: pathlib.Path}
    """
    import json

    from ._version import __version__
    from .persistence import json_params

    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    k, n_features = model.components_.shape
    if feature_names is None:
        feature_names = getattr(model, "feature_names_in_", None)
    if feature_names is None:
        feature_names = [f"feature_{j + 1}" for j in range(n_features)]
    topics = [f"topic_{t + 1}" for t in range(k)]
    files = {role: out / name for role, name in RUN_FILES.items()}
    model.save(files["model"], feature_names=[str(f) for f in feature_names])
    write_table(files["components"], model.components_, topics, feature_names,
                index_label="topic")
    codes = {"target_codes": (target_codes, target_names),
             "background_codes": (model.background_codes_, background_names)}
    for role, (matrix, names) in codes.items():
        if matrix is None:
            del files[role]
            continue
        names = range(matrix.shape[0]) if names is None else names
        write_table(files[role], matrix, names, topics, index_label="cell")
    import pandas as pd

    frame = pd.DataFrame({c: np.asarray(model.history_[c])
                          for c in ("iteration", "target", "background", "objective")})
    frame.to_csv(files["history"], index=False)
    record = json_params(model)
    path = getattr(model, "alpha_path_", None)
    if path is not None:
        files["alpha_path"] = out / "alpha_path.csv"
        pd.DataFrame(path).to_csv(files["alpha_path"], index=False)
    alpha = getattr(model, "alpha_", None)
    record.update(n_iter_=int(model.n_iter_), alpha_raw_=float(model.alpha_raw_),
                  alpha_=None if alpha is None else float(alpha),
                  objective_=float(model.objective_), bcnmf_version=__version__,
                  inputs=inputs or {}, warnings=[str(w) for w in warnings])
    files["params"].write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return files
