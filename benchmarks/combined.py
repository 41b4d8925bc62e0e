#!/usr/bin/env python
"""CombinedBCNMF, untied form: penalty sweep on the blended digits (and planted data).

1. ``mnist_daisy_demo`` (needs ../shared/data): K_s = K_t = 2 (the paper's K = 2 for both
   kinds of topic), the target-specific codes clustered by the protocol of docs/benchmarks.md
   (KMeans n_init 20, seed 42; raw and per-cell L1-normalised codes), mean +- sd over seeds,
   over a penalty sweep.  The digit labels are used only to score; the column "seed
   agreement" (mean ARI between the clusterings of every pair of seeds) uses no labels.
2. ``--planted``: the beta simulation (``make_contrastive_counts``) at beta 8, scaled down to 600
   genes, 300 target and 300 background cells (log-CP10k, squared error), K_s = 5 and
   K_t = 2, with the share of the target topics' mass on the target genes (slow).

Usage: python benchmarks/combined.py [--seeds 5] [--penalties 0.3 1 3 10] [--planted]
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _protocol as P  # noqa: E402

from bcnmf import CombinedBCNMF  # noqa: E402
from bcnmf.datasets import (load_shared_dataset, make_contrastive_counts,  # noqa: E402
                            normalize_log1p)
from bcnmf.metrics import cluster_agreement  # noqa: E402

PENALTIES = [0.3, 1.0, 3.0, 10.0]


def untied_codes(X, Y, ks, kt, penalty, seed, max_iter):
    m = CombinedBCNMF(ks + kt, n_target_components=kt, penalty=penalty, random_state=seed,
                      max_iter=max_iter)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        codes = m.fit_transform(X, background=Y)
    return m, codes[:, m.target_slice_], sorted({type(w.message).__name__ for w in caught})


def seed_agreement(partitions):
    """Label-free: mean ARI between the clusterings of every pair of seeds."""
    pairs = [(a, b) for i, a in enumerate(partitions) for b in partitions[i + 1:]]
    return float(np.mean([adjusted_rand_score(a, b) for a, b in pairs])) if pairs else np.nan


def sweep(X, Y, labels, ks, kt, penalties, seeds, max_iter, extra=None):
    print("| penalty | ARI raw | ARI norm | seed agreement raw / norm (no labels) | "
          + (f"{extra[0]} | " if extra else "") + "s | warnings |")
    print("|---|---|---|---|" + ("---|" if extra else "") + "---|---|")
    for pen in penalties:
        raw, norm, more, notes, parts_raw, parts_norm = [], [], [], set(), [], []
        t0 = time.perf_counter()
        for seed in seeds:
            m, c, w = untied_codes(X, Y, ks, kt, pen, seed, max_iter)
            r, n = cluster_agreement(c, labels), cluster_agreement(c, labels, normalize=True)
            raw.append(r.ari)
            norm.append(n.ari)
            parts_raw.append(r.clusters)
            parts_norm.append(n.clusters)
            notes.update(w)
            if extra:
                more.append(extra[1](m))
        cells = [P.summarise(raw), P.summarise(norm),
                 f"{seed_agreement(parts_raw):.3f} / {seed_agreement(parts_norm):.3f}"]
        cells += [P.summarise(more)] if extra else []
        print(f"| {pen:g} | " + " | ".join(cells)
              + f" | {time.perf_counter() - t0:.0f} | {', '.join(sorted(notes))} |", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--penalties", type=float, nargs="+", default=PENALTIES)
    p.add_argument("--max-iter", type=int, default=2000)
    p.add_argument("--planted", action="store_true")
    args = p.parse_args()
    seeds = range(args.seeds)
    d = load_shared_dataset("mnist_daisy_demo")
    print(f"\n### mnist_daisy_demo, K_s = 2, K_t = 2, target-specific codes, "
          f"{args.seeds} seeds\n")
    sweep(d.X.astype(float), d.Y.astype(float), d.labels, 2, 2, args.penalties, seeds,
          args.max_iter)
    if args.planted:
        sim = make_contrastive_counts(8.0, n_genes=600, n_target=300, n_background=300,
                                      random_state=0)
        X = np.asarray(normalize_log1p(sim.X, target_sum=1e4))
        Y = np.asarray(normalize_log1p(sim.Y, target_sum=1e4))
        lo, hi = 1250 * 600 // 3000, 1490 * 600 // 3000   # the target programs' genes
        print(f"\n### Planted (beta 8, 600 genes, 300 + 300 cells), K_s = 5, K_t = 2, "
              f"{args.seeds} seeds\n")
        sweep(X, Y, sim.labels, 5, 2, args.penalties, seeds, args.max_iter,
              ("T mass on target genes",
               lambda m: m.components_target_[:, lo:hi].sum() / m.components_target_.sum()))


if __name__ == "__main__":
    main()
