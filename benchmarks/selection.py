"""Validation of the label-free model-selection rule (docs/selection.md).

For every dataset and selection seed: ``bcnmf.select_model`` runs on the grid (labels never
seen), then every grid point is fitted on all cells with the procedure the recommended model
uses (``n_init`` restarts, consensus of the restarts, seed = selection seed) and
scored by the fixed protocol (KMeans on the target codes, ARI against the labels; raw and
per-cell L1-normalised codes), averaged over ``--ari-seeds`` fitting seeds (the protocol of
docs/benchmarks.md reports means over fitting seeds; one fit's ARI on the mouse data varies from 0.1 to 0.8 with
the seed, so a single fit would make "the best ARI on the grid" a maximum of noise).
Reported per grid point: the criteria, the ARI, and whether the recommended point's ARI is
within 10% of the best ARI on the grid.  Per selection run: its seconds as a multiple of
one fit at the grid's middle point (timed right after it in the same process, one BLAS
thread, as the selection's fits; ``refit=False``, so the recommended model's own fit is
not counted).  Per dataset: how many selection seeds choose the most chosen point or have
it stable and within noise of their choice (one paired standard error on their held-out
cells).

Datasets
--------
- ``sim``: the beta-series simulation (``make_contrastive_counts``), log-CP10k, at a reduced
  size (``--sim-genes`` genes, ``--sim-cells`` target and background cells; blocks scale with
  the genes) so that a grid fits on a loaded 2-core machine (raw counts with a count
  ``--loss``; ``--beta`` and ``--sim-seed`` choose the draw);
- ``mice``: ``bcnmf.datasets.load_mice_protein()`` as shipped;
- ``mnist``: ``mnist_daisy_demo`` from /work/shared/data (``load_shared_dataset``), as shipped.

Usage::

    python benchmarks/selection.py --quick          # one seed, small grid
    python benchmarks/selection.py --seeds 0,1 --n-jobs 2
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

GRIDS = {
    "sim": ([2, 3, 5], [0.5, 1.0, 1.5, 2.0, 3.0]),
    "mice": ([2, 3, 5], [0.25, 0.5, 1.0, 1.5, 2.0]),
    "mnist": ([2, 3, 5], [0.25, 0.5, 1.0, 1.5, 2.0]),
}
QUICK_GRIDS = {
    "sim": ([2, 4], [0.5, 1.5, 3.0]),
    "mice": ([2, 5], [0.25, 0.5, 1.0, 2.0]),
    "mnist": ([2, 4], [0.25, 0.5, 1.0, 2.0]),
}


def load(name, args):
    from bcnmf.datasets import (load_mice_protein, load_shared_dataset,
                                make_contrastive_counts, normalize_log1p)

    if name == "sim":
        sim = make_contrastive_counts(args.beta, n_genes=args.sim_genes,
                                      n_target=args.sim_cells, n_background=args.sim_cells,
                                      random_state=args.sim_seed)
        if args.loss != "frobenius":   # a count loss models the raw counts
            return (np.asarray(sim.X, dtype=np.float64), np.asarray(sim.Y, dtype=np.float64),
                    np.asarray(sim.labels))
        return (np.asarray(normalize_log1p(sim.X)), np.asarray(normalize_log1p(sim.Y)),
                np.asarray(sim.labels))
    d = load_mice_protein() if name == "mice" else load_shared_dataset("mnist_daisy_demo")
    return np.asarray(d.X, dtype=np.float64), np.asarray(d.Y, dtype=np.float64), \
        np.asarray(d.labels)


def sample_ids(name, args):
    """``(samples, background_samples)`` for ``select_model`` with ``--by-sample``: the mouse
    of every measurement of the mouse data (15 replicates per mouse); None elsewhere."""
    if not args.by_sample or name != "mice":
        return {}
    from bcnmf.datasets import load_mice_protein

    d = load_mice_protein()
    return {"samples": d.target_samples, "background_samples": d.background_samples}


def fit_params(args):
    """The estimator parameters every fit of the run shares (``--max-iter``, and
    ``--n-shared`` and ``--init`` where given; the estimator's defaults otherwise)."""
    params = {"max_iter": args.max_iter}
    if args.n_shared is not None:
        params["n_shared"] = args.n_shared if args.n_shared == "auto" else int(args.n_shared)
    if args.init is not None:
        params["init"] = args.init
    return params


def _grid_ari(X, Y, labels, k, a, seed, n_init, params):
    from threadpoolctl import threadpool_limits

    from bcnmf import BCNMF

    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = BCNMF(k, alpha=a, n_init=n_init, consensus=True, random_state=seed,
                      **params)
        codes = model.fit_transform(X, background=Y)
        return (P.cluster_ari(codes, labels), P.cluster_ari(codes, labels, normalize=True))


def _saved_ari(name, directory):
    """Grid ARIs saved with ``--csv-dir`` for this dataset: {(K, alpha): (mean, sd)}.  They do
    not depend on the selection seed (every grid point is refitted on all cells)."""
    import pandas as pd

    if directory is None:
        return {}
    paths = sorted(Path(directory).glob(f"{name}_seed*.csv"))
    if not paths:
        return {}
    t = pd.read_csv(paths[0])
    return {(int(k), float(a)): (np.array([r, n]), np.array([rs, ns]))
            for k, a, r, n, rs, ns in zip(t["n_components"], t["alpha"], t["ari_raw"],
                                          t["ari_norm"], t["ari_raw_sd"], t["ari_norm_sd"])}


def grid_ari(name, args):
    """Mean ARI (raw, normalised) of every grid point over the fitting seeds (grid points
    found in ``--ari-from`` are taken from there, the others fitted)."""
    from joblib import Parallel, delayed

    X, Y, labels = load(name, args)
    ks, alphas = (QUICK_GRIDS if args.quick else GRIDS)[name]
    params = {**fit_params(args), "beta_loss": args.loss}
    grid = [(k, a) for k in ks for a in alphas]
    saved = _saved_ari(name, args.ari_from)
    todo = [(k, a) for k, a in grid if (int(k), float(a)) not in saved]
    jobs = [(k, a, s) for k, a in todo for s in range(args.ari_seeds)]
    out = Parallel(n_jobs=args.n_jobs)(
        delayed(_grid_ari)(X, Y, labels, int(k), float(a), s, args.n_init, params)
        for k, a, s in jobs)
    res = np.asarray(out, dtype=float).reshape(len(todo), args.ari_seeds, 2)
    fitted = {(int(k), float(a)): (res[i].mean(axis=0), res[i].std(axis=0))
              for i, (k, a) in enumerate(todo)}
    both = {**saved, **fitted}
    mean = np.array([both[(int(k), float(a))][0] for k, a in grid])
    sd = np.array([both[(int(k), float(a))][1] for k, a in grid])
    return grid, mean, sd


def run(name, seed, args, ari):
    from bcnmf import select_model
    from bcnmf.selection import apply_rule

    X, Y, labels = load(name, args)
    ks, alphas = (QUICK_GRIDS if args.quick else GRIDS)[name]
    params = fit_params(args)
    t0 = time.perf_counter()
    res = select_model(X, ks, background=Y, alpha=alphas, beta_loss=args.loss,
                       n_init=args.n_init, n_splits=args.n_splits, n_jobs=args.n_jobs,
                       random_state=seed, refit=False, **sample_ids(name, args), **params)
    t_sel = time.perf_counter() - t0
    t_fit = one_fit_seconds(X, Y, ks, alphas, seed, args)
    grid, mean, sd = ari
    assert grid == list(zip(res.table["n_components"], res.table["alpha"]))
    table = res.table.copy()
    table["ari_raw"], table["ari_norm"] = mean[:, 0], mean[:, 1]
    table["ari_raw_sd"], table["ari_norm_sd"] = sd[:, 0], sd[:, 1]
    pick = apply_rule(table)
    return table, pick, (t_sel, t_fit), res.placements


def one_fit_seconds(X, Y, ks, alphas, seed, args):
    """Seconds of one fit at the grid's middle K and alpha (one BLAS thread, as the
    selection's fits), timed right after the selection in the same process: the unit of
    the selection's cost."""
    from threadpoolctl import threadpool_limits

    from bcnmf import BCNMF

    k, alpha = ks[len(ks) // 2], alphas[len(alphas) // 2]
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        BCNMF(k, alpha=alpha, beta_loss=args.loss, random_state=seed,
              **fit_params(args)).fit(X, background=Y)
        return time.perf_counter() - t0


def agreement(tables):
    """How often the selection seeds agree: the point chosen most often, and the number of
    seeds whose choice is that point or has it among the rows of :func:`tied_with_choice`."""
    from collections import Counter

    picks = [(int(t["n_components"].iloc[p]), float(t["alpha"].iloc[p])) for t, p in tables]
    mode = Counter(picks).most_common(1)[0][0]
    agree = 0
    for (table, _), chosen in zip(tables, picks):
        at = np.asarray((table["n_components"] == mode[0]) & (table["alpha"] == mode[1]))
        tied = tied_with_choice(table)
        agree += chosen == mode or (tied is not None and bool((tied & at).any()))
    return mode, agree, len(tables)


def save_placements(path, placements):
    """Held-out placements of every grid point (rows of the table, in order)."""
    np.savez_compressed(path, target=np.array([p[0] for p in placements]),
                        background=np.array([p[1] for p in placements]))


def load_placements(path):
    if not Path(path).exists():
        return None
    with np.load(path) as f:
        return list(zip(f["target"], f["background"]))


def tied_with_choice(table):
    """Rows of ``table`` the held-out cells cannot tell from the chosen point: stable grid
    points whose contrast is within one paired standard error of the choice's (None when the
    table has no ``within_noise`` column)."""
    if "within_noise" not in table:
        return None
    from bcnmf.selection import MIN_STABILITY

    stable = np.nan_to_num(np.asarray(table["stability"], dtype=float), nan=1.0) \
        >= MIN_STABILITY
    return np.asarray(table["within_noise"], dtype=bool) & stable


def ks_within_noise(table):
    """K values with a row of :func:`tied_with_choice`."""
    ok = tied_with_choice(table)
    return None if ok is None else sorted({int(k) for k in table["n_components"][ok]})


def fmt_table(table, pick):
    cols = ["n_components", "alpha", "score", "contrast", "stability", "consensus",
            "heldout_target", "heldout_background", "ari_raw", "ari_norm"]
    head = "| K | alpha | score | contrast | stability | consensus | held-out target | " \
           "held-out bg | ARI raw | ARI norm |"
    gap = "contrast_gap_se" in table
    if gap:
        head = head.replace("| contrast |", "| contrast | gap (paired SE) |")
    lines = [head, "|" + "---|" * (len(cols) + gap)]
    for i, row in table.iterrows():
        mark = " **<-**" if i == pick else ""
        cells = [f"{int(row.n_components)}", f"{row.alpha:g}"] + \
            [f"{row[c]:.3f}" for c in cols[2:]]
        if gap:
            cells.insert(4, f"{row.contrast_gap:.4f} ({row.contrast_gap_se:.4f})")
        cells[-1] += mark
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(table, pick):
    out = {}
    for col in ("ari_raw", "ari_norm"):
        best = float(np.nanmax(table[col]))
        got = float(table[col].iloc[pick])
        out[col] = (got, best, got >= 0.9 * best)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="sim,mice,mnist")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--n-init", type=int, default=3,
                    help="select_model's n_init (restarts per grid point and split)")
    ap.add_argument("--n-splits", type=int, default=3,
                    help="select_model's n_splits (random hold-out splits averaged)")
    ap.add_argument("--ari-seeds", type=int, default=3,
                    help="fitting seeds averaged for the ARI of every grid point")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--max-iter", type=int, default=500)
    ap.add_argument("--n-shared", default=None,
                    help="n_shared of every fit ('auto' or a count; default: the estimator's)")
    ap.add_argument("--init", default=None, choices=("contrastive", "random"),
                    help="init of every fit, select_model's restarts included (default: "
                         "the estimator's for the scored fits, random draws for the "
                         "restarts)")
    ap.add_argument("--beta", type=float, default=8.0)
    ap.add_argument("--sim-genes", type=int, default=600)
    ap.add_argument("--sim-cells", type=int, default=300)
    ap.add_argument("--sim-seed", type=int, default=0,
                    help="random_state of the simulation (0 for the validated draw)")
    ap.add_argument("--loss", default="frobenius",
                    choices=["frobenius", "kullback-leibler", "poisson"],
                    help="beta_loss of every fit; with a count loss the simulation is "
                         "modelled on raw counts (estimator defaults otherwise, e.g. the "
                         "stable mode's shared topics)")
    ap.add_argument("--ks", default=None, help="override the grid's K values, e.g. 2,3,5,8")
    ap.add_argument("--alphas", default=None, help="override the grid's alphas")
    ap.add_argument("--from-csv", default=None, metavar="DIR",
                    help="reprint the tables and the summary of runs saved with --csv-dir, "
                         "applying the current rule (no fitting)")
    ap.add_argument("--csv-dir", default=None,
                    help="also write every table as CSV here (and the held-out placements of "
                         "every grid point as NAME_seedS_placements.npz)")
    ap.add_argument("--ari-from", default=None, metavar="DIR",
                    help="take the grid ARIs of the grid points found in CSVs saved there with "
                         "--csv-dir (they do not depend on the selection seed; same data and "
                         "settings assumed); fit the others")
    ap.add_argument("--by-sample", action="store_true",
                    help="hold out whole mice on the mouse data (select_model's samples=)")
    ap.add_argument("--quick", action="store_true",
                    help="one seed, small grids, 300 sweeps at most")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds = args.seeds if "--seeds" in (argv or sys.argv) else "0"
        args.max_iter = min(args.max_iter, 300)
    seeds = [int(s) for s in args.seeds.split(",")]
    for grids in (GRIDS, QUICK_GRIDS):
        for name, (ks, alphas) in list(grids.items()):
            grids[name] = ([int(k) for k in args.ks.split(",")] if args.ks else ks,
                           [float(a) for a in args.alphas.split(",")] if args.alphas
                           else alphas)
    summary, tables = [], {}
    if args.from_csv:
        import pandas as pd

        from bcnmf.selection import apply_rule, noise_columns, selection_score

        for path in sorted(Path(args.from_csv).glob("*_seed*.csv")):
            name, seed = path.stem.split("_seed")
            table = pd.read_csv(path)
            table["score"] = selection_score(table)
            pick = apply_rule(table)
            placements = load_placements(path.with_name(path.stem + "_placements.npz"))
            if placements is not None:
                table["contrast_gap"], table["contrast_gap_se"], table["within_noise"] = \
                    noise_columns(table, placements, pick)
            else:
                table = table.drop(columns=["contrast_gap", "contrast_gap_se",
                                            "within_noise"], errors="ignore")
            ks = sorted(set(table["n_components"]))
            print(f"\n### {name}, selection seed {seed} (K in {ks})\n")
            print(fmt_table(table, pick))
            summary.append((name, int(seed), table["n_components"].iloc[pick],
                            table["alpha"].iloc[pick], verdict(table, pick),
                            ks_within_noise(table)))
            tables.setdefault(name, []).append((table, pick))
        _print_summary(summary, tables)
        return
    for name in args.datasets.split(","):
        t0 = time.perf_counter()
        ari = grid_ari(name, args)
        print(f"\n({name}: grid ARIs over {args.ari_seeds} fitting seeds in "
              f"{time.perf_counter() - t0:.0f} s)")
        for seed in seeds:
            table, pick, (t_sel, t_fit), placements = run(name, seed, args, ari)
            tables.setdefault(name, []).append((table, pick))
            v = verdict(table, pick)
            if args.csv_dir:
                Path(args.csv_dir).mkdir(parents=True, exist_ok=True)
                table.to_csv(Path(args.csv_dir) / f"{name}_seed{seed}.csv", index=False)
                save_placements(Path(args.csv_dir) / f"{name}_seed{seed}_placements.npz",
                                placements)
            print(f"\n### {name}, selection seed {seed} (selection {t_sel:.0f} s = "
                  f"{t_sel / t_fit:.0f} x one fit at the grid's middle point, {t_fit:.1f} s)\n")
            print(fmt_table(table, pick))
            summary.append((name, seed, table["n_components"].iloc[pick],
                            table["alpha"].iloc[pick], v, ks_within_noise(table)))
            sys.stdout.flush()
    _print_summary(summary, tables)


def _print_summary(summary, tables):
    print("\n### Summary: is the recommended model within 10% of the grid's best ARI?\n")
    print("| dataset | seed | chosen K | chosen alpha | ARI raw (best) | within 10% | "
          "ARI norm (best) | within 10% | K within noise |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, seed, k, a, v, tied in summary:
        r, n = v["ari_raw"], v["ari_norm"]
        tied = "-" if tied is None else ", ".join(map(str, tied))
        print(f"| {name} | {seed} | {k} | {a:g} | {r[0]:.3f} ({r[1]:.3f}) | "
              f"{'yes' if r[2] else 'no'} | {n[0]:.3f} ({n[1]:.3f}) | "
              f"{'yes' if n[2] else 'no'} | {tied} |")
    print("\n### Agreement over selection seeds\n")
    print("| dataset | seeds | most chosen point | seeds choosing it, or with it stable and "
          "within noise |")
    print("|---|---|---|---|")
    for name, runs in tables.items():
        (k, a), agree, n = agreement(runs)
        print(f"| {name} | {n} | K = {k}, alpha {a:g} | {agree} / {n} |")


if __name__ == "__main__":
    main()
