#!/usr/bin/env python
"""GPU benchmark: s/iteration of the torch backend and its fraction of the matmul peak.

Usage
-----
    python benchmarks/gpu.py                       # reference workload, every device present
    python benchmarks/gpu.py --scale 0.02          # 2% of the cells (CPU-friendly)
    python benchmarks/gpu.py --devices cpu numpy --dtype float64

Workload: ``--genes`` genes x (``--scale`` x 100,000 target + as many
background) cells, K = ``--k``, 7% nonzero entries at random positions with
values 1 + Poisson(2), held in memory as CSR (scipy for ``numpy``, a TorchCSR
on the device for torch).  Devices: ``numpy`` (numba CSR kernels), ``cpu``
(torch CPU) and ``cuda`` (when ``torch.cuda.is_available()``).

s/iteration is the slope between fits of ``--iters`` sweeps and of 1 sweep
(``tol=0``, same seed; CUDA synchronised), which removes the one-off
validation, scan and initialisation.  The matmul peak is measured here: the
best of 5 dense ``n x n`` products (float32/float64 as ``--dtype``, n = 8192
on CUDA, 2048 on CPU).  The fraction of the peak counts the floating-point
operations the sparse sweep needs (squared error ``4 nnz K + 4 n K^2``, KL
``8 nnz K + 2 n K``, per dataset, plus the basis step), i.e. useful work of
the data at its stored entries, against that dense peak; gathers and scatters
make a sparse sweep memory-bound, so this is expected to be a small fraction.
Threads are pinned to ``--threads`` (torch and BLAS/numba).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings


def workload(n_cells: int, n_genes: int, seed: int = 0, dtype="float32"):
    """Target and background CSR matrices (scipy), 7% nonzero."""
    import numpy as np
    import scipy.sparse as sp

    out = []
    for ss in np.random.SeedSequence(seed).spawn(2):
        rng = np.random.default_rng(ss)
        m = sp.random(n_cells, n_genes, density=0.07, format="csr", random_state=rng,
                      dtype=np.float64)
        m.data = 1.0 + rng.poisson(2.0, size=m.nnz)
        out.append(m.astype(dtype))
    return out


def matmul_peak(torch, device, dtype) -> float:
    """Measured dense matmul rate (FLOP/s) on ``device``."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.rand((n, n), device=device, dtype=dtype)
    b = torch.rand((n, n), device=device, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        _sync(torch, device)
        t = time.perf_counter()
        a @ b
        _sync(torch, device)
        best = min(best, time.perf_counter() - t)
    return 2.0 * n ** 3 / best


def _sync(torch, device):
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def sweep_flops(loss: str, nnz: int, n: int, k: int, f: int) -> float:
    """Useful floating-point operations of one sweep over one dataset."""
    if loss == "frobenius":
        return 4.0 * nnz * k + 4.0 * n * k * k + 2.0 * k * k * f
    return 8.0 * nnz * k + 2.0 * n * k


def time_fit(X, Y, loss, k, iters, device, torch):
    from bcnmf import BCNMF

    times = {}
    for n in (1, 1, iters):   # the first fit compiles kernels / warms the device
        _sync(torch, device)
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            BCNMF(k, alpha=1.0, beta_loss=loss, tol=0, max_iter=n, random_state=0).fit(
                X, background=Y)
        _sync(torch, device)
        times[n] = time.perf_counter() - t
    return (times[iters] - times[1]) / (iters - 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0,
                   help="fraction of the reference workload's 100,000 cells per side")
    p.add_argument("--genes", type=int, default=10_000)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--devices", nargs="+", choices=("numpy", "cpu", "cuda"),
                   default=["cpu", "cuda"])
    p.add_argument("--losses", nargs="+", choices=("frobenius", "kullback-leibler"),
                   default=["frobenius", "kullback-leibler"])
    args = p.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))
    import numpy as np
    import torch
    from threadpoolctl import threadpool_limits

    from bcnmf.core.backend import to_device

    torch.set_num_threads(args.threads)
    n_cells = max(1, int(round(100_000 * args.scale)))
    t = time.perf_counter()
    X, Y = workload(n_cells, args.genes, dtype=args.dtype)
    print(f"# GPU benchmark: {args.genes} genes x ({n_cells} + {n_cells}) cells, K = {args.k}, "
          f"7% nonzero ({X.nnz + Y.nnz:,} stored entries), {args.dtype}, {args.threads} "
          f"CPU threads, torch {torch.__version__} (data in {time.perf_counter() - t:.0f} s)")
    devices = [d for d in args.devices if d != "cuda" or torch.cuda.is_available()]
    if "cuda" in args.devices and "cuda" not in devices:
        print("# cuda: skipped, torch.cuda.is_available() is False")
    tdtype = getattr(torch, args.dtype)
    peaks = {}
    rows = []
    with threadpool_limits(args.threads):
        for name in devices:
            device = None if name == "numpy" else torch.device(name)
            if device is not None:
                label = torch.cuda.get_device_name(device) if name == "cuda" else "torch CPU"
                peaks[name] = (label, matmul_peak(torch, device, tdtype))
                x, y = to_device(X, device), to_device(Y, device)
            else:
                peaks[name] = ("numpy/BLAS", None)
                x, y = X, Y
            if name == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            for loss in args.losses:
                s = time_fit(x, y, loss, args.k, args.iters, device, torch)
                flops = sum(sweep_flops(loss, m.nnz, m.shape[0], args.k, args.genes)
                            for m in (X, Y))
                peak = peaks[name][1]
                mem = (torch.cuda.max_memory_allocated(device) / 2**30 if name == "cuda"
                       else float("nan"))
                rows.append((loss, name, s, flops / s / 1e9,
                             np.nan if peak is None else flops / s / peak, mem))
                print(f"#   done {name} {loss}: {s:.3f} s/iteration", flush=True)
    print("\n| device | measured dense matmul peak |\n|---|---|")
    for name, (label, peak) in peaks.items():
        rate = "n/a" if peak is None else f"{peak / 1e12:.3f} TFLOP/s ({args.dtype})"
        print(f"| {name} ({label}) | {rate} |")
    print("\n| loss | device | s/iteration | useful GFLOP/s | fraction of matmul peak | "
          "peak GPU memory GiB |\n|---|---|---|---|---|---|")
    for loss, name, s, gflops, frac, mem in rows:
        frac_s = "n/a" if np.isnan(frac) else f"{100 * frac:.2f}%"
        mem_s = "" if np.isnan(mem) else f"{mem:.2f}"
        print(f"| {loss} | {name} | {s:.3f} | {gflops:.1f} | {frac_s} | {mem_s} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
