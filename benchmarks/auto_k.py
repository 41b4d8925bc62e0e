"""``n_components="auto"``: the K it chooses, the ARI of that fit, and its cost.

``BCNMF(n_components="auto")`` screens K = 2, 3, 5 and 8 (``bcnmf.core.alpha_path.K_GRID``)
the way ``alpha="auto"`` screens alphas, keeps the K whose best held-out contrast is
highest (a larger K must beat a smaller one beyond noise), then fits at the chosen K and
alpha.  This script measures that choice on the sets of ``benchmarks/alpha_robustness.py``
(loaders, set names and the K the other benchmarks use, imported from it), per loss and
fitting seed, in one process and back to back:

1. ``BCNMF(K, alpha=1.5)``: the fixed fit the cost is measured against (seconds);
2. ``BCNMF(K)`` (alpha chosen, K as the other benchmarks use it): ARI;
3. ``BCNMF("auto")``: the chosen K (``n_components_``), ``alpha_``, ARI and seconds.

ARI as in ``benchmarks/auto_alpha.py`` (KMeans on the L1-normalised target codes with as
many clusters as labels; labels never used in fitting).  The K the other benchmarks use is
not a planted truth for every set: the beta series plant two target subgroups (K = 2), the
cell-type sets plant one response on top of five cell types, and for the mouse data and the
digits it is the documented benchmark setting.

Table: per set and loss, the chosen K of every seed, the mean ARI of the automatic K and of
the benchmarks' K (both with alpha chosen), and the cost of the automatic K as a multiple of
the fixed fit (median [min, max] over seeds).  Threads pinned to one per process.

Usage::

    python benchmarks/auto_k.py --sets mice,mnist,beta8,cells1 --losses frobenius --seeds 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import auto_alpha as AA  # noqa: E402


def run_task(name, loss, seed):
    """The three fits of one (set, loss, seed), back to back in this process."""
    X, Y, labels, k = AA._ar().load(name, loss)
    if (name, loss) not in AA._WARM:
        AA._warm_up(X, Y, k, loss)
        AA._WARM.add((name, loss))
    fixed = AA._fit(X, Y, labels, k, loss, AA.REFERENCE_ALPHA, seed)
    at_k = AA._fit(X, Y, labels, k, loss, "auto", seed)
    auto = AA._fit(X, Y, labels, "auto", loss, "auto", seed)
    path = auto.get("alpha_path") or {}
    chosen = [kk for kk, c in zip(path.get("n_components", []), path.get("chosen", [])) if c]
    return dict(set=name, loss=loss, seed=seed, K=k, fixed_seconds=fixed["seconds"],
                ari_at_k=at_k["ari"], ari_auto=auto["ari"], seconds_auto=auto["seconds"],
                k_auto=chosen[0] if chosen else None, alpha_auto=auto["alpha_chosen"],
                errors=[r["error"] for r in (fixed, at_k, auto) if r["error"]])


def report(rows, sets, losses):
    out = []
    for name in sets:
        for loss in losses:
            rs = [r for r in rows if (r["set"], r["loss"]) == (name, loss) and not r["errors"]]
            if not rs:
                continue
            cost = [r["seconds_auto"] / r["fixed_seconds"] for r in rs]
            out.append([name, loss, rs[0]["K"],
                        ", ".join(str(r["k_auto"]) for r in rs),
                        ", ".join(f"{r['alpha_auto']:g}" for r in rs),
                        AA._f(np.mean([r["ari_auto"] for r in rs])),
                        AA._f(np.mean([r["ari_at_k"] for r in rs])),
                        f"{np.median(cost):.1f} [{min(cost):.1f}, {max(cost):.1f}]"])
    print(AA.table(["set", "loss", "benchmarks' K", "chosen K per seed", "alpha_ per seed",
                    "ARI, K auto", "ARI, benchmarks' K", "cost (x fixed fit)"], out))
    print()


def main(argv=None):
    ar = AA._ar()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default="mice,mnist,beta8,cells1",
                   help="comma list from " + ",".join(ar.SETS))
    p.add_argument("--seeds", type=int, default=2, help="fitting seeds 0 .. S-1")
    p.add_argument("--losses", default="frobenius", help="comma list of losses")
    p.add_argument("--n-jobs", type=int, default=1, help="processes of one thread")
    args = p.parse_args(argv)
    sets = [s for s in args.sets.split(",") if s]
    losses = [s for s in args.losses.split(",") if s]
    bad = sorted(set(sets) - set(ar.SETS)) + sorted(set(losses) - set(ar.LOSSES))
    if bad:
        p.error(f"unknown sets or losses {bad}")
    sets = [s for s in sets if ar.available(s)]
    AA.header("n_components='auto': the chosen K, its ARI and its cost")
    from joblib import Parallel, delayed

    t0 = time.perf_counter()
    tasks = [(name, loss, seed) for name in sets for loss in losses
             for seed in range(args.seeds)]
    rows = Parallel(n_jobs=args.n_jobs)(delayed(run_task)(*t) for t in tasks)
    report(rows, sets, losses)
    errors = [e for r in rows for e in r["errors"]]
    for e in errors:
        print(f"```\n{e}\n```")
    print(f"_{3 * len(rows)} fits in {time.perf_counter() - t0:.0f} s wall._")
    return 1 if errors else 0


if __name__ == "__main__":
    import auto_k

    sys.exit(auto_k.main())
