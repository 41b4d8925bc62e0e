#!/usr/bin/env python
"""Scale benchmark: in-memory vs streamed (out-of-core) full-batch fits.

Usage
-----
    python benchmarks/scale.py                          # reference workload (large: ~2 GB on disk)
    python benchmarks/scale.py --cells 20000 --genes 10000 --iters 3
    python benchmarks/scale.py --sources memory memmap --losses frobenius

Workload: ``--genes`` genes x (``--cells`` target + ``--cells`` background)
cells, K = ``--k``, each cell with Binomial(genes, 0.07) nonzero genes at
random positions, values 1 + Poisson(2), float64.  The matrices are written
to ``--dir`` once (CSR arrays as ``.npy`` files, and an ``.h5ad`` when anndata
is installed), then every configuration runs in a fresh subprocess:

* ``memory``: the CSR arrays loaded into memory, one block;
* ``memmap``: the dense-free CSR arrays memory-mapped (``np.load(...,
  mmap_mode="r")``) and wrapped in a scipy CSR matrix: streamed by blocks;
* ``h5ad``: ``anndata.read_h5ad(path, backed="r").X``: streamed by blocks.

s/iteration is the slope between fits of ``--iters`` and 1 sweeps (``tol=0``),
which removes the one-off scan and initialisation.  Peak RSS is the child's
``ru_maxrss``; file pages of memory maps count towards it when touched
(the RSS at the end is split into file-backed pages, reclaimable page
cache, and anonymous memory, what the process really holds).
Threads are pinned to ``--threads``.  CPU s/iteration is the same slope of
the child's CPU time (all its threads): on a shared machine, where the wall
time depends on the other work, CPU / threads estimates the wall time on a
quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SOURCES = ("memory", "memmap", "h5ad")
LOSSES = ("frobenius", "kullback-leibler")


def generate(directory: Path, n_cells: int, n_genes: int, seed: int = 0) -> None:
    import numpy as np

    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / "workload.json"
    spec = {"cells": n_cells, "genes": n_genes, "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()) == spec:
        return
    streams = np.random.SeedSequence(seed).spawn(2)
    for name, ss in zip(("x", "y"), streams):
        rng = np.random.default_rng(ss)
        counts = rng.binomial(n_genes, 0.07, size=n_cells)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        # int32 indptr when it fits, so that scipy keeps the memory-mapped int32 indices
        indptr = indptr.astype(np.int32 if indptr[-1] < 2**31 else np.int64)
        nnz = int(indptr[-1])
        indices = np.lib.format.open_memmap(directory / f"{name}_indices.npy", mode="w+",
                                            dtype=np.int32, shape=(nnz,))
        data = np.lib.format.open_memmap(directory / f"{name}_data.npy", mode="w+",
                                         dtype=np.float64, shape=(nnz,))
        for i in range(n_cells):
            lo, hi = indptr[i], indptr[i + 1]
            indices[lo:hi] = np.sort(rng.choice(n_genes, hi - lo, replace=False))
            data[lo:hi] = 1.0 + rng.poisson(2.0, size=hi - lo)
        indices.flush()
        data.flush()
        np.save(directory / f"{name}_indptr.npy", indptr)
        try:
            import anndata
            import scipy.sparse as sp
            m = sp.csr_matrix((np.asarray(data), np.asarray(indices), indptr),
                              shape=(n_cells, n_genes))
            anndata.AnnData(X=m).write_h5ad(directory / f"{name}.h5ad")
        except ImportError:
            pass
        del indices, data
    stamp.write_text(json.dumps(spec))


CHILD = r"""
import json, os, resource, sys, time, warnings
import numpy as np, scipy.sparse as sp
from threadpoolctl import threadpool_limits
from bcnmf import BCNMF
cfg = json.loads(sys.argv[1])
d = cfg["dir"]

def load(name):
    if cfg["source"] == "h5ad":
        import anndata
        return anndata.read_h5ad(os.path.join(d, name + ".h5ad"), backed="r").X
    mode = "r" if cfg["source"] == "memmap" else None
    parts = [np.load(os.path.join(d, f"{name}_{p}.npy"), mmap_mode=mode)
             for p in ("data", "indices", "indptr")]
    m = sp.csr_matrix(tuple(parts), shape=(len(parts[2]) - 1, cfg["genes"]), copy=False)
    return m

with threadpool_limits(cfg["threads"]):
    X, Y = load("x"), load("y")
    times, cpu = {}, {}
    for n in (1, 1, cfg["iters"]):   # the first run compiles the kernels
        t, c = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            BCNMF(cfg["k"], alpha=1.0, beta_loss=cfg["loss"], tol=0, max_iter=n,
                  random_state=0, block_size=cfg["block"]).fit(X, background=Y)
        times[n], cpu[n] = time.perf_counter() - t, time.process_time() - c
slope = (times[cfg["iters"]] - times[1]) / (cfg["iters"] - 1)
cpu_slope = (cpu[cfg["iters"]] - cpu[1]) / (cfg["iters"] - 1)
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
kib = lambda key: float(status.get(key, "0 kB").split()[0])  # noqa: E731
print(json.dumps({"s_per_iter": slope, "cpu_per_iter": cpu_slope, "first": times[1],
                  "file_mb": kib("RssFile") / 1024, "anon_mb": kib("RssAnon") / 1024,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=100_000, help="cells per side")
    p.add_argument("--genes", type=int, default=10_000)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--block", type=int, default=None, help="cells per block (streamed)")
    p.add_argument("--dir", default="benchmarks/results/scale-data")
    p.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES))
    p.add_argument("--losses", nargs="+", choices=LOSSES, default=list(LOSSES))
    args = p.parse_args(argv)
    directory = Path(args.dir)
    t = time.perf_counter()
    generate(directory, args.cells, args.genes)
    print(f"# Scale: {args.genes} genes x ({args.cells} + {args.cells}) cells, K = {args.k}, "
          f"7% nonzero, {args.threads} threads (data ready in {time.perf_counter() - t:.0f} s)")
    size = sum(f.stat().st_size for f in directory.glob("*.npy")) / 2**20
    print(f"# CSR arrays on disk: {size:.0f} MiB\n")
    print("| loss | source | s/iteration | CPU s/iteration (all threads) | first fit (1 sweep, "
          "incl. scan) s | peak RSS MiB | RSS at end: file / anon MiB | load1 before-after |")
    print("|---|---|---|---|---|---|---|---|")
    env = dict(os.environ, **{v: str(args.threads) for v in (
        "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")})
    for loss in args.losses:
        for source in args.sources:
            if source == "h5ad" and not (directory / "x.h5ad").exists():
                print(f"| {loss} | {source} | (anndata not installed) | | | | | |")
                continue
            block = args.block if source != "memory" else None
            cfg = dict(vars(args), dir=str(directory), source=source, loss=loss, block=block)
            load0 = os.getloadavg()[0]
            out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg)], env=env,
                                 capture_output=True, text=True)
            if out.returncode != 0:
                print(f"| {loss} | {source} | failed: {out.stderr.strip().splitlines()[-1]} | | | | | |")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {loss} | {source} | {r['s_per_iter']:.2f} | {r['cpu_per_iter']:.2f} | "
                  f"{r['first']:.1f} | "
                  f"{r['peak_rss_mb']:.0f} | {r['file_mb']:.0f} / {r['anon_mb']:.0f} | "
                  f"{load0:.1f}-{os.getloadavg()[0]:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
