#!/usr/bin/env python
"""Seconds per iteration of this tree against another revision, in one run.

Usage
-----
    python benchmarks/speed_compare.py --baseline REV            # full workload
    python benchmarks/speed_compare.py --baseline REV --quick    # 10x fewer cells
    python benchmarks/speed_compare.py --baseline REV --rounds 3 --threads 2

``REV`` is any git revision of this repository; it is checked out into a
temporary worktree (removed at the end).  For every configuration of
``benchmarks/speed.py`` (format x loss, the ``bcnmf_full`` and
``bcnmf_alpha0`` methods), each *round* runs one ``speed.py`` child per tree,
in alternating order (baseline first in even rounds), so that drifts of a
shared machine's load hit both trees alike; each child measures the slope of
``--repeats`` fits as ``speed.py`` does.  Both trees use the same installed
dependencies; the tree under test is put first on ``PYTHONPATH``.

Printed: per configuration the median seconds per iteration of each tree
over the rounds, the ratio current / baseline of the medians, and the
spread of the per-round ratios (min-max): a ratio whose spread straddles 1
is noise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import speed  # noqa: E402  (benchmarks/speed.py: the child and its summary)
from _baseline import REPO, baseline_src, short_rev  # noqa: E402

METHODS = ("bcnmf_full", "bcnmf_alpha0")


def _child(src: Path, cfg: dict, env: dict, timeout: float) -> float | None:
    env = dict(env, PYTHONPATH=str(src))
    res = speed._run_child(cfg, env, timeout)
    if not res.get("ok"):
        print(f"  failed ({src}): {res.get('error', '')[:300]}", file=sys.stderr)
        return None
    return speed._summarise(res)["s_per_iter"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", required=True, help="git revision to compare against")
    p.add_argument("--quick", action="store_true", help="1,000 + 1,000 cells")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2, help="fits per child (slope median)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", default="2,42", help="max_iter pair A,B of the slope")
    p.add_argument("--formats", nargs="+", choices=speed.FORMATS, default=list(speed.FORMATS))
    p.add_argument("--losses", nargs="+", choices=speed.LOSSES, default=list(speed.LOSSES))
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--child-timeout", type=float, default=1800.0)
    args = p.parse_args(argv)
    scale = 0.1 if args.quick else 1.0
    iters = [int(v) for v in args.iters.split(",")]
    env = dict(os.environ)
    for v in speed.THREAD_VARS:
        env[v] = str(args.threads)
    rev, head = short_rev(args.baseline), short_rev("HEAD")
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    with baseline_src(rev) as base:
        trees = {"baseline": base, "current": REPO / "src"}
        rows = []
        for fmt in args.formats:
            for loss in args.losses:
                for method in args.methods:
                    cfg = {"kind": "fit", "format": fmt, "loss": loss, "method": method,
                           "threads": args.threads, "repeats": args.repeats,
                           "iters": iters, "n_target": int(round(10_000 * scale)),
                           "n_background": int(round(10_000 * scale)),
                           "n_shared": None}
                    times = {"baseline": [], "current": []}
                    print(f"{fmt} {loss} {method}", file=sys.stderr, flush=True)
                    for r in range(args.rounds):
                        order = ("baseline", "current") if r % 2 == 0 else \
                            ("current", "baseline")
                        for name in order:
                            times[name].append(_child(trees[name], cfg, env,
                                                      args.child_timeout))
                    pairs = [(c, b) for c, b in zip(times["current"], times["baseline"])
                             if c and b]
                    if not pairs:
                        rows.append((fmt, loss, method, None, None, None, None))
                        continue
                    ratios = [c / b for c, b in pairs]
                    med_c = statistics.median(c for c, _ in pairs)
                    med_b = statistics.median(b for _, b in pairs)
                    rows.append((fmt, loss, method, med_b, med_c, med_c / med_b,
                                 (min(ratios), max(ratios))))
    print(f"# seconds per iteration: {head}{' (+ uncommitted changes)' if dirty else ''} "
          f"against {rev}")
    print()
    print(f"{'quick: 1,000 + 1,000' if args.quick else '10,000 + 10,000'} cells x 3,000 genes, "
          f"K = 10; {args.rounds} rounds x {args.repeats} fits per tree, slope of "
          f"max_iter {iters[0]} -> {iters[1]}; {args.threads} threads; 1/5/15-min load "
          + "/".join(f"{v:.2f}" for v in os.getloadavg()))
    print()
    print("| format | loss | method | baseline s/iter | current s/iter | current / baseline "
          "| per-round ratio min-max |")
    print("|---|---|---|---|---|---|---|")
    for fmt, loss, method, b, c, ratio, spread in rows:
        if ratio is None:
            print(f"| {fmt} | {loss} | {method} | n/a | n/a | n/a | n/a |")
        else:
            print(f"| {fmt} | {loss} | {method} | {b:.4g} | {c:.4g} | {ratio:.3f} "
                  f"| {spread[0]:.3f}-{spread[1]:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
