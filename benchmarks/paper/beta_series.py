#!/usr/bin/env python
"""Paper reproduction: the simulation beta series (``make_contrastive_counts``), K = 2.

Squared error on log-CP10k of the simulated counts, one fixed alpha for every beta (no
per-beta tuning).  Paper (its results table): bcNMF 1.000, 1.000, 0.999, 0.997, 0.998, 0.965 at
beta 0, 1, 2, 4, 8, 16.  Usage: python benchmarks/paper/beta_series.py [--seeds 5]
[--betas 0 1 2 4 8 16] [--alpha 2.0]

The last row is a *supervised ceiling*, not a method: logistic regression on the true target
genes, trained with the labels and scored by 10-fold cross-validated predictions.  An
unsupervised two-topic method is not expected to cluster the cells better than it.
"""

import numpy as np
from _common import bcnmf, cpca, nmf, parser, pca, run

from bcnmf.datasets import make_contrastive_counts, normalize_log1p

PAPER = {"PCA": [1.0, 0.0, 0.0, 0.0, 0.0, 0.0], "cPCA": [1.0, 0.999, 0.999, 0.997, 0.994, 0.943],
         "NMF": [1.0, 0.001, 0.002, 0.001, 0.001, 0.001],
         "bcNMF": [1.0, 1.0, 0.999, 0.997, 0.998, 0.965]}
BETAS = [0, 1, 2, 4, 8, 16]


def main():
    p = parser(__doc__)
    p.add_argument("--betas", type=float, nargs="+", default=BETAS)
    p.add_argument("--alpha", type=float, default=2.0,
                   help="bcNMF relative alpha, one value for every beta (default 2.0)")
    args = p.parse_args()
    seeds = range(args.seeds)
    methods = [("PCA", pca(2), [0]), ("cPCA", cpca(2, 2.0), [0]), ("NMF", nmf(2), seeds),
               ("bcNMF", bcnmf(2, alpha=args.alpha, max_iter=3000), seeds)]
    results = {name: [] for name, _, _ in methods}
    ceiling = []
    for beta in args.betas:
        sim = make_contrastive_counts(beta, random_state=0)
        X = np.asarray(normalize_log1p(sim.X, target_sum=1e4))
        Y = np.asarray(normalize_log1p(sim.Y, target_sum=1e4))
        for name, make, s in methods:
            results[name].append(run(name, make(X, Y), sim.labels, s))
        ceiling.append(supervised_ceiling(X[:, sim.target_genes], sim.labels))
    print(f"\n### Beta series, squared error on log-CP10k, K = 2, {args.seeds} seeds "
          "(paper / ours raw codes / ours normalised codes)\n")
    print("| method | " + " | ".join(f"beta {b:g}" for b in args.betas) + " |")
    print("|---|" + "---|" * len(args.betas))
    for name, rows in results.items():
        cells = []
        for beta, (_, raw, norm, _, _) in zip(args.betas, rows):
            paper = PAPER[name][BETAS.index(beta)] if beta in BETAS else float("nan")
            cells.append(f"{paper:.3f} / {np.mean(raw):.3f} / {np.mean(norm):.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    print("| supervised ceiling (labels used) | "
          + " | ".join(f"{c:.3f}" for c in ceiling) + " |")


def supervised_ceiling(X_genes, labels):
    """ARI of 10-fold cross-validated logistic regression on the true target genes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import adjusted_rand_score
    from sklearn.model_selection import cross_val_predict

    clf = LogisticRegression(C=0.1, max_iter=5000)
    return adjusted_rand_score(labels, cross_val_predict(clf, X_genes, labels, cv=10))


if __name__ == "__main__":
    main()
