"""Alpha robustness of bcNMF with and without shared topics, for both losses.

For every benchmark set at its default K, fits ``BCNMF`` over the relative alpha grid
(0, 0.25, 0.5, 1, 1.5, 2, 3, 5) for several fitting seeds and prints, per set, loss and
model, the mean ARI of the target codes at every alpha and the fraction of the seven
non-zero grid points whose mean ARI is within 90% of the grid's best.  alpha = 0 (no
contrast: the shared topics alone, or plain NMF without them) is shown but not counted.

Models:

- ``shared``: the default, ``n_shared="auto"`` (shared topics counted on the background);
- ``none``: ``n_shared=0``, the contrast alone (the paper's model);
- ``contrastive`` and ``random``: the default model started from the contrast's relaxation
  (``init="contrastive"``, the default start of squared error) or from random draws
  (``init="random"``, the default start of Poisson);
- ``combined``: ``CombinedBCNMF`` (untied shared and target topics fitted jointly, default
  penalty, no contrast weight), once per seed, shown in the alpha = 0 column.

Sets (arrays cells x features; labels never used in fitting):

- ``beta4``, ``beta8``, ``beta16``: ``make_contrastive_counts(beta, random_state=0)``, K = 2;
- ``mice``: ``mice_protein`` as shipped, missing values zero-filled as loaded, K = 5;
- ``mnist``: ``mnist_daisy_demo`` as shipped, K = 2;
- ``cells1``, ``cells0.3``: ``make_cell_type_counts(strength, random_state=0)``, K = 5.

Squared error runs on per-cell-total-normalised log1p data (``normalize_log1p``) for the
count sets and on the data as shipped for mice and mnist; Poisson runs on the raw counts
(mice and mnist as shipped).  ARI: KMeans(n_clusters = #labels, n_init = 20,
random_state = 42) on the per-cell L1-normalised codes ("norm") and on the raw codes
("raw"), mean over seeds; both are printed.  The summary uses, per set and loss, the
representation in which any model finds most (one choice for every model and alpha).
For sets with two label groups the per-set tables add the "top topic AUROC" (mean over
seeds): how well the single best topic's share of the codes separates the groups
(:func:`topic_auc`), which a fit can reach while KMeans on all its codes follows other
structure.

The last table compares the cost of a fit with shared topics with one without (median
seconds of the alpha-grid fits of each set and loss, their ratio).  The shared-topic
counts chosen by ``"auto"`` are printed per set and loss.  Sets under ``../shared/data``
are skipped when absent.

Usage::

    python benchmarks/alpha_robustness.py                      # 3 seeds, every set, ~40 min
    python benchmarks/alpha_robustness.py --quick              # 1 seed, beta8 and cells1
    python benchmarks/alpha_robustness.py --sets mice,mnist --seeds 5
    python benchmarks/alpha_robustness.py --models contrastive,random --no-combined
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ALPHAS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0)
DEFAULT_ALPHA = 1.5
SETS = ("beta4", "beta8", "beta16", "mice", "mnist", "cells1", "cells0.3")
K = {"mice": 5, "mnist": 2, "cells1": 5, "cells0.3": 5}
LOSSES = ("frobenius", "kullback-leibler")
MODELS = {"shared": {"n_shared": "auto"}, "none": {"n_shared": 0},
          "contrastive": {"n_shared": "auto", "init": "contrastive"},
          "random": {"n_shared": "auto", "init": "random"}}


def model_params(model):
    """Estimator parameters of a model name: ``shared``, ``none``, or ``n<count>`` (a fixed
    number of shared topics, for the count study)."""
    if model in MODELS:
        return MODELS[model]
    return {"n_shared": int(model[1:])}
#: below this best mean ARI the grid found nothing and a fraction means nothing
MIN_BEST = 0.1


_CACHE = {}


def load(name, loss):
    """``(X, Y, labels, K)`` of a set as its loss sees it (cached per process)."""
    if (name, loss) not in _CACHE:
        _CACHE.clear()
        _CACHE[name, loss] = _load(name, loss)
    return _CACHE[name, loss]


def _load(name, loss):
    from bcnmf.datasets import (load_shared_dataset, make_cell_type_counts,
                                make_contrastive_counts, normalize_log1p)

    if name.startswith("beta") or name.startswith("cells"):
        if name.startswith("beta"):
            d = make_contrastive_counts(float(name[4:]), random_state=0)
        else:
            d = make_cell_type_counts(float(name[5:]), random_state=0)
        X, Y, labels = d.X, d.Y, d.labels
        if loss == "frobenius":
            X, Y = normalize_log1p(X), normalize_log1p(Y)
        return X, Y, labels, K.get(name, 2)
    d = load_shared_dataset({"mice": "mice_protein", "mnist": "mnist_daisy_demo"}[name])
    return np.asarray(d.X, float), np.asarray(d.Y, float), np.asarray(d.labels), K[name]


def available(name):
    if name in ("mice", "mnist"):
        try:
            load(name, "frobenius")
        except (FileNotFoundError, OSError, ValueError) as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
            return False
    return True


def run_one(name, loss, model, alpha, seed):
    from bcnmf import BCNMF, CombinedBCNMF
    from bcnmf.metrics import cluster_ari

    X, Y, labels, k = load(name, loss)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        if model == "combined":
            est = CombinedBCNMF(k, beta_loss=loss, random_state=seed)
            codes = est.fit_transform(X, background=Y)
            n_shared = None
        else:
            est = BCNMF(k, beta_loss=loss, alpha=alpha, random_state=seed, **model_params(model))
            codes = est.fit_transform(X, background=Y)
            n_shared = est.n_shared_
        seconds = time.perf_counter() - t0
        raw = cluster_ari(codes, labels)
        norm = cluster_ari(codes, labels, normalize=True)
    return dict(set=name, loss=loss, model=model, alpha=alpha, seed=seed, raw=raw, norm=norm,
                auc=topic_auc(codes, labels), seconds=seconds, n_shared=n_shared)


def topic_auc(codes, labels):
    """How well the best single topic separates two label groups: the largest over topics of
    ``max(AUC, 1 - AUC)`` of the topic's share of the cell's codes (per-cell L1-normalised)
    between the groups; NaN unless there are exactly two groups.  KMeans on all codes (the
    ARI) also sees the topics that carry other structure; this asks only whether one topic
    carries the labelled difference."""
    from sklearn.metrics import roc_auc_score

    groups = np.unique(labels)
    if groups.size != 2:
        return float("nan")
    shares = codes / np.maximum(codes.sum(axis=1, keepdims=True), np.finfo(float).tiny)
    y = np.asarray(labels) == groups[1]
    aucs = [roc_auc_score(y, shares[:, j]) for j in range(shares.shape[1])]
    return float(max(max(a, 1.0 - a) for a in aucs))


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def fraction(means):
    """``(within, best)`` over the non-zero alphas of a row of mean ARIs."""
    m = np.asarray(means[1:], dtype=float)
    best = float(np.nanmax(m))
    if not best >= MIN_BEST:
        return None, best
    return int(np.sum(m >= 0.9 * best)), best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default=",".join(SETS), help="comma list from " + ",".join(SETS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="1 seed, beta8 and cells1")
    p.add_argument("--models", default="shared,none",
                   help="comma list of models: shared (n_shared='auto'), none (n_shared=0), "
                        "contrastive / random (n_shared='auto' with that init), "
                        "n<count> (that many shared topics); default shared,none")
    p.add_argument("--losses", default=",".join(LOSSES), help="comma list of losses")
    p.add_argument("--no-combined", action="store_true", help="skip CombinedBCNMF")
    args = p.parse_args(argv)
    sets = ["beta8", "cells1"] if args.quick else [s for s in args.sets.split(",") if s]
    bad = sorted(set(sets) - set(SETS))
    if bad:
        p.error(f"unknown sets {bad}; choose from {', '.join(SETS)}")
    seeds = range(1 if args.quick else args.seeds)
    sets = [s for s in sets if available(s)]
    models = [m for m in args.models.split(",") if m]
    losses = [loss for loss in args.losses.split(",") if loss]

    from joblib import Parallel, delayed

    import bcnmf

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _protocol import commit_stamp

    commit = commit_stamp()
    print("# Alpha robustness: shared topics versus the contrast alone\n")
    print(f"`python benchmarks/alpha_robustness.py {' '.join(argv or sys.argv[1:])}`; "
          f"bcnmf {bcnmf.__version__} (commit {commit}), Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, {args.n_jobs} jobs of one thread; seeds "
          f"{list(seeds)}.\n")
    tasks = [(n, loss, m, a, s) for n in sets for loss in losses for m in models
             for a in ALPHAS for s in seeds]
    if not args.no_combined:
        tasks += [(n, loss, "combined", 0.0, s) for n in sets for loss in losses for s in seeds]
    t0 = time.perf_counter()
    recs = Parallel(n_jobs=args.n_jobs)(delayed(run_one)(*t) for t in tasks)
    wall = time.perf_counter() - t0

    def cell(name, loss, model, alpha, which):
        v = [r[which] for r in recs if (r["set"], r["loss"], r["model"], r["alpha"]) ==
             (name, loss, model, alpha)]
        return float(np.mean(v)) if v else float("nan")

    summary, costs, counts = [], [], []
    for name in sets:
        rows = []
        for loss in losses:
            means = {(m, w): [cell(name, loss, m, a, w) for a in ALPHAS]
                     for m in models for w in ("norm", "raw")}
            # the set's codes: the representation in which any model finds most (one choice
            # per set and loss, the same for every model and alpha)
            which = max(("norm", "raw"), key=lambda w: max(np.nanmax(means[m, w][1:])
                                                           for m in models))
            for model in models:
                for w in ("norm", "raw"):
                    within, best = fraction(means[model, w])
                    frac = "n/a" if within is None else f"{within}/7"
                    rows.append([loss, model, w] + [f"{v:.2f}" for v in means[model, w]]
                                + [frac, f"{best:.2f}"])
                    if w == which:
                        alpha_default = means[model, w][ALPHAS.index(DEFAULT_ALPHA)]
                        summary.append([name, loss, model, w, frac, f"{best:.2f}",
                                        f"{alpha_default:.2f}"])
            for model in models:
                aucs = [cell(name, loss, model, a, "auc") for a in ALPHAS]
                if np.isfinite(aucs).any():
                    rows.append([loss, model, "top topic AUROC"] + [f"{v:.2f}" for v in aucs]
                                + ["", f"{np.nanmax(aucs[1:]):.2f}"])
            if not args.no_combined:
                comb = [cell(name, loss, "combined", 0.0, w) for w in ("norm", "raw")]
                rows.append([loss, "combined", "norm / raw", f"{comb[0]:.2f} / {comb[1]:.2f}"]
                            + [""] * (len(ALPHAS) + 1))
            secs = {m: np.median([r["seconds"] for r in recs if (r["set"], r["loss"],
                                 r["model"]) == (name, loss, m) and r["alpha"] > 0])
                    for m in models}
            if "shared" in secs and "none" in secs:
                costs.append([name, loss, f"{secs['none']:.2f}", f"{secs['shared']:.2f}",
                              f"{secs['shared'] / secs['none']:.2f}"])
            chosen = sorted({r["n_shared"] for r in recs if (r["set"], r["loss"]) == (name, loss)
                             and r["model"] != "combined"})
            counts.append([name, loss, ", ".join(str(c) for c in chosen)])
        print(f"## {name} (K = {load(name, losses[0])[3]})\n")
        print(table(["loss", "model", "codes"] + [f"α={a:g}" for a in ALPHAS]
                    + ["within 90%", "best"], rows) + "\n")
    print("## Summary\n")
    print(f"within 90%: alpha grid points (of 7, α = 0 excluded) whose mean ARI is at least 90% "
          f"of the best; n/a: best below {MIN_BEST}. codes: per set and loss, the "
          "representation (per-cell normalised or raw codes) in which any model finds most.\n")
    print(table(["set", "loss", "model", "codes", "within 90%", "best",
                 f"at α={DEFAULT_ALPHA:g}"], summary) + "\n")
    if costs:
        print("## Cost of the shared topics (median seconds per fit, α > 0)\n")
        print("Fits of the alpha grid, two at a time on a shared machine: a rough guide; "
              "`benchmarks/shared_cost.py` measures the cost under control.\n")
        print(table(["set", "loss", "n_shared=0", "auto", "ratio"], costs) + "\n")
    print("## Shared topics fitted (n_shared_)\n")
    print(table(["set", "loss", "n_shared_ (every model)"], counts) + "\n")
    print(f"_{len(tasks)} fits in {wall:.0f} s wall._")


if __name__ == "__main__":
    main()
