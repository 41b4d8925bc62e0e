"""Several backgrounds with their own alpha, several target conditions."""

import numpy as np
import pytest
import scipy.sparse as sp

from bcnmf import BCNMF, MultiConditionBCNMF

# no shared topics: the tests rebuild the predictions from codes @ components_
FIT = dict(random_state=0, max_iter=120, tol=0, n_shared=0)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    prog = rng.gamma(2, 1, (3, 15)) * (rng.random((3, 15)) < 0.5)
    cx = rng.gamma(2, 1, (40, 3))
    c1, c2 = rng.gamma(2, 1, (30, 3)), rng.gamma(2, 1, (25, 3))
    c1[:, 2] = c2[:, 2] = 0
    c2[:, 0] *= 0.2                              # background 2 lacks most of program 0
    pois = lambda c: rng.poisson(c @ prog + 0.1).astype(float)  # noqa: E731
    return pois(cx), pois(c1), 5.0 * pois(c2)


@pytest.mark.parametrize("loss", ["frobenius", "kullback-leibler"])
def test_one_background_is_bcnmf(loss):
    X, Y, _ = _data()
    multi = MultiConditionBCNMF(3, alpha=1.2, beta_loss=loss, **FIT)
    codes = multi.fit_transform(X, background=[Y])
    base = BCNMF(3, alpha=1.2, beta_loss=loss, **FIT)
    np.testing.assert_allclose(codes, base.fit_transform(X, background=Y), rtol=1e-6,
                               atol=1e-9)
    np.testing.assert_allclose(multi.components_, base.components_, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(multi.background_codes_[0], base.background_codes_,
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(multi.alphas_raw_, [base.alpha_raw_])


def test_history_is_the_weighted_contrast():
    X, Y1, Y2 = _data(1)
    m = MultiConditionBCNMF(3, alpha=[0.5, 1.5], **FIT)
    codes = m.fit_transform(X, background=[Y1, Y2])
    sq = lambda A, C: float(np.sum((A - C @ m.components_) ** 2))  # noqa: E731
    ex = float(np.sum(X ** 2))
    np.testing.assert_allclose(m.alphas_raw_, [0.5 * ex / np.sum(Y1 ** 2),
                                               1.5 * ex / np.sum(Y2 ** 2)])
    dy = sum(a * sq(Y, C) for a, Y, C in zip(m.alphas_raw_, (Y1, Y2), m.background_codes_))
    np.testing.assert_allclose(m.history_["target"][-1], sq(X, codes), rtol=1e-8)
    np.testing.assert_allclose(m.history_["background"][-1], dy, rtol=1e-8)
    np.testing.assert_allclose(m.history_["objective"], m.history_["target"]
                               - m.history_["background"])
    assert [c.shape for c in m.background_codes_] == [(30, 3), (25, 3)]


def test_target_conditions_are_stacked():
    X, Y1, Y2 = _data(2)
    parts = [X[:15], X[15:]]
    m = MultiConditionBCNMF(3, alpha=1.5, **FIT)
    codes = m.fit_transform(parts, background=[Y1, Y2])
    whole = MultiConditionBCNMF(3, alpha=1.5, **FIT).fit_transform(X, background=[Y1, Y2])
    np.testing.assert_array_equal(codes, whole)
    assert m.target_slices_ == [slice(0, 15), slice(15, 40)]


def test_sparse_and_transform():
    X, Y1, Y2 = _data(3)
    dense = MultiConditionBCNMF(3, alpha=[1.0, 0.5], **FIT)
    codes = dense.fit_transform(X, background=[Y1, Y2])
    sparse = MultiConditionBCNMF(3, alpha=[1.0, 0.5], **FIT)
    np.testing.assert_allclose(
        sparse.fit_transform(sp.csr_matrix(X), background=[sp.csr_matrix(Y1), Y2]), codes,
        rtol=1e-6, atol=1e-9)
    # background cells coded under background 1's model come back in its units
    c2 = dense.transform(Y2, as_background=1)
    rec, fit_rec = c2 @ dense.components_, dense.background_codes_[1] @ dense.components_
    assert np.linalg.norm(rec - Y2) <= np.linalg.norm(fit_rec - Y2) * (1 + 1e-6)


def test_errors():
    X, Y1, Y2 = _data()
    with pytest.raises(ValueError, match="at least one background"):
        MultiConditionBCNMF(2).fit(X)
    with pytest.raises(ValueError, match="one per background"):
        MultiConditionBCNMF(2, alpha=[1.0, 2.0, 3.0]).fit(X, background=[Y1, Y2])
    with pytest.raises(ValueError, match="one per background"):
        MultiConditionBCNMF(2, alpha=[1.0, 0.0]).fit(X, background=[Y1, Y2])
    with pytest.raises(ValueError, match="features"):
        MultiConditionBCNMF(2).fit(X, background=[Y1, Y2[:, :4]])


def test_save_and_load_round_trip(tmp_path):
    import bcnmf

    X, Y1, Y2 = _data()
    model = MultiConditionBCNMF(3, alpha=[1.0, 0.5], **FIT).fit([X[:25], X[25:]],
                                                               background=[Y1, Y2])
    loaded = bcnmf.load(model.save(tmp_path / "mc.npz"))
    assert type(loaded) is MultiConditionBCNMF
    np.testing.assert_array_equal(loaded.alphas_raw_, model.alphas_raw_)
    assert loaded.target_slices_ == model.target_slices_
    assert len(loaded.background_codes_) == 2
    for a, b in zip(loaded.background_codes_, model.background_codes_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
    np.testing.assert_array_equal(loaded.transform(Y2, as_background=1),
                                  model.transform(Y2, as_background=1))
