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


def _names(values, prefix, n):
    if values is None:
        return np.array([f"{prefix}_{i + 1}" for i in range(n)], dtype=object), False
    values = np.asarray(values).astype(str).astype(object)
    if values.shape != (n,):
        raise ValueError(f"{prefix} names: expected {n}, got {values.size}.")
    return values, True


def _orient(X, rows, row_names, col_names):
    """(X, sample names, feature names) with samples as rows."""
    if rows == "features":
        X = X.T
        row_names, col_names = col_names, row_names
    if sp.issparse(X):
        X = sp.csr_matrix(X)
    return X, row_names, col_names


def _read_delimited(path: Path, rows: str, sep: str):
    import pandas as pd

    df = pd.read_csv(path, sep=sep, index_col=0, float_precision="round_trip")
    if df.shape[1] == 0:
        raise ValueError(f"{path}: found no data columns with separator {sep!r}; the first "
                         "column must hold row names and the first row column names.")
    bad = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise ValueError(f"{path}: column {bad[0]!r} is not numeric ({len(bad)} such "
                         "column(s)); expected a header row, a first column of names and "
                         "numbers everywhere else.")
    X = df.to_numpy(dtype=np.float64)
    X, r, c = _orient(X, rows, df.index.to_numpy(), df.columns.to_numpy())
    obs, _ = _names(r, "sample", X.shape[0])
    var, _ = _names(c, "feature", X.shape[1])
    return Table(X, obs, var, source=str(path))


def _read_npz(path: Path, rows: str):
    with np.load(path, allow_pickle=False) as data:
        keys = set(data.files)
        if {"format", "shape", "data", "indices", "indptr"} <= keys:
            X = sp.load_npz(path)
        elif "X" in keys:
            X = data["X"]
        elif len(keys) == 1:
            X = data[next(iter(keys))]
        else:
            raise ValueError(f"{path}: expected a scipy.sparse.save_npz file or an npz with an "
                             f"array 'X' (optional 'obs_names', 'var_names'); found keys "
                             f"{sorted(keys)}.")
        obs_names = data["obs_names"] if "obs_names" in keys else None
        var_names = data["var_names"] if "var_names" in keys else None
    if not sp.issparse(X) and np.asarray(X).ndim != 2:
        raise ValueError(f"{path}: the matrix must be 2-D; got shape {np.shape(X)}.")
    X, _, _ = _orient(X, rows, None, None)
    obs, _ = _names(obs_names, "sample", X.shape[0])
    var, has = _names(var_names, "feature", X.shape[1])
    return Table(X, obs, var, has_var_names=has, source=str(path))


def _sibling(directory: Path, stems):
    for stem in stems:
        for name in (stem, stem + ".gz"):
            if (directory / name).is_file():
                return directory / name
    return None


def _first_column(path: Path):
    import pandas as pd

    return pd.read_csv(path, sep="\t", header=None, usecols=[0]).iloc[:, 0].to_numpy()


def _read_mtx(path: Path, rows: str):
    import scipy.io

    X = sp.csr_matrix(scipy.io.mmread(path))
    d = path.parent
    # 10x Genomics layout: matrix.mtx(.gz) next to features.tsv / genes.tsv and barcodes.tsv,
    # features as rows; generic .mtx files get generated names
    feature_file = _sibling(d, ("features.tsv", "genes.tsv"))
    barcode_file = _sibling(d, ("barcodes.tsv",))
    feat = _first_column(feature_file) if feature_file is not None else None
    cells = _first_column(barcode_file) if barcode_file is not None else None
    row_names, col_names = (feat, cells) if rows == "features" else (cells, feat)
    X, r, c = _orient(X, rows, row_names, col_names)
    obs, _ = _names(r, "sample", X.shape[0])
    var, has = _names(c, "feature", X.shape[1])
    return Table(X, obs, var, has_var_names=has, source=str(path))


def _read_h5ad(path: Path, layer, use_raw):
    try:
        import anndata
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("Reading .h5ad files needs anndata: pip install 'bcnmf[anndata]'.")
    adata = anndata.read_h5ad(path)
    X, source, log1p = _anndata_matrix(adata, layer, use_raw, str(path))
    return Table(X, np.asarray(adata.obs_names, dtype=object),
                 np.asarray(adata.var_names, dtype=object), obs=adata.obs,
                 log1p_recorded=log1p, source=f"{path}: {source}")


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


def read_table(path, *, rows="samples", layer=None, use_raw=False) -> Table:
    """Read a data matrix with its sample and feature names.

    Parameters
    ----------
    path : str or path-like
        ``.h5ad`` (AnnData; needs ``anndata``), ``.csv`` / ``.tsv`` / ``.txt`` (optionally
        ``.gz``; first row feature or sample names, first column the other names),
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
    """
    path = Path(path)
    if rows not in _ROWS:
        raise ValueError(f"rows must be 'samples' or 'features'; got {rows!r}.")
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}")
    kind = _suffix(path)
    if kind != ".h5ad" and (layer is not None or use_raw):
        raise ValueError(f"layer / use_raw apply to .h5ad files only, not {path.name}.")
    if kind == ".h5ad":
        if rows != "samples":
            raise ValueError(".h5ad files are always cells x genes; rows='features' does not "
                             "apply to them.")
        return _read_h5ad(path, layer, use_raw)
    if kind in (".csv", ".tsv", ".txt"):
        return _read_delimited(path, rows, "," if kind == ".csv" else "\t")
    if kind == ".npz":
        return _read_npz(path, rows)
    if kind == ".mtx":
        return _read_mtx(path, rows)
    raise ValueError(f"Unsupported input {path.name!r}: expected one of "
                     f"{', '.join(FORMATS)} (csv/tsv/mtx may be gzipped).")


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
