"""Topic matching across fits: Hungarian matching, restart agreement, consensus."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from bcnmf import BCNMF, consensus_basis, factorize, match_topics
from bcnmf.core import fit as core_fit
from bcnmf.matching import cosine_similarity, restart_agreement


def _basis(rng, k=5, f=40):
    return rng.gamma(0.5, 1.0, size=(k, f))


def test_hungarian_recovers_a_known_permutation():
    rng = np.random.default_rng(0)
    for trial in range(5):
        a = _basis(rng, k=6)
        perm = rng.permutation(6)
        noisy = a[perm] * rng.uniform(0.5, 2.0, size=(6, 1))  # rows rescaled (gauge)
        noisy = noisy + 0.01 * rng.random(noisy.shape)
        found, sim = match_topics(a, noisy)
        # row found[k] of the permuted basis is topic k of a
        assert_array_equal(perm[found], np.arange(6))
        assert np.all(sim > 0.99)


def test_match_topics_maximises_total_similarity_by_brute_force():
    from itertools import permutations

    rng = np.random.default_rng(1)
    a, b = _basis(rng, k=4, f=10), _basis(rng, k=4, f=10)
    c = cosine_similarity(a, b)
    best = max(sum(c[i, p[i]] for i in range(4)) for p in permutations(range(4)))
    perm, sim = match_topics(a, b)
    assert_allclose(sim.sum(), best)
    assert_allclose(sim, c[np.arange(4), perm])


def test_consensus_of_identical_restarts_is_the_basis_with_stability_one():
    rng = np.random.default_rng(2)
    b = _basis(rng)
    bases = [b, b[rng.permutation(5)], b[rng.permutation(5)], b.copy()]
    merged, stability, ref = consensus_basis(bases)
    assert_allclose(merged, bases[ref], rtol=1e-12)
    assert_allclose(stability, 1.0)


def test_consensus_keeps_reference_order_and_scale_and_inputs():
    rng = np.random.default_rng(3)
    b = _basis(rng)
    others = [b * 3.0 + 0.05 * rng.random(b.shape) for _ in range(3)]
    copies = [o.copy() for o in others]
    merged, stability, ref = consensus_basis([b] + others, reference=0)
    assert ref == 0
    assert_allclose(np.abs(merged).sum(axis=1), np.abs(b).sum(axis=1))
    assert np.all(stability > 0.9) and np.all(stability <= 1.0)
    for o, c in zip(others, copies):
        assert_array_equal(o, c)


def test_restart_agreement_is_reexported_by_core_fit():
    assert core_fit.restart_agreement is restart_agreement
    rng = np.random.default_rng(4)
    b = _basis(rng)
    assert_allclose(restart_agreement([b, b[::-1], b]), 1.0)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="same number of topics"):
        match_topics(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="features"):
        match_topics(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="reference"):
        consensus_basis([np.ones((2, 3))], reference=3)


def _data():
    rng = np.random.default_rng(0)
    Y = rng.poisson(2.0, size=(60, 15)).astype(float)
    X = rng.poisson(2.0, size=(60, 15)).astype(float)
    X[:30, :3] += 6.0
    X[30:, 3:6] += 6.0
    return X, Y


def test_estimator_consensus_stores_stability_and_equals_factorize():
    X, Y = _data()
    # no shared topics: the divergences below are rebuilt from codes @ components_
    kw = dict(alpha=0.5, n_init=4, random_state=0, max_iter=2000, tol=1e-5, n_shared=0)
    model = BCNMF(2, consensus=True, **kw)
    codes = model.fit_transform(X, background=Y)
    res = factorize(X, 2, background=Y, consensus=True, **kw)
    assert_allclose(model.components_, res.components)
    assert_allclose(codes, res.codes)
    assert_allclose(model.topic_stability_, res.topic_stability)
    assert model.topic_stability_.shape == (2,)
    assert np.all((model.topic_stability_ > 0) & (model.topic_stability_ <= 1))
    assert_allclose(model.components_.sum(axis=1), 1.0)
    # the returned codes solve the consensus basis: transform agrees
    assert_allclose(model.transform(X), codes, rtol=1e-2, atol=1e-2 * codes.max())
    # the recorded objective is the objective of the returned state
    d_x = ((X - codes @ model.components_) ** 2).sum()
    assert_allclose(model.history_["target"][-1], d_x, rtol=1e-8)


def test_consensus_of_one_restart_is_the_run_and_single_runs_have_no_stability():
    X, Y = _data()
    a = BCNMF(2, alpha=0.5, random_state=0, max_iter=300, tol=1e-3).fit(X, background=Y)
    b = BCNMF(2, alpha=0.5, random_state=0, max_iter=300, tol=1e-3,
              consensus=True).fit(X, background=Y)
    assert_array_equal(a.components_, b.components_)
    assert a.topic_stability_ is None


def test_persistence_keeps_topic_stability(tmp_path):
    from bcnmf import load

    X, Y = _data()
    model = BCNMF(2, alpha=0.5, n_init=3, consensus=True, random_state=0, max_iter=2000,
                  tol=1e-5).fit(X, background=Y)
    path = model.save(tmp_path / "m.npz")
    loaded = load(path)
    assert_array_equal(loaded.topic_stability_, model.topic_stability_)
    assert loaded.consensus is True
    assert_array_equal(loaded.transform(X), model.transform(X))
