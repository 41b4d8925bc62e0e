"""Run the benchmarks of ``docs/benchmarks.md`` and write its tables.

One command regenerates every table of the benchmark page::

    python benchmarks/run_all.py --n-jobs 2        # the page's run (about 35-45 min on 2 cores)
    python benchmarks/run_all.py --quick           # smoke run, a few minutes, page untouched
    python benchmarks/run_all.py --only mice       # one set (its table and its raw rows)
    python benchmarks/run_all.py --only speed      # the speed table alone

The tables go into ``docs/benchmarks.md`` between marker comments
(``<!-- run_all:NAME:begin -->`` ... ``<!-- run_all:NAME:end -->``); the prose around them is
hand-written and left alone.  The raw numbers (every fit, with its seed, settings, seconds and
warnings) go to ``--out`` (default ``benchmarks/results/run_all.json``).

Quality sets (arrays cells x features; the labels are used only to score):

- ``beta4``, ``beta8``, ``beta16``: ``make_contrastive_counts(beta, random_state=0)``, K = 2;
- ``cells1``, ``cells0.3``: ``make_cell_type_counts(strength, random_state=0)``, K = 5;
- ``mice``: ``load_mice_protein()`` (missing values zero-filled as shipped), K = 5;
- ``mnist``: ``load_shared_dataset("mnist_daisy_demo")``, K = 2 (skipped, with the reason
  printed, when ``../shared/data`` is absent).

The data, K and the preprocessing are those of ``benchmarks/alpha_robustness.py`` (its loader
is reused): squared error, PCA and contrastive PCA see ``normalize_log1p`` of the count sets,
Poisson (``kullback-leibler``) the raw counts; the mouse and digit data are used as shipped
with squared error only (they are not counts).

Per set, with ``S`` fitting seeds (0 .. S-1; default 3):

- PCA (``_protocol.pca_codes``) and scikit-learn ``NMF`` with the budget of one bcNMF fit
  (``max_iter=500``, one start) in its strongest standard setting (``init="nndsvda"``, solver
  ``cd`` for squared error and ``mu`` for Kullback-Leibler, default ``tol``): both
  deterministic, fitted once;
- ``BCNMF(n_components=K, beta_loss=loss, random_state=seed)``: the library's defaults
  (``alpha="auto"``, chosen without labels), per loss of the set;
- chosen with labels: contrastive PCA (``_protocol.contrastive_pca``) at the best ``a`` of
  (1, 2, 5, 10, 50) and ``BCNMF`` at the best fixed ``alpha`` of ``--grid`` (default 0.25,
  0.5, 1, 2, 5: five of the seven alphas ``alpha="auto"`` screens), best by mean ARI over the
  seeds, in whichever code representation scores higher.

ARI: ``bcnmf.metrics.cluster_ari`` (KMeans with n_clusters = #labels, n_init = 20,
random_state = 42) on the target codes, per-cell L1-normalised ("norm") and as fitted
("raw").  Seconds are wall seconds of one fit (``fit_transform``), one thread per process,
after an untimed warm-up of the compiled kernels in that process.

Speed: seconds per sweep of ``BCNMF`` (``alpha=1`` with a background, and ``alpha=0`` on the
target alone) and of scikit-learn's ``NMF(solver="mu")``, measured by ``benchmarks/speed.py``'s
child processes (its workload generator and slope protocol: fits at ``max_iter`` 2 and 42,
``tol=0``, slope over the 40 sweeps in between, median and range over repeats), one thread, on
a sparse workload (3,000 genes, 10,000 + 10,000 cells, 7 % non-zero, CSR) and a dense one
(the same generator, 2,000 + 2,000 cells, as a dense array).

Budget: the default run makes about 330 fits; on a quiet 2-core machine with ``--n-jobs 2``
it takes about 35-45 minutes (most of it in the Poisson fits of the simulations).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _protocol as P  # noqa: E402
import alpha_robustness as AR  # noqa: E402
import auto_alpha as AA  # noqa: E402

PAGE = ROOT / "docs" / "benchmarks.md"
OUT = HERE / "results" / "run_all.json"

#: quality sets: title, losses the set is meant for, K (from alpha_robustness)
SETS = {
    "beta4": ("Simulation, beta = 4", ("frobenius", "kullback-leibler")),
    "beta8": ("Simulation, beta = 8", ("frobenius", "kullback-leibler")),
    "beta16": ("Simulation, beta = 16", ("frobenius", "kullback-leibler")),
    "cells1": ("Cell types, response strength 1", ("frobenius", "kullback-leibler")),
    "cells0.3": ("Cell types, response strength 0.3", ("frobenius", "kullback-leibler")),
    "mice": ("Mouse proteins", ("frobenius",)),
    "mnist": ("Blended digits", ("frobenius",)),
}
LOSS_NAME = {"frobenius": "squared error", "kullback-leibler": "Poisson"}
#: fixed alphas of the label-chosen rows (a subset of the grid alpha="auto" screens)
GRID = (0.25, 0.5, 1.0, 2.0, 5.0)
QUICK_GRID = (0.5, 2.0)
CPCA_AS = (1.0, 2.0, 5.0, 10.0, 50.0)
NMF_MAX_ITER = 500  # BCNMF's default max_iter: the same budget
QUICK_MAX_ITER = 60
QUICK_CELLS = 300
#: mouse 3426's three target cells with 43 of 77 proteins missing (zero-filled)
MICE_SPARSE_ROW_MISSING = 40

SPEED = {  # format: (target cells, background cells)
    "csr": (10_000, 10_000),
    "dense": (2_000, 2_000),
}
SPEED_METHODS = ("bcnmf_full", "bcnmf_alpha0", "sklearn_mu")
#: max_iter pair of the slope: 40 sweeps for the library (four of them the Poisson sweeps that
#: also evaluate the objective and update the shared codes), 10 for scikit-learn (slower)
SPEED_ITERS = {"bcnmf_full": (2, 42), "bcnmf_alpha0": (2, 42), "sklearn_mu": (2, 12)}
SPEED_LABEL = {
    "bcnmf_full": "BCNMF(alpha=1), target + background",
    "bcnmf_alpha0": "BCNMF(alpha=0), target only",
    "sklearn_mu": "scikit-learn NMF(solver='mu'), target only",
}


# ------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------

_CACHE = {}


def load(name, loss, quick=False):
    """``(X, Y, labels, K, keep)`` of a set as ``loss`` sees it (cached per process).

    ``keep`` is a boolean mask of the target cells scored in the extra "without the near-empty
    cells" column (mice only; None elsewhere).  ``quick`` keeps the first ``QUICK_CELLS``
    target and background cells."""
    key = (name, loss, quick)
    if key not in _CACHE:
        _CACHE.clear()
        keep = None
        if name == "mice":
            from bcnmf.datasets import load_mice_protein

            d = load_mice_protein(return_masks=True)
            X, Y, labels, k = d.X, d.Y, d.labels, AR.K["mice"]
            keep = d.X_missing.sum(axis=1) < MICE_SPARSE_ROW_MISSING
        else:
            X, Y, labels, k = AR.load(name, loss)
        if quick:
            X, Y, labels = X[:QUICK_CELLS], Y[:QUICK_CELLS], labels[:QUICK_CELLS]
            keep = None if keep is None else keep[:QUICK_CELLS]
        _CACHE[key] = (X, Y, np.asarray(labels), k, keep)
    return _CACHE[key]


def available(name):
    """False, with the reason printed, when a set's files are absent."""
    if name != "mnist":
        return True
    try:
        AR.load(name, "frobenius")
    except (FileNotFoundError, OSError, ValueError) as exc:
        print(f"skipping {name}: its data are not available ({exc})", file=sys.stderr)
        return False
    return True


# ------------------------------------------------------------------------------------------
# Fits (each returns plain rows; a failure is recorded, never raised)
# ------------------------------------------------------------------------------------------


def _score(codes, labels, keep):
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # KMeans' own warnings are not the method's
        out["norm"] = float(P.cluster_ari(codes, labels, normalize=True))
        out["raw"] = float(P.cluster_ari(codes, labels, normalize=False))
        if keep is not None:
            out["norm_kept"] = float(P.cluster_ari(codes[keep], labels[keep], normalize=True))
            out["raw_kept"] = float(P.cluster_ari(codes[keep], labels[keep], normalize=False))
    return out


def _record(method, fit, labels, keep, **info):
    """Run ``fit()`` -> codes (or a list of (setting, codes)); rows with ARIs and seconds."""
    base = dict(method=method, norm=None, raw=None, seconds=None, warnings={}, error=None)
    base.update(info)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        try:
            result = fit()
        except Exception:  # noqa: BLE001 - a benchmark records the library's errors
            base["error"] = traceback.format_exc(limit=3)
            return [base]
        seconds = time.perf_counter() - t0
    counts = Counter(w.category.__name__ for w in caught)
    if not isinstance(result, list):
        result = [(info.get("setting"), result, {})]
    rows = []
    for setting, codes, extra in result:
        row = dict(base, setting=setting, seconds=seconds / len(result), warnings=dict(counts))
        row.update(extra)
        row.update(_score(codes, labels, keep))
        rows.append(row)
    return rows


def _nmf(X, k, loss, max_iter):
    from sklearn.decomposition import NMF

    solver = "cd" if loss == "frobenius" else "mu"
    model = NMF(n_components=k, init="nndsvda", solver=solver, beta_loss=loss,
                max_iter=max_iter, random_state=0)
    return model.fit_transform(np.asarray(X, dtype=np.float64))


def run_baselines(name, quick):
    """PCA, NMF per loss and contrastive PCA over its ``a`` values: deterministic, once."""
    rows = []
    losses = SETS[name][1]
    X, Y, labels, k, keep = load(name, "frobenius", quick)
    rows += _record("PCA", lambda: P.pca_codes(X, k), labels, keep, loss="frobenius")
    rows += _record(
        "cPCA",
        lambda: [(a, c, {}) for a, c in zip(CPCA_AS, P.contrastive_pca(X, Y, k, list(CPCA_AS)))],
        labels, keep, loss="frobenius")
    max_iter = QUICK_MAX_ITER if quick else NMF_MAX_ITER
    for loss in losses:
        X, Y, labels, k, keep = load(name, loss, quick)
        rows += _record("NMF", lambda X=X, k=k, loss=loss: _nmf(X, k, loss, max_iter), labels,
                        keep, loss=loss)
    for r in rows:
        r.update(set=name, seed=None, K=k)
    return rows


def _bcnmf(X, Y, k, loss, alpha, seed, quick):
    from bcnmf import BCNMF

    params = dict(beta_loss=loss, random_state=seed)
    if alpha != "auto":
        params["alpha"] = alpha
    if quick:
        params["max_iter"] = QUICK_MAX_ITER
    est = BCNMF(n_components=k, **params)
    codes = est.fit_transform(X, background=Y)
    return [(alpha, codes, dict(alpha_chosen=float(est.alpha_), n_iter=int(est.n_iter_)))]


def run_bcnmf(name, loss, seed, grid, quick):
    """The default fit and the fixed-alpha grid of one (set, loss, seed), back to back."""
    X, Y, labels, k, keep = load(name, loss, quick)
    if (name, loss, quick) not in AA._WARM:
        AA._warm_up(X, Y, k, loss)
        AA._WARM.add((name, loss, quick))
    rows = _record("bcNMF default", lambda: _bcnmf(X, Y, k, loss, "auto", seed, quick),
                   labels, keep, loss=loss, setting="auto")
    for a in grid:
        rows += _record("bcNMF fixed", lambda a=a: _bcnmf(X, Y, k, loss, a, seed, quick),
                        labels, keep, loss=loss, setting=a)
    for r in rows:
        r.update(set=name, seed=seed, K=k)
    return rows


def run_task(task):
    if task[0] == "baselines":
        return run_baselines(*task[1:])
    return run_bcnmf(*task[1:])


#: the order in which sets are run (an interrupted run keeps the sets it finished): the
#: cheap real data first, then the simulations, the most telling first
SET_ORDER = ("mice", "mnist", "cells1", "beta8", "cells0.3", "beta16", "beta4")


def _task_weight(task):
    """Rough seconds of a task, so that the long ones start first."""
    if task[0] == "baselines":
        return 5.0
    name, loss = task[1], task[2]
    base = {"mice": 1.0, "mnist": 2.0}.get(name, 10.0)
    return base * (2.0 if loss == "kullback-leibler" else 1.0)


# ------------------------------------------------------------------------------------------
# Speed (benchmarks/speed.py's child processes)
# ------------------------------------------------------------------------------------------


SPEED_TAG = "@@RUN_ALL_SPEED@@ "


def _speed_child(cfg):
    """One speed row, in a fresh process: ``benchmarks/speed.py``'s workload, estimators and
    warm-up, timed by wall clock and by this process's CPU time."""
    import speed as S
    from threadpoolctl import threadpool_limits

    method, loss, fmt = cfg["method"], cfg["loss"], cfg["format"]
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ss = np.random.SeedSequence(S.SEED + 1)  # compile / load the kernels on a tiny fit
        tx = S.make_counts(60, 40, 0.2, ss.spawn(1)[0])
        ty = S.make_counts(50, 40, 0.2, ss.spawn(1)[0])
        if fmt == "dense":
            tx, ty = tx.toarray(), ty.toarray()
        S._fit_once(method, loss, 2, tx, ty)
        ss_x, ss_y = np.random.SeedSequence(S.SEED).spawn(2)
        X = S.make_counts(cfg["n_target"], S.N_GENES, S.DENSITY, ss_x)
        Y = (S.make_counts(cfg["n_background"], S.N_GENES, S.DENSITY, ss_y)
             if method == "bcnmf_full" else None)
        if fmt == "dense":
            X = X.toarray()
            Y = None if Y is None else Y.toarray()
        S._fit_once(method, loss, 1, X, Y)  # untimed, on the real data
        load_start = os.getloadavg()[0]
        runs = []
        for _ in range(cfg["repeats"]):
            run = {}
            for key, max_iter in zip(("a", "b"), cfg["iters"]):
                est = S._make_estimator(method, loss, max_iter)
                w0, c0 = time.perf_counter(), time.process_time()
                if Y is None:
                    est.fit(X)
                else:
                    est.fit(X, background=Y)
                run[key] = dict(wall=time.perf_counter() - w0, cpu=time.process_time() - c0,
                                n_iter=int(getattr(est, "n_iter_", max_iter)))
            runs.append(run)
    return dict(ok=True, runs=runs, load_start=load_start, load_end=os.getloadavg()[0])


def _slopes(runs, clock):
    out = []
    for r in runs:
        dn = r["b"]["n_iter"] - r["a"]["n_iter"]
        if dn > 0:
            out.append((r["b"][clock] - r["a"][clock]) / dn)
    return out


def run_speed(quick):
    """Every speed row, each in a fresh process (``run_all.py --_speed-child``)."""
    import speed as S

    env = dict(os.environ)
    for var in S.THREAD_VARS:
        env[var] = "1"
    rows = []
    for fmt, (n_t, n_b) in SPEED.items():
        if quick:
            n_t, n_b = n_t // 10, n_b // 10
        for loss in S.LOSSES:
            for method in SPEED_METHODS:
                cfg = dict(format=fmt, loss=loss, method=method, repeats=1 if quick else 3,
                           iters=list(SPEED_ITERS[method]), n_target=n_t, n_background=n_b)
                t0 = time.perf_counter()
                res = {"ok": False}
                try:
                    proc = subprocess.run(
                        [sys.executable, str(Path(__file__).resolve()), "--_speed-child",
                         json.dumps(cfg)], env=env, capture_output=True, text=True,
                        timeout=1800)
                    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(SPEED_TAG)]
                    if lines:
                        res = json.loads(lines[-1][len(SPEED_TAG):])
                    else:
                        res["error"] = f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"
                except subprocess.TimeoutExpired:
                    res["error"] = "timed out after 1800 s"
                res.update(cfg, n_genes=S.N_GENES, density=S.DENSITY, K=S.K)
                if res.get("ok"):
                    for clock in ("wall", "cpu"):
                        res[f"{clock}_slopes"] = _slopes(res["runs"], clock)
                    res["ok"] = bool(res["cpu_slopes"])
                    if res["ok"]:
                        s_cpu = statistics.median(res["cpu_slopes"])
                        res["setup_cpu"] = statistics.median(
                            r["a"]["cpu"] - r["a"]["n_iter"] * s_cpu for r in res["runs"])
                msg = (f"{statistics.median(res['cpu_slopes']):.4g} CPU s/sweep"
                       if res.get("ok") else f"failed: {res.get('error', '')[:200]}")
                print(f"  speed {fmt:5s} {loss:16s} {method:12s} {msg} "
                      f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
                rows.append(res)
    return rows


# ------------------------------------------------------------------------------------------
# Metadata
# ------------------------------------------------------------------------------------------


def metadata(argv):
    import numba
    import scipy
    import sklearn

    import bcnmf
    import speed as S

    commit = P.git("rev-parse", "HEAD") or "unknown"
    dirty = bool(P.git("status", "--porcelain", "--untracked-files=no"))
    return dict(
        commit=commit, dirty=dirty,
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        command=" ".join(["python", "benchmarks/run_all.py"] + [shlex.quote(a) for a in argv]),
        cpu=S._cpu_model(), cores=os.cpu_count(), os=platform.platform(),
        python=platform.python_version(), numpy=np.__version__, scipy=scipy.__version__,
        sklearn=sklearn.__version__, numba=numba.__version__, bcnmf=bcnmf.__version__,
        load_average=os.getloadavg(),
    )


# ------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------


def _ms(values, digits=2):
    """``mean ± sd`` (sd with ddof 1) of the finite values; the value alone for one."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "–"
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def _secs(values):
    v = [x for x in values if x is not None]
    if not v:
        return "–"
    digits = 2 if max(v) < 10 else 1
    return _ms(v, digits)


def _table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


class _Notes:
    def __init__(self):
        self.items = []

    def mark(self, rows):
        """A footnote marker for the warnings and errors of ``rows`` ('' when none)."""
        counts = Counter()
        for r in rows:
            counts.update({k: 1 for k in r["warnings"]})
        errors = [r for r in rows if r["error"]]
        parts = [f"{name} in {n} of {len(rows)} fits" for name, n in sorted(counts.items())]
        if errors:
            last = errors[0]["error"].strip().splitlines()[-1]
            parts.append(f"{len(errors)} of {len(rows)} fits failed ({last})")
        if not parts:
            return ""
        text = "; ".join(parts)
        if text not in self.items:
            self.items.append(text)
        return f" [{self.items.index(text) + 1}]"

    def render(self):
        return "\n".join(f"[{i + 1}] {t}." for i, t in enumerate(self.items))


def _data_name(name, loss):
    if name in ("mice", "mnist"):
        return "as shipped"
    return "log1p" if loss == "frobenius" else "counts"


def quality_block(name, rows, n_seeds, grid):
    rows = [r for r in rows if r["set"] == name]
    if not rows:
        return None
    losses = SETS[name][1]
    kept = name == "mice"
    notes = _Notes()

    def cells(rs):
        c = [_ms(r["norm"] for r in rs) + notes.mark(rs), _ms(r["raw"] for r in rs)]
        if kept:
            c += [_ms(r["norm_kept"] for r in rs), _ms(r["raw_kept"] for r in rs)]
        return c

    head = ["method", "data", "ARI, norm codes", "ARI, raw codes"]
    if kept:
        head += ["norm, 267 cells", "raw, 267 cells"]
    pick = lambda **kw: [r for r in rows if all(r.get(k) == v for k, v in kw.items())]  # noqa: E731
    default_rows = [["PCA", _data_name(name, "frobenius")] + cells(pick(method="PCA"))
                    + [_secs(r["seconds"] for r in pick(method="PCA")), "1", ""]]
    for loss in losses:
        rs = pick(method="NMF", loss=loss)
        default_rows.append([f"NMF (scikit-learn, nndsvda), {LOSS_NAME[loss]}",
                             _data_name(name, loss)] + cells(rs)
                            + [_secs(r["seconds"] for r in rs), "1", ""])
    for loss in losses:
        rs = pick(method="bcNMF default", loss=loss)
        if not rs:
            continue
        chosen = ", ".join("err" if r.get("alpha_chosen") is None else f"{r['alpha_chosen']:g}"
                           for r in sorted(rs, key=lambda r: r["seed"]))
        default_rows.append([f"**bcNMF defaults**, {LOSS_NAME[loss]}", _data_name(name, loss)]
                            + cells(rs) + [_secs(r["seconds"] for r in rs), str(len(rs)),
                                           f"α_ = {chosen}"])
    head1 = head + ["seconds per fit", "fits", "note"]

    oracle_rows = []
    cp = pick(method="cPCA")
    best = _best(cp, CPCA_AS)
    if best is not None:
        rs = [r for r in cp if r["setting"] == best]
        oracle_rows.append(["cPCA", _data_name(name, "frobenius"), f"a = {best:g}"] + cells(rs)
                           + [_secs(r["seconds"] for r in rs), "1"])
    for loss in losses:
        fx = pick(method="bcNMF fixed", loss=loss)
        best = _best(fx, grid)
        if best is None:
            continue
        rs = [r for r in fx if r["setting"] == best]
        oracle_rows.append([f"bcNMF, {LOSS_NAME[loss]}", _data_name(name, loss),
                            f"α = {best:g}"] + cells(rs)
                           + [_secs(r["seconds"] for r in rs), str(len(rs))])
    head2 = head[:2] + ["setting"] + head[2:] + ["seconds per fit", "fits"]

    # ARI at every fixed alpha (the band the default has to land in) and the default's cost
    band = []
    for loss in losses:
        fx = pick(method="bcNMF fixed", loss=loss)
        auto = pick(method="bcNMF default", loss=loss)
        if not fx:
            continue
        ratio = []
        for r in auto:
            same = [f["seconds"] for f in fx if f["seed"] == r["seed"] and f["seconds"]]
            if r["seconds"] and same:
                ratio.append(r["seconds"] / statistics.median(same))
        band.append([LOSS_NAME[loss]]
                    + [_ms([r[_rep(fx)] for r in fx if r["setting"] == a]) for a in grid]
                    + [_ms([r[_rep(fx)] for r in auto]),
                       _ms(ratio, 1) if ratio else "–"])
    head3 = (["loss"] + [f"α = {a:g}" for a in grid]
             + ["default (auto)", "default s / fixed-α s"])

    seeds_txt = f"{n_seeds} fitting seed{'s' if n_seeds > 1 else ''} (0-{n_seeds - 1})"
    parts = [
        f"Without labels ({seeds_txt} for bcNMF; PCA and NMF are deterministic, one fit):\n",
        _table(head1, default_rows) + "\n",
        "Chosen with labels (the setting with the highest mean ARI, in either code "
        "representation; an upper bound, not something a user without labels can reach):\n",
        _table(head2, oracle_rows) + "\n",
        "bcNMF mean ARI at each fixed α, in the code representation the label-chosen row "
        "used, and the default's seconds over the median fixed-α fit of the same seed:\n",
        _table(head3, band) + "\n",
    ]
    if notes.items:
        parts.append(notes.render() + "\n")
    return "\n".join(parts)


def _rep(rows):
    """The code representation ('norm' or 'raw') with the higher best mean ARI."""
    def best(which):
        by = {}
        for r in rows:
            if r[which] is not None:
                by.setdefault(r["setting"], []).append(r[which])
        return max((np.mean(v) for v in by.values()), default=-np.inf)
    return "norm" if best("norm") >= best("raw") else "raw"


def _best(rows, settings):
    """The setting with the highest mean ARI over seeds, in either representation."""
    best, best_v = None, -np.inf
    for s in settings:
        for which in ("norm", "raw"):
            v = [r[which] for r in rows if r["setting"] == s and r[which] is not None]
            if v and np.mean(v) > best_v:
                best, best_v = s, float(np.mean(v))
    return best


def speed_block(rows):
    def cell(v):
        if len(v) > 1:
            return f"{statistics.median(v):.4f} [{min(v):.4f}, {max(v):.4f}]"
        return f"{v[0]:.4f}" if v else "–"

    out = []
    for r in rows:
        fmt = "CSR" if r["format"] == "csr" else "dense"
        size = (f"{r['n_target']:,} + {r['n_background']:,}"
                if r["method"] == "bcnmf_full" else f"{r['n_target']:,}")
        a, b = r["iters"]
        if r.get("ok"):
            cells = [cell(r["cpu_slopes"]), cell(r["wall_slopes"]), f"{r['setup_cpu']:.2f}",
                     f"{r['load_start']:.1f}-{r['load_end']:.1f}"]
        else:
            cells = [f"failed: {str(r.get('error', ''))[:80]}", "–", "–", "–"]
        out.append([fmt, LOSS_NAME[r["loss"]], SPEED_LABEL[r["method"]], size, b - a] + cells)
    n_rep = max((len(r.get("runs", [])) for r in rows), default=0)
    head = ["format", "loss", "method", "cells", "sweeps timed",
            f"CPU s per sweep, median [min, max] of {n_rep}", "wall s per sweep",
            "set-up CPU s", "load average"]
    return _table(head, out) + "\n"


def meta_block(meta, args, wall, sets, skipped):
    dirty = " (with uncommitted changes)" if meta["dirty"] else ""
    lines = [
        "The last run that wrote tables into this page (each table's stamp names the command, "
        "commit and time that wrote it):\n",
        f"- Command: `{meta['command']}`",
        f"- Commit: `{meta['commit']}`{dirty}; bcnmf {meta['bcnmf']}",
        f"- Date: {meta['date']}; wall time {wall / 60:.1f} min with {args.n_jobs} "
        f"process{'es' if args.n_jobs > 1 else ''} of one thread; load average at the start "
        f"{meta['load_average'][0]:.2f}",
        f"- Machine: {meta['cpu']}, {meta['cores']} cores; {meta['os']}",
        f"- Python {meta['python']}, numpy {meta['numpy']}, scipy {meta['scipy']}, "
        f"scikit-learn {meta['sklearn']}, numba {meta['numba']}",
        f"- Sets: {', '.join(sets) or 'none'}"
        + (f"; skipped: {', '.join(skipped)}" if skipped else "")
        + ("; speed" if "speed" in (args.only or ["speed"]) else ""),
    ]
    return "\n".join(lines) + "\n"


def write_page(page, blocks):
    """Replace the text between each block's markers; every marker must exist."""
    text = page.read_text(encoding="utf-8")
    missing = []
    for name, body in blocks.items():
        begin, end = f"<!-- run_all:{name}:begin -->", f"<!-- run_all:{name}:end -->"
        i, j = text.find(begin), text.find(end)
        if i < 0 or j < i:
            missing.append(name)
            continue
        text = text[:i + len(begin)] + "\n" + body.rstrip("\n") + "\n" + text[j:]
    if missing:
        raise SystemExit(f"{page}: no markers for {', '.join(missing)}; expected "
                         "'<!-- run_all:NAME:begin -->' ... '<!-- run_all:NAME:end -->'")
    page.write_text(text, encoding="utf-8")


def _stamp(meta):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"_Measured by `{meta['command']}` at commit {meta['commit'][:10]}"
            f"{' (with uncommitted changes)' if meta['dirty'] else ''}, started "
            f"{meta['date']}, written {now} (1-minute load average then "
            f"{os.getloadavg()[0]:.1f} on {meta['cores']} cores)._\n")


# ------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_speed-child"]:
        res = _speed_child(json.loads(argv[1]))
        print(SPEED_TAG + json.dumps(res), flush=True)
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    choices = list(SETS) + ["speed"]
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: 1 seed, {QUICK_CELLS} cells per dataset, max_iter "
                        f"{QUICK_MAX_ITER}, alphas {QUICK_GRID}, speed at a tenth of its "
                        "size; the page is not written unless --write-page is given")
    p.add_argument("--n-jobs", type=int, default=2, help="processes of one thread (default 2)")
    p.add_argument("--only", action="append", choices=choices, metavar="SET",
                   help=f"run only this set (repeatable): {', '.join(choices)}")
    p.add_argument("--seeds", type=int, default=3, help="fitting seeds 0 .. S-1 (default 3)")
    p.add_argument("--grid", default=",".join(f"{a:g}" for a in GRID),
                   help="fixed alphas of the label-chosen bcNMF rows (comma list)")
    p.add_argument("--out", type=Path, default=OUT, help=f"raw rows as JSON (default {OUT})")
    p.add_argument("--page", type=Path, default=PAGE, help="the page whose tables are written")
    p.add_argument("--write-page", action=argparse.BooleanOptionalAction, default=None,
                   help="write the tables into the page (default: yes, except with --quick)")
    args = p.parse_args(argv)
    if args.n_jobs < 1 or args.seeds < 1:
        p.error("--n-jobs and --seeds must be at least 1")
    try:
        grid = tuple(float(a) for a in args.grid.split(",") if a.strip())
    except ValueError:
        p.error(f"--grid must be a comma list of numbers, got {args.grid!r}")
    if not grid or min(grid) <= 0:
        p.error("--grid needs at least one alpha, all positive")
    if args.quick:
        args.seeds, grid = 1, QUICK_GRID
    write = (not args.quick) if args.write_page is None else args.write_page
    wanted = args.only or choices
    sets = [s for s in SETS if s in wanted]
    skipped = [s for s in sets if not available(s)]
    sets = [s for s in sets if s not in skipped]
    seeds = list(range(args.seeds))

    from joblib import Parallel, delayed

    meta = metadata(argv)
    print(f"run_all: sets {sets or 'none'}; seeds {seeds}; grid {grid}; {args.n_jobs} jobs; "
          f"speed {'yes' if 'speed' in wanted else 'no'}", file=sys.stderr, flush=True)
    t_all = time.perf_counter()
    tasks = [("baselines", s, args.quick) for s in sets]
    tasks += [("bcnmf", s, loss, seed, grid, args.quick)
              for s in sets for loss in SETS[s][1] for seed in seeds]
    # sets in SET_ORDER, the long tasks of a set first: each set's table is written as soon
    # as its last task is done, so an interrupted run leaves every finished set on the page
    tasks.sort(key=lambda t: (SET_ORDER.index(t[1]), -_task_weight(t)))
    remaining = Counter(t[1] for t in tasks)
    import run_all as mod  # workers import this module and keep their data caches

    state = dict(args=args, meta=meta, seeds=seeds, grid=grid, write=write, rows=[])
    t0 = time.perf_counter()
    results = Parallel(n_jobs=args.n_jobs, batch_size=1, return_as="generator_unordered")(
        delayed(mod.run_task)(t) for t in tasks)
    for task_rows in results:
        state["rows"] += task_rows
        name = task_rows[0]["set"]
        remaining[name] -= 1
        print(f"  {name}: task done ({remaining[name]} left; "
              f"{time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
        if remaining[name] == 0:
            _publish(state, sets=[name])
    rows = state["rows"]
    speed_rows = []
    if "speed" in wanted:
        # after the quality fits: no other fit of this run competes for the cores
        speed_rows = run_speed(args.quick)
        _publish(state, speed_rows=speed_rows)
    wall = time.perf_counter() - t_all
    _publish(state, meta_body=meta_block(meta, args, wall, sets, skipped),
             doc_meta=dict(meta, wall_seconds=wall, skipped=skipped))
    n_err = sum(r["error"] is not None for r in rows) + sum(not r.get("ok") for r in speed_rows)
    print(f"_{len(rows)} quality rows, total {wall:.0f} s; {n_err} failures._",
          file=sys.stderr)
    return 1 if n_err else 0


def _publish(state, sets=(), speed_rows=None, meta_body=None, doc_meta=None):
    """Print the blocks, merge the raw rows into the JSON, and write the page if asked."""
    args, meta = state["args"], state["meta"]
    blocks = {}
    for s in sets:
        body = quality_block(s, state["rows"], len(state["seeds"]), state["grid"])
        if body is not None:
            blocks[f"quality:{s}"] = body + "\n" + _stamp(meta)
    if speed_rows:
        blocks["speed"] = speed_block(speed_rows) + "\n" + _stamp(meta)
    if meta_body is not None:
        blocks["meta"] = meta_body
    for name, body in blocks.items():
        print(f"\n<!-- {name} -->\n{body}", flush=True)

    # raw numbers: the sets and the speed of this run replace those of an earlier run
    doc = {}
    if args.out.exists():
        try:
            doc = json.loads(args.out.read_text())
        except ValueError:
            doc = {}
    doc.setdefault("runs", {})
    for s in sets:
        doc["runs"][s] = dict(meta=meta, seeds=state["seeds"], grid=list(state["grid"]),
                              quick=args.quick,
                              rows=[r for r in state["rows"] if r["set"] == s])
    if speed_rows:
        doc["runs"]["speed"] = dict(meta=meta, quick=args.quick, rows=speed_rows)
    if doc_meta is not None:
        doc["meta"] = doc_meta
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(P.json_safe(doc), indent=1) + "\n")
    if state["write"] and blocks:
        write_page(args.page, blocks)
        print(f"{', '.join(blocks)} written into {args.page}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    # run as the module ``run_all``, so that joblib's workers import the task functions (and
    # keep their per-process data caches) instead of receiving copies of ``__main__``
    import run_all

    sys.exit(run_all.main())
