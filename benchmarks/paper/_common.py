"""Shared pieces of the paper reproduction scripts: the protocol, the methods, the table.

Every script fits each method with 5 seeds (fewer with ``--seeds``), scores the target codes
with :func:`bcnmf.metrics.cluster_agreement` (KMeans, n_init 20, seed 42; raw and per-cell
L1-normalised codes) and prints the paper's number next to ours, mean +- sd over seeds.
Deterministic methods (PCA, contrastive PCA) run once.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # benchmarks/_protocol.py

import _protocol as P  # noqa: E402

from bcnmf import BCNMF, CombinedBCNMF  # noqa: E402
from bcnmf.metrics import cluster_agreement  # noqa: E402


def parser(doc):
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    p.add_argument("--seeds", type=int, default=5, help="fitting seeds 0..n-1 (default 5)")
    return p


def scores(codes, labels, umap=False):
    return (cluster_agreement(codes, labels, umap=umap).ari,
            cluster_agreement(codes, labels, normalize=True, umap=umap).ari)


def run(name, fit, labels, seeds, umap=False):
    """``fit(seed) -> codes``; returns ``(name, [raw...], [norm...], seconds, warnings)``;
    ``umap=True`` embeds the codes with UMAP before KMeans (the paper's mouse protocol)."""
    raw, norm, notes = [], [], set()
    t0 = time.perf_counter()
    for seed in seeds:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            codes = fit(seed)
        notes.update(type(w.message).__name__ for w in caught)
        r, n = scores(codes, labels, umap)
        raw.append(r)
        norm.append(n)
    return name, raw, norm, time.perf_counter() - t0, sorted(notes)


def bcnmf(k, **params):
    return lambda X, Y: (lambda seed: BCNMF(k, random_state=seed, **params)
                         .fit_transform(X, background=Y))


def combined(k, **params):
    return lambda X, Y: (lambda seed: CombinedBCNMF(k, random_state=seed, **params)
                         .fit_transform(X, background=Y))


def nmf(k):
    return lambda X, Y: (lambda seed: P.nmf_codes(X, k, seed, max_iter=1000))


def cpca(k, a):
    return lambda X, Y: (lambda seed: P.contrastive_pca(X, Y, k, a))


def pca(k):
    return lambda X, Y: (lambda seed: P.pca_codes(X, k))


def load(name):
    from bcnmf.datasets import load_shared_dataset

    d = load_shared_dataset(name)
    return d.X.astype(float), d.Y.astype(float), d.labels


def fmt(values):
    return P.summarise(values) if len(values) > 1 else f"{values[0]:.3f}"


def table(rows, paper, title, columns=("raw", "norm")):
    """rows: results of :func:`run`; paper: method name -> the paper's number (str)."""
    print(f"\n### {title}\n")
    print("| method | paper | ours raw | ours norm | s | warnings |")
    print("|---|---|---|---|---|---|")
    for name, raw, norm, sec, notes in rows:
        print(f"| {name} | {paper.get(name, '')} | {fmt(raw)} | {fmt(norm)} | {sec:.0f} | "
              f"{', '.join(notes)} |", flush=True)
