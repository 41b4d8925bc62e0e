"""Small statistics helpers: Benjamini-Hochberg q-values, Welch t-tests, permutation tests.

Thin wrappers of :mod:`scipy.stats` where it has the test; what is added here is the handling
of degenerate inputs (constant samples, too few samples) with NaN instead of warnings.
"""

from __future__ import annotations

import numpy as np


def bh_qvalues(p) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) of a vector of p-values.

    NaN entries are ignored (and stay NaN); the others are adjusted among themselves.
    Equivalent to ``scipy.stats.false_discovery_control(p, method="bh")`` on the finite
    entries.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return q
    values = p[ok]
    if np.any((values < 0) | (values > 1)):
        raise ValueError("p-values must lie in [0, 1].")
    order = np.argsort(values)
    ranked = values[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(ranked, 1.0)
    q[ok] = out
    return q


def welch_ttest(a, b):
    """Welch's two-sample t-test of ``a`` against ``b`` along axis 0.

    Returns ``(t, p, signed)`` with two-sided p-values and the signed
    ``sign(t) * -log10(p)`` (positive when ``a`` has the larger mean).  Columns where a
    sample has fewer than two values, or both samples are constant, give NaN (equal
    constants) or +-inf/0 p-value (different constants) without warnings.
    """
    from scipy import stats

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim == 1:
        a, b = a[:, None], b[:, None]
    k = a.shape[1]
    t = np.full(k, np.nan)
    p = np.full(k, np.nan)
    if a.shape[0] >= 2 and b.shape[0] >= 2:
        va, vb = a.var(axis=0, ddof=1), b.var(axis=0, ddof=1)
        ok = (va + vb) > 0
        if ok.any():
            with np.errstate(all="ignore"):
                res = stats.ttest_ind(a[:, ok], b[:, ok], axis=0, equal_var=False)
            t[ok], p[ok] = res.statistic, res.pvalue
        const = ~ok
        diff = a.mean(axis=0) - b.mean(axis=0)
        moved = const & (diff != 0)
        t[moved] = np.sign(diff[moved]) * np.inf
        p[moved] = 0.0
    with np.errstate(divide="ignore"):
        signed = np.sign(t) * -np.log10(p)
    return t, p, signed


def permutation_pvalues(observed, null) -> np.ndarray:
    """One-sided permutation p-values ``(1 + #{null >= observed}) / (1 + n)``.

    ``observed`` has shape ``(k,)``, ``null`` shape ``(n, k)`` (one row per permutation).
    The +1 counts the observed labelling as one of the permutations, so a p-value is never
    0 and is valid (super-uniform) under exchangeability.
    """
    observed = np.asarray(observed, dtype=np.float64)
    null = np.asarray(null, dtype=np.float64)
    n = null.shape[0]
    return (1.0 + (null >= observed[None, :] - 1e-12 * np.abs(observed[None, :])).sum(axis=0)) \
        / (1.0 + n)


def welch_greater(a, b):
    """One-sided Welch t-test of ``mean(a) > mean(b)`` along axis 0.

    Returns ``(t, p)``; ``p`` is :func:`scipy.stats.ttest_ind` with ``equal_var=False`` and
    ``alternative="greater"``, derived from the two-sided :func:`welch_ttest` so that the
    degenerate columns are handled the same way (equal constants: NaN; different constants:
    ``t = +-inf`` and ``p`` 0 or 1).
    """
    t, p, _ = welch_ttest(a, b)
    one = np.where(t > 0, p / 2.0, 1.0 - p / 2.0)
    one[np.isnan(t)] = np.nan
    return t, one


def random_relabel_null(pooled, n_x, n_permutations, rng, batch=64):
    """Difference of column means (first ``n_x`` rows minus the rest) under random relabellings.

    ``pooled`` has shape ``(n, k)``; returns ``(n_permutations, k)``, one row per uniformly
    random choice of ``n_x`` of the ``n`` rows (drawn from ``rng``).
    """
    n, k = pooled.shape
    total = pooled.sum(axis=0)
    null = np.empty((n_permutations, k))
    base = np.arange(n)
    for lo in range(0, n_permutations, batch):
        hi = min(lo + batch, n_permutations)
        idx = rng.permuted(np.broadcast_to(base, (hi - lo, n)), axis=1)[:, :n_x]
        sums = pooled[idx].sum(axis=1)
        null[lo:hi] = sums / n_x - (total - sums) / (n - n_x)
    return null


#: Largest number of arrangements :func:`group_permutation_test` enumerates exactly.
MAX_EXACT_ARRANGEMENTS = 20_000


def group_permutation_test(a, b, *, n_permutations, rng, max_exact=MAX_EXACT_ARRANGEMENTS):
    r"""One-sided permutation test of ``mean(a) - mean(b) > 0`` by relabelling rows.

    ``a`` (shape ``(n_a, k)``) and ``b`` (``(n_b, k)``) are the values of the units (for
    example per-sample means); every column is tested.  The null distribution is that of the
    difference of means over the :math:`C = \binom{n_a + n_b}{n_a}` ways of choosing which
    ``n_a`` units are labelled ``a``.

    - :math:`C \le` ``max_exact``: all arrangements are enumerated (the observed one among
      them) and :math:`p = \#\{\text{null} \ge \text{observed}\} / C`, the exact p-value;
      the smallest attainable is :math:`1 / C`.
    - otherwise ``n_permutations`` arrangements are drawn at random and
      :math:`p = (1 + \#\{\text{null} \ge \text{observed}\}) / (1 + n_\text{permutations})`.

    Returns ``(observed, p, n_arrangements, exact)``.  Ties are counted as ``>=`` up to a
    rounding tolerance of the column's scale (sums in another order differ in the last bits).
    The enumeration runs over the subsets of the smaller group, in batches, so its memory
    stays small whatever the group sizes.
    """
    from itertools import combinations, islice
    from math import comb

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n_a, n_b = a.shape[0], b.shape[0]
    n = n_a + n_b
    pooled = np.vstack([a, b])
    observed = a.mean(axis=0) - b.mean(axis=0)
    scale = np.abs(pooled).max(axis=0)
    tol = 1e-10 * np.where(scale > 0, scale, 1.0)
    n_arrangements = comb(n, n_a)
    if n_arrangements <= max_exact:
        small_is_a = n_a <= n_b
        m = n_a if small_is_a else n_b
        total = pooled.sum(axis=0)
        count = np.zeros(pooled.shape[1])
        subsets = combinations(range(n), m)
        while True:
            chunk = list(islice(subsets, 2048))
            if not chunk:
                break
            sums = pooled[np.array(chunk, dtype=np.intp)].sum(axis=1)
            rest = total - sums
            null = (sums / n_a - rest / n_b) if small_is_a else (rest / n_a - sums / n_b)
            count += (null >= observed - tol).sum(axis=0)
        return observed, count / n_arrangements, n_arrangements, True
    null = random_relabel_null(pooled, n_a, int(n_permutations), rng)
    p = (1.0 + (null >= observed - tol).sum(axis=0)) / (1.0 + n_permutations)
    return observed, p, n_arrangements, False
