"""Calibration of ``topic_enrichment``: cells or samples as the units of the test.

When the cells come from a few samples (donors, animals) per condition, cells of one sample
share the sample's own deviation, and a test that shuffles cells between target and
background takes that shared deviation for an effect of the condition (pseudoreplication).
This script measures how often each test calls a topic enriched when nothing differs
between the conditions, and how often it finds a program that every target sample carries.

Data: ``bcnmf.datasets.make_sample_counts`` with ``--n-samples`` samples per side (default
6), ``--cells-per-sample`` cells each (default 30), 100 genes, 3 shared programs; every
sample deviates on every program (log-scale offset :math:`N(0, \\sigma^2)`,
``--sample-effect`` :math:`\\sigma`, default 0.5) and on every gene (log-scale factor
:math:`N(0, \\tau^2)`, ``--gene-effect`` :math:`\\tau`, default 0.3):

- null: ``effect=0``, no condition effect (every sample drawn from the same distribution);
- planted: ``effect=--effect`` (default 0.5), a fourth program in every cell of every
  target sample.

Every data set is normalised (``normalize_log1p``) and fitted with
``BCNMF(3, alpha=--alpha, max_iter=--max-iter, transform_max_iter=200, random_state=i)``,
default alpha 1.5 (fixed, so that the benchmark measures the tests and not the choice of
alpha) and ``max_iter`` 200 (short fits: the benchmark is about the tests); ``--init``
sets the start (default: the estimator's, the relaxation of the contrast).  Two protocols:

- ``independent``: the cells of data set ``i`` are tested with the model fitted on data set
  ``i + 1`` (other samples, same generator): the basis does not depend on the tested cells,
  which is what the tests assume;
- ``same cells``: the cells are tested with the model fitted on them, as
  ``bcnmf.tl.bcnmf`` does: the basis was chosen to separate these very target and
  background cells, so every test is optimistic there (selective inference).

Tests, one-sided (target above background), on the usage ``--usage`` (default ``"share"``,
the default of ``topic_enrichment``; ``"codes"`` compares the codes themselves):

- ``cells``: ``topic_enrichment(model, X, background=Y)``, 999 random shuffles of the cells;
- ``samples``: ``topic_enrichment(..., samples=, background_samples=)``, exact enumeration
  of the C(12, 6) = 924 arrangements of the sample means;
- ``pseudobulk``: the Welch t-test of the sample means in the same table
  (``pseudobulk_p_value``).

Reported, with the binomial standard error over the data sets:

- null, ``per topic``: fraction of (data set, topic) pairs with p <= 0.05;
- null, ``any topic``: fraction of data sets with at least one topic ``enriched``
  (BH q <= 0.05 over the 3 topics, positive difference); for the pseudobulk column the BH
  q-values of its p-values;
- planted, ``power``: fraction of data sets where the topic closest to the planted program
  (cosine similarity of the loadings) has p <= 0.05, and where at least one topic is
  enriched.

Raw p-values of every data set go to ``--out`` (default
``benchmarks/results/calibration.json``).

Usage (one thread per job)::

    python benchmarks/calibration.py --n-datasets 200 --n-jobs 2 --seed 0
    python benchmarks/calibration.py --n-datasets 20          # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

_HERE = Path(__file__).resolve().parent
TESTS = ("cells", "samples", "pseudobulk")
PROTOCOLS = ("independent", "same cells")
LEVEL = 0.05


def draw(args, scenario, i):
    """Data set ``i`` of a scenario (0: null, 1: planted), normalised."""
    from bcnmf.datasets import make_sample_counts, normalize_log1p

    effect = 0.0 if scenario == 0 else args.effect
    rng = np.random.default_rng(np.random.SeedSequence([args.seed, scenario, i]))
    data = make_sample_counts(effect, n_samples=args.n_samples,
                              cells_per_sample=args.cells_per_sample,
                              sample_effect=args.sample_effect,
                              gene_effect=args.gene_effect, random_state=rng)
    return data, normalize_log1p(data.X), normalize_log1p(data.Y)


def fit(args, X, Y, i):
    from bcnmf import BCNMF
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # short fits by design
        return BCNMF(3, alpha=args.alpha, max_iter=args.max_iter, transform_max_iter=200,
                     init=args.init, random_state=i).fit(X, background=Y)


def tests(args, model, data, X, Y, i, planted):
    """p-values, enriched flags and the planted topic of one (model, data set) pair."""
    from bcnmf import topic_enrichment
    from bcnmf._stats import bh_qvalues

    cells = topic_enrichment(model, X, background=Y, usage=args.usage, n_permutations=999,
                             random_state=i)
    samples = topic_enrichment(model, X, background=Y, usage=args.usage,
                               samples=data.samples,
                               background_samples=data.background_samples, random_state=i)
    pb = samples["pseudobulk_p_value"].to_numpy()
    diff = (samples["usage_target"] - samples["usage_background"]).to_numpy()
    out = {
        "p": {"cells": cells["p_value"].tolist(), "samples": samples["p_value"].tolist(),
              "pseudobulk": pb.tolist()},
        "enriched": {"cells": cells["enriched"].tolist(),
                     "samples": samples["enriched"].tolist(),
                     "pseudobulk": ((bh_qvalues(pb) <= LEVEL) & (diff > 0)).tolist()},
    }
    if planted:
        B = np.asarray(model.components_)
        t = data.planted_program
        cos = B @ t / (np.linalg.norm(B, axis=1) * np.linalg.norm(t) + 1e-300)
        out["planted_topic"] = int(np.argmax(cos))
        out["planted_cosine"] = float(cos.max())
    return out


def phase_one(args, scenario, i):
    t0 = time.perf_counter()
    data, X, Y = draw(args, scenario, i)
    model = fit(args, X, Y, i)
    fit_s = time.perf_counter() - t0
    rec = tests(args, model, data, X, Y, i, scenario == 1)
    rec["fit_seconds"] = fit_s
    rec["seconds"] = time.perf_counter() - t0
    return model, rec


def phase_two(args, scenario, i, model):
    data, X, Y = draw(args, scenario, i)
    return tests(args, model, data, X, Y, i, scenario == 1)


def rate(flags):
    flags = np.asarray(flags, dtype=float)
    r = float(flags.mean())
    return r, float(np.sqrt(r * (1 - r) / flags.size))


def summarise(records):
    """Rates per scenario, protocol and test."""
    out = {}
    for scenario, name in ((0, "null"), (1, "planted")):
        for protocol in PROTOCOLS:
            recs = records[scenario][protocol]
            for test in TESTS:
                p = np.array([r["p"][test] for r in recs])
                enriched = np.array([r["enriched"][test] for r in recs])
                if scenario == 0:
                    out[(name, protocol, test)] = {
                        "per topic": rate((p <= LEVEL).ravel()),
                        "any topic": rate(enriched.any(axis=1)),
                    }
                else:
                    topic = np.array([r["planted_topic"] for r in recs])
                    planted_p = p[np.arange(len(recs)), topic]
                    out[(name, protocol, test)] = {
                        "planted topic": rate(planted_p <= LEVEL),
                        "any topic": rate(enriched.any(axis=1)),
                    }
    return out


def fmt(pair):
    r, se = pair
    return f"{r:.3f} ± {se:.3f}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-datasets", type=int, default=200, help="data sets per scenario")
    p.add_argument("--n-jobs", type=int, default=1, help="processes (one thread each)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data sets")
    p.add_argument("--n-samples", type=int, default=6, help="samples per side")
    p.add_argument("--cells-per-sample", type=int, default=30)
    p.add_argument("--sample-effect", type=float, default=0.5,
                   help="sd of the samples' log-scale program offsets")
    p.add_argument("--gene-effect", type=float, default=0.3,
                   help="sd of the samples' log-scale gene factors")
    p.add_argument("--effect", type=float, default=0.5,
                   help="strength of the planted program (planted scenario)")
    p.add_argument("--alpha", type=float, default=1.5)
    p.add_argument("--usage", choices=("share", "codes"), default="share",
                   help="topic usage compared (topic_enrichment's usage=)")
    p.add_argument("--max-iter", type=int, default=200)
    p.add_argument("--init", choices=("contrastive", "random"), default=None,
                   help="start of the fits (default: the estimator's, contrastive)")
    p.add_argument("--out", default=str(_HERE / "results" / "calibration.json"))
    args = p.parse_args(argv)
    if args.n_datasets < 2:
        p.error("--n-datasets must be at least 2 (the independent protocol tests data set i "
                "with the model of data set i + 1)")

    from joblib import Parallel, delayed

    import bcnmf

    sys.path.insert(0, str(_HERE))
    from _protocol import commit_stamp

    commit = commit_stamp()
    command = "python benchmarks/calibration.py " + " ".join(argv or sys.argv[1:])
    print("# Calibration of topic_enrichment: cells or samples\n")
    print(f"`{command.strip()}`; bcnmf {bcnmf.__version__} (commit {commit}), Python "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, {args.n_jobs} jobs of one "
          f"thread.\n")
    print(f"{args.n_datasets} data sets per scenario; {args.n_samples} samples per side, "
          f"{args.cells_per_sample} cells each, sample effect {args.sample_effect} on "
          f"programs and {args.gene_effect} on genes, planted "
          f"effect {args.effect}; BCNMF(3, alpha={args.alpha}, max_iter={args.max_iter}, "
          f"init={args.init or 'default'}); "
          f"usage {args.usage!r}.\n")
    n = args.n_datasets
    t0 = time.perf_counter()
    records = {}
    raw = {}
    for scenario in (0, 1):
        first = Parallel(n_jobs=args.n_jobs)(delayed(phase_one)(args, scenario, i)
                                             for i in range(n))
        models = [m for m, _ in first]
        same = [r for _, r in first]
        indep = Parallel(n_jobs=args.n_jobs)(
            delayed(phase_two)(args, scenario, i, models[(i + 1) % n]) for i in range(n))
        records[scenario] = {"independent": indep, "same cells": same}
        raw["null" if scenario == 0 else "planted"] = records[scenario]
    wall = time.perf_counter() - t0
    fits = [r["fit_seconds"] for s in (0, 1) for r in records[s]["same cells"]]
    per = [r["seconds"] for s in (0, 1) for r in records[s]["same cells"]]

    table = summarise(records)
    for kind, title, first, second in (
            ("null", f"## Null: no condition effect (false-positive rate at {LEVEL})",
             ("p <= 0.05, per topic", "per topic"),
             "any topic enriched (BH q <= 0.05)"),
            ("planted", f"\n## Planted program in every target sample (power at {LEVEL})",
             ("planted topic p <= 0.05", "planted topic"), "any topic enriched")):
        print(title + "\n")
        print(f"| protocol | test | {first[0]} | {second} |")
        print("|---|---|---|---|")
        for protocol in PROTOCOLS:
            for test in TESTS:
                row = table[(kind, protocol, test)]
                print(f"| {protocol} | {test} | {fmt(row[first[1]])} | "
                      f"{fmt(row['any topic'])} |")
    cos = [r["planted_cosine"] for r in records[1]["independent"]]
    print(f"\nPlanted topic: cosine similarity to the planted program {np.mean(cos):.2f} ± "
          f"{np.std(cos):.2f} (mean ± sd over data sets, independent protocol).")
    print(f"Rates are mean ± binomial standard error over {n} data sets.")
    print(f"\nCost: fit {np.mean(fits):.2f} ± {np.std(fits):.2f} s, fit and both tests "
          f"{np.mean(per):.2f} ± {np.std(per):.2f} s per data set (mean ± sd, one thread); "
          f"wall time {wall:.0f} s for {2 * n} data sets with {args.n_jobs} jobs.")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {" / ".join(k): {m: {"rate": v[0], "se": v[1]} for m, v in row.items()}
               for k, row in table.items()}
    out.write_text(json.dumps({"command": command.strip(), "commit": commit,
                               "args": vars(args), "wall_seconds": wall,
                               "summary": summary, "raw": raw}, separators=(",", ":")))
    print(f"\nRaw p-values: {out}")


if __name__ == "__main__":
    main()
