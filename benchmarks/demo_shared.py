"""The demo's bcNMF fits with and without shared topics, on the bundled mouse proteins.

Fits ``BCNMF(5, alpha=1.0, n_init=5, max_iter=3000)`` (the demo's settings, squared error)
with ``n_shared`` 0, 4 and 9 (9 is what ``"auto"`` fits on this background: the count is at
its cap of an eighth of the 77 features), fitting seeds 0-2, and prints the ARI of KMeans on
the per-cell normalised target codes against the genotype labels (the demo's protocol) and
the number of sweeps.  Two fits at a time, one thread each.

Usage::

    python benchmarks/demo_shared.py
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import warnings  # noqa: E402

N_SHARED = (0, 4, 9)
SEEDS = (0, 1, 2)


def fit(n_shared, seed):
    from bcnmf import BCNMF
    from bcnmf.datasets import load_mice_protein
    from bcnmf.metrics import cluster_ari

    data = load_mice_protein()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = BCNMF(5, alpha=1.0, n_init=5, max_iter=3000, random_state=seed,
                      n_shared=n_shared)
        codes = model.fit_transform(data.X, background=data.Y)
    return n_shared, seed, cluster_ari(codes, data.labels, normalize=True), model.n_iter_


def main():
    from joblib import Parallel, delayed

    rows = Parallel(n_jobs=2)(delayed(fit)(n, s) for n in N_SHARED for s in SEEDS)
    print("| n_shared | seed | ARI (normalised codes) | sweeps |\n|---|---|---|---|")
    for n, s, ari, n_iter in rows:
        print(f"| {n} | {s} | {ari:.3f} | {n_iter} |")


if __name__ == "__main__":
    main()
