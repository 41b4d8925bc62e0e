"""Missing values (issue 7): masked fitting vs zero-filling on ``mice_protein``.

The shipped ``mice_protein`` data have their 324 (target) and 199 (background) missing entries
set to 0, as both papers did; ``load_mice_protein(return_masks=True)`` returns the masks (the
benchmark checks them against ``/work/shared/data/mice_protein`` when that folder exists).
Each row fits the same data twice:

- **zero-filled**: the zeros as shipped (what the paper had to do);
- **masked**: the missing entries as NaN, left out of the fit (core/masked.py).

Protocol (MODEL.md section 8, ``_protocol.py``): KMeans(n_clusters = 2, n_init = 20,
random_state = 42) on the target codes, raw and per-cell L1-normalised, ARI against the
genotype labels (never used in fitting); fitting seeds 0 .. seeds-1, mean ± sd.

Settings: stable bcNMF as in docs/benchmarks.md's real-data table (K = 5, relative alpha = 1.0,
5 restarts, max_iter 3000), and the authors' reference settings (K = 5, alpha = 3 raw,
100 iterations).  A second block adds missingness: a further ``--extra`` fraction (default 0.2
and 0.4) of entries, drawn at random per seed (MCAR), is removed from target and background.

Usage::

    python benchmarks/missing.py                     # 5 seeds, ~1-3 minutes on 2 cores
    python benchmarks/missing.py --seeds 2 --quick
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

import _protocol as P  # noqa: E402

from bcnmf import factorize  # noqa: E402
from bcnmf.datasets import load_mice_protein  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mice_protein"

SETTINGS = {
    "stable": dict(mode="stable", alpha=1.0, n_init=5, max_iter=3000),
    "reference": dict(mode="reference", alpha=3.0, max_iter=100),
}


def load():
    data = load_mice_protein(return_masks=True)
    shared = SHARED / "mice_protein.npz"
    if shared.exists():
        with np.load(shared, allow_pickle=False) as z:
            assert np.array_equal(z["X_missing"].T, data.X_missing), "target masks differ"
            assert np.array_equal(z["Y_missing"].T, data.Y_missing), "background masks differ"
            assert np.allclose(z["X"].T, data.X), "target data differ"
        source = f"bundled copy, masks identical to {shared}"
    else:
        source = "bundled copy (shared data absent: masks not cross-checked)"
    return data, source


def fit_codes(X, Y, seed, setting, quick):
    kw = dict(SETTINGS[setting])
    if quick:
        kw["max_iter"] = min(kw["max_iter"], 300)
        kw["n_init"] = min(kw.get("n_init", 1), 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = factorize(X, Y, 5, random_state=seed, **kw)
    return res.codes, len(caught)


def extra_missing(shape, frac, seed):
    if frac == 0:
        return np.zeros(shape, bool)
    return np.random.default_rng(1000 + seed).random(shape) < frac


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--extra", type=float, nargs="*", default=[0.2, 0.4])
    ap.add_argument("--settings", default="stable,reference")
    ap.add_argument("--quick", action="store_true", help="fewer sweeps and restarts (smoke run)")
    args = ap.parse_args(argv)
    data, source = load()
    labels = data.labels
    print(f"mice_protein: target {data.X.shape}, background {data.Y.shape}; {source}; "
          f"missing as shipped: {int(data.X_missing.sum())} target, "
          f"{int(data.Y_missing.sum())} background entries.\n")
    print("| Setting | Extra missing (MCAR) | Input | ARI raw | ARI norm | warnings |")
    print("|---|---|---|---|---|---|")
    t0 = time.time()
    for setting in args.settings.split(","):
        for frac in [0.0, *args.extra]:
            scores = {"zero-filled": ([], [], 0), "masked": ([], [], 0)}
            for seed in range(args.seeds):
                mx = data.X_missing | extra_missing(data.X.shape, frac, seed)
                my = data.Y_missing | extra_missing(data.Y.shape, frac, seed + 500)
                inputs = {"zero-filled": (np.where(mx, 0.0, data.X), np.where(my, 0.0, data.Y)),
                          "masked": (np.where(mx, np.nan, data.X), np.where(my, np.nan, data.Y))}
                for name, (X, Y) in inputs.items():
                    codes, n_warn = fit_codes(X, Y, seed, setting, args.quick)
                    raw, norm, w = scores[name]
                    raw.append(P.cluster_ari(codes, labels))
                    norm.append(P.cluster_ari(codes, labels, normalise=True))
                    scores[name] = (raw, norm, w + n_warn)
            for name, (raw, norm, w) in scores.items():
                print(f"| {setting} | {frac:.0%} | {name} | {P.summarise(raw)} | "
                      f"{P.summarise(norm)} | {w} |", flush=True)
    print(f"\n{args.seeds} seeds; {time.time() - t0:.0f} s.")


if __name__ == "__main__":
    main()
