#!/usr/bin/env python
"""Speed and memory benchmark for bcnmf.BCNMF against scikit-learn's MU NMF.

Usage
-----
    python benchmarks/speed.py                  # full workload (the reference size)
    python benchmarks/speed.py --quick          # 10x fewer cells
    python benchmarks/speed.py --repeats 3 --threads 2 --out bench.md
    python benchmarks/speed.py --methods sklearn_mu --formats csr   # subsets

Workload (reference size)
-------------------------
3,000 genes x (10,000 target + 10,000 background) cells, K = 10.  Each cell has
Binomial(3000, 0.07) nonzero genes at uniformly random positions with values
1 + Poisson(2); built row by row directly as CSR (int32 indices, float64 data),
never through a dense intermediate.  Target and background come from separate
child streams of one fixed ``SeedSequence``, so the target is identical whether
or not the background is generated.  ``--quick`` keeps 3,000 genes and uses
1,000 + 1,000 cells.  Dense runs use ``X.toarray()`` (float64, C order).

Methods
-------
* ``bcnmf_full``   : ``BCNMF(alpha=1).fit(X, background=Y)``   (target + background)
* ``bcnmf_alpha0`` : ``BCNMF(alpha=0).fit(X)``                 (target only, plain NMF)
* ``sklearn_mu``   : ``NMF(solver="mu", init="random").fit(X)`` (target only)

All with ``n_components=10, tol=0, random_state=0`` and the same ``beta_loss``
("frobenius" or "kullback-leibler").  Only the public estimators are used.

Seconds per iteration
---------------------
For each repeat, fit at ``max_iter=a`` and at ``max_iter=b`` (defaults 2 and 42)
and take ``(t_b - t_a) / (n_iter_b - n_iter_a)`` (``n_iter_`` as reported by the
estimator); the table shows the median over ``--repeats`` and the min-max.  The
slope removes set-up costs (validation, conversion, initialisation, final
objective).  ``setup`` is ``t_a - n_iter_a * slope`` (median).  Every
configuration runs in a fresh subprocess: a tiny fit (same method, format, loss)
first compiles any JIT code, then the data are generated, then one untimed
``max_iter=1`` fit on the real data, then the timed fits.  Sweeps ``a`` to
``b - 1`` are timed: with the defaults 40 sweeps, four of them (10, 20, 30, 40)
the KL sweeps that also evaluate the objective and update the codes on stable
Poisson's shared topics, the same share as in a long fit (a pair such as 2, 10
would time none of them).

Memory
------
In the child: ``RSS pre`` = VmRSS after imports and the tiny JIT warm-up;
``RSS load`` = VmRSS right after the data exist; the kernel's RSS high-water mark
is then reset (``/proc/self/clear_refs`` <- 5, if permitted; otherwise the
peak also contains the data-generation transient and the table says so), and
``peak`` = ``getrusage(RUSAGE_SELF).ru_maxrss`` after all fits.  ``input`` is
``data + indices + indptr`` bytes for CSR and ``nbytes`` for dense, summed over
the matrices the method receives (target, plus background for bcnmf_full).
Reported: peak / input (the memory criterion, which includes the interpreter
and imported libraries, ~100-200 MB), (peak - RSS pre) / input (net of the
interpreter), and peak - RSS load (working memory of the fits).

Flop model (per iteration; used for GFLOP/s)
--------------------------------------------
Per data matrix d with n_d cells, m genes, s_d stored entries (nnz for CSR,
n_d * m for dense), K components:

* frobenius:         F_d = 4 K s_d + 4 K^2 (n_d + m)
    W^T X and X H^T (2 K s_d each); Gram matrices W^T W and H H^T
    (2 K^2 m, 2 K^2 n_d); Gram times factor (2 K^2 n_d, 2 K^2 m).
* kullback-leibler:  F_d = (8 K + 2) s_d
    model (W H) at every stored entry twice per sweep (before the H step and,
    with the new H, before the W step; 2 K each), the ratio X / (W H) (1 each),
    W^T R and R H^T (2 K each).  For dense input every entry is "stored".

F = sum of F_d over the matrices fitted (target only, or target + background).
Elementwise updates, row/column sums and objective evaluations are not counted,
so GFLOP/s is "useful" throughput, identical for methods doing the same maths.
GFLOP/s = F / (s/iter) / 1e9.  The machine's GEMM peak is measured in a fresh
child under the same thread limits: float64 ``A @ B`` with 2000 x 2000 matrices,
one warm-up and 5 timed runs, GFLOP/s = 2 n^3 / t; the best run is the "peak"
(median also printed).  "% peak" = achieved GFLOP/s / GEMM peak.

Threads
-------
OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS and NUMBA_NUM_THREADS are
set to ``--threads`` in the child environment before numpy is imported, and the
child also wraps everything in ``threadpoolctl.threadpool_limits(threads)``.
OPENBLAS_CORETYPE is left as found and printed.

Targets
-------
sparse KL <= 0.04 s/iter and sparse frobenius <= 0.03 s/iter (bcnmf_full on
CSR, full workload; with ``--quick`` the thresholds are scaled by 1/10 and are
indicative only), peak RSS < 4 x input size (bcnmf rows), and bcNMF alpha=0
faster per iteration than scikit-learn MU (each format and loss).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)
RESULT_TAG = "@@BENCH_RESULT@@ "
SEED = 20_240_607
N_GENES = 3000
DENSITY = 0.07
K = 10
FORMATS = ("csr", "dense")
LOSSES = ("frobenius", "kullback-leibler")
METHODS = ("bcnmf_full", "bcnmf_alpha0", "sklearn_mu")
METHOD_LABEL = {
    "bcnmf_full": "bcNMF full (alpha=1, target+bg)",
    "bcnmf_alpha0": "bcNMF alpha=0 (target only)",
    "sklearn_mu": "sklearn NMF mu (target only)",
}
TARGET_S_PER_ITER = {"kullback-leibler": 0.04, "frobenius": 0.03}
RSS_FACTOR = 4.0


# --------------------------------------------------------------------------
# child side (numpy imported only here, after the environment is set)
# --------------------------------------------------------------------------
def _vm_rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return -1


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _maxrss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _import_bcnmf():
    """Import bcnmf, preferring the working tree's src/ when it has a package."""
    src = os.path.join(REPO, "src")
    if os.path.isfile(os.path.join(src, "bcnmf", "__init__.py")) and src not in sys.path:
        sys.path.insert(0, src)
    import bcnmf  # noqa: PLC0415

    if not hasattr(bcnmf, "BCNMF"):
        raise ImportError(f"bcnmf ({getattr(bcnmf, '__file__', None)}) has no BCNMF")
    return bcnmf


def make_counts(n_cells, n_genes, density, seed_seq):
    """Random count matrix (cells x genes) as CSR, built without a dense array."""
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng(seed_seq)
    row_nnz = rng.binomial(n_genes, density, size=n_cells)
    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(row_nnz, out=indptr[1:])
    nnz = int(indptr[-1])
    index_dtype = np.int32 if max(nnz, n_genes) < 2**31 else np.int64
    indptr = indptr.astype(index_dtype)
    indices = np.empty(nnz, dtype=index_dtype)
    for i in range(n_cells):
        cols = rng.choice(n_genes, size=int(row_nnz[i]), replace=False)
        cols.sort()
        indices[indptr[i] : indptr[i + 1]] = cols
    data = 1.0 + rng.poisson(2.0, size=nnz).astype(np.float64)
    return sp.csr_matrix((data, indices, indptr), shape=(n_cells, n_genes))


def _input_bytes(M) -> int:
    import scipy.sparse as sp

    if sp.issparse(M):
        return int(M.data.nbytes + M.indices.nbytes + M.indptr.nbytes)
    return int(M.nbytes)


def _make_estimator(method, loss, max_iter, shared=None):
    if method == "sklearn_mu":
        from sklearn.decomposition import NMF

        return NMF(
            n_components=K,
            solver="mu",
            beta_loss=loss,
            init="random",
            max_iter=max_iter,
            tol=0,
            random_state=0,
        )
    bcnmf = _import_bcnmf()
    alpha = 1.0 if method == "bcnmf_full" else 0.0
    return bcnmf.BCNMF(
        n_components=K,
        alpha=alpha,
        beta_loss=loss,
        max_iter=max_iter,
        tol=0,
        random_state=0,
        **({} if shared is None else {"n_shared": shared}),
    )


def _fit_once(method, loss, max_iter, X, Y, shared=None):
    import warnings

    est = _make_estimator(method, loss, max_iter, shared)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        if method == "bcnmf_full":
            est.fit(X, background=Y)
        else:
            est.fit(X)
        dt = time.perf_counter() - t0
    n_iter = getattr(est, "n_iter_", None)
    return dt, int(n_iter) if n_iter is not None else int(max_iter)


def _child_machine(cfg):
    import numpy as np
    import scipy
    import sklearn
    from threadpoolctl import threadpool_info, threadpool_limits

    out = {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "n_cpus": os.cpu_count(),
        "env": {v: os.environ.get(v) for v in THREAD_VARS + ("OPENBLAS_CORETYPE",)},
    }
    try:
        import numba

        out["numba"] = numba.__version__
        out["numba_threads"] = int(numba.config.NUMBA_NUM_THREADS)
    except Exception as exc:  # pragma: no cover
        out["numba"] = f"unavailable ({exc})"
    try:
        bcnmf = _import_bcnmf()
        out["bcnmf"] = f"{getattr(bcnmf, '__version__', '?')} ({bcnmf.__file__})"
    except Exception as exc:
        out["bcnmf"] = f"unavailable ({type(exc).__name__}: {exc})"
    n = cfg["gemm_n"]
    with threadpool_limits(limits=cfg["threads"]):
        out["threadpool_info"] = [
            {k: d.get(k) for k in ("user_api", "internal_api", "prefix", "version",
                                   "num_threads", "threading_layer", "architecture")}
            for d in threadpool_info()
        ]
        rng = np.random.default_rng(0)
        A = rng.random((n, n))
        B = rng.random((n, n))
        A @ B  # warm-up
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            A @ B
            times.append(time.perf_counter() - t0)
    flops = 2.0 * n**3
    out["gemm_n"] = n
    out["gemm_best_gflops"] = flops / min(times) / 1e9
    out["gemm_median_gflops"] = flops / statistics.median(times) / 1e9
    return out


def _child_fit(cfg):
    import gc

    import numpy as np
    from threadpoolctl import threadpool_limits

    method, loss, fmt = cfg["method"], cfg["loss"], cfg["format"]
    a, b = cfg["iters"]
    res = {"method": method, "loss": loss, "format": fmt}
    with threadpool_limits(limits=cfg["threads"]):
        # JIT / import warm-up on a tiny problem of the same kind.
        ss = np.random.SeedSequence(SEED + 1)
        tx = make_counts(60, 40, 0.2, ss.spawn(1)[0])
        ty = make_counts(50, 40, 0.2, ss.spawn(1)[0])
        if fmt == "dense":
            tx, ty = tx.toarray(), ty.toarray()
        _fit_once(method, loss, 2, tx, ty)
        del tx, ty
        gc.collect()
        res["rss_pre"] = _vm_rss_bytes()

        # Data.
        t0 = time.perf_counter()
        ss_x, ss_y = np.random.SeedSequence(SEED).spawn(2)
        X = make_counts(cfg["n_target"], N_GENES, DENSITY, ss_x)
        Y = None
        mats = [X]
        res["shapes"] = [list(X.shape)]
        res["stored"] = [int(X.nnz)]
        if method == "bcnmf_full":
            Y = make_counts(cfg["n_background"], N_GENES, DENSITY, ss_y)
            mats.append(Y)
            res["shapes"].append(list(Y.shape))
            res["stored"].append(int(Y.nnz))
        if fmt == "dense":
            X = X.toarray()
            if Y is not None:
                Y = Y.toarray()
            res["stored"] = [int(np.prod(s)) for s in res["shapes"]]
        res["nnz"] = [int(m.nnz) for m in mats]
        del mats
        gc.collect()
        res["gen_seconds"] = time.perf_counter() - t0
        res["input_bytes"] = _input_bytes(X) + (_input_bytes(Y) if Y is not None else 0)
        res["rss_load"] = _vm_rss_bytes()
        res["hwm_reset"] = _reset_hwm()

        # Untimed warm-up on the real data, then timed fits.
        shared = cfg.get("n_shared")
        _fit_once(method, loss, 1, X, Y, shared)
        import resource

        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        res["loadavg_start"] = os.getloadavg()[0]
        runs = []
        for _ in range(cfg["repeats"]):
            ta, na = _fit_once(method, loss, a, X, Y, shared)
            tb, nb = _fit_once(method, loss, b, X, Y, shared)
            runs.append({"ta": ta, "na": na, "tb": tb, "nb": nb})
        res["runs"] = runs
        res["peak_rss"] = _maxrss_bytes()
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        res["nivcsw"] = ru1.ru_nivcsw - ru0.ru_nivcsw
        res["loadavg_end"] = os.getloadavg()[0]
    return res


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _child_main(cfg_json: str) -> None:
    cfg = json.loads(cfg_json)
    try:
        res = _child_machine(cfg) if cfg["kind"] == "machine" else _child_fit(cfg)
        res["ok"] = True
    except Exception as exc:
        import traceback

        res = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
               "traceback": traceback.format_exc()[-2000:]}
    sys.stdout.write(RESULT_TAG + json.dumps(res) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------
# parent side (no numpy)
# --------------------------------------------------------------------------
def _run_child(cfg, env, timeout):
    cmd = [sys.executable, os.path.abspath(__file__), "--_child", json.dumps(cfg)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    return {"ok": False,
            "error": f"child exited {proc.returncode}: {proc.stderr.strip()[-600:]}"}


def flops_per_iter(loss, shapes, stored):
    total = 0.0
    for (n, m), s in zip(shapes, stored):
        if loss == "frobenius":
            total += 4.0 * K * s + 4.0 * K * K * (n + m)
        else:
            total += (8.0 * K + 2.0) * s
    return total


def _summarise(res):
    slopes, setups = [], []
    for r in res["runs"]:
        dn = r["nb"] - r["na"]
        if dn <= 0:
            continue
        s = (r["tb"] - r["ta"]) / dn
        slopes.append(s)
        setups.append(r["ta"] - r["na"] * s)
    if not slopes:
        res["ok"] = False
        res["error"] = "n_iter_ did not grow between max_iter a and b"
        return res
    res["s_per_iter"] = statistics.median(slopes)
    runs = [r for r in res["runs"] if r["nb"] > r["na"]]
    res["s_minslope"] = (min(r["tb"] for r in runs) - min(r["ta"] for r in runs)) / (
        statistics.median(r["nb"] for r in runs) - statistics.median(r["na"] for r in runs))
    res["s_min"], res["s_max"] = min(slopes), max(slopes)
    res["setup"] = statistics.median(setups)
    res["n_iter_seen"] = sorted({(r["na"], r["nb"]) for r in res["runs"]})
    res["flops"] = flops_per_iter(res["loss"], res["shapes"], res["stored"])
    res["gflops"] = res["flops"] / res["s_per_iter"] / 1e9 if res["s_per_iter"] > 0 else float("nan")
    return res


def _mb(x):
    return f"{x / 2**20:.1f}"


def _g(x, digits=4):
    if x is None:
        return "n/a"
    return f"{x:.{digits}g}"


def _table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(lines)


def _verdict(ok):
    return "PASS" if ok else "FAIL"


def build_report(args, machine, results, scale, wall):
    out = []
    n_t, n_b = args.n_target, args.n_background
    out.append("# bcnmf speed benchmark" + (" (--quick)" if args.quick else ""))
    out.append("")
    out.append(
        f"Workload: {N_GENES} genes x ({n_t} target + {n_b} background) cells, K = {K}, "
        f"{DENSITY:.0%} nonzero (1 + Poisson(2) at uniform random positions, seed {SEED}), "
        f"float64; formats {', '.join(args.formats)}; losses {', '.join(args.losses)}. "
        f"s/iter = median over {args.repeats} repeats of the slope between max_iter="
        f"{args.iters[0]} and max_iter={args.iters[1]} fits (tol=0), each configuration in a "
        f"fresh subprocess. Total wall time {wall:.0f} s; 1/5/15-min load average at "
        f"start {args.load_start}, at end {args.load_end} ({os.cpu_count()} CPUs)."
    )
    out.append("")
    if machine.get("ok"):
        env = machine["env"]
        out.append("## Machine and threads")
        out.append("")
        out.append(f"- CPU: {machine['cpu']} ({machine['n_cpus']} logical CPUs); {machine['platform']}")
        out.append(
            f"- Python {machine['python']}, numpy {machine['numpy']}, scipy {machine['scipy']}, "
            f"scikit-learn {machine['sklearn']}, numba {machine.get('numba')}"
        )
        out.append(f"- bcnmf: {machine['bcnmf']}")
        out.append(
            "- Thread env: " + ", ".join(f"{k}={env.get(k)}" for k in THREAD_VARS)
            + f"; threadpoolctl limit {args.threads}; numba threads {machine.get('numba_threads')}"
        )
        out.append(f"- OPENBLAS_CORETYPE={env.get('OPENBLAS_CORETYPE')!s} (left as found)")
        for d in machine["threadpool_info"]:
            out.append(
                f"- threadpool: {d['user_api']}/{d['internal_api']} {d['prefix']} "
                f"{d.get('version')} threads={d['num_threads']} "
                f"layer={d.get('threading_layer')} arch={d.get('architecture')}"
            )
        out.append(
            f"- GEMM peak (float64 {machine['gemm_n']}^3 matmul, same thread limit): "
            f"best {machine['gemm_best_gflops']:.1f} GFLOP/s, median "
            f"{machine['gemm_median_gflops']:.1f} GFLOP/s"
        )
    else:
        out.append(f"Machine probe failed: {machine.get('error')}")
    peak = machine.get("gemm_best_gflops") if machine.get("ok") else None
    out.append("")

    # ---- speed table
    out.append("## Seconds per iteration")
    out.append("")
    rows = []
    for key in sorted(results, key=_order):
        r = results[key]
        fmt, loss, method = key
        if not r.get("ok"):
            rows.append([fmt, loss, METHOD_LABEL[method], "n/a", "n/a", "n/a", "n/a", "n/a",
                         "n/a", "n/a", "n/a", "", f"error: {r.get('error', '')[:120]}"])
            continue
        target, verdict = "", ""
        if method == "bcnmf_full" and fmt == "csr":
            thr = TARGET_S_PER_ITER[loss] * scale
            target = f"<= {thr:g}" + (" (scaled 1/10)" if args.quick else "")
            verdict = _verdict(r["s_per_iter"] <= thr)
        rows.append([
            fmt, loss, METHOD_LABEL[method],
            _g(r["s_per_iter"]), f"{_g(r['s_min'], 3)}-{_g(r['s_max'], 3)}",
            _g(r["s_minslope"], 3), _g(r["setup"], 3),
            _g(r["flops"] / 1e6, 4), _g(r["gflops"], 3),
            f"{100 * r['gflops'] / peak:.1f}%" if peak else "n/a",
            f"{r['nivcsw']} / {r['loadavg_start']:.1f}-{r['loadavg_end']:.1f}",
            target, verdict,
        ])
    out.append(_table(["format", "loss", "method", "s/iter", "min-max", "slope of mins",
                       "setup s", "MFLOP/iter", "GFLOP/s", "% GEMM peak",
                       "invol. ctx sw / load1", "target", "verdict"], rows))
    out.append("")
    out.append("s/iter: median over repeats of the per-repeat slope (used for GFLOP/s and "
               "verdicts). slope of mins: (min t_b - min t_a) / (b - a), less sensitive to "
               "interference. A wide min-max, many involuntary context switches or a 1-min "
               "load average above the thread count mean other work shared the CPUs.")
    out.append("")

    # ---- memory table
    out.append("## Memory (fresh process per row)")
    out.append("")
    rows = []
    for key in sorted(results, key=_order):
        r = results[key]
        fmt, loss, method = key
        if not r.get("ok"):
            continue
        inp = r["input_bytes"]
        ratio = r["peak_rss"] / inp
        net = (r["peak_rss"] - r["rss_pre"]) / inp
        is_bc = method.startswith("bcnmf")
        rows.append([
            fmt, loss, METHOD_LABEL[method], f"{inp:,}", _mb(inp), _mb(r["rss_pre"]),
            _mb(r["rss_load"]), _mb(r["peak_rss"]) + ("" if r["hwm_reset"] else " (*)"),
            _mb(r["peak_rss"] - r["rss_load"]), f"{ratio:.2f}", f"{net:.2f}",
            f"{_verdict(ratio < RSS_FACTOR)} / {_verdict(net < RSS_FACTOR)}" if is_bc else "",
        ])
    out.append(_table(["format", "loss", "method", "input bytes", "input MiB", "RSS pre MiB",
                       "RSS load MiB", "peak RSS MiB", "peak-load MiB", "peak/input",
                       "(peak-pre)/input", f"< {RSS_FACTOR:g}x: total / net"], rows))
    out.append("")
    out.append("RSS pre: after imports and JIT warm-up, before data; RSS load: after data "
               "generation; peak: ru_maxrss after all fits (high-water mark reset after load"
               + ("" if all(r.get("hwm_reset", True) for r in results.values())
                  else "; (*) reset not permitted, peak includes generation") + ").")
    out.append("")

    # ---- comparison table
    out.append("## bcNMF vs scikit-learn MU (per iteration, same data format)")
    out.append("")
    rows = []
    for fmt in args.formats:
        for loss in args.losses:
            a0 = results.get((fmt, loss, "bcnmf_alpha0"), {})
            sk = results.get((fmt, loss, "sklearn_mu"), {})
            fu = results.get((fmt, loss, "bcnmf_full"), {})
            s_a0 = a0.get("s_per_iter") if a0.get("ok") else None
            s_sk = sk.get("s_per_iter") if sk.get("ok") else None
            s_fu = fu.get("s_per_iter") if fu.get("ok") else None
            if s_a0 is None and s_sk is None and s_fu is None:
                continue
            rows.append([
                fmt, loss, _g(s_a0), _g(s_sk),
                f"{s_sk / s_a0:.2f}x" if s_a0 and s_sk else "n/a",
                _verdict(s_a0 < s_sk) if s_a0 and s_sk else "n/a",
                _g(s_fu),
                f"{s_fu / s_sk:.2f}x" if s_fu and s_sk else "n/a",
            ])
    out.append(_table(["format", "loss", "bcNMF alpha=0 s/iter", "sklearn MU s/iter",
                       "speed-up (sklearn / alpha=0)", "alpha=0 faster",
                       "bcNMF full s/iter", "full / sklearn"], rows))
    out.append("")

    # ---- summary
    out.append("## Targets")
    out.append("")
    rows = []
    for loss in args.losses:
        r = results.get(("csr", loss, "bcnmf_full"))
        if r is not None:
            thr = TARGET_S_PER_ITER[loss] * scale
            if r.get("ok"):
                rows.append([f"sparse {loss} bcNMF full s/iter", _g(r["s_per_iter"]),
                             f"<= {thr:g}" + (" (quick, indicative)" if args.quick else ""),
                             _verdict(r["s_per_iter"] <= thr)])
            else:
                rows.append([f"sparse {loss} bcNMF full s/iter", "n/a", f"<= {thr:g}", "n/a"])
    for key in sorted(results, key=_order):
        r = results[key]
        if key[2].startswith("bcnmf") and r.get("ok"):
            ratio = r["peak_rss"] / r["input_bytes"]
            net = (r["peak_rss"] - r["rss_pre"]) / r["input_bytes"]
            rows.append([f"peak RSS / input, {key[0]} {key[1]} {key[2]}",
                         f"{ratio:.2f} (net {net:.2f})", f"< {RSS_FACTOR:g}",
                         f"{_verdict(ratio < RSS_FACTOR)} (net {_verdict(net < RSS_FACTOR)})"])
    for fmt in args.formats:
        for loss in args.losses:
            a0 = results.get((fmt, loss, "bcnmf_alpha0"), {})
            sk = results.get((fmt, loss, "sklearn_mu"), {})
            if a0.get("ok") and sk.get("ok"):
                rows.append([f"bcNMF alpha=0 faster than sklearn MU, {fmt} {loss}",
                             f"{_g(a0['s_per_iter'])} vs {_g(sk['s_per_iter'])}", "<",
                             _verdict(a0["s_per_iter"] < sk["s_per_iter"])])
    out.append(_table(["target", "measured", "threshold", "verdict"], rows))
    out.append("")
    if args.quick:
        out.append("Quick mode: peak/input ratios are dominated by the interpreter "
                   "(input is 10x smaller); only the full run is meaningful for the targets.")
        out.append("")
    return "\n".join(out)


def _order(key):
    fmt, loss, method = key
    return (FORMATS.index(fmt), LOSSES.index(loss), METHODS.index(method))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--_child":
        _child_main(argv[1])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10x fewer cells (1,000 + 1,000)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", metavar="PATH.md", help="also write the markdown report here")
    p.add_argument("--iters", type=lambda s: tuple(int(v) for v in s.split(",")),
                   default=(2, 42), metavar="A,B", help="max_iter pair for the slope (2,42)")
    p.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    p.add_argument("--losses", nargs="+", choices=LOSSES, default=list(LOSSES))
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--n-shared", type=int, default=None,
                   help="BCNMF n_shared (stable Poisson with a background; default: "
                        "the estimator's)")
    p.add_argument("--child-timeout", type=float, default=1800.0,
                   help="seconds per configuration subprocess")
    args = p.parse_args(argv)
    if len(args.iters) != 2 or not 1 <= args.iters[0] < args.iters[1]:
        p.error("--iters needs A,B with 1 <= A < B")
    scale = 0.1 if args.quick else 1.0
    args.n_target = int(round(10_000 * scale))
    args.n_background = int(round(10_000 * scale))

    env = dict(os.environ)
    for v in THREAD_VARS:
        env[v] = str(args.threads)
    os.environ.update({v: env[v] for v in THREAD_VARS})

    t_start = time.perf_counter()
    args.load_start = "/".join(f"{v:.2f}" for v in os.getloadavg())
    print("probing machine (GEMM peak, thread pools) ...", file=sys.stderr, flush=True)
    machine = _run_child({"kind": "machine", "threads": args.threads, "gemm_n": 2000},
                         env, args.child_timeout)
    if not machine.get("ok"):
        print(f"machine probe failed: {machine.get('error')}", file=sys.stderr)
    results = {}
    for fmt in args.formats:
        for loss in args.losses:
            for method in args.methods:
                cfg = {"kind": "fit", "format": fmt, "loss": loss, "method": method,
                       "threads": args.threads, "repeats": args.repeats,
                       "iters": list(args.iters), "n_target": args.n_target,
                       "n_background": args.n_background,
                       "n_shared": args.n_shared}
                t0 = time.perf_counter()
                print(f"running {fmt:5s} {loss:16s} {method:12s} ...", end=" ",
                      file=sys.stderr, flush=True)
                r = _run_child(cfg, env, args.child_timeout)
                r.update({"format": fmt, "loss": loss, "method": method})
                if r.get("ok"):
                    r = _summarise(r)
                msg = (f"{r['s_per_iter']:.4g} s/iter" if r.get("ok")
                       else f"FAILED: {r.get('error', '')[:200]}")
                print(f"{msg} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
                results[(fmt, loss, method)] = r
    args.load_end = "/".join(f"{v:.2f}" for v in os.getloadavg())
    report = build_report(args, machine, results, scale, time.perf_counter() - t_start)
    print(report)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
