"""Mouse protein data: which topics stay enriched when the mice, not the rows, are the units.

``bcnmf.datasets.load_mice_protein()`` holds 15 replicate measurements of every mouse: the
target has 18 mice (270 rows), the background 9 (135 rows); the loader returns the mouse of
every row (``target_samples``, ``background_samples``).  The default model
(``BCNMF(n_components=5, random_state=0)``, ``alpha="auto"``) is fitted on all rows, then
``topic_enrichment`` runs twice on the same rows:

- ``cells``: rows shuffled between target and background (rows treated as independent);
- ``mice``: ``samples=`` / ``background_samples=`` the mouse ids: per-mouse mean usage,
  mice shuffled between the conditions; C(27, 18) = 4,686,825 arrangements is above the
  exact limit, so ``--n-permutations`` random arrangements (Monte Carlo, default 9999);
  the pseudobulk Welch p-value of the same table is printed beside it.

Both tests treat the basis as fixed; the model was fitted on these rows, so both are
optimistic (the basis was chosen to separate them).  The script prints the table and which
topics are enriched (BH q <= 0.05, positive difference) by each test.

Held-out mice (``--splits`` S, default 3): for split seed 0 .. S-1, the mice of each side
are put in random order and cut in two (target 9 + 9, background 5 + 4); the default model
is fitted on the rows of the first halves and both tests run on the rows of the other mice
(9 target and 4 background mice: C(13, 9) = 715 arrangements, exact).  Those p-values are
not optimistic: the tested mice took no part in the fit.

Usage::

    python benchmarks/mice_samples.py
    python benchmarks/mice_samples.py --n-permutations 99999 --seed 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-permutations", type=int, default=9999)
    p.add_argument("--seed", type=int, default=0, help="seed of the permutations")
    p.add_argument("--splits", type=int, default=3, help="held-out mouse splits")
    args = p.parse_args(argv)

    import numpy as np
    import pandas as pd

    import bcnmf
    from bcnmf import BCNMF, topic_enrichment
    from bcnmf.datasets import load_mice_protein

    data = load_mice_protein()
    print("# Mouse protein data: rows or mice as the units of the enrichment test\n")
    command = " ".join(["python benchmarks/mice_samples.py", *(argv or sys.argv[1:])])
    print(f"`{command}`; bcnmf {bcnmf.__version__}.\n")
    n_t, n_b = np.unique(data.target_samples).size, np.unique(data.background_samples).size
    print(f"Target {data.X.shape[0]} rows from {n_t} mice, background {data.Y.shape[0]} rows "
          f"from {n_b} mice.\n")
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = BCNMF(n_components=5, random_state=0).fit(data.X, background=data.Y)
    for w in caught:
        print(f"fit warning: {w.category.__name__}: {w.message}")
    print(f"BCNMF(n_components=5, random_state=0): alpha_ = {model.alpha_:.3g} (auto), "
          f"{time.perf_counter() - t0:.1f} s.\n")
    cells = topic_enrichment(model, data.X, background=data.Y,
                             n_permutations=args.n_permutations, random_state=args.seed)
    mice = topic_enrichment(model, data.X, background=data.Y, samples=data.target_samples,
                            background_samples=data.background_samples,
                            n_permutations=args.n_permutations, random_state=args.seed)
    table = pd.DataFrame({
        "effect (rows)": cells["effect_size"], "p (rows)": cells["p_value"],
        "q (rows)": cells["q_value"], "enriched (rows)": cells["enriched"],
        "effect (mice)": mice["effect_size"], "p (mice)": mice["p_value"],
        "q (mice)": mice["q_value"], "enriched (mice)": mice["enriched"],
        "pseudobulk p": mice["pseudobulk_p_value"],
    })
    print("| topic | " + " | ".join(table.columns) + " |")
    print("|---" * (table.shape[1] + 1) + "|")
    for topic, row in table.iterrows():
        cells_txt = []
        for name, value in row.items():
            if isinstance(value, (bool, np.bool_)):
                cells_txt.append("yes" if value else "no")
            elif name.startswith("effect"):
                cells_txt.append(f"{value:.2f}")
            else:
                cells_txt.append(f"{value:.2g}")
        print(f"| {topic} | " + " | ".join(cells_txt) + " |")
    by_rows = [t for t in table.index if table.loc[t, "enriched (rows)"]]
    by_mice = [t for t in table.index if table.loc[t, "enriched (mice)"]]
    print(f"\nEnriched with rows as units: {', '.join(by_rows) or 'none'}.")
    print(f"Enriched with mice as units: {', '.join(by_mice) or 'none'}.")
    lost = [t for t in by_rows if t not in by_mice]
    print(f"Enriched by rows only: {', '.join(lost) or 'none'}.")
    print(f"\nEffect sizes: Cohen's d of the rows (rows) or of the per-mouse means (mice); "
          f"p-values one-sided, {args.n_permutations} random arrangements, seed "
          f"{args.seed}.")

    if args.splits:
        print("\n## Held-out mice\n")
        print("| split | alpha_ | topic | effect (mice) | p (rows) | q (rows) | p (mice) | "
              "q (mice) | enriched (rows) | enriched (mice) |")
        print("|---" * 10 + "|")
    counts = []
    for split in range(args.splits):
        rng = np.random.default_rng(split)
        fit_t, test_t = _halves(data.target_samples, rng)
        fit_b, test_b = _halves(data.background_samples, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the fit's warnings are printed above
            held = BCNMF(n_components=5, random_state=0).fit(data.X[fit_t],
                                                              background=data.Y[fit_b])
        rows = topic_enrichment(held, data.X[test_t], background=data.Y[test_b],
                                n_permutations=args.n_permutations, random_state=args.seed)
        by_mouse = topic_enrichment(held, data.X[test_t], background=data.Y[test_b],
                                    samples=data.target_samples[test_t],
                                    background_samples=data.background_samples[test_b])
        counts.append((int(rows["enriched"].sum()), int(by_mouse["enriched"].sum())))
        for topic in rows.index:
            print(f"| {split} | {held.alpha_:.3g} | {topic} | "
                  f"{by_mouse.loc[topic, 'effect_size']:.2f} | "
                  f"{rows.loc[topic, 'p_value']:.2g} | {rows.loc[topic, 'q_value']:.2g} | "
                  f"{by_mouse.loc[topic, 'p_value']:.2g} | "
                  f"{by_mouse.loc[topic, 'q_value']:.2g} | "
                  f"{'yes' if rows.loc[topic, 'enriched'] else 'no'} | "
                  f"{'yes' if by_mouse.loc[topic, 'enriched'] else 'no'} |")
    if counts:
        print("\nTopics enriched on held-out mice, per split: rows as units "
              + ", ".join(str(r) for r, _ in counts) + "; mice as units "
              + ", ".join(str(m) for _, m in counts) + " (of 5).")


def _halves(samples, rng):
    """Row masks of two halves of the samples (random order; the first half the larger)."""
    import numpy as np

    names = np.unique(samples)
    order = rng.permutation(names)
    first = set(order[: -(-len(names) // 2)].tolist())
    mask = np.array([s in first for s in samples])
    return mask, ~mask


if __name__ == "__main__":
    main()
