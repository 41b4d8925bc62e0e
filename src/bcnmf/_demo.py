"""The work of the end-to-end demo on the bundled mouse-protein data (``bcnmf demo``, or
``python -m bcnmf.demo``: :mod:`bcnmf.demo`).

Fits PCA, plain NMF (both scikit-learn) and bcNMF to the target (270 measurements of control and
Ts65Dn mice) with the learning-stimulated control mice as background, over several fitting seeds,
and scores every fit with the evaluation protocol of the bcNMF benchmarks: KMeans with
``n_clusters=2, n_init=20, random_state=42`` on the target codes (raw and per-cell
L1-normalised), adjusted Rand index against the genotype labels (never used in fitting).

The output folder is a run folder, as written by ``bcnmf fit`` (see :func:`bcnmf.io.write_run`),
for the first seed's bcNMF fit, plus the comparison:

- ``model.npz``: the fitted model (:func:`bcnmf.load`);
- ``components.csv``: bcNMF topics x proteins, protein names as header;
- ``target_codes.csv``, ``background_codes.csv``: bcNMF codes, cells x topics;
- ``history.csv``: iteration, target, background, objective;
- ``alpha_path.csv``: how the automatic alpha was chosen (the model's ``alpha_path_``);
- ``params.json``: ``get_params()`` of the model plus ``alpha_``, ``alpha_raw_``, ``n_iter_``,
  ``objective_``, the bcnmf version, the inputs and the warnings raised;
- ``ari.csv``: method, seed, ari_raw, ari_norm (one row per fit);
- ``report.html``: the self-contained report of :mod:`bcnmf.report` (needs matplotlib).

:func:`run_demo` does the work and returns the results without printing; the command line
(:mod:`bcnmf.cli`) is the only place that prints.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import warnings
from pathlib import Path

import numpy as np
from sklearn.decomposition import NMF, PCA
from sklearn.exceptions import ConvergenceWarning

from .datasets import load_mice_protein
from .estimator import BCNMF
from .exceptions import DivergenceWarning
from .io import write_run
from .metrics import cluster_ari

__all__ = ["DEFAULT_OUT", "DEMO_ALPHA", "N_COMPONENTS", "METHODS", "format_table",
           "run_demo"]

#: Contrast weight of the demo's bcNMF fits: the library's default, chosen without labels
#: before every fit (``alpha_`` and ``alpha_path_`` of the model; alpha_path.csv).
DEMO_ALPHA = "auto"
#: Restarts per bcNMF fit; the medoid restart is kept, which removes most of the
#: seed-to-seed variance of single runs on this data.
DEMO_N_INIT = 5
#: Sweeps allowed per restart (multiplicative updates converge slowly on this data).
DEMO_MAX_ITER = 3000
#: Shared topics of the demo's bcNMF fits: none.  The mouse background is 15 replicate
#: measurements of each of 9 control mice; the shared topics learn those mice's profiles and
#: then explain the target's genotype difference as mixtures of them (demo settings, seeds
#: 0-2: normalised ARI 0.76-1.0 without shared topics, 0.56-0.66 with 4, 0.10-0.60 with the
#: 9 that n_shared="auto" fits; benchmarks/demo_shared.py, docs/model.md "Where it still
#: fails").
DEMO_N_SHARED = 0
#: Number of topics / components for every method.
N_COMPONENTS = 5
#: Methods compared, in table order.
METHODS = ("PCA", "NMF", "bcNMF")
#: Default output folder of the command-line demo.
DEFAULT_OUT = "bcnmf-demo"

_NMF_MAX_ITER = 500
# Warnings that a fit may raise: always recorded in the results and the report, never raised,
# even where warnings are errors (bcnmf's ConvergenceWarning is scikit-learn's).  Other warnings
# follow the active filters: raised where they are errors, otherwise recorded too.
_RECORDED_WARNINGS = (ConvergenceWarning, DivergenceWarning)


# ---------------------------------------------------------------------------------------------
# Evaluation protocol
# ---------------------------------------------------------------------------------------------

def _mean_sd(values):
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else 0.0)


def _fmt_mean_sd(mean, sd):
    if not math.isfinite(mean):
        return "nan"
    return f"{mean:.3f} ± {sd:.3f}"


# ---------------------------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------------------------

def _fit(method, data, seed, alpha, max_iter):
    """Target codes of one method and seed (and the fitted bcNMF model, else None)."""
    if method == "PCA":
        return PCA(n_components=N_COMPONENTS, random_state=seed).fit_transform(data.X), None
    if method == "NMF":
        model = NMF(n_components=N_COMPONENTS, init="random", max_iter=_NMF_MAX_ITER,
                    random_state=seed)
        return model.fit_transform(data.X), None
    model = BCNMF(n_components=N_COMPONENTS, alpha=alpha, beta_loss="frobenius",
                  n_init=DEMO_N_INIT, random_state=seed, n_shared=DEMO_N_SHARED,
                  max_iter=DEMO_MAX_ITER if max_iter is None else int(max_iter))
    return model.fit_transform(data.X, background=data.Y), model


def _check_seeds(seeds):
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer (number of fitting seeds); "
                         f"got {seeds!r}.")
    return int(seeds)


# ---------------------------------------------------------------------------------------------
# Output files
# ---------------------------------------------------------------------------------------------

def _write_ari(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["method", "seed", "ari_raw", "ari_norm"])
        for r in rows:
            writer.writerow([r["method"], r["seed"], repr(float(r["ari_raw"])),
                             repr(float(r["ari_norm"]))])


def _matplotlib_available():
    return importlib.util.find_spec("matplotlib") is not None


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------

def run_demo(out_dir=DEFAULT_OUT, seeds=5, *, alpha=None, max_iter=None, progress=None):
    """Fit PCA, NMF and bcNMF on the bundled mouse-protein data, score and write the results.

    Parameters
    ----------
    out_dir : str or path-like, default="bcnmf-demo"
        Output folder (created if needed; existing files of the same names are overwritten).
    seeds : int, default=5
        Number of fitting seeds; seeds 0 .. seeds-1 are used.
    alpha : "auto", float or None, default=None
        bcNMF contrast weight; None means :data:`DEMO_ALPHA` (``"auto"``).
    max_iter : int or None, default=None
        bcNMF ``max_iter``; None means ``DEMO_MAX_ITER``.  (NMF always uses 500.)
    progress : callable, optional
        Called as ``progress(done, total, label)`` before each fit and once at the end
        (``done == total``); the command line draws its progress bar with it.

    Returns
    -------
    dict
        ``"ari"``: list of per-fit dicts (method, seed, ari_raw, ari_norm);
        ``"summary"``: {method: {"ari_raw": (mean, sd), "ari_norm": (mean, sd)}};
        ``"files"``: {name: Path} of the files written; ``"params"``: the model's
        parameters with ``alpha_raw_`` and ``n_iter_``; ``"model"``: the first seed's
        fitted :class:`~bcnmf.BCNMF`;
        ``"warnings"``: convergence/divergence warnings raised by the fits, as strings;
        ``"seeds"``, ``"first_seed"``, ``"out_dir"``.
    """
    n_seeds = _check_seeds(seeds)
    alpha = DEMO_ALPHA if alpha is None else alpha if alpha == "auto" else float(alpha)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = load_mice_protein()

    rows, notes, first_model, first_codes = [], [], None, None
    total = n_seeds * len(METHODS)
    for seed in range(n_seeds):
        for method in METHODS:
            if progress is not None:
                progress(len(rows), total, f"{method}, seed {seed}")
            with warnings.catch_warnings(record=True) as caught:
                for category in _RECORDED_WARNINGS:
                    warnings.simplefilter("always", category)
                codes, model = _fit(method, data, seed, alpha, max_iter)
                raw = cluster_ari(codes, data.labels)
                norm = cluster_ari(codes, data.labels, normalize=True)
            notes.extend(f"{method}, seed {seed}: {w.category.__name__}: {w.message}"
                         for w in caught)
            rows.append({"method": method, "seed": seed, "ari_raw": raw, "ari_norm": norm})
            if model is not None and first_model is None:
                first_model, first_codes = model, codes

    if progress is not None:
        progress(total, total, "writing results")
    summary = {m: {key: _mean_sd([r[key] for r in rows if r["method"] == m])
                   for key in ("ari_raw", "ari_norm")} for m in METHODS}
    inputs = {"target": "bundled mice protein (bcnmf.datasets.load_mice_protein), "
                        f"{data.X.shape[0]} x {data.X.shape[1]}",
              "background": f"bundled mice protein, {data.Y.shape[0]} x {data.Y.shape[1]}",
              "seed shown": "0"}
    files = write_run(out, first_model, first_codes,
                      feature_names=[str(n) for n in data.feature_names], inputs=inputs,
                      warnings=notes)
    files["ari"] = out / "ari.csv"
    _write_ari(files["ari"], rows)
    if _matplotlib_available():
        from .report import write_report

        files["report"] = write_report(
            out, title="bcNMF demo: mouse protein expression (target: control and Ts65Dn "
                       "mice; background: learning-stimulated control mice)")
    else:
        notes.append("report.html not written: matplotlib is not installed "
                     "(pip install 'bcnmf[plot]').")
    params = dict(first_model.get_params())
    params.update(alpha_=float(first_model.alpha_), alpha_raw_=float(first_model.alpha_raw_),
                  n_iter_=int(first_model.n_iter_))
    return {"out_dir": out, "seeds": n_seeds, "first_seed": 0, "ari": rows,
            "summary": summary, "params": params, "model": first_model,
            "warnings": notes, "files": files}


def format_table(results):
    s = results["summary"]
    header = f"{'method':<8}  {'ARI raw':>15}  {'ARI normalised':>15}"
    lines = [f"Adjusted Rand index vs genotype, mean ± sd over {results['seeds']} seed(s)",
             header, "-" * len(header)]
    lines += [f"{m:<8}  {_fmt_mean_sd(*s[m]['ari_raw']):>15}  "
              f"{_fmt_mean_sd(*s[m]['ari_norm']):>15}" for m in METHODS]
    return "\n".join(lines)
