"""Clustering-quality benchmark of bcNMF against PCA, contrastive PCA and NMF (docs/benchmarks.md).

Prints markdown tables of the adjusted Rand index (KMeans with n_clusters = number of labels,
n_init = 20, random_state = 42 on the target codes; see ``_protocol.py``), mean ± sd over fitting
seeds, for raw codes and for per-cell L1-normalised codes.

Sections
--------
(a) Simulation beta series (``make_contrastive_counts``), beta in {0, 1, 2, 4, 8, 16}, K = 2.
    The simulated data are FIXED (``make_contrastive_counts(beta, random_state=0)``); only the
    fitting seed varies (0 .. seeds-1), as in the paper.  PCA and cPCA are deterministic and are
    fitted once.  PCA, cPCA, sklearn NMF (Frobenius) and bcNMF Frobenius use log-CP10k data
    (``normalize_log1p``); bcNMF Poisson and sklearn NMF (KL) use the raw counts.
(b) Real data: ``mice_protein`` (K = 5) and ``mnist_daisy_demo`` (K = 2), as shipped (no
    preprocessing), Frobenius rows, plus Poisson rows for mnist (``--no-mnist-poisson`` drops them).
(c) Alpha robustness: a log-spaced alpha grid over two decades (alpha0/10 .. alpha0*10; 9 points
    by default, ``--alpha-grid 13`` for six per decade) around the default of each mode, 3 seeds, for the simulation at beta = 8 (both losses), mice and
    mnist; prints ARI per alpha and the fraction of grid points whose mean ARI is at least 90% of
    the grid's best.

Method settings
---------------
- reference: ``mode="reference", alpha_scale="raw"`` with the authors' settings: alpha = 2,
  300 iterations (mice: alpha = 3, 100 iterations, as in the paper); Poisson adds damping 0.5.
- stable: ``mode="stable", alpha_scale="relative"`` with ONE alpha for every dataset and beta
  (``--alpha-frob``, ``--alpha-kl``), max_iter left to the estimator.

Fits run in parallel with joblib (``--n-jobs``), one BLAS / numba thread per worker.  Warnings
raised by a fit (or by KMeans on its codes) are counted and shown as footnotes; a failing fit is
recorded as NaN with its error in a footnote, never aborting the table.

Usage::

    python benchmarks/quality.py --quick                 # smoke run, ~2 minutes on 2 cores
    python benchmarks/quality.py --seeds 5 --n-jobs 2 --out benchmarks/results/quality.md
    python benchmarks/quality.py --datasets mice,mnist --alpha-frob 3
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

import _protocol as P  # noqa: E402

BETAS = (0, 1, 2, 4, 8, 16)
QUICK_BETAS = (0, 8)
CPCA_AS = (1, 2, 5, 10, 50)
SIM_K = 2
REAL_K = {"mice": 5, "mnist": 2}
SHARED_NAMES = {"mice": "mice_protein", "mnist": "mnist_daisy_demo"}
# Authors' reference settings per dataset: (raw alpha, iterations).
REF_SETTINGS = {"sim": (2.0, 300), "mice": (3.0, 100), "mnist": (2.0, 300)}
REF_DAMPING_KL = 0.5
QUICK_MAX_ITER = 60
ALPHA_ROBUST_BETA = 8
# Below this best mean ARI the grid found nothing, and a robustness fraction means nothing.
ROBUST_MIN_BEST = 0.1


# --------------------------------------------------------------------------------------------
# The only places that touch bcnmf.
# --------------------------------------------------------------------------------------------


def _bcnmf_fit_codes(X, Y, n_components, params, seed):
    """Fit bcnmf.BCNMF on target X against background Y; return the target codes."""
    from bcnmf import BCNMF

    model = BCNMF(n_components=n_components, random_state=seed, **params)
    return model.fit_transform(X, background=Y)


def _simulate(beta):
    from bcnmf.datasets import make_contrastive_counts

    sim = make_contrastive_counts(beta, random_state=0)
    return np.asarray(sim.X), np.asarray(sim.Y), np.asarray(sim.labels)


def _log_cp10k(X):
    from bcnmf.datasets import normalize_log1p

    return np.asarray(normalize_log1p(X, target_sum=1e4))


def _load_shared(name):
    from bcnmf.datasets import load_shared_dataset

    d = load_shared_dataset(name)
    return np.asarray(d.X), np.asarray(d.Y), np.asarray(d.labels)


def _bcnmf_version():
    try:
        import bcnmf

        return getattr(bcnmf, "__version__", "?")
    except Exception as exc:  # pragma: no cover - informational only
        return f"not importable ({exc})"


# --------------------------------------------------------------------------------------------
# Data (cached per worker process; tasks carry only keys).
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _sim_cached(beta):
    X, Y, labels = _simulate(beta)
    Xf = np.asarray(X, dtype=np.float64)
    Yf = np.asarray(Y, dtype=np.float64)
    return {
        "counts": (Xf, Yf, labels),
        "log": (_log_cp10k(Xf), _log_cp10k(Yf), labels),
    }


@functools.lru_cache(maxsize=4)
def _shared_cached(name):
    X, Y, labels = _load_shared(SHARED_NAMES[name])
    return np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64), labels


def get_data(dataset, rep):
    """dataset: ("sim", beta) | ("mice",) | ("mnist",); rep: "log" | "counts" | "raw"."""
    if dataset[0] == "sim":
        return _sim_cached(dataset[1])[rep]
    return _shared_cached(dataset[0])


# --------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------


@dataclass
class Method:
    row: str
    kind: str  # "pca" | "cpca" | "nmf" | "bcnmf"
    rep: str  # data representation: "log" | "counts" | "raw"
    params: dict = field(default_factory=dict)
    seeded: bool = True


@dataclass
class Task:
    section: str
    dataset: tuple
    col: str
    method: Method
    seed: int
    n_components: int
    limit_threads: bool


def _ari_pair(codes, labels, counter):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = P.cluster_ari(codes, labels, normalize=False)
        norm = P.cluster_ari(codes, labels, normalize=True)
    for w in caught:
        counter[f"KMeans {w.category.__name__}"] += 1
    return raw, norm


def _run_task_inner(task):
    m = task.method
    X, Y, labels = get_data(task.dataset, m.rep)
    out = []
    fit_warnings = Counter()
    messages = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if m.kind == "cpca":
            std = m.params["standardise"]
            if std:
                X, Y = P.standardise_features(X), P.standardise_features(Y)
            a_values = list(m.params["a_values"])
            scores = P.contrastive_pca(X, Y, task.n_components, a_values)
            codes_list = [(cpca_row(a, std), sc) for a, sc in zip(a_values, scores)]
        elif m.kind == "pca":
            codes_list = [(m.row, P.pca_codes(X, task.n_components, **m.params))]
        elif m.kind == "nmf":
            codes_list = [(m.row, P.nmf_codes(X, task.n_components, task.seed, **m.params))]
        elif m.kind == "bcnmf":
            codes_list = [(m.row, _bcnmf_fit_codes(X, Y, task.n_components, m.params, task.seed))]
        else:  # pragma: no cover
            raise ValueError(f"unknown method kind {m.kind!r}")
    for w in caught:
        name = w.category.__name__
        fit_warnings[name] += 1
        messages.setdefault(name, str(w.message).splitlines()[0][:160] if str(w.message) else "")
    for row, codes in codes_list:
        counter = Counter(fit_warnings)
        raw, norm = _ari_pair(codes, labels, counter)
        out.append(dict(row=row, col=task.col, seed=task.seed, raw=raw, norm=norm,
                        warnings=counter, messages=dict(messages), error=None))
    return out


def run_task(task):
    """Run one task; never raises: a failure gives NaN ARIs and the error text."""
    t0 = time.perf_counter()
    try:
        if task.limit_threads:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=1):
                res = _run_task_inner(task)
        else:
            res = _run_task_inner(task)
    except Exception as exc:  # noqa: BLE001 - record and carry on
        err = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
        rows = row_names([task.method])
        res = [dict(row=r, col=task.col, seed=task.seed, raw=float("nan"), norm=float("nan"),
                    warnings=Counter(), messages={}, error=f"{err} ({where})")
               for r in rows]
    dt = time.perf_counter() - t0
    for i, r in enumerate(res):
        r["seconds"] = dt if i == 0 else 0.0
    return res


def run_tasks(tasks, n_jobs):
    from joblib import Parallel, delayed

    if n_jobs == 1:
        results = [run_task(t) for t in tasks]
    else:
        # run_task is pickled by reference ("quality.run_task") so that workers import this
        # module once and keep its data caches between tasks.
        import quality as mod

        results = Parallel(n_jobs=n_jobs, batch_size=1, backend="loky")(
            delayed(mod.run_task)(t) for t in tasks
        )
    flat = [r for res in results for r in res]
    return flat


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


class Footnotes:
    def __init__(self):
        self.notes = []

    def marker(self, text):
        if text not in self.notes:
            self.notes.append(text)
        return f"[{self.notes.index(text) + 1}]"

    def render(self):
        return "\n".join(f"[{i + 1}] {t}" for i, t in enumerate(self.notes))


def _cell_records(records, row, col):
    return [r for r in records if r["row"] == row and r["col"] == col]


def _cell_note(recs):
    """Footnote text for a cell (warnings and errors over its fits), or None."""
    if not recs:
        return None
    parts = []
    counter = Counter()
    messages = {}
    for r in recs:
        counter.update(r["warnings"])
        for k, v in r["messages"].items():
            messages.setdefault(k, v)
    for name, n in sorted(counter.items()):
        msg = messages.get(name)
        parts.append(f"{n} {name}" + (f" ('{msg}')" if msg else ""))
    errors = [r["error"] for r in recs if r["error"]]
    if errors:
        parts.append(f"{len(errors)}/{len(recs)} fits failed: {errors[0]}")
    return "; ".join(parts) if parts else None


def _cell_text(recs, which, notes):
    if not recs:
        return "—"
    text = P.summarise([r[which] for r in recs])
    note = _cell_note(recs)
    if note:
        text += " " + notes.marker(note)
    return text


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def grid_table(records, row_names, cols, col_names, which, notes):
    rows = []
    for rn in row_names:
        cells = [_cell_text(_cell_records(records, rn, c), which, notes) for c in cols]
        rows.append([rn] + cells)
    return markdown_table(["Method"] + list(col_names), rows)


# --------------------------------------------------------------------------------------------
# Method lists
# --------------------------------------------------------------------------------------------


def ref_params(dataset_name, loss, args, alpha=None):
    a0, iters = REF_SETTINGS[dataset_name]
    p = dict(alpha=a0 if alpha is None else alpha, alpha_scale="raw", mode="reference",
             beta_loss=loss, max_iter=QUICK_MAX_ITER if args.quick else iters)
    if loss != "frobenius":
        p["damping"] = REF_DAMPING_KL
    return p


def stable_params(loss, args, alpha=None):
    a0 = args.alpha_frob if loss == "frobenius" else args.alpha_kl
    p = dict(alpha=a0 if alpha is None else alpha, alpha_scale="relative", mode="stable",
             beta_loss=loss, n_init=args.n_init)
    if args.max_iter is not None:
        p["max_iter"] = args.max_iter
    if args.quick:
        p["max_iter"] = QUICK_MAX_ITER
    return p


def methods_for(dataset_name, args, poisson, feature_rep):
    """Method rows for a dataset. feature_rep: representation for the Frobenius/PCA rows."""
    count_rep = "counts" if dataset_name == "sim" else "raw"
    nmf_iter = QUICK_MAX_ITER if args.quick else 500
    ms = [
        Method("PCA", "pca", feature_rep, {"standardise": False}, seeded=False),
        Method("PCA std", "pca", feature_rep, {"standardise": True}, seeded=False),
        Method("cPCA", "cpca", feature_rep, {"a_values": CPCA_AS, "standardise": False},
               seeded=False),
        Method("cPCA std", "cpca", feature_rep, {"a_values": CPCA_AS, "standardise": True},
               seeded=False),
        Method("NMF (sklearn, Frobenius)", "nmf", feature_rep,
               {"beta_loss": "frobenius", "max_iter": nmf_iter}),
        Method("bcNMF reference Frobenius", "bcnmf", feature_rep,
               ref_params(dataset_name, "frobenius", args)),
        Method("bcNMF stable Frobenius", "bcnmf", feature_rep, stable_params("frobenius", args)),
    ]
    if poisson:
        ms += [
            Method("NMF (sklearn, KL)", "nmf", count_rep,
                   {"beta_loss": "kullback-leibler", "max_iter": nmf_iter}),
            Method("bcNMF reference Poisson", "bcnmf", count_rep,
                   ref_params(dataset_name, "kullback-leibler", args)),
            Method("bcNMF stable Poisson", "bcnmf", count_rep,
                   stable_params("kullback-leibler", args)),
        ]
    return ms


def settings_legend(args, names):
    """One line describing the bcNMF settings of the rows, per dataset."""
    parts = []
    for n in names:
        a_ref, it_ref = REF_SETTINGS[n]
        it_ref = QUICK_MAX_ITER if args.quick else it_ref
        parts.append(f"{n}: raw α={a_ref:g}, {it_ref} iterations")
    stable_it = f"max_iter={QUICK_MAX_ITER}" if args.quick else "estimator's default max_iter"
    return (f"Settings. reference = mode='reference', alpha_scale='raw' ({'; '.join(parts)}; "
            f"Poisson adds damping γ={REF_DAMPING_KL:g}). stable = mode='stable', "
            f"alpha_scale='relative', α={args.alpha_frob:g} (Frobenius) / {args.alpha_kl:g} "
            f"(Poisson) everywhere, {stable_it}. NMF: sklearn, init='random', seeded. "
            "'std' = features standardised per dataset (as the `contrastive` package does).\n")


def cpca_row(a, standardise):
    return f"cPCA{' std' if standardise else ''} a={a:g}"


def row_names(methods):
    names = []
    for m in methods:
        if m.kind == "cpca":
            names += [cpca_row(a, m.params["standardise"]) for a in m.params["a_values"]]
        else:
            names.append(m.row)
    return names


def make_tasks(section, dataset, col, methods, seeds, n_components, limit):
    tasks = []
    # Heavier (bcNMF) tasks first so the parallel tail is made of cheap ones.
    order = sorted(methods, key=lambda m: m.kind != "bcnmf")
    for m in order:
        for s in (seeds if m.seeded else seeds[:1]):
            tasks.append(Task(section, dataset, col, m, s, n_components, limit))
    return tasks


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


def section_beta(args, emit):
    betas = QUICK_BETAS if args.quick else BETAS
    seeds = list(range(args.seeds))
    methods = methods_for("sim", args, poisson=not args.no_sim_poisson, feature_rep="log")
    tasks = []
    for b in betas:
        tasks += make_tasks("a", ("sim", b), f"β={b}", methods, seeds, SIM_K, args.n_jobs > 1)
    t0 = time.perf_counter()
    recs = run_tasks(tasks, args.n_jobs)
    dt = time.perf_counter() - t0
    cols = [f"β={b}" for b in betas]
    notes = Footnotes()
    rn = row_names(methods)
    emit(f"## (a) Simulation beta series (K = {SIM_K}, simulation fixed at random_state=0, "
         f"fitting seeds {seeds[0]}..{seeds[-1]})\n")
    emit("Frobenius rows, PCA and cPCA on log-CP10k data; Poisson and NMF (KL) rows on raw counts. "
         "PCA/cPCA are deterministic (one fit).\n")
    emit(settings_legend(args, ["sim"]))
    emit("### ARI, raw codes\n")
    emit(grid_table(recs, rn, cols, cols, "raw", notes) + "\n")
    emit("### ARI, per-cell L1-normalised codes\n")
    emit(grid_table(recs, rn, cols, cols, "norm", notes) + "\n")
    if notes.notes:
        emit(notes.render() + "\n")
    emit(_timing_line("a", recs, dt, len(tasks)))
    return recs


def section_real(args, emit, names):
    seeds = list(range(args.seeds))
    blocks = []
    for name in names:
        poisson = name == "mnist" and args.mnist_poisson
        methods = methods_for(name, args, poisson=poisson, feature_rep="raw")
        blocks.append((name, methods))
    tasks = []
    for name, methods in blocks:
        tasks += make_tasks("b", (name,), name, methods, seeds, REAL_K[name], args.n_jobs > 1)
    t0 = time.perf_counter()
    recs = run_tasks(tasks, args.n_jobs)
    dt = time.perf_counter() - t0
    # Union of row names, in order.
    rn = []
    for _, methods in blocks:
        for r in row_names(methods):
            if r not in rn:
                rn.append(r)
    notes = Footnotes()
    header = ["Method"]
    for name, _ in blocks:
        header += [f"{name} (K={REAL_K[name]}) raw", f"{name} norm"]
    rows = []
    for r in rn:
        cells = [r]
        for name, _ in blocks:
            recs_c = _cell_records(recs, r, name)
            cells += [_cell_text(recs_c, "raw", notes), _cell_text(recs_c, "norm", notes)]
        rows.append(cells)
    emit(f"## (b) Real data ({', '.join(SHARED_NAMES[n] for n in names)}), "
         f"fitting seeds {seeds[0]}..{seeds[-1]}\n")
    emit("Data as shipped (no preprocessing). PCA/cPCA deterministic and use the same K.\n")
    emit(settings_legend(args, names))
    emit(markdown_table(header, rows) + "\n")
    if notes.notes:
        emit(notes.render() + "\n")
    emit(_timing_line("b", recs, dt, len(tasks)))
    return recs


def alpha_grid(alpha0, n):
    return alpha0 * np.logspace(-1.0, 1.0, n)


def section_alpha(args, emit, datasets):
    n_grid = 5 if args.quick else args.alpha_grid
    seeds = list(range(1 if args.quick else args.alpha_seeds))
    panels = []  # (title, dataset, dataset_name, loss, rep, K)
    if "sim" in datasets:
        panels.append((f"simulation β={ALPHA_ROBUST_BETA}, Frobenius (log-CP10k)",
                       ("sim", ALPHA_ROBUST_BETA), "sim", "frobenius", "log", SIM_K))
        panels.append((f"simulation β={ALPHA_ROBUST_BETA}, Poisson (counts)",
                       ("sim", ALPHA_ROBUST_BETA), "sim", "kullback-leibler", "counts", SIM_K))
    for name in ("mice", "mnist"):
        if name in datasets:
            panels.append((f"{SHARED_NAMES[name]}, Frobenius (K={REAL_K[name]})", (name,), name,
                           "frobenius", "raw", REAL_K[name]))
    tasks = []
    grids = {}
    for pi, (title, ds, dname, loss, rep, K) in enumerate(panels):
        a_st = alpha_grid(args.alpha_frob if loss == "frobenius" else args.alpha_kl, n_grid)
        a_rf = alpha_grid(REF_SETTINGS[dname][0], n_grid)
        grids[pi] = (a_st, a_rf)
        for gi in range(n_grid):
            for mode, alphas in (("stable", a_st), ("reference", a_rf)):
                if mode == "stable":
                    params = stable_params(loss, args, alpha=float(alphas[gi]))
                else:
                    params = ref_params(dname, loss, args, alpha=float(alphas[gi]))
                m = Method(f"{mode}", "bcnmf", rep, params)
                tasks += make_tasks("c", ds, f"p{pi}:{mode}:{gi}", [m], seeds, K,
                                    args.n_jobs > 1)
    t0 = time.perf_counter()
    recs = run_tasks(tasks, args.n_jobs)
    dt = time.perf_counter() - t0
    emit(f"## (c) Alpha robustness ({n_grid} log-spaced α from α0/10 to 10·α0, "
         f"seeds {seeds[0]}..{seeds[-1]})\n")
    emit("stable: relative α around the fixed default; reference: raw α around the authors' "
         "value, authors' iterations (Poisson: damping 0.5).\n")
    summary_rows = []
    for pi, (title, *_rest) in enumerate(panels):
        notes = Footnotes()
        a_st, a_rf = grids[pi]
        rows = []
        means = {("stable", "raw"): [], ("stable", "norm"): [],
                 ("reference", "raw"): [], ("reference", "norm"): []}
        for gi in range(n_grid):
            row = [str(gi)]
            for mode, alphas in (("stable", a_st), ("reference", a_rf)):
                rc = _cell_records(recs, mode, f"p{pi}:{mode}:{gi}")
                row.append(f"{alphas[gi]:.3g}")
                for which in ("raw", "norm"):
                    row.append(_cell_text(rc, which, notes))
                    vals = np.array([r[which] for r in rc], dtype=float)
                    means[(mode, which)].append(
                        np.nanmean(vals) if np.isfinite(vals).any() else np.nan)
            rows.append(row)
        frac_row = ["within 90% of best"]
        for mode in ("stable", "reference"):
            frac_row.append("")
            for which in ("raw", "norm"):
                f, best = _robust_fraction(means[(mode, which)])
                frac_row.append(f"{f} (best {best})")
                summary_rows.append([title, mode, which, f, best])
        rows.append(frac_row)
        emit(f"### {title}\n")
        emit(markdown_table(["#", "α stable", "stable raw", "stable norm",
                             "α reference", "reference raw", "reference norm"], rows) + "\n")
        if notes.notes:
            emit(notes.render() + "\n")
    emit("### Summary: fraction of the α grid within 90% of the best mean ARI\n")
    emit(f"n/a: the grid's best mean ARI is below {ROBUST_MIN_BEST:g} (nothing found).\n")
    emit(markdown_table(["Panel", "mode", "codes", "fraction", "best mean ARI"],
                        summary_rows) + "\n")
    emit(_timing_line("c", recs, dt, len(tasks)))
    return recs


def _robust_fraction(means):
    m = np.asarray(means, dtype=float)
    finite = np.isfinite(m)
    if not finite.any():
        return "nan", "nan"
    best = np.nanmax(m)
    if best < ROBUST_MIN_BEST:
        return "n/a", f"{best:.3f}"
    k = int(np.sum(m[finite] >= 0.9 * best))
    return f"{k}/{m.size}", f"{best:.3f}"


def _timing_line(section, recs, dt, n_tasks):
    fit_s = sum(r["seconds"] for r in recs)
    per_row = {}
    for r in recs:
        if r["seconds"] > 0 and not r["row"].startswith("cPCA"):
            per_row.setdefault(r["row"], []).append(r["seconds"])
    slow = sorted(((np.mean(v), k) for k, v in per_row.items()), reverse=True)[:4]
    slow_txt = ", ".join(f"{k} {s:.1f}" for s, k in slow)
    return (f"_Section ({section}): {n_tasks} tasks in {dt:.1f} s wall "
            f"({fit_s:.0f} s of task time; mean s/fit: {slow_txt})._\n")


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: 1 seed, β in {QUICK_BETAS}, max_iter {QUICK_MAX_ITER}, "
                        "5-point α grid")
    p.add_argument("--seeds", type=int, default=5, help="fitting seeds for (a) and (b) (default 5)")
    p.add_argument("--datasets", default="sim,mice,mnist",
                   help="comma list from sim,mice,mnist (default all)")
    p.add_argument("--sections", default="a,b,c", help="comma list from a,b,c (default all)")
    p.add_argument("--alpha-frob", type=float, default=2.0,
                   help="the one relative α of bcNMF stable Frobenius (default 2.0)")
    p.add_argument("--alpha-kl", type=float, default=2.0,
                   help="the one relative α of bcNMF stable Poisson (default 2.0)")
    p.add_argument("--no-sim-poisson", action="store_true",
                   help="drop the Poisson rows of the simulation (they dominate the run time)")
    p.add_argument("--n-init", type=int, default=1,
                   help="restarts of bcNMF stable (medoid selection; default 1)")
    p.add_argument("--max-iter", type=int, default=None,
                   help="max_iter of bcNMF stable (default: the estimator's)")
    p.add_argument("--alpha-grid", type=int, default=9,
                   help="α grid size for (c), log-spaced over two decades (default 9, i.e. four "
                        "points per decade; 13 gives six)")
    p.add_argument("--alpha-seeds", type=int, default=3, help="seeds per α in (c) (default 3)")
    p.add_argument("--no-mnist-poisson", dest="mnist_poisson", action="store_false",
                   help="drop the Poisson rows for mnist in (b)")
    p.add_argument("--n-jobs", type=int, default=2, help="parallel fits (default 2)")
    p.add_argument("--k-mice", type=int, default=REAL_K["mice"],
                   help=f"K for mice_protein in (b) and (c) (default {REAL_K['mice']})")
    p.add_argument("--k-mnist", type=int, default=REAL_K["mnist"],
                   help=f"K for mnist_daisy_demo in (b) and (c) (default {REAL_K['mnist']}, the "
                        "paper's)")
    p.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    args = p.parse_args(argv)
    args.datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    bad = sorted(set(args.datasets) - {"sim", "mice", "mnist"})
    if bad:
        p.error(f"unknown dataset(s) {bad}; choose from sim, mice, mnist")
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = sorted(set(args.sections) - {"a", "b", "c"})
    if bad:
        p.error(f"unknown section(s) {bad}; choose from a, b, c")
    if args.quick:
        args.seeds = 1
    if min(args.k_mice, args.k_mnist) < 1:
        p.error("--k-mice and --k-mnist must be >= 1")
    REAL_K.update(mice=args.k_mice, mnist=args.k_mnist)
    if args.seeds < 1 or args.n_jobs < 1:
        p.error("--seeds and --n-jobs must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.n_jobs > 1:
        # Inherited by the loky workers (spawned after this point): one numba thread each.
        os.environ["NUMBA_NUM_THREADS"] = "1"
    chunks = []

    def emit(text):
        print(text, flush=True)
        chunks.append(text)

    import sklearn

    t_all = time.perf_counter()
    emit("# bcNMF quality benchmark\n")
    emit(f"bcnmf {_bcnmf_version()}, scikit-learn {sklearn.__version__}, numpy {np.__version__}, "
         f"Python {platform.python_version()}; n_jobs={args.n_jobs}; quick={args.quick}; "
         f"stable α: Frobenius {args.alpha_frob:g}, Poisson {args.alpha_kl:g} (relative), n_init={args.n_init}, max_iter={args.max_iter or 'default'}. "
         "ARI: KMeans(n_clusters=#labels, n_init=20, random_state=42), mean ± sd over seeds.\n")
    if "a" in args.sections and "sim" in args.datasets:
        section_beta(args, emit)
    real = [d for d in ("mice", "mnist") if d in args.datasets]
    if "b" in args.sections and real:
        section_real(args, emit, real)
    if "c" in args.sections:
        section_alpha(args, emit, args.datasets)
    emit(f"_Total: {time.perf_counter() - t_all:.1f} s._")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(chunks) + "\n", encoding="utf-8")
        print(f"\nwritten to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
