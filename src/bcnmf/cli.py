"""The ``bcnmf`` command line: argument parsing, progress output and printing only; the work is
done by library functions (:mod:`bcnmf.io`, :class:`bcnmf.BCNMF`, :mod:`bcnmf.report`,
:mod:`bcnmf.demo`).

Every option that sets a library parameter is named after it (``--n-init`` is ``n_init``,
``--beta-loss`` is ``beta_loss``); ``docs/vocabulary.md`` lists them.

Exit codes: 0 success, 1 error while running (unreadable input, bad data, failed fit),
2 usage error (bad or conflicting options). Errors are printed as one line
(``bcnmf: error: ...``) unless ``--debug`` asks for the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
import warnings
from pathlib import Path

from ._version import __version__

__all__ = ["main", "run"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

_DESCRIPTION = """\
Background-contrastive NMF: topics enriched in a target dataset against a matched background.

Typical use:
  bcnmf fit target.h5ad --groupby condition --background-value control -k 10 -o run1
  bcnmf fit target.csv --background background.csv -k 5 --alpha 1.5 -o run2   # fixed alpha
  bcnmf transform run1/model.npz new_cells.h5ad -o new_codes.csv
  bcnmf select target.csv --background background.csv -k 2,3,5 --alpha 0.5,1,1.5 -o sel
  bcnmf select target.h5ad --groupby condition --background-value control \
      --sample-key mouse -o run1
  bcnmf fit target.csv --background background.csv --samples samples.csv \
      --background-samples background_samples.csv --gene-sets hallmark.gmt -o run3
  bcnmf report run1
  bcnmf demo --out bcnmf-demo
"""

_INPUTS = """\
inputs: .h5ad (AnnData, cells x genes), .csv/.tsv (first row and first column are names),
.npz (scipy.sparse.save_npz, or an array X with optional obs_names/var_names), .mtx
(Matrix Market; 10x features.tsv/barcodes.tsv beside it give the names). csv/tsv/npz/mtx rows
are samples unless --rows features (10x matrix.mtx: --rows features).
"""


class _UsageError(Exception):
    """A problem with the options that the parser could not see (exit code 2)."""


# ---------------------------------------------------------------------------------------------
# progress output (stderr)
# ---------------------------------------------------------------------------------------------

class _Progress:
    """Progress lines on stderr: steps with timings, a spinner on long steps and a bar for
    counted work. Animated only on a terminal; silent when disabled."""

    def __init__(self, enabled, stream=None):
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.tty = enabled and getattr(self.stream, "isatty", lambda: False)()

    def _write(self, text):
        self.stream.write(text)
        self.stream.flush()

    @contextlib.contextmanager
    def step(self, label, spin=True):
        """A step with its time; on a terminal a spinner while it runs (``spin=False``:
        none, for steps that draw progress of their own)."""
        if not self.enabled:
            yield
            return
        start = time.perf_counter()
        stop = threading.Event()
        spinner = None
        if self.tty and spin:
            def turn():
                frames = "|/-\\"
                i = 0
                while not stop.wait(0.2):
                    self._write(f"\r{label} {frames[i % 4]} {time.perf_counter() - start:5.1f} s")
                    i += 1
            spinner = threading.Thread(target=turn, daemon=True)
            spinner.start()
        else:
            self._write(f"{label} ...\n")
        try:
            yield
        finally:
            stop.set()
            if spinner is not None:
                spinner.join()
            elapsed = time.perf_counter() - start
            self._write(f"\r{label}: done in {elapsed:.1f} s\n" if self.tty
                        else f"{label}: done in {elapsed:.1f} s\n")

    def bar(self, done, total, label):
        if not self.enabled:
            return
        width = 24
        filled = int(width * done / max(total, 1))
        line = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label}"
        if self.tty:
            self._write(f"\r{line:<70}" + ("\n" if done >= total else ""))
        else:
            self._write(line + "\n")



# ---------------------------------------------------------------------------------------------
# argument parsing
# ---------------------------------------------------------------------------------------------

def _int_at_least(low):
    """An argparse type: a whole number >= ``low``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a whole number >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {value}")
        return value
    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _auto_or(parse, what):
    """An argparse type: ``auto``, or what ``parse`` reads (``what`` names it)."""
    def read(text):
        if str(text).strip().lower() == "auto":
            return "auto"
        try:
            return parse(text)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"expected 'auto' or {what}, got {text!r}") from None
    return read


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {value}")
    return value


def _overlap_fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value}")
    return value


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


_auto_or_count = _auto_or(_non_negative_int, "a whole number >= 0")
_auto_or_k = _auto_or(_positive_int, "a whole number >= 1")
_auto_or_alpha = _auto_or(_non_negative_float, "a finite number >= 0")


def _number_list(kind):
    def parse(text):
        values = []
        for part in str(text).split(","):
            if part.strip():
                values.append(kind(part.strip()))
        if not values:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        return values
    return parse


def _fill(text):
    import textwrap

    return textwrap.fill(text, width=88)


def _common_options():
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("output control")
    group.add_argument("-q", "--quiet", action="store_true",
                       help="print only the paths of the files written")
    bar = group.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="show progress on stderr (default: only on a terminal)")
    bar.add_argument("--no-progress", dest="progress", action="store_false",
                     help="never show progress")
    group.add_argument("--debug", action="store_true",
                       help="show the full traceback of errors")
    return common


def _input_options(parser):
    parser.add_argument("--rows", choices=("samples", "features"), default="samples",
                        help="what the rows of csv/tsv/npz/mtx inputs are (default: samples; "
                             "10x matrix.mtx: features)")
    parser.add_argument("--layer", metavar="NAME",
                        help=".h5ad only: read this layer instead of X (e.g. counts)")
    parser.add_argument("--use-raw", action="store_true",
                        help=".h5ad only: read .raw instead of X")


def _data_arguments(parser):
    """TARGET and the background options shared by ``fit`` and ``select``."""
    parser.add_argument("target", metavar="TARGET", help="target data (or all cells, with "
                        "--groupby)")
    source = parser.add_argument_group("background (one of)")
    source.add_argument("--background", metavar="BG",
                        help="background data file; features are matched by name")
    source.add_argument("--groupby", metavar="COL",
                        help=".h5ad TARGET: obs column that marks background cells")
    source.add_argument("--background-value", metavar="V", action="extend", nargs="+",
                        help="value(s) of --groupby that are background (the rest is target)")


def _input_arguments(parser):
    """The input-reading options and -o OUTDIR shared by ``fit`` and ``select``."""
    data = parser.add_argument_group("input")
    _input_options(data)
    data.add_argument("--background-rows", choices=("samples", "features"), default=None,
                      help="what the rows of the --background file are (default: as --rows)")
    data.add_argument("--min-overlap", type=float, default=0.5, metavar="F",
                      help="with --background: smallest accepted fraction of shared feature "
                           "names (default: 0.5)")
    parser.add_argument("-o", "--out", metavar="OUTDIR", required=True, help="output folder")


def _sample_arguments(parser, use):
    """--sample-key (an obs column of .h5ad inputs) or --samples/--background-samples (files
    naming the sample of every cell), shared by ``fit`` and ``select``; ``use`` says what the
    samples do."""
    group = parser.add_argument_group(
        "samples (the biological sample, e.g. mouse or donor, of every cell)", _fill(
            f"{use} A sample file is a csv (tsv for .tsv/.txt) with a header row and two "
        "columns, the cell name and its sample, cells in any order; every cell must be "
        "listed (cells of files without names are sample_1, sample_2, ... in row order)."))
    group.add_argument("--sample-key", metavar="COL", default=None,
                       help=".h5ad inputs: obs column naming the sample of every cell")
    group.add_argument("--samples", metavar="FILE", default=None,
                       help="the sample of every target cell (with --groupby: of every cell)")
    group.add_argument("--background-samples", metavar="FILE", default=None,
                       help="the sample of every cell of the --background file")


def _model_options(group):
    """The bcnmf.BCNMF parameters shared by ``fit`` and ``select``, named after them, with
    BCNMF's defaults but ``--random-state 0`` (the functions' seed, docs/vocabulary.md)."""
    group.add_argument("--beta-loss", choices=("frobenius", "kullback-leibler", "poisson"),
                       default="frobenius",
                       help="frobenius for log-normalised data (default); poisson (= "
                            "kullback-leibler) for raw counts")
    group.add_argument("--alpha-scale", choices=("relative", "raw"), default=None,
                       help="relative (default in stable mode) or the paper's raw weight")
    group.add_argument("--mode", choices=("stable", "reference"), default="stable",
                       help="stable (default) or the authors' reference algorithm")
    group.add_argument("--init", choices=("contrastive", "random", "uniform"), default=None,
                       help="where the fit starts: the contrast's relaxation (default for "
                            "stable squared error), random factors (default for stable "
                            "Poisson) or U[0, 1) (default in reference mode)")
    group.add_argument("--damping", type=_fraction, default=None, metavar="G",
                       help="exponent in (0, 1] of the multiplicative updates (default: none)")
    group.add_argument("--smoothing", type=_non_negative_float, default=0.1, metavar="S",
                       help="stable Poisson: floor of the predictions, as a fraction of each "
                            "feature's mean (default: 0.1)")
    group.add_argument("--n-shared", type=_auto_or_count, default="auto", metavar="N",
                       help="stable mode: shared topics, fixed topics of the background "
                            "alone; 'auto' counts the background's programs, 0 drops them "
                            "(default: auto)")
    group.add_argument("--max-iter", type=_positive_int, default=500, metavar="N",
                       help="maximum number of sweeps per fit (default: 500)")
    group.add_argument("--tol", type=_non_negative_float, default=1e-4, metavar="T",
                       help="stopping tolerance (default: 1e-4)")
    group.add_argument("--transform-max-iter", type=_positive_int, default=1000, metavar="N",
                       help="code updates with the basis fixed (default: 1000)")
    group.add_argument("--random-state", type=int, default=0, metavar="N",
                       help="random seed (default: 0)")
    group.add_argument("--block-size", type=_positive_int, default=None, metavar="N",
                       help="cells per block of the block engine (default: one block)")
    group.add_argument("--engine", choices=("local", "dask"), default=None,
                       help="dask: fit on Dask (default: in process)")


#: BCNMF parameters given by _model_options, passed on as they are
_MODEL_PARAMS = ("beta_loss", "alpha_scale", "mode", "init", "damping", "smoothing",
                 "n_shared", "max_iter", "tol", "transform_max_iter", "random_state",
                 "block_size", "engine")


def _model_params(args):
    return {name: getattr(args, name) for name in _MODEL_PARAMS}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bcnmf`` command."""
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="bcnmf", description=_DESCRIPTION, epilog=_INPUTS,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"bcnmf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    fit = sub.add_parser(
        "fit", parents=[common], help="fit a model; write model, codes, loadings, history",
        description=_fill(
            "Fit bcNMF to TARGET against a background: another file (--background) or the "
            "cells of an .h5ad whose --groupby column has a --background-value. Writes "
            "model.npz, components.csv, target_codes.csv, background_codes.csv, history.csv, "
            "params.json and (with a background) enrichment.csv, the topic enrichment "
            "statistics, into OUTDIR; with --gene-sets also gene_sets.csv, the gene sets "
            "of every topic; with --write-h5ad also annotated.h5ad. Run `bcnmf "
            "select` into the same OUTDIR to add the model-selection table to the report."),
        epilog=_INPUTS, formatter_class=argparse.RawDescriptionHelpFormatter)
    _data_arguments(fit)
    model = fit.add_argument_group("model")
    model.add_argument("-k", "--n-components", type=_auto_or_k, default=10, metavar="K",
                       help="number of topics, or 'auto' to choose it among 2, 3, 5 and 8 "
                            "without labels (default: 10)")
    model.add_argument("--alpha", type=_auto_or_alpha, default="auto", metavar="A",
                       help="contrast weight on the relative scale, or 'auto' to choose it "
                            "without labels before the fit (default: auto; the choice is "
                            "written to alpha_path.csv)")
    model.add_argument("--n-init", type=_positive_int, default=1, metavar="N",
                       help="number of restarts (default: 1)")
    model.add_argument("--consensus", action="store_true",
                       help="with --n-init > 1: the consensus of the restarts instead of "
                            "one of them")
    _model_options(model)
    model.add_argument("--device", metavar="DEV", default=None,
                       help="torch device (cpu, cuda, cuda:N; needs PyTorch); default: numpy")
    run = fit.add_argument_group("checkpoints")
    run.add_argument("--checkpoint", metavar="FILE", default=None,
                     help="write the solver state to FILE every --checkpoint-every sweeps")
    run.add_argument("--checkpoint-every", type=_positive_int, default=10, metavar="N",
                     help="sweeps between checkpoints (default: 10)")
    run.add_argument("--resume", metavar="FILE", default=None,
                     help="continue from a checkpoint of a fit with the same data and options")
    _input_arguments(fit)
    fit.add_argument("--write-h5ad", action="store_true",
                     help=".h5ad TARGET: also write OUTDIR/annotated.h5ad, the input with "
                          "the results where bcnmf.tl.bcnmf puts them (obsm['X_bcnmf'], "
                          "varm['bcnmf'], uns['bcnmf'])")
    fit.add_argument("--report", action="store_true",
                     help="also write OUTDIR/report.html (needs matplotlib)")
    fit.add_argument("--n-permutations", type=_positive_int, default=1000, metavar="N",
                     help="permutations of the topic enrichment test (default: 1000)")
    fit.add_argument("--q-threshold", type=_fraction, default=0.05, metavar="Q",
                     help="q-value at or below which a topic is enriched (default: 0.05)")
    _sample_arguments(fit, "With samples on both sides, the topic enrichment test compares "
                           "samples, not cells (bcnmf.topic_enrichment).")
    sets = fit.add_argument_group(
        "gene sets", _fill(
            "Test every topic's loadings for every gene set (bcnmf.topic_gene_sets, a "
            "one-sided rank-sum test, BH q-values per topic) and write "
            "OUTDIR/gene_sets.csv."))
    sets.add_argument("--gene-sets", metavar="FILE", default=None,
                      help="a GMT file (name<TAB>description<TAB>gene..., .gmt or .gmt.gz) "
                           "or a csv/tsv table with the columns source (set) and target "
                           "(gene); genes are matched to the feature names")
    sets.add_argument("--gene-set-min-size", type=_positive_int, default=5, metavar="N",
                      help="sets with fewer genes among the features are not tested "
                           "(min_size; default: 5)")
    sets.add_argument("--gene-set-max-size", type=_positive_int, default=500, metavar="N",
                      help="sets with more genes among the features are not tested "
                           "(max_size; default: 500)")
    sets.add_argument("--gene-set-min-overlap", type=_overlap_fraction, default=0.0,
                      metavar="F", help="sets of which a smaller fraction of the genes are "
                                        "features are not tested (min_overlap; default: 0)")
    fit.set_defaults(handler=_cmd_fit, subparser=fit)

    sel = sub.add_parser(
        "select", parents=[common], help="choose K and alpha without labels",
        description=_fill(
            "Fit a grid of (K, alpha) on training splits of TARGET and the background, "
            "measure held-out fit, contrast, restart stability and consensus per grid point, "
            "and choose one by the documented rule (bcnmf.select_model). Writes "
            "selection.csv (one row per grid point) and selection.json ({best, rule}) into "
            "OUTDIR; into the OUTDIR of a `bcnmf fit`, `bcnmf report` shows the selection."),
        epilog=_INPUTS, formatter_class=argparse.RawDescriptionHelpFormatter)
    _data_arguments(sel)
    grid = sel.add_argument_group("grid and criteria")
    grid.add_argument("-k", "--n-components", type=_number_list(int), default=[2, 3, 5],
                      metavar="K,K,...", help="numbers of topics (default: 2,3,5)")
    grid.add_argument("--alpha", type=_number_list(float), default=[0.25, 0.5, 1.0, 1.5, 2.0],
                      metavar="A,A,...", help="contrast weights, relative scale (default: "
                      "0.25,0.5,1,1.5,2)")
    grid.add_argument("--n-init", type=_positive_int, default=3, metavar="N",
                      help="fits (restarts) per grid point and split (>= 2; default: 3)")
    grid.add_argument("--n-splits", type=_positive_int, default=3, metavar="N",
                      help="random hold-out splits the criteria are averaged over "
                           "(default: 3)")
    grid.add_argument("--holdout", type=float, default=0.2, metavar="F",
                      help="fraction of cells held out (default: 0.2)")
    grid.add_argument("--max-cells", type=_positive_int, default=500, metavar="N",
                      help="target cells used for the consensus matrix (default: 500)")
    grid.add_argument("--n-jobs", type=int, default=1, metavar="N",
                      help="grid points fitted in parallel (default: 1; -1: all cores)")
    _model_options(grid)
    _sample_arguments(sel, "Whole samples are held out together.")
    _input_arguments(sel)
    sel.set_defaults(handler=_cmd_select, subparser=sel)

    tr = sub.add_parser(
        "transform", parents=[common], help="codes of new cells under a saved model",
        description=_fill("Compute the codes of the cells in INPUT with the basis of MODEL "
                          "fixed; features are matched to the model's by name."),
        epilog=_INPUTS, formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("model", metavar="MODEL", help="model file (model.npz of a run folder)")
    tr.add_argument("input", metavar="INPUT", help="cells to encode")
    tr.add_argument("-o", "--out", metavar="OUT", required=True,
                    help="output file: .csv, .tsv or .npz (cells x topics)")
    tr.add_argument("--as-background", action="store_true",
                    help="solve the codes under the background's model")
    _input_options(tr)
    tr.set_defaults(handler=_cmd_transform, subparser=tr)

    rep = sub.add_parser(
        "report", parents=[common], help="write the HTML report of a run folder",
        description="Write a self-contained HTML report (parameters, convergence, topics with "
                    "top features, topic usage; topic statistics and model selection when the "
                    "folder has them) of a folder written by `bcnmf fit`.")
    rep.add_argument("run_dir", metavar="OUTDIR", help="folder written by bcnmf fit")
    rep.add_argument("-o", "--out", metavar="FILE", help="report file (default: "
                     "OUTDIR/report.html)")
    rep.add_argument("--n-top", type=_positive_int, default=10, metavar="N",
                     help="top features listed per topic (default: 10)")
    rep.set_defaults(handler=_cmd_report, subparser=rep)

    demo = sub.add_parser(
        "demo", parents=[common], help="end-to-end run on the bundled mouse-protein data",
        description="Fit PCA, NMF and bcNMF to the bundled mouse-protein data (no network), "
                    "score them against the genotype labels, and write a run folder with "
                    "the HTML report.")
    from ._demo import DEFAULT_OUT, DEFAULT_SEEDS

    demo.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: "
                      f"{DEFAULT_OUT})")
    demo.add_argument("--seeds", type=_positive_int, default=DEFAULT_SEEDS, metavar="N",
                      help=f"number of fitting seeds (default: {DEFAULT_SEEDS})")
    demo.set_defaults(handler=_cmd_demo, subparser=demo)
    return parser


# ---------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------

def _read(path, args, progress, rows=None, background=False):
    """Read an input; --layer/--use-raw apply to .h5ad files (a background file of another
    format beside an .h5ad target is read as it is)."""
    from .io import read_table

    h5ad = str(path).lower().endswith(".h5ad")
    layer, use_raw = (args.layer, args.use_raw) if h5ad or not background else (None, False)
    with progress.step(f"reading {path}"):
        return read_table(path, rows=rows or args.rows, layer=layer, use_raw=use_raw)


def _split(table, args):
    """(target rows, background rows) of a table from --groupby/--background-value."""
    import numpy as np

    if table.obs is None or args.groupby not in table.obs.columns:
        columns = [] if table.obs is None else list(table.obs.columns)[:20]
        raise KeyError(f"{args.target} has no obs column {args.groupby!r}; columns: {columns}")
    column = table.obs[args.groupby].astype(str)
    missing = [v for v in args.background_value if v not in set(column)]
    if missing:
        raise ValueError(f"--background-value {missing} not found in column {args.groupby!r}; "
                         f"values: {sorted(set(column))[:20]}")
    is_bg = column.isin(args.background_value).to_numpy()
    if is_bg.all():
        raise ValueError("every cell is background: no target cells left")
    return np.flatnonzero(~is_bg), np.flatnonzero(is_bg)


def _sample_column(table, path, key):
    """The --sample-key column of an input's obs, one label per row."""
    if table.obs is None:
        raise _UsageError(f"--sample-key needs .h5ad inputs (their obs holds the column); "
                          f"{path} has no obs")
    if key not in table.obs.columns:
        raise KeyError(f"{path} has no obs column {key!r}; columns: "
                       f"{list(table.obs.columns)[:20]}")
    return table.obs[key].astype(str).to_numpy()


def _read_samples(path, names, option):
    """The sample of every cell in ``names``, from a file of two columns (cell name, sample)
    with a header row; csv, or tsv for .tsv/.txt."""
    import numpy as np
    import pandas as pd

    sep = "\t" if str(path).lower().endswith((".tsv", ".txt")) else ","
    try:
        table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{option} {path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{option} {path}: not a readable {'tsv' if sep != ',' else 'csv'} "
                         f"table ({' '.join(str(err).split())})") from None
    if table.shape[1] != 2:
        other = "tab" if sep == "," else "comma"
        hint = (f" (one column: is the file {other}-separated? .tsv/.txt files are read as "
                "tab-separated, others as csv)" if table.shape[1] == 1 else "")
        raise ValueError(f"{option} {path}: expected 2 columns (cell name, sample) under a "
                         f"header row; found {table.shape[1]}{hint}")
    cells = table.iloc[:, 0].to_numpy(dtype=object)
    labels = table.iloc[:, 1].to_numpy(dtype=object)
    empty = [i for i, v in enumerate(labels) if not str(v).strip()]
    if empty:
        raise ValueError(f"{option} {path}: line {empty[0] + 2} (cell {cells[empty[0]]!r}) has "
                         "no sample label")
    mapping = {}
    for i, cell in enumerate(cells):
        if cell in mapping and mapping[cell] != labels[i]:
            raise ValueError(f"{option} {path}: cell {cell!r} is listed twice with different "
                             f"samples ({mapping[cell]!r}, {labels[i]!r})")
        mapping[cell] = labels[i]
    missing = [str(n) for n in names if str(n) not in mapping]
    if missing:
        shown = ", ".join(repr(n) for n in missing[:3])
        raise ValueError(f"{option} {path} gives no sample for {len(missing)} of the "
                         f"{len(names)} cells (e.g. {shown}); every cell needs one (the first "
                         "column holds the cell names of the input)")
    return np.array([mapping[str(n)] for n in names], dtype=object)


def _align(target, background, args):
    """Match the background's features to the target's by name."""
    from ._prep import align_features, same_kind, take_columns

    if not (target.has_var_names and background.has_var_names):
        if target.shape[1] != background.shape[1]:
            raise ValueError(f"target has {target.shape[1]} features and background "
                             f"{background.shape[1]}, and without feature names in both "
                             "files they cannot be matched")
        return (*same_kind(target.X, background.X), target.var_names)
    t_idx, b_idx, names = align_features(target.var_names, background.var_names,
                                         min_overlap=args.min_overlap,
                                         min_features=args.n_components
                                         if isinstance(args.n_components, int) else 1)
    X = take_columns(target.X, t_idx)
    Y = take_columns(background.X, b_idx)
    return (*same_kind(X, Y), names)



def _check_fit_args(args):
    if args.background and args.groupby:
        raise _UsageError("pass either --background or --groupby, not both")
    if args.groupby and not args.background_value:
        raise _UsageError("--groupby needs --background-value (the background's value(s))")
    if args.background_value and not args.groupby:
        raise _UsageError("--background-value needs --groupby")
    if args.groupby and not str(args.target).lower().endswith(".h5ad"):
        raise _UsageError("--groupby needs an .h5ad TARGET (its obs holds the column); for "
                          "other formats pass the background as a file with --background")
    if not 0 < args.min_overlap:
        raise _UsageError("--min-overlap must be > 0")
    if args.sample_key and (args.samples or args.background_samples):
        raise _UsageError("pass either --sample-key (an obs column of .h5ad inputs) or "
                          "--samples/--background-samples (files), not both")
    if args.background_samples and not args.background:
        raise _UsageError("--background-samples names the samples of the --background "
                          "file's cells" + ("; with --groupby, --samples covers every cell"
                                            if args.groupby else ""))
    if (args.samples or args.sample_key) and not (args.background or args.groupby):
        raise _UsageError("sample labels need a background (--background or --groupby)")
    if args.command == "fit" and args.background and \
            bool(args.samples) != bool(args.background_samples):
        raise _UsageError("--samples and --background-samples go together: the sample-level "
                          "enrichment test compares the target's samples with the "
                          "background's")


def _warning_lines(caught):
    return [f"{w.category.__name__}: {' '.join(str(w.message).split())}" for w in caught]


def _fit_inputs(args, progress, out):
    """(X, Y, target names, background names, feature names, inputs record, notes, samples):
    ``samples`` is the (target, background) pair of --sample-key labels, or (None, None)."""
    target = _read(args.target, args, progress)
    inputs, notes = {"target": str(args.target)}, []
    key = getattr(args, "sample_key", None)
    samples = (None, None)
    if args.groupby:
        t, b = _split(target, args)
        X, x_names, Y, y_names = target.X[t], target.obs_names[t], target.X[b], \
            target.obs_names[b]
        features = target.var_names
        inputs.update(groupby=args.groupby, background_values=", ".join(args.background_value))
        sources = [(X, args.target, target)]
        if key or args.samples:
            column = (_sample_column(target, args.target, key) if key else
                      _read_samples(args.samples, target.obs_names, "--samples"))
            samples = (column[t], column[b])
    elif args.background:
        background = _read(args.background, args, progress, rows=args.background_rows,
                           background=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            X, Y, features = _align(target, background, args)
        notes = _warning_lines(caught)
        x_names, y_names = target.obs_names, background.obs_names
        inputs["background"] = str(args.background)
        sources = [(X, args.target, target), (Y, args.background, background)]
        if key:
            samples = (_sample_column(target, args.target, key),
                       _sample_column(background, args.background, key))
        elif args.samples or args.background_samples:
            samples = tuple(
                None if path is None else _read_samples(path, names, option)
                for path, names, option in (
                    (args.samples, x_names, "--samples"),
                    (args.background_samples, y_names, "--background-samples")))
    else:
        X, Y, x_names, y_names, features = (target.X, None, target.obs_names, None,
                                            target.var_names)
        out.note("no background given: fitting plain NMF")
        sources = [(X, args.target, target)]
    from ._validation import LOSS_ALIASES

    if LOSS_ALIASES[args.beta_loss] == "kullback-leibler":
        from ._prep import check_poisson_input

        for matrix, path, table in sources:
            hint = (": pass --layer (e.g. --layer counts) or --use-raw"
                    if str(path).lower().endswith(".h5ad") else "")
            check_poisson_input(matrix, str(path), log1p_recorded=table.log1p_recorded,
                                hint=hint)
    inputs.update(layer=args.layer or "", use_raw=args.use_raw, rows=args.rows,
                  n_target=int(X.shape[0]), n_background=0 if Y is None else int(Y.shape[0]),
                  n_features=int(X.shape[1]))
    if key:
        inputs["sample_key"] = key
    for option in ("samples", "background_samples"):
        if getattr(args, option):
            inputs[option] = str(getattr(args, option))
    return X, Y, x_names, y_names, features, inputs, notes, samples


def _cmd_fit(args, progress, out):
    from .estimator import BCNMF
    from .io import write_run

    _check_fit_args(args)
    if args.write_h5ad and not str(args.target).lower().endswith(".h5ad"):
        raise _UsageError("--write-h5ad needs an .h5ad TARGET (the file that is annotated)")
    X, Y, x_names, y_names, features, inputs, notes, (samples, background_samples) = \
        _fit_inputs(args, progress, out)
    for line in notes:
        out.warn(line)
    gene_sets = _read_gene_sets(args, features, progress) if args.gene_sets else None
    if gene_sets is not None:
        inputs["gene_sets"] = str(args.gene_sets)
    auto = args.alpha == "auto"
    model = BCNMF(args.n_components, alpha=args.alpha, n_init=args.n_init,
                  consensus=args.consensus, device=args.device,
                  progress=bool(auto and progress.tty), **_model_params(args))
    shown = "auto" if auto else f"{args.alpha:g}"
    label = (f"fitting bcNMF (k={args.n_components}, alpha={shown}, {args.beta_loss}) "
             f"on {X.shape[0]} target x {X.shape[1]} features"
             + (f", {Y.shape[0]} background" if Y is not None else ""))
    # on a terminal the automatic alpha shows a bar of its own (one step per alpha), which
    # the step's spinner would overwrite
    with progress.step(label, spin=not model.progress), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        codes = model.fit_transform(X, background=Y, checkpoint=args.checkpoint,
                                    checkpoint_every=args.checkpoint_every, resume=args.resume)
    for line in _warning_lines(caught):
        out.warn(line)
        notes.append(line)
    with progress.step(f"writing {args.out}"):
        files = write_run(args.out, model, codes, target_names=x_names, background_names=y_names,
                          feature_names=features, inputs=inputs, warnings=notes)
    table = None
    if Y is not None:
        from .topics import topic_enrichment

        with progress.step("topic enrichment statistics"), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            table = topic_enrichment(model, X, background=Y, samples=samples,
                                     background_samples=background_samples,
                                     n_permutations=args.n_permutations,
                                     q_threshold=args.q_threshold,
                                     random_state=args.random_state)
            files["enrichment"] = Path(args.out) / "enrichment.csv"
            table.to_csv(files["enrichment"])
        for line in _warning_lines(caught):
            out.warn(line)
    if gene_sets is not None:
        from .gene_sets import topic_gene_sets

        with progress.step("gene sets"):
            sets_table = topic_gene_sets(
                model, gene_sets, feature_names=[str(f) for f in features],
                min_size=args.gene_set_min_size, max_size=args.gene_set_max_size,
                min_overlap=args.gene_set_min_overlap)
            files["gene_sets"] = Path(args.out) / GENE_SETS_NAME
            sets_table.to_csv(files["gene_sets"], index=False)
        out.summary(_gene_set_lines(sets_table, len(gene_sets), args.q_threshold))
    if args.write_h5ad:
        with progress.step(f"writing the annotated {Path(args.target).name}"):
            files["h5ad"] = _write_annotated(args, model, codes, features, inputs, table)
    if args.report:
        from .report import write_report

        with progress.step("writing the report"):
            files["report"] = write_report(args.out)
    if model.alpha_path_ is not None:
        out.summary(_alpha_path_lines(model.alpha_path_))
    out.summary(f"fitted {model.n_iter_} sweeps; alpha_ = {model.alpha_:g}; alpha_raw_ = "
                f"{model.alpha_raw_:.6g}; objective_ = {model.objective_:.6g}")
    out.files(files.values())
    return EXIT_OK


GENE_SETS_NAME = "gene_sets.csv"


def _read_gene_sets(args, features, progress):
    """The --gene-sets file as ``{name: genes}``, checked against the feature names before
    the fit (so that a file that matches no feature fails at once)."""
    from .gene_sets import _collect, _select_sets

    path = str(args.gene_sets)
    if args.gene_set_max_size < args.gene_set_min_size:
        raise _UsageError(f"--gene-set-max-size ({args.gene_set_max_size}) is below "
                          f"--gene-set-min-size ({args.gene_set_min_size})")
    with progress.step(f"reading {path}"):
        if path.lower().endswith((".csv", ".tsv", ".txt")):
            import pandas as pd

            sep = "\t" if path.lower().endswith((".tsv", ".txt")) else ","
            try:
                source = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
            except FileNotFoundError:
                raise FileNotFoundError(f"--gene-sets {path}: no such file") from None
            except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
                raise ValueError(f"--gene-sets {path}: not a readable table "
                                 f"({' '.join(str(err).split())})") from None
            sets = _collect(source)
        else:
            sets = _collect(path)
    _select_sets(sets, [str(f) for f in features], args.gene_set_min_size,
                 args.gene_set_max_size, args.gene_set_min_overlap)
    return sets


def _gene_set_lines(table, n_sets, q_threshold):
    """The gene-set results in a few lines: how many sets were tested, the best per topic."""
    tested = table["gene_set"].nunique()
    lines = [f"gene sets: {tested} of {n_sets} tested" + (
        f"; {n_sets - tested} skipped (too few or too many of their genes among the "
        "features: --gene-set-min-size, --gene-set-max-size, --gene-set-min-overlap)"
        if tested < n_sets else "")]
    for topic, part in table.groupby("topic", sort=False):
        best = part.iloc[0]
        hits = int((part["q_value"] <= q_threshold).sum())
        lines.append(f"  {topic}: {hits} set(s) at q <= {q_threshold:g}; best "
                     f"{best['gene_set']} (AUC {best['effect']:.2f}, q {best['q_value']:.2g})")
    return "\n".join(lines)


def _alpha_path_lines(path):
    """The automatic alpha's measurements as a small text table (chosen row marked)."""
    lines = ["alpha chosen without labels (contrast: P(a held-out target cell is better "
             "explained than a held-out background cell); stability: agreement of the two "
             "halves' topics):",
             f"  {'alpha':>7} {'contrast':>9} {'stability':>9} {'explained':>9}"]
    for i, a in enumerate(path["alpha"]):
        mark = "  <- chosen" if path["chosen"][i] else \
            ("" if path["counted"][i] else "  (not counted)")
        lines.append(f"  {a:>7g} {path['contrast'][i]:>9.3f} {path['stability'][i]:>9.3f} "
                     f"{path['explained_target'][i]:>9.3f}{mark}")
    return "\n".join(lines)


ANNOTATED_NAME = "annotated.h5ad"


def _write_annotated(args, model, codes, features, inputs, enrichment):
    """OUTDIR/annotated.h5ad: the TARGET AnnData with the results in the slots that
    :func:`bcnmf.tl.bcnmf` fills (codes in obsm, full-length loadings in varm, record in uns;
    with --groupby the background cells get their background codes)."""
    import anndata
    import numpy as np

    from .core.backend import to_numpy
    from .tl import _DEFAULT_KEY, _record, _write

    adata = anndata.read_h5ad(args.target)
    codes = to_numpy(codes)
    extra = {"enrichment": None}
    if enrichment is not None:
        extra["enrichment"] = enrichment.copy()
        extra["enrichment"].index = extra["enrichment"].index.astype(str)
    if args.groupby:
        is_bg = adata.obs[args.groupby].astype(str).isin(args.background_value).to_numpy()
        full = np.empty((adata.n_obs, codes.shape[1]), dtype=codes.dtype)
        full[~is_bg] = codes
        full[is_bg] = to_numpy(model.background_codes_)
        codes = full
        extra.update(groupby=args.groupby, background=list(args.background_value),
                     form="groupby")
    else:
        extra.update(form="two objects" if args.background else "no background",
                     role="target", background_file=args.background)
    columns = adata.var_names.get_indexer(np.asarray(features, dtype=str))
    source = (f"layers[{args.layer!r}]" if args.layer else "raw" if args.use_raw else "X")
    record = _record(model, source=source, n_target=inputs["n_target"],
                     n_background=inputs["n_background"], n_features=columns.size,
                     extra=extra)
    _write(adata, _DEFAULT_KEY, codes, columns, model.components_, record)
    path = Path(args.out) / ANNOTATED_NAME
    adata.write_h5ad(path)
    return path


def _cmd_select(args, progress, out):
    import json

    from .selection import select_model

    _check_fit_args(args)
    if args.n_init < 2:
        raise _UsageError("--n-init must be at least 2 (stability needs several fits)")
    if not 0 < args.holdout < 1:
        raise _UsageError("--holdout must be a fraction in (0, 1)")
    ks = args.n_components
    args.n_components = max(ks)  # feature alignment needs at least this many features
    X, Y, *_, (samples, background_samples) = _fit_inputs(args, progress, out)
    if Y is None:
        raise _UsageError("select needs a background (--background or --groupby)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = select_model(X, ks, background=Y, alpha=args.alpha, n_init=args.n_init,
                              n_splits=args.n_splits, holdout=args.holdout, samples=samples,
                              background_samples=background_samples, n_jobs=args.n_jobs,
                              progress=progress.enabled, refit=False,
                              max_cells=args.max_cells, **_model_params(args))
    for line in _warning_lines(caught):
        out.warn(line)
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    table_path, json_path = folder / "selection.csv", folder / "selection.json"
    result.table.to_csv(table_path, index=False)
    json_path.write_text(json.dumps({"best": result.best, "rule": result.rule,
                                     "settings": result.settings}, indent=1),
                         encoding="utf-8")
    out.summary(f"chosen: n_components = {result.best['n_components']}, "
                f"alpha = {result.best['alpha']:g}")
    out.files([table_path, json_path])
    return EXIT_OK


def _cmd_transform(args, progress, out):
    import numpy as np

    from ._prep import take_columns
    from .io import write_table
    from .persistence import load_model, read_metadata

    with progress.step(f"loading {args.model}"):
        model = load_model(args.model)
        names = read_metadata(args.model)["feature_names"]
    table = _read(args.input, args, progress)
    X = table.X
    if names is not None and table.has_var_names:
        position = {n: i for i, n in enumerate(table.var_names)}
        missing = [n for n in names if n not in position]
        if missing:
            raise ValueError(f"{args.input} lacks {len(missing)} of the model's "
                             f"{len(names)} features (e.g. {missing[0]!r})")
        idx = np.array([position[n] for n in names])
        if idx.size != X.shape[1]:
            out.note(f"ignoring {X.shape[1] - idx.size} features of {args.input} that the "
                     "model does not have")
        X = take_columns(X, idx)
    elif X.shape[1] != model.components_.shape[1]:
        raise ValueError(f"{args.input} has {X.shape[1]} features; the model has "
                         f"{model.components_.shape[1]}")
    with progress.step(f"encoding {X.shape[0]} cells"), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        codes = model.transform(X.astype(model.components_.dtype, copy=False),
                                as_background=args.as_background)
    for line in _warning_lines(caught):
        out.warn(line)
    topics = [f"topic_{k + 1}" for k in range(codes.shape[1])]
    path = write_table(args.out, codes, table.obs_names, topics, index_label="cell")
    out.files([path])
    return EXIT_OK


def _cmd_report(args, progress, out):
    from .report import write_report

    with progress.step(f"writing the report of {args.run_dir}"):
        path = write_report(args.run_dir, args.out, n_top=args.n_top)
    out.files([path])
    return EXIT_OK


def _cmd_demo(args, progress, out):
    from ._demo import N_COMPONENTS, format_table, run_demo

    results = run_demo(args.out, args.seeds, progress=progress.bar)
    out.summary(format_table(results))
    p = results["params"]
    chosen = " chosen without labels" if p["alpha"] == "auto" else ""
    out.summary(f"\nbcNMF: n_components={N_COMPONENTS}, alpha_={p['alpha_']:g}{chosen} "
                f"(alpha_raw_={p['alpha_raw_']:.6g}), n_iter_={p['n_iter_']} (seed 0)")
    if results["warnings"]:
        out.summary(f"\n{len(results['warnings'])} warning(s) raised by the fits:")
        for note in results["warnings"]:
            out.summary(f"  {note}")
    out.summary("\nFiles written:")
    out.files(results["files"].values())
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------------------------

class _Output:
    """What the commands print: summaries (unless quiet), warnings (stderr), file paths."""

    def __init__(self, quiet):
        self.quiet = quiet

    def summary(self, text):
        if not self.quiet:
            print(text)

    def warn(self, text):
        if not self.quiet:
            print(f"bcnmf: warning: {text}", file=sys.stderr)

    def note(self, text):
        if not self.quiet:
            print(f"bcnmf: note: {text}", file=sys.stderr)

    def files(self, paths):
        for path in paths:
            print(Path(path))


def _one_line(err):
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(str(text).split()) or type(err).__name__


def main(argv=None) -> int:
    """Run the ``bcnmf`` command with ``argv`` (default ``sys.argv[1:]``); return the exit
    code (0 success, 1 error, 2 usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help/--version (0) or a usage error (2)
        return int(stop.code or 0)
    progress = _Progress(enabled=(not args.quiet and sys.stderr.isatty())
                         if args.progress is None else args.progress)
    try:
        return args.handler(args, progress, _Output(args.quiet))
    except _UsageError as err:
        args.subparser.print_usage(sys.stderr)
        print(f"bcnmf {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("bcnmf: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the command line reports every error
        if args.debug:
            import traceback

            traceback.print_exc()
        else:
            print(f"bcnmf: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_ERROR


def run() -> None:
    """Console-script entry point (``bcnmf``)."""
    sys.exit(main())
