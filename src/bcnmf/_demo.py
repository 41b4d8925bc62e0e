"""The work of the end-to-end demo on the bundled mouse-protein data (``bcnmf demo``, or
``python -m bcnmf.demo``: :mod:`bcnmf.demo`).

Fits PCA, plain NMF (both scikit-learn) and bcNMF to the target (270 measurements of control and
Ts65Dn mice) with the learning-stimulated control mice as background, over several fitting seeds,
and scores every fit with the evaluation protocol of the bcNMF benchmarks: KMeans with
``n_clusters=2, n_init=20, random_state=42`` on the target codes (raw and per-cell
L1-normalised), adjusted Rand index against the genotype labels (never used in fitting).

The methods, at equal budget:

- **bcNMF**: :class:`~bcnmf.BCNMF` with the library's defaults (``alpha="auto"``: the contrast
  weight is chosen without labels before every fit; default init, tol and mode), except
  ``n_shared=0`` (:data:`DEMO_N_SHARED` says why), :data:`DEMO_N_INIT` restarts of at most
  :data:`DEMO_MAX_ITER` sweeps each (the library's defaults, one restart of 500 sweeps, stop
  before the topics settle on this data); the medoid restart is kept.
- **NMF**: :class:`sklearn.decomposition.NMF` with the same budget: :data:`DEMO_N_INIT`
  restarts of random initialisation (restart ``r`` of seed ``s`` has ``random_state =
  DEMO_N_INIT * s + r``), at most :data:`DEMO_MAX_ITER` iterations each, ``tol=1e-4``; the
  restart with the lowest reconstruction error is kept (chosen without labels).  Best of
  restarts rather than ``init="nndsvda"``: nndsvda is deterministic, so it would use one fifth
  of the budget, and its fit has a higher reconstruction error on this data than the best of
  the random restarts (``results["nmf_reconstruction"]`` records the errors).
- **PCA**: :class:`sklearn.decomposition.PCA`, exact.

Every fit reaches its convergence criterion within the budget at the default seeds; a warning
raised by a fit is recorded (``results["warnings"]``, ``params.json``, the report), never
hidden.

About the data: the target holds three measurements of one mouse (3426) in which more than
half of the 77 proteins were not measured; :func:`~bcnmf.datasets.load_mice_protein` fills
missing values with 0, as the contrastive PCA and bcNMF papers did (``bcnmf/data/README.md``),
so these three cells are near-empty.  They are kept, as in the papers.  Each mouse contributes
15 replicate measurements, which are not independent: the topic statistics (``enrichment.csv``)
are computed with the mice as units (sample-level test of :func:`bcnmf.topic_enrichment`).

The output folder is a run folder, as written by ``bcnmf fit`` (see :func:`bcnmf.io.write_run`),
for the first seed's bcNMF fit, plus the comparison:

- ``model.npz``: the fitted model (:func:`bcnmf.load`);
- ``components.csv``: bcNMF topics x proteins, protein names as header;
- ``target_codes.csv``, ``background_codes.csv``: bcNMF codes, cells x topics;
- ``history.csv``: iteration, target, background, objective;
- ``alpha_path.csv``: how the automatic alpha was chosen (the model's ``alpha_path_``);
- ``params.json``: ``get_params()`` of the model plus ``alpha_``, ``alpha_raw_``, ``n_iter_``,
  ``objective_``, the bcnmf version, the inputs and the warnings raised;
- ``enrichment.csv``: :func:`bcnmf.topic_enrichment` of the first seed's model (target vs
  background, mice as units), one row per topic;
- ``labels.csv``: cell, label (genotype of every target cell; used only to score and to colour
  the report);
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

from ._validation import ALPHA_OR_AUTO, _int_at_least, _none_or, check_params
from .datasets import load_mice_protein
from .estimator import BCNMF
from .exceptions import DivergenceWarning
from .io import write_run
from .metrics import cluster_ari

__all__ = ["DEFAULT_OUT", "DEFAULT_SEEDS", "DEMO_ALPHA", "DEMO_MAX_ITER", "DEMO_N_INIT",
           "DEMO_N_SHARED", "N_COMPONENTS", "METHODS", "format_notes", "format_table",
           "run_demo"]

#: Contrast weight of the demo's bcNMF fits: the library's default, chosen without labels
#: before every fit (``alpha_`` and ``alpha_path_`` of the model; alpha_path.csv).
DEMO_ALPHA = "auto"
#: Restarts per fit, bcNMF and NMF alike.  bcNMF keeps its medoid restart, which removes most
#: of the seed-to-seed variance of single runs on this data; NMF keeps the restart with the
#: lowest reconstruction error.
DEMO_N_INIT = 5
#: Sweeps (bcNMF) and iterations (NMF) allowed per restart.  Multiplicative updates converge
#: slowly on this data; at the default seeds every fit meets its tolerance within this budget
#: (column ``n_iter`` of ari.csv: what the kept restart used).
DEMO_MAX_ITER = 5000
#: Tolerance of the NMF baseline (scikit-learn's default; reached within the budget).
DEMO_NMF_TOL = 1e-4
#: Shared topics of the demo's bcNMF fits: none.  The mouse background is 15 replicate
#: measurements of each of 9 control mice; shared topics learn those mice's profiles and then
#: explain the target's genotype difference as mixtures of them.  With the demo's other
#: settings, seeds 0-4, the mean normalised ARI is lower with 4 shared topics and with the 9
#: that ``n_shared="auto"`` fits than without (``python benchmarks/demo_shared.py``;
#: docs/model.md, "Where it fails").
DEMO_N_SHARED = 0
#: Number of topics / components for every method.
N_COMPONENTS = 5
#: Methods compared, in table order.
METHODS = ("PCA", "NMF", "bcNMF")
#: Default output folder of the command-line demo.
DEFAULT_OUT = "bcnmf-demo"
#: Default number of fitting seeds.
DEFAULT_SEEDS = 5
#: A target cell is reported as near-empty when more than this fraction of its proteins were
#: not measured (and are 0 in the bundled data).
_NEAR_EMPTY = 0.5

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
    """(target codes, sweeps of the kept fit or None, fitted bcNMF model or None,
    reconstruction errors of the NMF restarts or None) of one method and seed."""
    if method == "PCA":
        codes = PCA(n_components=N_COMPONENTS, random_state=seed).fit_transform(data.X)
        return codes, None, None, None
    if method == "NMF":
        best, errors = None, []
        for restart in range(DEMO_N_INIT):
            model = NMF(n_components=N_COMPONENTS, init="random", max_iter=max_iter,
                        tol=DEMO_NMF_TOL, random_state=DEMO_N_INIT * seed + restart)
            codes = model.fit_transform(data.X)
            errors.append(float(model.reconstruction_err_))
            if best is None or errors[-1] < best[0]:
                best = (errors[-1], codes, int(model.n_iter_))
        return best[1], best[2], None, errors
    model = BCNMF(n_components=N_COMPONENTS, alpha=alpha, n_init=DEMO_N_INIT,
                  max_iter=max_iter, n_shared=DEMO_N_SHARED, random_state=seed)
    codes = model.fit_transform(data.X, background=data.Y)
    return codes, int(model.n_iter_), model, None


#: the demo's parameters: (predicate, what is accepted), checked as the estimators check theirs
_PARAMS = {
    "seeds": (_int_at_least(1), "an int >= 1 (the number of fitting seeds)"),
    "alpha": (_none_or(ALPHA_OR_AUTO[0]),
              f"None (the demo's {DEMO_ALPHA!r}), 'auto' or a finite real >= 0"),
    "max_iter": (_none_or(_int_at_least(1)),
                 f"None (the demo's {DEMO_MAX_ITER}) or an int >= 1 (sweeps per restart)"),
}


def _near_empty_cells(data, masks):
    """(row, sample, missing proteins) of the target cells with more than half of their
    proteins missing (zero-filled by the loader)."""
    missing = masks.X_missing.sum(axis=1)
    rows = np.flatnonzero(missing > _NEAR_EMPTY * data.X.shape[1])
    return [(int(i), str(data.target_samples[i]), int(missing[i])) for i in rows]


def _enrichment(model, data):
    """topic_enrichment of the model, mice as units (a mouse's replicate measurements are not
    independent draws)."""
    from .topics import topic_enrichment

    return topic_enrichment(model, data.X, background=data.Y, samples=data.target_samples,
                            background_samples=data.background_samples)


# ---------------------------------------------------------------------------------------------
# Output files
# ---------------------------------------------------------------------------------------------

def _write_ari(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["method", "seed", "ari_raw", "ari_norm", "n_iter"])
        for r in rows:
            writer.writerow([r["method"], r["seed"], repr(float(r["ari_raw"])),
                             repr(float(r["ari_norm"])),
                             "" if r["n_iter"] is None else int(r["n_iter"])])


def _write_labels(path, data):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["cell", "label"])
        names = [str(n) for n in data.label_names]
        for i, label in enumerate(np.asarray(data.labels)):
            writer.writerow([i, names[int(label)]])


def _matplotlib_available():
    return importlib.util.find_spec("matplotlib") is not None


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------

def run_demo(out_dir=DEFAULT_OUT, seeds=DEFAULT_SEEDS, *, alpha=None, max_iter=None,
             progress=None):
    """Fit PCA, NMF and bcNMF on the bundled mouse-protein data, score and write the results.

    bcNMF runs with the library's defaults (``alpha="auto"``, chosen without labels), no
    shared topics, and the same budget as the NMF baseline: :data:`DEMO_N_INIT` restarts of at
    most ``max_iter`` sweeps.  The module documentation (:mod:`bcnmf._demo`) gives the protocol,
    the reasons for each setting and the files written.

    Parameters
    ----------
    out_dir : str or path-like, default="bcnmf-demo"
        Output folder (created if needed; existing files of the same names are overwritten).
    seeds : int, default=5
        Number of fitting seeds; seeds 0 .. seeds-1 are used.
    alpha : "auto", float or None, default=None
        bcNMF contrast weight; None means :data:`DEMO_ALPHA` (``"auto"``).
    max_iter : int or None, default=None
        Sweeps (bcNMF) and iterations (NMF) per restart, the budget shared by both; None means
        :data:`DEMO_MAX_ITER`.  A smaller budget may stop fits before they converge; their
        ConvergenceWarnings are recorded in ``"warnings"``.
    progress : callable, optional
        Called as ``progress(done, total, label)`` before each fit and once at the end
        (``done == total``); the command line draws its progress bar with it.

    Returns
    -------
    dict
        ``"ari"``: list of per-fit dicts (method, seed, ari_raw, ari_norm, n_iter);
        ``"summary"``: {method: {"ari_raw": (mean, sd), "ari_norm": (mean, sd)}};
        ``"files"``: {name: Path} of the files written; ``"params"``: the model's
        parameters with ``alpha_``, ``alpha_raw_`` and ``n_iter_``; ``"model"``: the first
        seed's fitted :class:`~bcnmf.BCNMF`; ``"enrichment"``: its
        :func:`~bcnmf.topic_enrichment` table;
        ``"nmf_reconstruction"``: {seed: reconstruction error of every NMF restart};
        ``"warnings"``: warnings raised by the fits, as strings (none at the defaults);
        ``"notes"``: what the printed notes say (:func:`format_notes`);
        ``"near_empty"``: (row, mouse, missing proteins) of the near-empty target cells;
        ``"seeds"``, ``"first_seed"``, ``"out_dir"``.

    Raises
    ------
    ValueError
        If ``seeds``, ``alpha`` or ``max_iter`` is not a valid value.
    """
    check_params({"seeds": seeds, "alpha": alpha, "max_iter": max_iter}, "run_demo", _PARAMS)
    n_seeds = int(seeds)
    alpha = DEMO_ALPHA if alpha is None else alpha if isinstance(alpha, str) else float(alpha)
    budget = DEMO_MAX_ITER if max_iter is None else int(max_iter)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = load_mice_protein()
    near_empty = _near_empty_cells(data, load_mice_protein(return_masks=True))

    rows, caught_all, first_model, first_codes, nmf_errors = [], [], None, None, {}
    total = n_seeds * len(METHODS) + 1
    for seed in range(n_seeds):
        for method in METHODS:
            if progress is not None:
                progress(len(rows), total, f"{method}, seed {seed}")
            with warnings.catch_warnings(record=True) as caught:
                for category in _RECORDED_WARNINGS:
                    warnings.simplefilter("always", category)
                codes, n_iter, model, errors = _fit(method, data, seed, alpha, budget)
                raw = cluster_ari(codes, data.labels)
                norm = cluster_ari(codes, data.labels, normalize=True)
            caught_all.extend(f"{method}, seed {seed}: {w.category.__name__}: {w.message}"
                              for w in caught)
            rows.append({"method": method, "seed": seed, "ari_raw": raw, "ari_norm": norm,
                         "n_iter": n_iter})
            if errors is not None:
                nmf_errors[seed] = errors
            if model is not None and first_model is None:
                first_model, first_codes = model, codes

    if progress is not None:
        progress(len(rows), total, "topic enrichment (seed 0)")
    with warnings.catch_warnings(record=True) as caught:
        for category in _RECORDED_WARNINGS:
            warnings.simplefilter("always", category)
        enrichment = _enrichment(first_model, data)
    caught_all.extend(f"topic enrichment: {w.category.__name__}: {w.message}" for w in caught)
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
                      warnings=caught_all)
    files["enrichment"] = out / "enrichment.csv"
    enrichment.to_csv(files["enrichment"])
    files["labels"] = out / "labels.csv"
    _write_labels(files["labels"], data)
    files["ari"] = out / "ari.csv"
    _write_ari(files["ari"], rows)
    params = dict(first_model.get_params())
    params.update(alpha_=float(first_model.alpha_), alpha_raw_=float(first_model.alpha_raw_),
                  n_iter_=int(first_model.n_iter_))
    results = {"out_dir": out, "seeds": n_seeds, "first_seed": 0, "ari": rows,
               "summary": summary, "params": params, "model": first_model,
               "enrichment": enrichment, "nmf_reconstruction": nmf_errors,
               "warnings": caught_all, "near_empty": near_empty, "files": files}
    notes = _notes(results, budget)
    if _matplotlib_available():
        from .report import write_report

        files["report"] = write_report(
            out, title="bcNMF demo: mouse protein expression (target: control and Ts65Dn "
                       "mice; background: learning-stimulated control mice)")
    else:
        notes.append("report.html not written: matplotlib is not installed "
                     "(pip install 'bcnmf[plot]').")
    results["notes"] = notes
    return results


def _notes(results, budget):
    """The demo's notes: settings and the reasons for them, the data's caveats."""
    p, table = results["params"], results["enrichment"]
    alpha = (f"alpha chosen without labels (alpha_ = {p['alpha_']:g} at seed 0)"
             if p["alpha"] == "auto" else f"alpha = {p['alpha']:g}")
    notes = [
        f"bcNMF: library defaults, {alpha}; n_shared=0 because the background is 15 "
        "replicate measurements of each of 9 control mice, whose profiles shared topics "
        "would learn and then use to explain the genotype difference "
        "(benchmarks/demo_shared.py).",
        f"Equal budget: NMF and bcNMF both get {DEMO_N_INIT} restarts of at most {budget} "
        "iterations; NMF (random init, tol=1e-4) keeps the restart with the lowest "
        "reconstruction error, bcNMF its medoid restart; PCA is exact. ari.csv gives the "
        "iterations each kept fit used.",
    ]
    if results["near_empty"]:
        rows = results["near_empty"]
        mice = sorted({mouse for _, mouse, _ in rows})
        notes.append(
            f"Data: {len(rows)} target measurement(s) of mouse {', '.join(mice)} (rows "
            f"{', '.join(str(r) for r, _, _ in rows)}) lack "
            f"{', '.join(sorted({str(m) for _, _, m in rows}))} of the "
            f"{results['model'].components_.shape[1]} proteins; the loader "
            "fills missing values with 0 (bcnmf/data/README.md), so these cells are "
            "near-empty. They are kept, as in the papers.")
    test = (f"mice as units ({int(table['n_samples_target'].iloc[0])} target vs "
            f"{int(table['n_samples_background'].iloc[0])} background mice), since a mouse's "
            "15 replicate measurements are not independent")
    enriched = [str(t) for t in table.index[table["enriched"].to_numpy(bool)]]
    notes.append(f"Topic enrichment of seed 0 (enrichment.csv): {test}; enriched "
                 f"(q <= 0.05): {', '.join(enriched) if enriched else 'none'}.")
    notes.append("Genotype labels are used only to score (ari.csv) and to colour the report.")
    return notes


def format_notes(results):
    """The demo's notes as indented lines under a heading.

    Parameters
    ----------
    results : dict
        What :func:`run_demo` returned.

    Returns
    -------
    str
        ``"Notes:"`` and one line per note of ``results["notes"]``.
    """
    return "\n".join(["Notes:", *(f"  - {note}" for note in results.get("notes", ()))])


def format_table(results):
    """The comparison table, followed by the notes, as the command line prints them.

    Parameters
    ----------
    results : dict
        What :func:`run_demo` returned.

    Returns
    -------
    str
        The adjusted Rand index of every method against the genotype, mean ± sd over the
        seeds, then :func:`format_notes` when there are notes.
    """
    s = results["summary"]
    header = f"{'method':<8}  {'ARI raw':>15}  {'ARI normalised':>15}"
    lines = [f"Adjusted Rand index vs genotype, mean ± sd over {results['seeds']} seed(s)",
             header, "-" * len(header)]
    lines += [f"{m:<8}  {_fmt_mean_sd(*s[m]['ari_raw']):>15}  "
              f"{_fmt_mean_sd(*s[m]['ari_norm']):>15}" for m in METHODS]
    if results.get("notes"):
        lines += ["", format_notes(results)]
    return "\n".join(lines)
