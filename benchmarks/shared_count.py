#!/usr/bin/env python
"""How well ``bcnmf.core.shared_count.shared_count`` counts the programs of a background.

Prints a markdown table: per setting, the count of every draw (seed), the fraction of draws
within +-1 of the expected number and the fraction equal to it, and the median time per call
(one thread).

Settings
--------
Planted backgrounds (1000 cells x 2000 genes, generated here, 10 draws by default): Poisson
counts ``lib_i * sum_k w_ik P_k`` with ``P`` programs (3, 6, 10).  Program ``k`` multiplies a
block of ``1.5 * 2000 / (P + 2)`` genes of a common Gamma(0.5) base profile (overlapping the
next program's block by half) by ``1 + strength * Gamma(2, 1)``; memberships
Dirichlet(0.3) (mixed); library sizes ``2000 * LogNormal(0, 0.4)``.  Strengths 1.0 and 0.7
(every program clearly above the noise) and 0.4 (the weakest programs near the threshold the
rule uses, see below).  ``P = 1`` is pure noise around one profile.  Each draw is counted
three ways: raw counts with the Poisson loss ("kullback-leibler"); raw counts with squared
error ("frobenius": arbitrary non-negative data whose noise grows with the mean); and
log-normalised (``normalize_log1p``: total 1e4 per cell, then log1p) with squared error.
After log-normalisation the library size leaves a pattern of its own (its singular vector
correlates with log depth at -0.95 on pure noise), so P + 1 is what those data hold.

Column ``weakest``: the weakest planted program's signal, the smallest non-zero singular
value of the noiseless Pearson residuals (``(M - E) / sqrt(E)`` of the planted means
``M``; draw 0), in units of the detection limit ``(n F)^(1/4)`` below which no method can see
a program in unit-variance noise (Baik-Ben Arous-Peche).  The rule counts a program when its
singular value exceeds Gavish and Donoho's optimal hard threshold, which a program reaches at
about 1.76 times the detection limit for this shape (printed above the table): programs
between 1 and 1.76 are real but are not counted.

Out-of-sample backgrounds:

- ``make_contrastive_counts(beta, random_state=seed).Y`` for beta 4, 8, 16 (1000 cells x 3000
  genes).  Expected count 5.  The background's Poisson means are
  ``lib_i (10 beta S_{k_i} + 0.02 + 0.01 g_j c_i)``: every cell belongs to one of 5 classes,
  so the constant 0.02 is part of each class profile (one topic per class), and the
  rank-1 term ``0.01 g c`` is a sixth non-negative topic of the noiseless means.  That sixth
  topic is below the noise: its singular value in Pearson residuals was measured (noiseless
  means of seed 0) at 44.7, 34.8 and 26.3 for beta 4, 8 and 16, against a detection limit of
  ``(1000 * 3000)^(1/4) = 41.6``, so 5 is what the data can show (6 is acceptable).
- ``make_cell_type_counts(strength=1.0, random_state=seed).Y`` (500 cells, 6 discrete cell
  types, negative binomial counts with uneven libraries), when the function exists: expected
  6.

Usage::

    python benchmarks/shared_count.py              # 10 draws per setting
    python benchmarks/shared_count.py --quick      # 3 draws, fewer settings
    python benchmarks/shared_count.py --draws 20
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import bcnmf  # noqa: E402
from bcnmf import datasets  # noqa: E402
from bcnmf.core.shared_count import optimal_threshold_ratio, shared_count  # noqa: E402

KL, FRO = "kullback-leibler", "frobenius"
MAX_COUNT = 50   # as the fit's n_shared="auto" (MAX_SHARED)
N_CELLS, N_GENES, DEPTH = 1000, 2000, 2000.0


def planted_means(n_programs, strength, seed):
    """Noiseless means of the planted Poisson background (see the module docstring)."""
    rng = np.random.default_rng(seed)
    base = rng.gamma(0.5, 1.0, N_GENES)
    base /= base.sum()
    block = N_GENES // (n_programs + 2)
    programs = np.empty((n_programs, N_GENES))
    for k in range(n_programs):
        profile = base.copy()
        genes = np.arange(k * block, k * block + int(1.5 * block)) % N_GENES
        profile[genes] *= 1.0 + strength * rng.gamma(2.0, 1.0, genes.size)
        programs[k] = profile / profile.sum()
    weights = rng.dirichlet(np.full(n_programs, 0.3), N_CELLS)
    library = DEPTH * rng.lognormal(0.0, 0.4, N_CELLS)
    return library[:, None] * (weights @ programs), rng


def planted_counts(n_programs, strength, seed):
    means, rng = planted_means(n_programs, strength, seed)
    return rng.poisson(means).astype(np.float64)


def weakest_program(n_programs, strength):
    """Smallest signal singular value of the noiseless Pearson residuals over the detection
    limit (n F)^(1/4); None for pure noise."""
    if n_programs < 2:
        return None
    means, _ = planted_means(n_programs, strength, 0)
    expected = np.outer(means.sum(axis=1), means.sum(axis=0)) / means.sum()
    residuals = (means - expected) / np.sqrt(expected)
    values = np.linalg.svd(residuals, compute_uv=False)[:n_programs - 1]
    return float(values[-1] / (N_CELLS * N_GENES) ** 0.25)


def estimation_point(n, f):
    """Signal (in units of the detection limit) whose observed singular value reaches the
    optimal hard threshold, for unit-variance white noise in an n x f matrix."""
    tau = optimal_threshold_ratio(n, f) * (np.sqrt(n) + np.sqrt(f))
    a = tau ** 2 - n - f
    theta = np.sqrt((a + np.sqrt(a * a - 4.0 * n * f)) / 2.0)
    return float(theta / (n * f) ** 0.25)


def count(data, loss):
    start = time.perf_counter()
    result = shared_count(data, loss, MAX_COUNT)
    return result.count, time.perf_counter() - start


def row(name, loss, expected, counts, seconds, weakest=None):
    counts = np.asarray(counts)
    within = np.mean(np.abs(counts - expected) <= 1)
    exact = np.mean(counts == expected)
    weak = "" if weakest is None else f"{weakest:.2f}"
    return (f"| {name} | {loss} | {expected} | {weak} | {' '.join(map(str, counts))} | "
            f"{within:.1f} | {exact:.1f} | {np.median(seconds):.2f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=10, help="seeds per setting")
    parser.add_argument("--quick", action="store_true",
                        help="3 draws, strengths 1.0 and 0.4 only, beta 8 only")
    args = parser.parse_args(argv)
    draws = 3 if args.quick else args.draws
    strengths = (1.0, 0.4) if args.quick else (1.0, 0.7, 0.4)
    betas = (8,) if args.quick else (4, 8, 16)

    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {platform.node()} ({platform.machine()}, {os.cpu_count()} cores, "
          f"{platform.system()} {platform.release()}), Python {platform.python_version()}, "
          f"numpy {np.__version__}; one thread")
    print(f"bcnmf {bcnmf.__version__}; max_count = {MAX_COUNT}, {draws} draws per setting")
    print(f"planted {N_CELLS} x {N_GENES}: a program is counted from about "
          f"{estimation_point(N_CELLS, N_GENES):.2f} x the detection limit (optimal hard "
          f"threshold), detectable from 1.00")
    print()
    print("| setting | loss | expected | weakest | count per draw | within +-1 | exact "
          "| s / call |")
    print("|---|---|---|---|---|---|---|---|")
    total = time.perf_counter()
    settings = [(1, 1.0)] + [(p, s) for s in strengths for p in (3, 6, 10)]
    for n_programs, strength in settings:
        results = {"kl": [], "fro": [], "log": []}
        for seed in range(draws):
            counts = planted_counts(n_programs, strength, seed)
            results["kl"].append(count(counts, KL))
            results["fro"].append(count(counts, FRO))
            results["log"].append(count(datasets.normalize_log1p(counts), FRO))
        weakest = weakest_program(n_programs, strength)
        name = ("pure noise" if n_programs == 1 else
                f"planted P={n_programs}, strength {strength}")
        for key, label in (("kl", "KL, counts"), ("fro", "Frobenius, counts"),
                           ("log", "Frobenius, log1p")):
            c, t = zip(*results[key])
            print(row(name, label, n_programs, c, t, weakest), flush=True)

    for beta in betas:
        results = {KL: [], FRO: []}
        for seed in range(draws):
            Y = datasets.make_contrastive_counts(beta, random_state=seed).Y
            results[KL].append(count(Y, KL))
            results[FRO].append(count(datasets.normalize_log1p(Y), FRO))
        for loss, label in ((KL, "KL, counts"), (FRO, "Frobenius, log1p")):
            c, t = zip(*results[loss])
            print(row(f"make_contrastive_counts beta={beta}", label, 5, c, t), flush=True)

    if hasattr(datasets, "make_cell_type_counts"):
        results = {KL: [], FRO: []}
        for seed in range(draws):
            Y = datasets.make_cell_type_counts(strength=1.0, random_state=seed).Y
            results[KL].append(count(Y, KL))
            results[FRO].append(count(datasets.normalize_log1p(Y), FRO))
        for loss, label in ((KL, "KL, counts"), (FRO, "Frobenius, log1p")):
            c, t = zip(*results[loss])
            print(row("make_cell_type_counts strength=1", label, 6, c, t), flush=True)
    else:
        print("\n(make_cell_type_counts is not in this version of bcnmf.datasets)")
    print("\nexpected: planted programs (log1p data hold one pattern more, the depth); weakest: "
          "the weakest planted program's signal over the detection limit (draw 0); within +-1, "
          "exact: fraction of draws; s / call: median seconds of one shared_count call.")
    print(f"total {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main()
