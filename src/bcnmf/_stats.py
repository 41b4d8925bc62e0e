"""Small statistics helpers: Benjamini-Hochberg q-values, Welch t-tests, permutation p-values.

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
