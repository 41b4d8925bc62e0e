#!/usr/bin/env python
"""Paper reproduction: the beta series over several simulation draws, against the authors' code.

``beta_series.py`` fixes the simulation at ``random_state=0``; the paper's draws are unknown.
This script repeats the squared-error comparison over draws ``0 .. --draws - 1`` of the same
recipe (``make_contrastive_counts``; log-CP10k, K = 2), fitting ``--seeds`` seeds per draw with stable
bcNMF (one relative alpha for every beta, estimator defaults) and with the authors' algorithm
(reference mode, raw alpha 2, 300 iterations), and prints per draw and over all fits the ARI
of raw and per-cell normalised codes, next to the supervised ceiling of each draw (see
``beta_series.py``) and the paper's number.  Usage:
python benchmarks/paper/beta_draws.py [--betas 8 16] [--draws 5] [--seeds 2] [--alpha 2.0]
"""

import numpy as np
from _common import bcnmf, parser, run
from beta_series import BETAS, PAPER, supervised_ceiling

from bcnmf.datasets import make_contrastive_counts, normalize_log1p


def main():
    p = parser(__doc__)
    p.set_defaults(seeds=2)
    p.add_argument("--betas", type=float, nargs="+", default=[8.0, 16.0])
    p.add_argument("--draws", type=int, default=5, help="simulation draws 0..n-1 (default 5)")
    p.add_argument("--alpha", type=float, default=2.0,
                   help="stable bcNMF relative alpha, one value for every beta (default 2.0)")
    args = p.parse_args()
    methods = [("stable bcNMF", bcnmf(2, alpha=args.alpha)),
               ("authors' algorithm (reference mode)",
                bcnmf(2, alpha=2.0, alpha_scale="raw", mode="reference", max_iter=300))]
    print(f"\n### Beta series over {args.draws} simulation draws, squared error on log-CP10k, "
          f"K = 2, {args.seeds} fitting seeds per draw\n")
    print("| beta | method | codes | per draw | mean +- sd (all fits) | paper |")
    print("|---|---|---|---|---|---|")
    for beta in args.betas:
        fits = {name: ([], []) for name, _ in methods}
        ceiling = []
        for draw in range(args.draws):
            sim = make_contrastive_counts(beta, random_state=draw)
            X = np.asarray(normalize_log1p(sim.X, target_sum=1e4))
            Y = np.asarray(normalize_log1p(sim.Y, target_sum=1e4))
            for name, make in methods:
                _, raw, norm, _, _ = run(name, make(X, Y), sim.labels, range(args.seeds))
                fits[name][0].append(raw)
                fits[name][1].append(norm)
            ceiling.append(supervised_ceiling(X[:, sim.target_genes], sim.labels))
        paper = PAPER["bcNMF"][BETAS.index(beta)] if beta in BETAS else float("nan")
        for name, _ in methods:
            for codes, per_draw in zip(("raw", "normalised"), fits[name]):
                draws = " ".join(f"{np.mean(d):.3f}" for d in per_draw)
                every = np.concatenate(per_draw)
                print(f"| {beta:g} | {name} | {codes} | {draws} | {every.mean():.3f} +- "
                      f"{every.std(ddof=1) if every.size > 1 else 0.0:.3f} | {paper:.3f} |",
                      flush=True)
        print(f"| {beta:g} | supervised ceiling (labels used) | | "
              + " ".join(f"{c:.3f}" for c in ceiling) + f" | {np.mean(ceiling):.3f} | |",
              flush=True)


if __name__ == "__main__":
    main()
