"""Is the Poisson contrast bounded?  Reference (the authors' objective) vs stable mode.

On the raw-count simulation (``make_contrastive_counts``, beta = 8, K = 2, alpha = 2), fits both
modes for an increasing number of sweeps and prints, per row: the final objective, the
background divergence per background count, the smallest basis entry relative to its row
maximum, and the ARI of the target codes (the protocol of docs/benchmarks.md).  The authors'
objective runs to minus infinity (basis entries of background genes collapse toward zero, so
the background divergence per count grows without bound); the stable mode's smoothed
contrast is bounded below by ``-alpha_raw * D(Y | mu_Y)``, which the script also prints.

Usage::

    python benchmarks/poisson_bound.py [--iters 50,100,300,1000] [--beta 8] [--alpha 2]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _protocol as P  # noqa: E402

from bcnmf import BCNMF  # noqa: E402
from bcnmf.datasets import make_contrastive_counts  # noqa: E402


def _kl(a, b):
    a = np.asarray(a, dtype=np.float64)
    nz = a > 0
    return float(np.sum(a[nz] * np.log(a[nz] / b[nz])) - a.sum() + b.sum())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", default="50,100,300,1000")
    p.add_argument("--beta", type=float, default=8.0)
    p.add_argument("--alpha", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    sim = make_contrastive_counts(args.beta, random_state=0)
    X, Y = sp.csr_matrix(sim.X), sp.csr_matrix(sim.Y)
    total_y = float(Y.sum())
    print(f"# Poisson contrast: reference vs stable (beta={args.beta:g}, alpha={args.alpha:g},"
          f" K=2, seed {args.seed})\n")
    print("| mode | sweeps | objective | D_Y per count | min basis / row max | ARI raw | s |")
    print("|---|---|---|---|---|---|---|")
    bound = None
    for mode in ("reference", "stable"):
        for n in (int(v) for v in args.iters.split(",")):
            kw = dict(mode=mode, beta_loss="poisson", alpha=args.alpha, max_iter=n,
                      random_state=args.seed)
            if mode == "reference":
                kw.update(alpha_scale="raw", damping=0.5)
            else:
                kw.update(tol=0)
            t = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                m = BCNMF(2, **kw)
                codes = m.fit_transform(X, background=Y)
            dt = time.perf_counter() - t
            B = m.components_
            rel_min = float((B.min(axis=1) / B.max(axis=1)).min())
            flag = " (DivergenceWarning)" if any("running away" in str(w.message)
                                                 for w in caught) else ""
            print(f"| {mode} | {n} | {m.objective_:.4g} | "
                  f"{m.history_['background'][-1] / total_y:.3g}{flag} | {rel_min:.2g} | "
                  f"{P.cluster_ari(codes, sim.labels):.3f} | {dt:.0f} |", flush=True)
            if mode == "stable" and bound is None:
                mu_y = m.smoothing * np.asarray(sim.Y.mean(axis=0)).ravel()
                bound = -m.alpha_raw_ * _kl(sim.Y, np.broadcast_to(mu_y, sim.Y.shape))
    print(f"\nStable-mode lower bound -alpha_raw * D(Y | mu_Y) = {bound:.4g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
