"""``alpha="auto"`` against the fixed-alpha grid: quality and cost, for both losses.

``BCNMF``'s default ``alpha="auto"`` chooses the relative contrast weight without labels
before the fit, then fits at the chosen alpha.  This script checks that choice against the
fixed alphas a user could have picked, on the sets of ``benchmarks/alpha_robustness.py``
(its loaders, set names and default K are imported from it, not copied):

- ``beta4``, ``beta8``, ``beta16``: ``make_contrastive_counts(beta, random_state=0)``, K = 2;
- ``mice``: ``mice_protein`` as shipped, K = 5; ``mnist``: ``mnist_daisy_demo``, K = 2
  (both under ``../shared/data``, skipped when absent);
- ``cells1``, ``cells0.3``: ``make_cell_type_counts(strength, random_state=0)``, K = 5.

Squared error (``frobenius``) runs on ``normalize_log1p`` of the count sets, Poisson
(``kullback-leibler``) on the raw counts; mice and mnist as shipped for both.  ``--init``
sets the start of every fit (``contrastive`` or ``random``; default: the estimator's).

Per set, loss and fitting seed (0 .. S-1), one task in one process, back to back:

1. the fixed-alpha grid: ``BCNMF(K, alpha=a, beta_loss=loss, random_state=seed)`` for
   a in (0.25, 0.5, 1, 1.5, 2, 3, 5): ARI and seconds of each;
2. the automatic fit ``BCNMF(K, beta_loss=loss, random_state=seed)``: ARI, seconds,
   ``alpha_``, whether an ``AlphaSelectionWarning`` was raised, and the whole
   ``alpha_path_`` (saved in the JSON).

ARI: ``bcnmf.metrics.cluster_ari(codes, labels, normalize=True)``, i.e. KMeans
(n_clusters = #labels, n_init = 20, random_state = 42) on the per-cell L1-normalised target
codes, the "norm" representation of alpha_robustness.  alpha_robustness picks, per set and
loss, "norm" or "raw" codes for its summary, whichever finds more; here "norm" is used
everywhere, so that one measure judges every fit.  Labels are never used in fitting.

Only public attributes are read (``alpha_``, ``alpha_path_``, ``n_iter_``, the warning
class), so the script holds whatever rule ``alpha="auto"`` applies inside.

Acceptance checked:

- quality: in every seed, for both losses, the automatic fit's ARI is at least 90% of the
  mean ARI (over seeds) of the best fixed-alpha grid point (Table 1, "auto >= 0.9 best":
  S/S on every row);
- cost: an automatic fit costs at most 4x a fixed-alpha fit (Table 2: auto seconds over
  the seconds of the fixed fit at alpha = 1.5 of the same task, per seed; the 100,000-cell
  ``--scale`` run gives the cost on a large workload, where the choice, made on at most a
  few thousand cells, weighs less).

Tables printed (markdown): 1, auto versus the fixed-alpha grid; 2, cost; 3, mean ARI at
every grid alpha (the band of good alphas).  Threads are pinned to 1 per process; tasks run
in ``--n-jobs`` processes (joblib), and each timing ratio compares two fits made back to
back in the same process.  Raw rows (every fit, with the auto fits' ``alpha_path_``) go to
``--out`` (default ``benchmarks/results/auto_alpha.json``; ``benchmarks/results/`` is
git-ignored, like the other benchmarks' outputs).

``--scale``: cost on a 100,000-cell sparse workload (``--scale-cells`` target cells and half
as many background cells, 2,000 genes, CSR): the cell-type model of
``make_cell_type_counts`` (strength 1): its type profiles and response genes come from
``make_cell_type_counts(1.0, n_genes=2000, random_state=0)`` (drawn before any cell, so the
same at every size), and the cells are drawn by the same model (Dirichlet(3) type
proportions, response gains U(0.3, 1.5), log-normal library sizes around 3000, Gamma(5)
noise, Poisson counts) in chunks of 10,000 cells turned into CSR one at a time, because
``make_cell_type_counts`` draws its matrices dense (about 9 GB at 150,000 x 2,000); this
keeps the workload at about 1.3 GB of CSR (about 36% non-zero).
For each loss (squared error on ``normalize_log1p`` of the counts, Poisson on the counts),
K = 5, seed 0, default ``max_iter``: one fit at alpha = 1.5 and one ``alpha="auto"`` fit,
timed back to back after an untimed warm-up on 300 cells; their ratio, the chosen alpha,
the ARI of the stimulated cells and the process's peak memory are printed, and the rows go
to ``--out`` (default ``benchmarks/results/auto_alpha_scale.json``).  At 100,000 cells one
process peaks at about 4 GiB (measured: 2.3 GiB after building the workload, 3.9 GiB after
short fits of both losses, the normalised copy included); ``--n-jobs 2`` runs the two losses
at once, each process with its own copy of the workload (about 8 GiB together), so
``--n-jobs 1`` is the safe choice.  At that size a fit spends several minutes before its
first sweep counts (the shared topics and the final codes are fitted whatever ``max_iter``
says), so expect the fixed and automatic fits alike to take 15-25 minutes each.

Usage (times measured on a shared 2-core machine, one thread per job, unless marked as
estimates)::

    python benchmarks/auto_alpha.py                       # 6 seeds, every set: ~2-3 h (est.)
    python benchmarks/auto_alpha.py --quick               # 1 seed, beta8 and cells1: ~8.5 min
    python benchmarks/auto_alpha.py --sets cells1,cells0.3 --seeds 3 --losses frobenius
    python benchmarks/auto_alpha.py --no-grid             # cost only: fixed alpha=1.5 and auto
    python benchmarks/auto_alpha.py --scale --n-jobs 1    # 100,000 cells: ~1.5 h (est.)
    python benchmarks/auto_alpha.py --scale --scale-cells 5000 --n-jobs 1   # check: ~5.5 min
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
import traceback
import warnings
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

#: the benchmarks folder (alpha_robustness is imported from it, also in the workers)
HERE = str(Path(__file__).resolve().parent)
ROOT = str(Path(HERE).parent)
#: the fixed relative alphas compared with the automatic choice
GRID = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0)
#: the fixed alpha every automatic fit's cost is compared with
REFERENCE_ALPHA = 1.5
#: the automatic ARI must reach this fraction of the best grid point's mean ARI
WITHIN = 0.9
#: the automatic fit may cost at most this many fixed-alpha fits
MAX_COST = 4.0
SCALE_GENES = 2000
SCALE_K = 5
SCALE_CHUNK = 10_000


def _ar():
    """The ``alpha_robustness`` module (importable in joblib's worker processes too)."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import alpha_robustness

    return alpha_robustness


def _fit(X, Y, labels, k, loss, alpha, seed, init=None):
    """One timed fit: a row with the ARI ("norm" codes), seconds, ``alpha_``, warnings and,
    for ``alpha="auto"``, ``alpha_path_``; a library error is recorded, not raised."""
    from bcnmf import BCNMF
    from bcnmf.exceptions import AlphaSelectionWarning, ConvergenceWarning
    from bcnmf.metrics import cluster_ari

    row = dict(kind="auto" if alpha == "auto" else "fixed", alpha=alpha, ari=None,
               seconds=None, n_iter=None, alpha_chosen=None, warned=False, warnings=[],
               alpha_path=None, error=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            t0 = time.perf_counter()
            est = BCNMF(k, alpha=alpha, beta_loss=loss, init=init, random_state=seed)
            codes = est.fit_transform(X, background=Y)
            row["seconds"] = time.perf_counter() - t0
        except Exception:  # noqa: BLE001 - a benchmark records the library's errors
            row["error"] = traceback.format_exc()
            return row
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            continue
        if issubclass(w.category, AlphaSelectionWarning):
            row["warned"] = True
        row["warnings"].append(f"{w.category.__name__}: {w.message}")
    row["n_iter"] = int(getattr(est, "n_iter_", -1))
    row["alpha_chosen"] = float(est.alpha_) if getattr(est, "alpha_", None) is not None \
        else None
    path = getattr(est, "alpha_path_", None)
    if path is not None:
        row["alpha_path"] = {key: np.asarray(v).tolist() for key, v in path.items()}
    if labels is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row["ari"] = float(cluster_ari(codes, labels, normalize=True))
    return row


def _warm_up(X, Y, k, loss, init=None):
    """An untimed short fit on a few cells, so that no timed fit pays one-off costs
    (imports, compiled kernels loaded from their cache)."""
    from bcnmf import BCNMF

    n = min(300, X.shape[0], Y.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for alpha in (REFERENCE_ALPHA, "auto"):
            try:
                BCNMF(k, alpha=alpha, beta_loss=loss, init=init, random_state=0,
                      max_iter=20).fit(
                    X[:n], background=Y[:n])
            except Exception:  # noqa: BLE001 - the timed fit reports errors
                pass


_WARM = set()


def run_task(name, loss, seed, grid, init=None):
    """Every fit of one (set, loss, seed), in this process, back to back, from the start
    ``init`` (None: the estimator's default)."""
    X, Y, labels, k = _ar().load(name, loss)
    if (name, loss) not in _WARM:
        _warm_up(X, Y, k, loss, init)
        _WARM.add((name, loss))
    alphas = GRID if grid else (REFERENCE_ALPHA,)
    rows = [_fit(X, Y, labels, k, loss, a, seed, init) for a in alphas]
    rows.append(_fit(X, Y, labels, k, loss, "auto", seed, init))
    for r in rows:
        r.update(set=name, loss=loss, seed=seed, K=k)
    return rows


# ------------------------------------------------------------------------------------------
# The 100,000-cell workload
# ------------------------------------------------------------------------------------------

def scale_workload(n_target, n_background, n_genes=SCALE_GENES, seed=0, chunk=SCALE_CHUNK):
    """``(X, Y, labels)``: CSR counts of ``make_cell_type_counts``' model (strength 1) drawn
    in chunks of ``chunk`` cells, so that no dense cells x genes array is larger than one
    chunk.  The type profiles and response genes are ``make_cell_type_counts``' own for
    ``random_state=seed``; proportions, gains and cells come from a generator seeded with
    ``[seed, 1]``."""
    import scipy.sparse as sp

    from bcnmf.datasets import make_cell_type_counts

    ref = make_cell_type_counts(1.0, n_genes=n_genes, n_target=2, n_background=1,
                                random_state=seed)
    profiles, response_genes = ref.type_profiles, ref.response_genes
    n_types = profiles.shape[0]
    rng = np.random.default_rng([seed, 1])
    proportions = rng.dirichlet(np.full(n_types, 3.0))
    gain = rng.uniform(0.3, 1.5, size=n_types)
    n_stim = n_target // 2
    labels = rng.permutation(np.repeat(np.array([0, 1], dtype=np.int64),
                                       [n_target - n_stim, n_stim]))

    def cells(stimulated):
        n = stimulated.size
        types = rng.choice(n_types, size=n, p=proportions)
        rate = profiles[types]
        rate *= rng.lognormal(np.log(3000.0), 0.5, size=n)[:, None]
        stim = np.flatnonzero(stimulated == 1)
        if stim.size:
            response = 1.0 + 10.0 * gain[types[stim]] * rng.uniform(0.5, 1.5, size=stim.size)
            rate[np.ix_(stim, response_genes)] *= response[:, None]
        rate *= rng.gamma(5.0, 1.0 / 5.0, size=rate.shape)
        return sp.csr_matrix(rng.poisson(rate).astype(np.float64))

    def stack(stimulated):
        blocks = [cells(stimulated[i:i + chunk]) for i in range(0, stimulated.size, chunk)]
        out = sp.vstack(blocks, format="csr")
        del blocks
        return out

    Y = stack(np.zeros(n_background, dtype=np.int64))
    X = stack(labels)
    return X, Y, labels


_SCALE = {}


def run_scale(loss, n_cells, seed=0):
    """A fixed-alpha fit and an automatic fit of the scale workload, back to back."""
    import resource

    from bcnmf.datasets import normalize_log1p

    key = (n_cells, seed)
    if key not in _SCALE:
        _SCALE.clear()
        t0 = time.perf_counter()
        _SCALE[key] = scale_workload(n_cells, n_cells // 2, seed=seed) + (
            time.perf_counter() - t0,)
    X, Y, labels, build_s = _SCALE[key]
    if loss == "frobenius":
        X, Y = normalize_log1p(X), normalize_log1p(Y)
    _warm_up(X, Y, SCALE_K, loss)
    rows = [_fit(X, Y, labels, SCALE_K, loss, REFERENCE_ALPHA, seed),
            _fit(X, Y, labels, SCALE_K, loss, "auto", seed)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    for r in rows:
        r.update(set=f"scale{n_cells}", loss=loss, seed=seed, K=SCALE_K,
                 shape_target=list(X.shape), shape_background=list(Y.shape),
                 nnz=int(X.nnz + Y.nnz), build_seconds=build_s, peak_rss_gib=peak)
    return rows


# ------------------------------------------------------------------------------------------
# Reporting
# ------------------------------------------------------------------------------------------

def header(title):
    import bcnmf

    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    from _protocol import commit_stamp

    commit = commit_stamp()
    command = " ".join([Path(sys.executable).name] + [shlex.quote(a) for a in sys.argv])
    meta = dict(commit=commit, platform=platform.platform(), python=platform.python_version(),
                numpy=np.__version__, bcnmf=bcnmf.__version__, cpus=os.cpu_count(),
                command=command)
    print(f"# {title}\n")
    print(f"commit {commit}; {meta['platform']}; Python {meta['python']}; numpy "
          f"{meta['numpy']}; bcnmf {meta['bcnmf']}; {meta['cpus']} CPUs; command "
          f"`{command}`\n")
    return meta


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _f(v, digits=2):
    return "–" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def save(path, meta, args, rows, wall):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = dict(meta=meta, args=vars(args), grid=list(GRID), reference_alpha=REFERENCE_ALPHA,
               ari="cluster_ari(codes, labels, normalize=True)", wall_seconds=wall, rows=rows)
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    from _protocol import json_safe

    path.write_text(json.dumps(json_safe(doc), indent=1))
    print(f"_raw rows: {path}_\n")


def report(rows, sets, losses, seeds, grid):
    def pick(name, loss, kind, alpha=None):
        return [r for r in rows if (r["set"], r["loss"], r["kind"]) == (name, loss, kind)
                and (alpha is None or r["alpha"] == alpha) and r["error"] is None]

    def mean(rs):
        v = [r["ari"] for r in rs if r["ari"] is not None]
        return float(np.mean(v)) if v else float("nan")

    n_seeds = len(seeds)
    t1, t2, t3 = [], [], []
    for name in sets:
        for loss in losses:
            auto = {r["seed"]: r for r in pick(name, loss, "auto")}
            if not auto and not pick(name, loss, "fixed"):
                continue
            k = next(iter(auto.values()))["K"] if auto else "?"
            means = {a: mean(pick(name, loss, "fixed", a)) for a in (GRID if grid else ())}
            finite = {a: m for a, m in means.items() if np.isfinite(m)}
            best_a = max(finite, key=finite.get) if finite else None
            best = finite[best_a] if finite else float("nan")
            ari = [auto[s]["ari"] for s in seeds if s in auto and auto[s]["ari"] is not None]
            ok = sum(a >= WITHIN * best for a in ari) if np.isfinite(best) else None
            chosen = ",".join(f"{auto[s]['alpha_chosen']:g}" if s in auto else "err"
                              for s in seeds)
            n_warn = sum(r["warned"] for r in auto.values())
            t1.append([name, loss, k, "–" if best_a is None else f"{best_a:g}", _f(best),
                       _f(float(np.mean(ari)) if ari else None),
                       _f(float(np.min(ari)) if ari else None),
                       "–" if ok is None else f"{ok}/{n_seeds}", chosen, n_warn])

            fixed = {r["seed"]: r for r in pick(name, loss, "fixed", REFERENCE_ALPHA)}
            both = [s for s in seeds if s in fixed and s in auto]
            ratio = [auto[s]["seconds"] / fixed[s]["seconds"] for s in both]
            # the choice alone: auto minus the fixed fit at the chosen alpha (the same fit)
            at_chosen = {(r["seed"], r["alpha"]): r for r in pick(name, loss, "fixed")}
            choice = [auto[s]["seconds"] - at_chosen[s, auto[s]["alpha_chosen"]]["seconds"]
                      for s in auto if (s, auto[s]["alpha_chosen"]) in at_chosen]
            t2.append([name, loss,
                       _f(np.median([fixed[s]["seconds"] for s in fixed]) if fixed else None),
                       _f(np.median([auto[s]["seconds"] for s in auto]) if auto else None),
                       f"{np.median(ratio):.2f} [{np.min(ratio):.2f}, {np.max(ratio):.2f}]"
                       if ratio else "–",
                       _f(np.median(choice) if choice else None)])
            if grid:
                t3.append([name, loss] + [_f(means[a]) for a in GRID]
                          + [_f(mean(list(auto.values())))])

    print(f"## 1. auto vs the fixed-alpha grid (mean ARI over {n_seeds} seeds, norm codes)\n")
    print(f"best α: the grid alpha with the highest mean ARI; auto ≥ {WITHIN:g} best: seeds "
          f"whose automatic ARI is at least {WITHIN:g} x that mean (the acceptance: "
          f"{n_seeds}/{n_seeds} on every row); α_: the chosen alpha per seed; warnings: "
          "AlphaSelectionWarning raised.\n")
    print(table(["set", "loss", "K", "best α", "best ARI", "auto ARI", "auto min",
                 f"auto ≥ {WITHIN:g} best", "α_ per seed", "warnings"], t1) + "\n")
    print(f"## 2. cost (seconds per fit, median over seeds; fixed at α={REFERENCE_ALPHA:g})\n")
    print(f"ratio: auto / fixed of the same task (fitted back to back in one process), "
          f"median [min, max] over seeds; the acceptance: ≤ {MAX_COST:g}.  choice: auto "
          "minus the fixed fit at the chosen alpha (the same final fit), median over the "
          "seeds whose α_ lies on the grid.\n")
    print(table(["set", "loss", "fixed s", "auto s", "ratio auto/fixed", "choice s"], t2)
          + "\n")
    if grid:
        print("## 3. mean ARI at every grid alpha (norm codes)\n")
        print(table(["set", "loss"] + [f"α={a:g}" for a in GRID] + ["auto"], t3) + "\n")


def report_scale(rows, losses):
    out = []
    for loss in losses:
        rs = {r["kind"]: r for r in rows if r["loss"] == loss}
        fixed, auto = rs.get("fixed"), rs.get("auto")
        if fixed is None or auto is None:
            continue
        ok = fixed["error"] is None and auto["error"] is None
        out.append([loss, "×".join(map(str, fixed["shape_target"])) + " + "
                    + "×".join(map(str, fixed["shape_background"])),
                    _f(fixed["seconds"], 1), fixed["n_iter"], _f(auto["seconds"], 1),
                    auto["n_iter"],
                    _f(auto["seconds"] / fixed["seconds"]) if ok else "–",
                    "–" if auto["alpha_chosen"] is None else f"{auto['alpha_chosen']:g}",
                    int(auto["warned"]), _f(fixed["ari"]), _f(auto["ari"]),
                    _f(fixed["peak_rss_gib"], 1)])
    print(f"## cost at scale (K = {SCALE_K}, seed 0, default max_iter, fixed α = "
          f"{REFERENCE_ALPHA:g})\n")
    print(f"ratio: auto / fixed, fitted back to back in one process (the acceptance: "
          f"≤ {MAX_COST:g}).  ARI: norm codes against the stimulated cells.  peak: the "
          "process's peak resident memory (GiB), workload included.\n")
    print(table(["loss", "target + background", "fixed s", "fixed iters", "auto s",
                 "auto iters", "ratio", "α_", "warning", "fixed ARI", "auto ARI",
                 "peak GiB"], out) + "\n")


def report_errors(rows):
    bad = [r for r in rows if r["error"] is not None]
    others = sorted({w for r in rows for w in r["warnings"]
                     if not w.startswith("AlphaSelectionWarning")})
    warned = sorted({w for r in rows for w in r["warnings"]
                     if w.startswith("AlphaSelectionWarning")})
    if warned:
        print("AlphaSelectionWarning messages:\n")
        print("\n".join(f"- {w}" for w in warned) + "\n")
    if others:
        print("Other warnings (ConvergenceWarning ignored):\n")
        print("\n".join(f"- {w}" for w in others) + "\n")
    for r in bad:
        print(f"ERROR in {r['set']} {r['loss']} seed {r['seed']} alpha {r['alpha']}:\n"
              f"{r['error']}", file=sys.stderr)
    return len(bad)


def main(argv=None):
    ar = _ar()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default=",".join(ar.SETS), help="comma list from "
                   + ",".join(ar.SETS))
    p.add_argument("--seeds", type=int, default=6, help="fitting seeds 0 .. S-1 (default 6)")
    p.add_argument("--losses", default=",".join(ar.LOSSES), help="comma list of losses")
    p.add_argument("--n-jobs", type=int, default=2, help="processes of one thread")
    p.add_argument("--quick", action="store_true", help="1 seed, beta8 and cells1")
    p.add_argument("--init", default=None, choices=("contrastive", "random"),
                   help="start of every fit (default: the estimator's, per loss)")
    p.add_argument("--no-grid", action="store_true",
                   help="cost only: the fixed fit at alpha=1.5 and the automatic fit")
    p.add_argument("--out", default=None, help="JSON of the raw rows (default "
                   "benchmarks/results/auto_alpha.json, or auto_alpha_scale.json with --scale)")
    p.add_argument("--scale", action="store_true",
                   help="cost on the large sparse workload instead of the sets")
    p.add_argument("--scale-cells", type=int, default=100_000,
                   help="target cells of --scale (background: half as many)")
    args = p.parse_args(argv)
    losses = [loss for loss in args.losses.split(",") if loss]
    bad = sorted(set(losses) - set(ar.LOSSES))
    if bad:
        p.error(f"unknown losses {bad}; choose from {', '.join(ar.LOSSES)}")

    from joblib import Parallel, delayed

    if args.scale:
        if args.scale_cells < 4:
            p.error("--scale-cells must be at least 4")
        meta = header(f"alpha='auto' at scale: {args.scale_cells:,} target cells")
        t0 = time.perf_counter()
        jobs = max(1, min(args.n_jobs, len(losses)))
        out = Parallel(n_jobs=jobs)(delayed(run_scale)(loss, args.scale_cells)
                                    for loss in losses)
        wall = time.perf_counter() - t0
        rows = [r for rs in out for r in rs]
        report_scale(rows, losses)
        n_bad = report_errors(rows)
        print(f"_workload built in {_f(rows[0]['build_seconds'], 1)} s; {rows[0]['nnz']:,} "
              f"non-zeros; {len(rows)} fits in {wall:.0f} s wall._\n")
        save(args.out or os.path.join(HERE, "results", "auto_alpha_scale.json"), meta, args,
             rows, wall)
        return 1 if n_bad else 0

    sets = ["beta8", "cells1"] if args.quick else [s for s in args.sets.split(",") if s]
    bad = sorted(set(sets) - set(ar.SETS))
    if bad:
        p.error(f"unknown sets {bad}; choose from {', '.join(ar.SETS)}")
    seeds = list(range(1 if args.quick else args.seeds))
    sets = [s for s in sets if ar.available(s)]
    meta = header("alpha='auto' against the fixed-alpha grid")
    print(f"sets {', '.join(sets)}; losses {', '.join(losses)}; seeds {seeds}; "
          f"{args.n_jobs} jobs of one thread; init {args.init or 'default'}; grid α = "
          f"{', '.join(f'{a:g}' for a in GRID)}"
          f"{' (skipped: --no-grid)' if args.no_grid else ''}.\n")
    tasks = [(name, loss, seed) for name in sets for loss in losses for seed in seeds]
    t0 = time.perf_counter()
    out = Parallel(n_jobs=args.n_jobs)(delayed(run_task)(*t, not args.no_grid, args.init)
                                       for t in tasks)
    wall = time.perf_counter() - t0
    rows = [r for rs in out for r in rs]
    report(rows, sets, losses, seeds, not args.no_grid)
    n_bad = report_errors(rows)
    print(f"_{len(rows)} fits in {wall:.0f} s wall._\n")
    save(args.out or os.path.join(HERE, "results", "auto_alpha.json"), meta, args, rows, wall)
    return 1 if n_bad else 0


if __name__ == "__main__":
    # run as the module ``auto_alpha``, so that joblib's workers import the task functions
    # (and keep their per-process caches) instead of receiving copies of ``__main__``
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import auto_alpha

    sys.exit(auto_alpha.main())
