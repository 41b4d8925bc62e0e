"""Missing values: masked fitting vs zero-filling on ``mice_protein``.

The shipped ``mice_protein`` data have their 324 (target) and 199 (background) missing entries
set to 0, as both papers did; ``load_mice_protein(return_masks=True)`` returns the masks (the
benchmark checks them against ``/work/shared/data/mice_protein`` when that folder exists).
Each row fits the same data with the missing entries

- **zero-filled**: the zeros as shipped (what the paper had to do);
- **masked**: NaN, the library's handling (core/masked.py): left out of the data fit, with the
  variance-weighted prior at missing entries;
- **masked, no prior**: NaN, only left out (the engine without the prior; ``masked.PRIOR`` off,
  an ablation);
- **mean-imputed**: the feature's mean over the observed entries (a neutral imputation);
- **incomplete cells dropped**: cells with any missing entry removed from target and background
  (ARI over the remaining target cells only; another set of cells, so not comparable row for row);
- **... without mouse 3426's 3 near-empty cells**: the three target cells with 43 of 77 proteins
  missing removed (ARI over the other 267 cells), zero-filled and masked: a check of how much
  the zero-filled score rests on those three rows of zeros.

Protocol (docs/benchmarks.md, ``_protocol.py``): KMeans(n_clusters = 2, n_init = 20,
random_state = 42) on the target codes, raw and per-cell L1-normalised, ARI against the
genotype labels (never used in fitting); fitting seeds 0 .. seeds-1, mean ± sd.

Settings: stable bcNMF (K = 5, relative alpha = 1.0,
5 restarts, max_iter 3000), and the authors' reference settings (K = 5, alpha = 3 raw,
100 iterations).  A second block adds missingness: a further ``--extra`` fraction (default 0.2)
of entries, drawn at random per seed (MCAR), is removed from target and background.

Table 2 (held-out entries) checks what the mask is for: a further 10% of the observed target
entries is hidden at random per seed; the fit's prediction ``codes @ components`` at the hidden
entries is compared with their values (RMSE relative to the RMS of the hidden values), for
masked, zero-filled and mean-imputed inputs, with the feature means as a baseline; stable mode,
alpha = 0 (plain NMF) and alpha = 1.

Table 3 (``--transplant`` or ``--only-transplant``) asks whether an input recovers what the
complete data give: complete target mice only, the shipped per-mouse patterns of missing
proteins moved to random mice (per seed), ARI of the complete data and of each input.

Usage::

    python benchmarks/missing.py                     # 5 seeds, ~11 minutes on 2 loaded cores
    python benchmarks/missing.py --seeds 5 --only-transplant
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
from bcnmf.core import masked  # noqa: E402
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


def fit_codes(X, Y, seed, setting, quick, prior=True):
    kw = dict(SETTINGS[setting])
    if quick:
        kw["max_iter"] = min(kw["max_iter"], 300)
        kw["n_init"] = min(kw.get("n_init", 1), 2)
    masked.PRIOR = prior
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = factorize(X, 5, background=Y, random_state=seed, **kw)
    finally:
        masked.PRIOR = True
    return res.codes, len(caught)


def mean_imputed(A, missing):
    mean = np.nanmean(np.where(missing, np.nan, A), axis=0)
    return np.where(missing, np.nan_to_num(mean)[None, :], A)


def inputs_for(data, mx, my, diagnostics=False):
    """name -> (X, Y, target cells kept or None, prior on)."""
    nan_x, nan_y = np.where(mx, np.nan, data.X), np.where(my, np.nan, data.Y)
    out = {"zero-filled": (np.where(mx, 0.0, data.X), np.where(my, 0.0, data.Y), None, True),
           "masked": (nan_x, nan_y, None, True),
           "masked, no prior": (nan_x, nan_y, None, False),
           "mean-imputed": (mean_imputed(data.X, mx), mean_imputed(data.Y, my), None, True),
           "incomplete cells dropped": (data.X[~mx.any(1)], data.Y[~my.any(1)],
                                        ~mx.any(1), True)}
    if diagnostics:
        keep = mx.sum(axis=1) <= mx.shape[1] // 2    # drops mouse 3426's 3 near-empty cells
        out["zero-filled, without the 3 near-empty cells"] = (
            np.where(mx, 0.0, data.X)[keep], np.where(my, 0.0, data.Y), keep, True)
        out["masked, without the 3 near-empty cells"] = (nan_x[keep], nan_y, keep, True)
    return out


def held_out(data, seeds, quick):
    print("\n| alpha | Input | relative RMSE at hidden target entries |")
    print("|---|---|---|")
    for alpha in (0.0, 1.0):
        errs = {}
        for seed in range(seeds):
            rng = np.random.default_rng(2000 + seed)
            hide = ~data.X_missing & (rng.random(data.X.shape) < 0.1)
            mx = data.X_missing | hide
            truth = data.X[hide]
            rms = np.sqrt(np.mean(truth ** 2))
            mean = np.nanmean(np.where(mx, np.nan, data.X), axis=0)
            errs.setdefault("feature means (baseline)", []).append(
                np.sqrt(np.mean((np.broadcast_to(mean, data.X.shape)[hide] - truth) ** 2)) / rms)
            for name, (X, Y, _, prior) in list(inputs_for(data, mx,
                                                          data.Y_missing).items())[:4]:
                kw = dict(SETTINGS["stable"], alpha=alpha)
                if quick:
                    kw.update(max_iter=300, n_init=1)
                masked.PRIOR = prior
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        res = factorize(X, 5, background=Y, random_state=seed, **kw)
                finally:
                    masked.PRIOR = True
                pred = (res.codes @ res.components)[hide]
                errs.setdefault(name, []).append(np.sqrt(np.mean((pred - truth) ** 2)) / rms)
        for name, v in errs.items():
            print(f"| {alpha:g} | {name} | {P.summarise(v)} |", flush=True)


#: the per-mouse missing-protein patterns of the shipped target (mouse 3426's 3 cells left out)
PATTERNS = [[68, 69, 74, 75], [69, 75], [69], [73], [74], [69, 71], [31], [69]]


def transplant(data, seeds, quick):
    """Complete target mice only (9 mice, 135 cells); the shipped per-mouse patterns of
    missing proteins are moved to randomly chosen mice (per seed), so that missingness says
    nothing about genotype and the complete data are known.  The background as shipped."""
    samples = np.asarray(data.target_samples)
    mice = [m for m in np.unique(samples) if not data.X_missing[samples == m].any()]
    keep = np.isin(samples, mice)
    X, g, labels = data.X[keep], samples[keep], np.asarray(data.labels)[keep]
    my = data.Y_missing
    print(f"\nTransplanted patterns: {len(mice)} complete target mice ({X.shape[0]} cells); "
          "the background as shipped (NaN, or as the input's handling).\n")
    print("| Input | ARI raw | ARI norm |")
    print("|---|---|---|")
    scores = {}
    for seed in range(seeds):
        who = np.random.default_rng(seed).permutation(len(mice))[:len(PATTERNS)]
        mx = np.zeros(X.shape, bool)
        for pattern, w in zip(PATTERNS, who):
            mx[np.ix_(g == mice[w], pattern)] = True
        inputs = {"complete data": (X, np.where(my, np.nan, data.Y)),
                  "zero-filled": (np.where(mx, 0.0, X), np.where(my, 0.0, data.Y)),
                  "masked": (np.where(mx, np.nan, X), np.where(my, np.nan, data.Y)),
                  "mean-imputed": (mean_imputed(X, mx), mean_imputed(data.Y, my))}
        for name, (A, B) in inputs.items():
            codes, _ = fit_codes(A, B, seed, "stable", quick)
            raw, norm = scores.setdefault(name, ([], []))
            raw.append(P.cluster_ari(codes, labels))
            norm.append(P.cluster_ari(codes, labels, normalize=True))
    for name, (raw, norm) in scores.items():
        print(f"| {name} | {P.summarise(raw)} | {P.summarise(norm)} |", flush=True)


def extra_missing(shape, frac, seed):
    if frac == 0:
        return np.zeros(shape, bool)
    return np.random.default_rng(1000 + seed).random(shape) < frac


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--extra", type=float, nargs="*", default=[0.2])
    ap.add_argument("--no-held-out", action="store_true")
    ap.add_argument("--settings", default="stable,reference")
    ap.add_argument("--quick", action="store_true", help="fewer sweeps and restarts (smoke run)")
    ap.add_argument("--transplant", action="store_true",
                    help="also the transplanted-patterns check (complete mice only)")
    ap.add_argument("--only-transplant", action="store_true",
                    help="only the transplanted-patterns check")
    args = ap.parse_args(argv)
    data, source = load()
    labels = data.labels
    print(f"mice_protein: target {data.X.shape}, background {data.Y.shape}; {source}; "
          f"missing as shipped: {int(data.X_missing.sum())} target, "
          f"{int(data.Y_missing.sum())} background entries.\n")
    t0 = time.time()
    if args.only_transplant:
        transplant(data, args.seeds, args.quick)
        print(f"\n{args.seeds} seeds; {time.time() - t0:.0f} s.")
        return
    print("| Setting | Extra missing (MCAR) | Input | ARI raw | ARI norm | warnings |")
    print("|---|---|---|---|---|---|")
    for setting in args.settings.split(","):
        for frac in [0.0, *args.extra]:
            scores = {}
            for seed in range(args.seeds):
                mx = data.X_missing | extra_missing(data.X.shape, frac, seed)
                my = data.Y_missing | extra_missing(data.Y.shape, frac, seed + 500)
                diag = setting == "stable" and frac == 0
                for name, (X, Y, keep, prior) in inputs_for(data, mx, my, diag).items():
                    if keep is not None and frac > 0:
                        continue   # almost every cell is incomplete
                    lab = labels if keep is None else labels[keep]
                    codes, n_warn = fit_codes(X, Y, seed, setting, args.quick, prior)
                    raw, norm, w = scores.get(name, ([], [], 0))
                    raw.append(P.cluster_ari(codes, lab))
                    norm.append(P.cluster_ari(codes, lab, normalize=True))
                    scores[name] = (raw, norm, w + n_warn)
            for name, (raw, norm, w) in scores.items():
                print(f"| {setting} | {frac:.0%} | {name} | {P.summarise(raw)} | "
                      f"{P.summarise(norm)} | {w} |", flush=True)
    if not args.no_held_out:
        held_out(data, args.seeds, args.quick)
    if args.transplant:
        transplant(data, args.seeds, args.quick)
    print(f"\n{args.seeds} seeds; {time.time() - t0:.0f} s.")


if __name__ == "__main__":
    main()
