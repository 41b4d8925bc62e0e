#!/usr/bin/env python
"""Are this tree's fits bit for bit those of another revision?

Usage
-----
    python benchmarks/bitwise_compare.py --baseline REV

``REV`` is any git revision of this repository; it is checked out into a
temporary worktree (removed at the end).  The same fits run in a fresh
subprocess per tree (one thread, the tree first on ``PYTHONPATH``) on a small
raw-count simulation: both losses, both modes, dense and CSR input, blocks of
cells, restarts and their consensus, missing values, and the tied and untied
combined bases.  Printed: one row per fit saying whether the fitted topics,
the codes of ``transform`` and the number of sweeps are identical (``equal``)
or the largest absolute difference.
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _baseline import REPO, baseline_src, short_rev  # noqa: E402

#: name -> (estimator, parameters, input format)
FITS = {
    "squared error, dense": ("BCNMF", dict(beta_loss="frobenius"), "dense"),
    "squared error, CSR": ("BCNMF", dict(beta_loss="frobenius"), "csr"),
    "Poisson, dense": ("BCNMF", dict(beta_loss="poisson"), "dense"),
    "Poisson, CSR": ("BCNMF", dict(beta_loss="poisson"), "csr"),
    "squared error, reference": ("BCNMF", dict(beta_loss="frobenius", mode="reference"),
                                 "dense"),
    "Poisson, reference": ("BCNMF", dict(beta_loss="poisson", mode="reference"), "dense"),
    "Poisson, 3 restarts": ("BCNMF", dict(beta_loss="poisson", n_init=3), "dense"),
    "Poisson, consensus": ("BCNMF", dict(beta_loss="poisson", n_init=3, consensus=True),
                           "dense"),
    "squared error, blocks of 17": ("BCNMF", dict(beta_loss="frobenius", block_size=17),
                                    "dense"),
    "Poisson, CSR, blocks of 17": ("BCNMF", dict(beta_loss="poisson", block_size=17), "csr"),
    "squared error, missing values": ("BCNMF", dict(beta_loss="frobenius"), "nan"),
    "combined, tied": ("CombinedBCNMF", dict(), "dense"),
    "combined, untied": ("CombinedBCNMF", dict(n_target_components=1), "dense"),
    "combined, untied, background start": (
        "CombinedBCNMF", dict(n_target_components=1, shared_init="background"), "dense"),
    "combined, Poisson": ("CombinedBCNMF", dict(beta_loss="poisson"), "dense"),
}

CHILD = r'''
import pickle, sys, warnings
import numpy as np, scipy.sparse as sp
warnings.simplefilter("ignore")
import bcnmf
from bcnmf.datasets import make_contrastive_counts
assert bcnmf.__file__.startswith(sys.argv[1]), bcnmf.__file__
fits = pickle.loads(bytes.fromhex(sys.argv[2]))
sim = make_contrastive_counts(8.0, n_genes=120, n_target=60, n_background=60, random_state=0)
X, Y = np.asarray(sim.X, float), np.asarray(sim.Y, float)
Xnan = X.copy()
Xnan[0, :5] = np.nan
out = {}
for name, (cls, params, fmt) in fits.items():
    model = getattr(bcnmf, cls)(3, max_iter=60, random_state=0, **params)
    x = {"dense": X, "csr": sp.csr_matrix(X), "nan": Xnan}[fmt]
    y = sp.csr_matrix(Y) if fmt == "csr" else Y
    model.fit(x, background=y)
    new = sp.csr_matrix(X[:10]) if fmt == "csr" else X[:10]
    out[name] = (model.components_, model.transform(new), model.n_iter_)
sys.stdout.buffer.write(pickle.dumps(out))
'''


def _run(src: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(src), pickle.dumps(FITS).hex()],
                          env=env, capture_output=True, check=True, cwd=tempfile.gettempdir())
    return pickle.loads(proc.stdout)


def _compare(a, b) -> str:
    import numpy as np

    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return f"shapes {a.shape} and {b.shape}"
    return "equal" if np.array_equal(a, b) else f"max diff {np.max(np.abs(a - b)):.3g}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", required=True, help="git revision to compare against")
    args = p.parse_args(argv)
    rev = short_rev(args.baseline)
    with baseline_src(rev) as base:
        old = _run(base)
    new = _run(REPO / "src")
    print(f"# fits of this tree against {rev} (one thread, 60 sweeps, K = 3)")
    print()
    print("| fit | topics | transform | sweeps |")
    print("|---|---|---|---|")
    for name in FITS:
        print(f"| {name} | " + " | ".join(_compare(a, b) for a, b in zip(old[name], new[name]))
              + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
