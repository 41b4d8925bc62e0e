#!/usr/bin/env python
"""Online vs full-batch bcNMF: passes over the data to reach the full-batch objective,
and the clustering quality (ARI) of both at the same settings (``--ari``).

Usage
-----
    python benchmarks/online.py --ari                 # ARI table, 6 seeds, a few minutes
    python benchmarks/online.py --ari --seeds 2 --datasets mice,mnist
    python benchmarks/online.py --ari --seeds 6 --batches 4 --datasets mice --init random
    python benchmarks/online.py                       # 20,000 + 20,000 cells
    python benchmarks/online.py --cells 5000 --passes 1,2,4,8,16
    python benchmarks/online.py --cells 100000 --format csr --score-cells 20000 \
        --passes 1,2,3,5,8,13 --cache /tmp/bcnmf-online-100k.npz

Data: the beta-series simulation (``make_contrastive_counts``, beta = 2,
3,000 genes, ``--cells`` target and background cells), log-CP10k, squared
error, K = 7 (5 shared + 2 target programs), relative alpha 1.5.

Both methods start from the same factors.  After ``n`` passes over the data
(sweeps of the full batch; epochs of minibatch steps), for each ``n`` in
``--passes``, the basis is frozen and scored by the same yardstick: codes
of all cells solved with the basis fixed (``transform``, 100 code updates),
then the full-data objective
D(X | C_X B) - alpha_raw D(Y | C_Y B).  The table reports, per method, the
passes needed to come within 1% (of the objective's magnitude) of the
full batch's objective after the largest ``n``, and the time per pass.

Large runs: ``--format csr`` fits the sparse log-CP10k matrices (about 20%
nonzero; the CSR kernels are several times faster than dense ones),
``--score-cells n`` scores on a fixed random subset of ``n`` target and ``n``
background cells (the same subset for both methods and the goal), and
``--cache`` keeps the normalised data in an ``.npz`` between runs.

ARI (``--ari``): ``MiniBatchBCNMF`` and ``BCNMF`` with the same settings (relative
alpha 1.5, ``MiniBatchBCNMF``'s default; stable mode, tol 1e-4; the same
K and seed), seeds 0 .. ``--seeds`` - 1, scored by
:func:`bcnmf.metrics.cluster_ari` (KMeans with as many clusters as labels,
``n_init`` 20, seed 42, on the target codes) against the true labels.  Data:

- ``sim``: the beta-series simulation at beta 8 (``make_contrastive_counts``),
  reduced to 1,500 genes (1,000 + 1,000 cells), K = 2; squared error on
  log-CP10k (dense) and Poisson on the raw counts (sparse);
- ``mice``: the bundled mouse protein data (``load_mice_protein``), K = 5,
  squared error, as shipped;
- ``mnist``: the blended digits ``mnist_daisy_demo`` (``load_shared_dataset``;
  skipped with a message when the shared data are absent), K = 2, squared
  error and Poisson, as shipped.

Every set is smaller than the default batch (1,024 cells), so the default fit
takes one batch per epoch; ``--batches n`` adds rows with ``n`` batches per
epoch (``batch_size = ceil(cells / n)``).  One BLAS / numba thread.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

# one thread for BLAS and numba, set before numpy and numba load
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from bcnmf import BCNMF, MiniBatchBCNMF  # noqa: E402
from bcnmf.datasets import (load_mice_protein, load_shared_dataset,  # noqa: E402
                            make_contrastive_counts, normalize_log1p)
from bcnmf.metrics import cluster_ari  # noqa: E402

#: code updates of the yardstick (codes of all cells with the basis frozen)
CODE_ITER = 100


def _objective(model, X, Y):
    model.set_params(transform_max_iter=CODE_ITER)
    cx = model.transform(X)
    cy = model.transform(Y, as_background=True)
    return _sqerr(X, cx, model.components_) - model.alpha_raw_ * _sqerr(Y, cy, model.components_)


def _sqerr(A, C, B):
    """||A - C B||_F^2 without forming C B for sparse ``A``."""
    if not sp.issparse(A):
        return float(np.sum((A - C @ B) ** 2))
    cross = float(np.sum(np.asarray(A @ B.T) * C))
    return float(A.data @ A.data) - 2.0 * cross + float(np.sum((C.T @ C) * (B @ B.T)))


def _data(cells, fmt, cache):
    if cache and Path(cache).exists():
        z = np.load(cache)
        mats = [sp.csr_matrix((z[f"{n}_data"], z[f"{n}_indices"], z[f"{n}_indptr"]),
                              shape=tuple(z["shape"])) for n in ("x", "y")]
    else:
        sim = make_contrastive_counts(2.0, n_target=cells, n_background=cells,
                                      random_state=0)
        mats = [normalize_log1p(sp.csr_matrix(sim.X), copy=False),
                normalize_log1p(sp.csr_matrix(sim.Y), copy=False)]
        del sim
        if cache:
            np.savez(cache, shape=np.array(mats[0].shape),
                     **{f"{n}_{p}": getattr(m, p) for n, m in zip("xy", mats)
                        for p in ("data", "indices", "indptr")})
    if fmt == "dense":
        mats = [np.asarray(m.toarray(), dtype=np.float64) for m in mats]
    return mats


def _curve(make, X, Y, passes, score):
    """Objective after ``n`` passes for each ``n`` in ``passes``, refitting from
    the same start (the estimators are deterministic for a fixed seed)."""
    values, seconds = [], []
    for n in passes:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = make(n).fit(X, background=Y)
        seconds.append((time.perf_counter() - t) / n)
        values.append(_objective(model, *score))
    return np.array(values), float(np.median(seconds))


#: the simulation of the ARI table: beta, genes, target (= background) cells
SIM_BETA, SIM_GENES, SIM_CELLS = 8.0, 1500, 1000
#: a seed reaches the full batch when its online ARI is at least this share of it
ARI_SHARE = 0.9


def _ari_sets(names):
    """``(name, loss, K, X, Y, labels)`` of the ARI table; absent sets are reported."""
    sets = []
    if "sim" in names:
        sim = make_contrastive_counts(SIM_BETA, n_genes=SIM_GENES, n_target=SIM_CELLS,
                                      n_background=SIM_CELLS, random_state=0, sparse=True)
        X, Y = sp.csr_matrix(sim.X, dtype=np.float64), sp.csr_matrix(sim.Y, dtype=np.float64)
        sets.append(("sim", "frobenius", 2, normalize_log1p(X).toarray(),
                     normalize_log1p(Y).toarray(), sim.labels))
        sets.append(("sim", "poisson", 2, X, Y, sim.labels))
    if "mice" in names:
        d = load_mice_protein()
        sets.append(("mice", "frobenius", 5, np.asarray(d.X, dtype=np.float64),
                     np.asarray(d.Y, dtype=np.float64), d.labels))
    if "mnist" in names:
        try:
            d = load_shared_dataset("mnist_daisy_demo")
        except FileNotFoundError as exc:
            print(f"mnist_daisy_demo skipped: {exc}\n")
        else:
            X, Y = np.asarray(d.X, dtype=np.float64), np.asarray(d.Y, dtype=np.float64)
            for loss in ("frobenius", "poisson"):
                sets.append(("mnist", loss, 2, X, Y, d.labels))
    return sets


def _ari_rows(sets, seeds, batches, init=None):
    """One row per set, batches per epoch and seed (both estimators start from ``init``,
    None: their default); prints each row as it comes."""
    rows = []
    for name, loss, k, X, Y, labels in sets:
        n = X.shape[0]
        sizes = [("default", MiniBatchBCNMF().batch_size)] + [
            (str(b), -(-n // b)) for b in batches]
        full = []
        for seed in range(seeds):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # MiniBatchBCNMF fits at relative alpha 1.5; BCNMF's default chooses alpha
                model = BCNMF(k, alpha=1.5, beta_loss=loss, random_state=seed, init=init)
                full.append((cluster_ari(model.fit_transform(X, background=Y), labels),
                             model.n_iter_))
        for label, size in sizes:
            for seed in range(seeds):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = MiniBatchBCNMF(k, beta_loss=loss, batch_size=size,
                                           random_state=seed, init=init)
                    ari = cluster_ari(model.fit_transform(X, background=Y), labels)
                a_full, it_full = full[seed]
                ratio = ari / a_full if a_full > 0 else float("nan")
                row = (name, loss, f"{size} ({-(-n // size)})", seed, a_full, ari, ratio,
                       it_full, model.n_iter_)
                rows.append(row)
                print("| {} | {} | {} | {} | {:.3f} | {:.3f} | {:.2f} | {} | {} |".format(*row),
                      flush=True)
    return rows


def ari_table(args) -> int:
    names = [v.strip() for v in args.datasets.split(",")]
    batches = [int(v) for v in args.batches.split(",")] if args.batches else []
    sets = _ari_sets(names)
    print(f"# ARI of MiniBatchBCNMF vs BCNMF at the same settings (defaults: relative alpha "
          f"1.5, stable mode, tol 1e-4, max_iter 500; same K and seed), seeds 0-{args.seeds - 1}"
          f"; KMeans (n_init 20, seed 42) on the target codes; one BLAS/numba thread; "
          f"simulation reduced to beta {SIM_BETA:g}, {SIM_CELLS} + {SIM_CELLS} cells, "
          f"{SIM_GENES} genes; start {args.init or 'default'}; load1 "
          f"{os.getloadavg()[0]:.1f}\n")
    print("| data set | loss | batch (per epoch) | seed | ARI full batch | ARI online | ratio "
          "| sweeps full | epochs online |")
    print("|---|---|---|---|---|---|---|---|---|")
    t = time.perf_counter()
    with threadpool_limits(limits=1):
        rows = _ari_rows(sets, args.seeds, batches, args.init)
    print(f"\nSummary (seeds whose online ARI is at least {ARI_SHARE:.0%} of the full "
          f"batch's; {time.perf_counter() - t:.0f} s in all):\n")
    print("| data set | loss | batch (per epoch) | seeds >= 90% | mean ARI full "
          "| mean ARI online |")
    print("|---|---|---|---|---|---|")
    groups = {}
    for row in rows:
        groups.setdefault(row[:3], []).append(row)
    for (name, loss, batch), group in groups.items():
        ok = sum(r[5] >= ARI_SHARE * r[4] for r in group)
        print(f"| {name} | {loss} | {batch} | {ok} / {len(group)} | "
              f"{np.mean([r[4] for r in group]):.3f} | {np.mean([r[5] for r in group]):.3f} |")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ari", action="store_true",
                   help="print the ARI table instead of the objective curves")
    p.add_argument("--seeds", type=int, default=6, help="ARI: seeds 0 .. n-1")
    p.add_argument("--datasets", default="sim,mice,mnist", help="ARI: data sets")
    p.add_argument("--init", choices=("contrastive", "random"), default=None,
                   help="ARI: start of both estimators (default: theirs)")
    p.add_argument("--batches", default="",
                   help="ARI: also these numbers of batches per epoch (e.g. 4)")
    p.add_argument("--cells", type=int, default=20_000)
    p.add_argument("--passes", default="1,2,3,5,8,13,20,30",
                   help="numbers of passes at which both methods are scored")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--forget", type=float, default=0.7)
    p.add_argument("--k", type=int, default=7)
    p.add_argument("--format", choices=("dense", "csr"), default="dense")
    p.add_argument("--score-cells", type=int, default=0,
                   help="score on this many target and background cells (0: all)")
    p.add_argument("--cache", default=None, help=".npz of the normalised data")
    args = p.parse_args(argv)
    if args.ari:
        return ari_table(args)
    X, Y = _data(args.cells, args.format, args.cache)
    score = (X, Y)
    if 0 < args.score_cells < args.cells:
        rng = np.random.default_rng(0)
        ix = np.sort(rng.choice(X.shape[0], args.score_cells, replace=False))
        iy = np.sort(rng.choice(Y.shape[0], args.score_cells, replace=False))
        score = (X[ix], Y[iy])
    passes = [int(v) for v in args.passes.split(",")]
    common = dict(alpha=1.5, tol=0, random_state=0)
    load = [os.getloadavg()[0]]
    full, t_full = _curve(lambda n: BCNMF(args.k, max_iter=n, **common), X, Y, passes, score)
    load.append(os.getloadavg()[0])
    online, t_online = _curve(
        lambda n: MiniBatchBCNMF(args.k, max_iter=n, batch_size=args.batch_size,
                                 forget_factor=args.forget, max_no_improvement=None,
                                 **common), X, Y, passes, score)
    load.append(os.getloadavg()[0])
    goal = full[-1]
    within = lambda v: np.flatnonzero(np.abs(v - goal) <= 0.01 * abs(goal))  # noqa: E731
    first = lambda v: passes[within(v)[0]] if within(v).size else None  # noqa: E731
    print(f"# Online vs full batch: beta-series simulation (beta 2), {args.cells} + "
          f"{args.cells} cells, 3000 genes, K = {args.k}, squared error on log-CP10k "
          f"({args.format}), relative alpha 1.5; minibatch {args.batch_size} cells, forget "
          f"{args.forget}; {-(-args.cells // args.batch_size)} steps per epoch; "
          f"load1 {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (start / after full / end)\n")
    print("| pass | full-batch objective | online objective |")
    print("|---|---|---|")
    for i, a, b in zip(passes, full, online):
        print(f"| {i} | {a:.6g} | {b:.6g} |")
    scored = (f"{score[0].shape[0]} + {score[1].shape[0]} random cells"
              if score[0] is not X else "all cells")
    print(f"\nGoal: full batch after {passes[-1]} passes = {goal:.6g} (within 1%); codes of "
          f"{scored} scored with {CODE_ITER} code updates.\n")
    print("| method | passes to reach the goal | s/pass |")
    print("|---|---|---|")
    print(f"| full batch | {first(full)} | {t_full:.2f} |")
    print(f"| MiniBatchBCNMF | {first(online) or f'> {passes[-1]}'} | {t_online:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
