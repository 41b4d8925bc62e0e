"""The demo's bcNMF fits with and without shared topics, on the bundled mouse proteins.

Fits bcNMF with the demo's settings (imported from :mod:`bcnmf._demo`: ``alpha="auto"``, 5
topics, 5 restarts of at most 5,000 sweeps, squared error) with ``n_shared`` 0, 4 and
``"auto"`` (9 on this background: the count is at its cap of an eighth of the 77 features),
at the demo's fitting seeds 0-4, and prints the ARI of KMeans on the per-cell normalised
target codes against the genotype labels (the demo's protocol), the alpha chosen and the
number of sweeps, then the mean and range per ``n_shared``.  Two fits at a time, one thread
each.

Usage::

    python benchmarks/demo_shared.py
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import warnings  # noqa: E402

import numpy as np  # noqa: E402

N_SHARED = (0, 4, "auto")


def fit(n_shared, seed):
    from bcnmf import BCNMF
    from bcnmf._demo import DEMO_ALPHA, DEMO_MAX_ITER, DEMO_N_INIT, N_COMPONENTS
    from bcnmf.datasets import load_mice_protein
    from bcnmf.metrics import cluster_ari

    data = load_mice_protein()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = BCNMF(N_COMPONENTS, alpha=DEMO_ALPHA, n_init=DEMO_N_INIT,
                      max_iter=DEMO_MAX_ITER, random_state=seed, n_shared=n_shared)
        codes = model.fit_transform(data.X, background=data.Y)
    return (n_shared, seed, cluster_ari(codes, data.labels, normalize=True), model.alpha_,
            model.n_shared_, model.n_iter_)


def main():
    from joblib import Parallel, delayed

    from bcnmf._demo import DEFAULT_SEEDS

    rows = Parallel(n_jobs=2)(delayed(fit)(n, s) for n in N_SHARED
                              for s in range(DEFAULT_SEEDS))
    print("| n_shared | seed | ARI (normalised codes) | alpha_ | shared topics | sweeps |\n"
          "|---|---|---|---|---|---|")
    for n, s, ari, alpha, count, n_iter in rows:
        print(f"| {n} | {s} | {ari:.3f} | {alpha:g} | {count} | {n_iter} |")
    print("\n| n_shared | mean ARI | range |\n|---|---|---|")
    for n in N_SHARED:
        aris = [r[2] for r in rows if r[0] == n]
        print(f"| {n} | {np.mean(aris):.2f} | {min(aris):.2f}-{max(aris):.2f} |")


if __name__ == "__main__":
    main()
