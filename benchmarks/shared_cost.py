#!/usr/bin/env python
"""What shared topics cost: a ``BCNMF`` fit with ``n_shared="auto"`` against one with
``n_shared=0`` at the same K.

Acceptance measured: a fit with shared topics costs at most 1.5x a fit without them at the
same K (both losses, dense and sparse input).

Prints markdown tables.  Per configuration (workload, data, loss, input format): seconds per
fit of each model, its ``n_iter_``, seconds per sweep (whole fit / ``n_iter_``) and the ratios
shared / plain of both; then where the shared-topic fit's time goes.

Workloads (cells x genes, target + background)
----------------------------------------------
* ``speed``: the speed benchmark's workload (``benchmarks/speed.py``, ``make_counts`` and
  seed imported from it): 3,000 genes, 7 % nonzero, values 1 + Poisson(2) at uniform random
  positions (no structure), K = 10.  Its full size, 10,000 + 10,000 cells, runs every fit to
  ``max_iter`` (500 sweeps, ~1-2 min a fit on one core), far over this script's budget; the
  default here is its ``--quick`` size, 1,000 + 1,000 cells (``--speed-cells``).  "dense" is
  ``X.toarray()`` of the same matrices, as in the speed benchmark.
* ``beta8``: ``make_contrastive_counts(8.0, random_state=0)`` (1,000 + 1,000 x 3,000), K = 2.
* ``cells1``: ``make_cell_type_counts(1.0, random_state=0)`` (1,000 + 500 x 2,000), K = 5.

Data and losses: raw counts with both losses ("kullback-leibler", "frobenius"); for the two
simulations also ``normalize_log1p`` of the counts with squared error ("frobenius").  Every
configuration runs on dense (float64, C order) and on scipy CSR input.

Fits
----
``BCNMF(K, beta_loss=loss, random_state=0, n_shared=...).fit(X, background=Y)`` with the
estimator's other defaults (stable mode, alpha 1.5, ``max_iter`` 500, ``tol`` 1e-4), so the
two fits of a pair may stop after different numbers of sweeps: ``n_iter_`` is printed and the
per-sweep time (whole fit / ``n_iter_``) is given next to the whole-fit time.

Timing
------
Threads pinned to 1 (OMP, OPENBLAS, MKL and NUMBA thread variables set before numpy is
imported, and ``threadpoolctl.threadpool_limits(1)`` when available).  Before the timed fits
of a configuration, both models are fitted once, untimed, on its full data with
``max_iter=1``: the CSR kernels are compiled per number of topics (K plus the shared topics
in the main loop, the shared topics alone in their background NMF), so only the real data's
``n_shared_`` compiles the kernels the timed fits use (a warm-up on a subset of the rows can
count fewer shared topics and leave seconds of compilation in the first timed fit).  Then,
for each of ``--repeats`` repeats, the pair is fitted
back to back, the order alternating between repeats (plain first, then shared first, ...), so
that the ratio of a pair is measured under the same load.  Reported: median over repeats and
the min-max; the ratios are per pair (median and min-max of the per-repeat ratios).

Split of a fit (medians), timed by wrapping functions of ``bcnmf.core.fit`` from this script
(the library is not modified):

* ``count``: ``host_sample`` + ``shared_count`` (choosing ``n_shared`` for "auto");
* ``shared NMF``: ``shared_basis``, the background-only NMF whose topics are then held fixed
  (its number of sweeps, at most 200, in brackets);
* ``loop``: the main ``solve`` minus its final code polish;
* ``polish``: ``InMemory.refine``, the codes refined at the end of the main ``solve``;
* ``other``: the rest (validation, scans, blocks, initialisation, results).

``loop/sweep ratio`` is (loop / n_iter_) of the shared fit over that of the plain fit: the
per-sweep cost of the extra (fixed) topics alone.

Usage::

    python benchmarks/shared_cost.py                  # 3 repeats, every workload (~15 min)
    python benchmarks/shared_cost.py --quick          # 1 repeat, speed (500 + 500) and cells1
    python benchmarks/shared_cost.py --repeats 5 --workloads beta8 --formats csr
    python benchmarks/shared_cost.py --speed-cells 10000   # the speed benchmark's full size
"""

from __future__ import annotations

import os

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMBA_NUM_THREADS")
for _var in THREAD_VARS:
    os.environ[_var] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import speed  # noqa: E402  (benchmarks/speed.py: the speed workload)
from _protocol import git  # noqa: E402
import bcnmf  # noqa: E402
import bcnmf.core.executor as bc_executor  # noqa: E402
import bcnmf.core.fit as bc_fit  # noqa: E402
from bcnmf import datasets  # noqa: E402

KL, FRO = "kullback-leibler", "frobenius"
FORMATS = ("dense", "csr")
WORKLOADS = ("speed", "beta8", "cells1")
QUICK_WORKLOADS = ("speed", "cells1")
LIMIT = 1.5   # acceptance: shared fit <= 1.5 x plain fit


# --------------------------------------------------------------------------
# timers around the library's fit pipeline
# --------------------------------------------------------------------------
class Timers:
    """Seconds spent in the wrapped parts of one fit (see the module docstring)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.t = {"count": 0.0, "shared": 0.0, "solve": 0.0, "polish": 0.0}
        self.shared_sweeps = 0
        self.in_shared = False


TIMERS = Timers()


def _timed(key, fn):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMERS.t[key] += time.perf_counter() - t0
    wrapper.__wrapped__ = fn
    return wrapper


def _install_timers():
    orig_basis, orig_solve = bc_fit.shared_basis, bc_fit.solve

    def shared_basis(*args, **kwargs):
        TIMERS.in_shared = True
        t0 = time.perf_counter()
        try:
            return orig_basis(*args, **kwargs)
        finally:
            TIMERS.t["shared"] += time.perf_counter() - t0
            TIMERS.in_shared = False

    def solve(*args, **kwargs):
        if TIMERS.in_shared:   # the shared topics' background NMF: counted in "shared"
            out = orig_solve(*args, **kwargs)
            TIMERS.shared_sweeps += int(out.n_iter)
            return out
        t0 = time.perf_counter()
        try:
            return orig_solve(*args, **kwargs)
        finally:
            TIMERS.t["solve"] += time.perf_counter() - t0

    bc_fit.host_sample = _timed("count", bc_fit.host_sample)
    bc_fit.shared_count = _timed("count", bc_fit.shared_count)
    bc_fit.shared_basis = shared_basis
    bc_fit.solve = solve
    bc_executor.InMemory.refine = _timed("polish", bc_executor.InMemory.refine)


# --------------------------------------------------------------------------
# workloads
# --------------------------------------------------------------------------
def _speed_data(n_cells):
    """The speed benchmark's matrices (benchmarks/speed.py: same generator and seed)."""
    ss_x, ss_y = np.random.SeedSequence(speed.SEED).spawn(2)
    X = speed.make_counts(n_cells, speed.N_GENES, speed.DENSITY, ss_x)
    Y = speed.make_counts(n_cells, speed.N_GENES, speed.DENSITY, ss_y)
    return X.toarray(), Y.toarray()


def workload_data(name, speed_cells):
    """``(K, [(data label, X, Y, losses)])`` of a workload, dense float64 arrays."""
    if name == "speed":
        X, Y = _speed_data(speed_cells)
        return speed.K, [(f"counts ({speed_cells}+{speed_cells})", X, Y, (KL, FRO))]
    if name == "beta8":
        d, k = datasets.make_contrastive_counts(8.0, random_state=0), 2
    elif name == "cells1":
        d, k = datasets.make_cell_type_counts(1.0, random_state=0), 5
    else:
        raise ValueError(name)
    X, Y = np.asarray(d.X, dtype=np.float64), np.asarray(d.Y, dtype=np.float64)
    return k, [("counts", X, Y, (KL, FRO)),
               ("log1p", datasets.normalize_log1p(X), datasets.normalize_log1p(Y), (FRO,))]


def _as_format(A, fmt):
    return sp.csr_matrix(A) if fmt == "csr" else np.ascontiguousarray(A)


# --------------------------------------------------------------------------
# fits
# --------------------------------------------------------------------------
def fit_once(X, Y, k, loss, n_shared, max_iter=None):
    kwargs = {} if max_iter is None else {"max_iter": max_iter}
    est = bcnmf.BCNMF(k, beta_loss=loss, random_state=0, n_shared=n_shared, **kwargs)
    gc.collect()
    TIMERS.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        est.fit(X, background=Y)
        total = time.perf_counter() - t0
    t = dict(TIMERS.t)
    loop = t["solve"] - t["polish"]
    return {"total": total, "n_iter": int(est.n_iter_),
            "n_shared": int(getattr(est, "n_shared_", 0) or 0),
            "count": t["count"], "shared": t["shared"], "loop": loop, "polish": t["polish"],
            "other": total - t["count"] - t["shared"] - t["solve"],
            "shared_sweeps": TIMERS.shared_sweeps}


def run_config(X, Y, k, loss, repeats):
    """Warm-up, then ``repeats`` back-to-back pairs (plain, shared) in alternating order."""
    for ns in (0, "auto"):   # untimed: compiles the kernels for these numbers of topics
        fit_once(X, Y, k, loss, ns, max_iter=1)
    runs = {0: [], "auto": []}
    for r in range(repeats):
        order = (0, "auto") if r % 2 == 0 else ("auto", 0)
        for ns in order:
            runs[ns].append(fit_once(X, Y, k, loss, ns))
    return runs


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
def _med(values):
    return statistics.median(values)


def _spread(values, fmt="{:.3g}"):
    med = fmt.format(_med(values))
    if len(values) == 1:
        return med
    return f"{med} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def _iters(runs, field="n_iter"):
    """The distinct values of ``field`` over the repeats, e.g. ``500`` or ``152/161``."""
    vals = sorted({r[field] for r in runs})
    return "/".join(str(v) for v in vals)


def _table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def header_lines(argv):
    lines = ["# Cost of shared topics: n_shared=\"auto\" vs n_shared=0", ""]
    cmd = " ".join(shlex.quote(a) for a in ["python", "benchmarks/shared_cost.py", *argv])
    dirty = git("status", "--porcelain", "--", "src")
    lines.append(f"- command: `{cmd}`")
    lines.append(f"- commit: {git('rev-parse', '--short', 'HEAD') or '?'}"
                 + (" (src/ has uncommitted changes)" if dirty else ""))
    lines.append(f"- machine: {speed._cpu_model()}, {os.cpu_count()} CPUs, "
                 f"{platform.platform()}; load average at start "
                 + "/".join(f"{v:.2f}" for v in os.getloadavg()))
    try:
        import numba
        numba_v = numba.__version__
    except ImportError:   # pragma: no cover
        numba_v = "unavailable"
    lines.append(f"- versions: Python {platform.python_version()}, numpy {np.__version__}, "
                 f"scipy {scipy.__version__}, numba {numba_v}, bcnmf {bcnmf.__version__}")
    lines.append("- threads: " + ", ".join(f"{v}={os.environ.get(v)}" for v in THREAD_VARS)
                 + ("; threadpoolctl limit 1" if _threadpool_limits() is not None else ""))
    return lines


def _threadpool_limits():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits


def report(results, repeats):
    out = ["## Whole fit and per sweep", ""]
    rows = []
    for key, runs in results:
        wl, data, loss, fmt, k = key
        p, s = runs[0], runs["auto"]
        ratio = [b["total"] / a["total"] for a, b in zip(p, s)]
        ratio_sweep = [(b["total"] / b["n_iter"]) / (a["total"] / a["n_iter"])
                       for a, b in zip(p, s)]
        rows.append([
            wl, data, loss, fmt, k, _iters(s, "n_shared"),
            _iters(p), _iters(s),
            _spread([r["total"] for r in p]), _spread([r["total"] for r in s]),
            _spread(ratio, "{:.2f}"),
            _spread([1e3 * r["total"] / r["n_iter"] for r in p]),
            _spread([1e3 * r["total"] / r["n_iter"] for r in s]),
            _spread(ratio_sweep, "{:.2f}"),
            "PASS" if _med(ratio) <= LIMIT else "FAIL",
        ])
    out.append(_table(["workload", "data", "loss", "format", "K", "n_shared_",
                       "n_iter_ plain", "n_iter_ shared", "s/fit plain", "s/fit shared",
                       "fit ratio", "ms/sweep plain", "ms/sweep shared", "sweep ratio",
                       f"fit ratio <= {LIMIT}"], rows))
    out.append("")
    out.append(f"Median over {repeats} repeat(s), [min-max] when more than one; ratios are "
               "shared / plain per back-to-back pair. ms/sweep = whole fit / n_iter_.")
    out.append("")
    out.append("## Where the time goes (median seconds)")
    out.append("")
    rows = []
    for key, runs in results:
        wl, data, loss, fmt, k = key
        p, s = runs[0], runs["auto"]

        def m(rs, field):
            return _med([r[field] for r in rs])

        loop_sweep = [(b["loop"] / b["n_iter"]) / (a["loop"] / a["n_iter"])
                      for a, b in zip(p, s)]
        total_s = m(s, "total")
        rows.append([
            wl, data, loss, fmt,
            f"{total_s:.3g}",
            f"{m(s, 'count'):.3g} ({100 * m(s, 'count') / total_s:.0f}%)",
            f"{m(s, 'shared'):.3g} ({100 * m(s, 'shared') / total_s:.0f}%) "
            f"[{_iters(s, 'shared_sweeps')}]",
            f"{m(s, 'loop'):.3g} ({100 * m(s, 'loop') / total_s:.0f}%)",
            f"{m(s, 'polish'):.3g}", f"{m(s, 'other'):.3g}",
            f"{m(p, 'total'):.3g}", f"{m(p, 'loop'):.3g}", f"{m(p, 'polish'):.3g}",
            f"{m(p, 'other'):.3g}",
            _spread(loop_sweep, "{:.2f}"),
        ])
    out.append(_table(["workload", "data", "loss", "format", "shared: total", "count",
                       "shared NMF [sweeps]", "loop", "polish", "other", "plain: total",
                       "loop", "polish", "other", "loop/sweep ratio"], rows))
    out.append("")
    out.append("count = host_sample + shared_count; shared NMF = shared_basis; loop = "
               "main solve without its final code polish; polish = InMemory.refine; other = "
               "the rest of fit. loop/sweep ratio: (loop / n_iter_) shared over plain.")
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 repeat, workloads speed (500 + 500 cells) and cells1")
    p.add_argument("--repeats", type=int, default=None, help="pairs per configuration (3)")
    p.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=None)
    p.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    p.add_argument("--speed-cells", type=int, default=None,
                   help="target and background cells of the speed workload (1000; "
                        "the speed benchmark's full size is 10000)")
    p.add_argument("--out", metavar="PATH.md", help="also write the report here")
    args = p.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    if repeats < 1:
        p.error("--repeats must be >= 1")
    workloads = args.workloads or list(QUICK_WORKLOADS if args.quick else WORKLOADS)
    speed_cells = args.speed_cells or (500 if args.quick else 1000)

    limits = _threadpool_limits()
    ctx = limits(limits=1) if limits is not None else contextlib.nullcontext()
    lines = header_lines(argv)
    t_start, c_start = time.perf_counter(), time.process_time()
    results = []
    with ctx:
        _install_timers()
        for wl in workloads:
            k, parts = workload_data(wl, speed_cells)
            for data, X, Y, losses in parts:
                for loss in losses:
                    for fmt in args.formats:
                        Xf, Yf = _as_format(X, fmt), _as_format(Y, fmt)
                        t0 = time.perf_counter()
                        print(f"{wl} {data} {loss} {fmt} K={k} ...", end=" ",
                              file=sys.stderr, flush=True)
                        runs = run_config(Xf, Yf, k, loss, repeats)
                        ratio = _med([b["total"] / a["total"]
                                      for a, b in zip(runs[0], runs["auto"])])
                        print(f"ratio {ratio:.2f} ({time.perf_counter() - t0:.0f} s)",
                              file=sys.stderr, flush=True)
                        results.append(((wl, data, loss, fmt, k), runs))
    lines.append(f"- wall time {time.perf_counter() - t_start:.0f} s, CPU time "
                 f"{time.process_time() - c_start:.0f} s; load average at end "
                 + "/".join(f"{v:.2f}" for v in os.getloadavg()))
    lines.append("")
    lines += report(results, repeats)
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
