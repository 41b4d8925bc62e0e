"""Acceptance benchmark of ``bcnmf.topic_gene_sets`` on the simulation's planted program.

Every draw (seed ``s``) simulates ``make_contrastive_counts(beta=8, n_genes=2000,
n_target=500, n_background=500, random_state=s)``: five shared programs own genes 0-829
(blocks of 166), the two target-only programs own genes 830-909 and 910-989 (blocks of 80),
present in the target cells only.  Genes are named ``gene0`` ... ``gene1999``.  The counts are
normalised (``normalize_log1p``) and ``BCNMF(3, alpha=1.5, beta_loss="frobenius",
random_state=s)`` is fitted: alpha is fixed, so the benchmark measures the gene-set test and
not the choice of alpha.  The topic most enriched in the target is the one with the largest
``effect_size`` of ``topic_enrichment`` (200 permutations).

Gene sets: ``planted``, the 160 genes of the two target programs
(``data.target_genes``), and 50 random sets of 160 genes drawn (seed ``s``) from the 1840
other genes, so that they hold no planted gene and are null sets.  ``topic_gene_sets(model,
sets, feature_names=..., max_size=None)`` tests every set in every topic.

Acceptance: ``planted`` is the first set of the most enriched topic with q < 0.05 in at
least 9 of 10 draws, and the random sets reach p < 0.05 at no more than the nominal rate
(5%).  The random sets' rate is printed for the most enriched topic and for all three
topics, as the mean and standard deviation over draws and pooled; q < 0.05 too.  Against
the rest of the genes, which include the planted ones, a random set of other genes sits
slightly below the middle in a topic that loads the planted genes, so in that topic the
test is conservative for them.  The AUC of each target program's 80 genes on its own in
the most enriched topic is printed too (a separate call; the acceptance table is unchanged).

Usage::

    python benchmarks/gene_sets.py              # 10 draws, about 3 minutes on one core
    python benchmarks/gene_sets.py --seeds 3    # a quick look

Raw numbers per draw go to ``--out`` (default ``benchmarks/results/gene_sets.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
import warnings
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _protocol import commit_stamp, json_safe  # noqa: E402

N_GENES, N_CELLS, N_COMPONENTS, ALPHA, N_RANDOM = 2000, 500, 3, 1.5, 50


def draw(seed):
    """One draw: simulate, fit, test; the numbers of the draw as a dict."""
    import bcnmf
    from bcnmf.datasets import make_contrastive_counts, normalize_log1p

    data = make_contrastive_counts(8.0, n_genes=N_GENES, n_target=N_CELLS,
                                   n_background=N_CELLS, random_state=seed)
    X, Y = normalize_log1p(data.X), normalize_log1p(data.Y)
    start = time.perf_counter()
    model = bcnmf.BCNMF(N_COMPONENTS, alpha=ALPHA, beta_loss="frobenius", random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, background=Y)
    fit_seconds = time.perf_counter() - start
    enrichment = bcnmf.topic_enrichment(model, X, background=Y, n_permutations=200,
                                        random_state=seed)
    top = str(enrichment["effect_size"].idxmax())

    genes = [f"gene{j}" for j in range(N_GENES)]
    planted = np.asarray(data.target_genes)
    others = np.setdiff1d(np.arange(N_GENES), planted)
    rng = np.random.default_rng(seed)
    sets = {"planted": [genes[j] for j in planted]}
    for i in range(N_RANDOM):
        sets[f"random{i + 1}"] = [genes[j] for j in rng.choice(others, planted.size,
                                                               replace=False)]
    start = time.perf_counter()
    table = bcnmf.topic_gene_sets(model, sets, feature_names=genes, max_size=None)
    test_seconds = time.perf_counter() - start

    # each target program on its own (a separate call: the acceptance table is unchanged)
    blocks = np.array_split(np.sort(planted), 2)
    programs = bcnmf.topic_gene_sets(
        model, {f"program{i + 1}": [genes[j] for j in b] for i, b in enumerate(blocks)},
        feature_names=genes, max_size=None)
    program_auc = sorted(programs.loc[programs["topic"] == top, "effect"].tolist())

    in_top = table[table["topic"] == top].reset_index(drop=True)
    row = in_top[in_top["gene_set"] == "planted"].iloc[0]
    random_top = in_top[in_top["gene_set"] != "planted"]
    random_all = table[table["gene_set"] != "planted"]
    return {
        "seed": seed, "planted_genes": [int(planted.min()), int(planted.max())],
        "n_planted": int(planted.size), "top_topic": top,
        "top_effect_size": float(enrichment.loc[top, "effect_size"]),
        "top_enrichment_q": float(enrichment.loc[top, "q_value"]),
        "planted_rank": int(in_top.index[in_top["gene_set"] == "planted"][0]) + 1,
        "planted_q": float(row["q_value"]), "planted_p": float(row["p_value"]),
        "planted_auc": float(row["effect"]), "planted_statistic": float(row["statistic"]),
        "planted_first_q05": bool(in_top["gene_set"].iloc[0] == "planted"
                                  and row["q_value"] < 0.05),
        "random_p05_top": float((random_top["p_value"] < 0.05).mean()),
        "random_q05_top": float((random_top["q_value"] < 0.05).mean()),
        "random_p05_all": float((random_all["p_value"] < 0.05).mean()),
        "random_q05_all": float((random_all["q_value"] < 0.05).mean()),
        "random_auc_top": float(random_top["effect"].mean()),
        "program_auc_top": program_auc[1], "other_program_auc_top": program_auc[0],
        "n_random_top": int(len(random_top)), "n_random_all": int(len(random_all)),
        "fit_seconds": fit_seconds, "test_seconds": test_seconds, "n_iter": int(model.n_iter_),
        "fit_warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
    }


def header():
    import bcnmf

    commit = commit_stamp()
    command = " ".join([Path(sys.executable).name] + [shlex.quote(a) for a in sys.argv])
    meta = dict(commit=commit, platform=platform.platform(), python=platform.python_version(),
                numpy=np.__version__, bcnmf=bcnmf.__version__, cpus=os.cpu_count(),
                command=command)
    print("# topic_gene_sets on the planted target program\n")
    print(f"commit {commit}; {meta['platform']}; Python {meta['python']}; numpy "
          f"{meta['numpy']}; bcnmf {meta['bcnmf']}; command `{command}`\n")
    return meta


def _ms(values, digits=3):
    values = np.asarray(values, dtype=float)
    sd = values.std(ddof=1) if values.size > 1 else 0.0
    return f"{values.mean():.{digits}f} ± {sd:.{digits}f}"


def report(rows):
    print("| seed | top topic | planted rank | planted q | planted AUC | random p<0.05 (top "
          "topic) | random p<0.05 (all topics) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['top_topic']} | {r['planted_rank']} | "
              f"{r['planted_q']:.2e} | {r['planted_auc']:.3f} | {r['random_p05_top']:.3f} | "
              f"{r['random_p05_all']:.3f} |")
    n = len(rows)
    first = sum(r["planted_first_q05"] for r in rows)
    pooled_top = sum(r["random_p05_top"] * r["n_random_top"] for r in rows) / \
        sum(r["n_random_top"] for r in rows)
    pooled_all = sum(r["random_p05_all"] * r["n_random_all"] for r in rows) / \
        sum(r["n_random_all"] for r in rows)
    summary = {
        "draws": n, "planted_first_q05": first,
        "random_p05_top_pooled": pooled_top, "random_p05_all_pooled": pooled_all,
    }
    print("\n| measure | value (mean ± sd over draws) |")
    print("|---|---|")
    print(f"| planted set first in the most enriched topic with q < 0.05 | {first} of {n} |")
    print(f"| planted AUC | {_ms([r['planted_auc'] for r in rows])} |")
    print(f"| planted statistic (z) | {_ms([r['planted_statistic'] for r in rows], 2)} |")
    print(f"| AUC of the topic's own program (the better of the two, 80 genes each) | "
          f"{_ms([r['program_auc_top'] for r in rows])} |")
    print(f"| AUC of the other program | "
          f"{_ms([r['other_program_auc_top'] for r in rows])} |")
    print(f"| random sets at p < 0.05, most enriched topic | "
          f"{_ms([r['random_p05_top'] for r in rows])} (pooled {pooled_top:.3f}) |")
    print(f"| random sets at p < 0.05, all topics | "
          f"{_ms([r['random_p05_all'] for r in rows])} (pooled {pooled_all:.3f}) |")
    print(f"| random sets at q < 0.05, all topics | "
          f"{_ms([r['random_q05_all'] for r in rows])} |")
    print(f"| random sets' mean AUC, most enriched topic | "
          f"{_ms([r['random_auc_top'] for r in rows])} |")
    print(f"| seconds: fit / gene-set test | {_ms([r['fit_seconds'] for r in rows], 1)} / "
          f"{_ms([r['test_seconds'] for r in rows], 3)} |")
    ok = first >= math.ceil(0.9 * n) and pooled_top <= 0.05 and pooled_all <= 0.05
    print(f"\nacceptance (planted first with q < 0.05 in >= 90% of draws, random sets at "
          f"p < 0.05 at most 5%): {'met' if ok else 'NOT met'}")
    summary["accepted"] = ok
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="number of draws (default 10)")
    parser.add_argument("--out", default=str(HERE / "results" / "gene_sets.json"),
                        help="raw numbers (default benchmarks/results/gene_sets.json)")
    args = parser.parse_args(argv)
    meta = header()
    start = time.perf_counter()
    rows = [draw(seed) for seed in range(args.seeds)]
    summary = report(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = dict(meta=meta, args=vars(args),
               settings=dict(beta=8.0, n_genes=N_GENES, n_cells=N_CELLS,
                             n_components=N_COMPONENTS, alpha=ALPHA, beta_loss="frobenius",
                             n_random=N_RANDOM),
               wall_seconds=time.perf_counter() - start, summary=summary, rows=rows)
    out.write_text(json.dumps(json_safe(doc), indent=1))
    print(f"\n_raw rows: {out}_")


if __name__ == "__main__":
    main()
