#!/usr/bin/env python
"""Paper reproduction: mouse cortex proteins (Ts65Dn vs control, 77 proteins), K = 5 and 15.

Paper (its results table): bcNMF 0.651 (K = 5, alpha 3, UMAP then KMeans) and 0.789 (K = 15,
alpha 1); the baselines measured with the same protocol (KMeans on the raw representation): PCA
0.013, NMF (K = 5) 0.19 +- 0.23, contrastive PCA 0.024 (a = 1) and 0.789 (a = 10, standardised).
Missing values are zeros, as the paper had them.  Needs ../shared/data/mice_protein.
Usage: python benchmarks/paper/mice_protein.py [--seeds 5]
"""

from _common import P, bcnmf, cpca, load, nmf, parser, pca, run, table

PAPER = {"PCA": "0.013", "NMF (scikit-learn)": "0.19 ± 0.23",
         "cPCA std a=10": "0.789",
         "bcNMF authors' algorithm K=5 (alpha 3, 100 it), UMAP": "0.651",
         "bcNMF authors' algorithm K=15 (alpha 1, 100 it)": "0.789 (UMAP)"}


def main():
    args = parser(__doc__).parse_args()
    X, Y, labels = load("mice_protein")
    seeds = range(args.seeds)
    std = (P.standardise_features(X), P.standardise_features(Y))
    rows = [
        run("PCA", pca(5)(X, Y), labels, [0]),
        run("cPCA std a=10", cpca(5, 10.0)(*std), labels, [0]),
        run("NMF (scikit-learn)", nmf(5)(X, Y), labels, seeds),
        run("bcNMF authors' algorithm K=5 (alpha 3, 100 it), UMAP",
            bcnmf(5, mode="reference", alpha=3.0, max_iter=100)(X, Y), labels, seeds,
            umap=True),
        run("bcNMF authors' algorithm K=15 (alpha 1, 100 it)",
            bcnmf(15, mode="reference", alpha=1.0, max_iter=100)(X, Y), labels, seeds),
        run("bcNMF stable K=5 (alpha 1, 5 restarts)",
            bcnmf(5, alpha=1.0, n_init=5, max_iter=3000)(X, Y), labels, seeds),
        run("bcNMF stable K=5 (alpha 1, 5 restarts), UMAP",
            bcnmf(5, alpha=1.0, n_init=5, max_iter=3000)(X, Y), labels, seeds, umap=True),
    ]
    table(rows, PAPER, f"mice_protein, {args.seeds} seeds")


if __name__ == "__main__":
    main()
