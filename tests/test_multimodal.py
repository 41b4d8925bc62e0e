"""Several modalities sharing codes: limits, weights and the weighted objective."""

import numpy as np
import pytest
import scipy.sparse as sp

from bcnmf import BCNMF, MultiModalBCNMF

LOSSES = ["frobenius", "kullback-leibler"]
FIT = dict(random_state=0, max_iter=150, tol=0, alpha=1.5)


def _planted(scale_b=1.0, seed=0):
    """Two modalities on the same cells; the target program shows in both."""
    rng = np.random.default_rng(seed)
    ca, cy = rng.gamma(2, 1, (60, 3)), rng.gamma(2, 1, (50, 3))
    ca[:30, 2] = 0
    cy[:, 2] = 0
    pa = rng.gamma(2, 1, (3, 12)) * (rng.random((3, 12)) < 0.4)
    pb = rng.gamma(2, 1, (3, 8)) * (rng.random((3, 8)) < 0.5)
    X = [rng.poisson(ca @ pa + 0.2).astype(float),
         scale_b * rng.poisson(ca @ pb + 0.2).astype(float)]
    Y = [rng.poisson(cy @ pa + 0.2).astype(float),
         scale_b * rng.poisson(cy @ pb + 0.2).astype(float)]
    return X, Y


def _div(A, P, loss):
    if loss == "frobenius":
        return float(np.sum((A - P) ** 2))
    pos = A > 0
    return float(np.sum(A[pos] * np.log(A[pos] / P[pos])) - A.sum() + P.sum())


@pytest.mark.parametrize("loss", LOSSES)
def test_one_modality_is_bcnmf(loss):
    X, Y = _planted()
    multi = MultiModalBCNMF(3, beta_loss=loss, **FIT)
    codes = multi.fit_transform([X[0]], background=[Y[0]])
    single = BCNMF(3, beta_loss=loss, **FIT)
    np.testing.assert_array_equal(codes, single.fit_transform(X[0], background=Y[0]))
    np.testing.assert_array_equal(multi.components_, single.components_)
    np.testing.assert_array_equal(multi.weights_, [1.0])


@pytest.mark.parametrize("loss", LOSSES)
def test_history_is_the_weighted_objective_in_original_units(loss):
    X, Y = _planted(scale_b=3.0)
    # n_shared=0: the predictions below are rebuilt without the shared part
    m = MultiModalBCNMF(3, beta_loss=loss, weights=[1.0, 4.0], n_shared=0, **FIT)
    codes = m.fit_transform(X, background=Y)
    w = m.weights_
    np.testing.assert_allclose(w, [0.4, 1.6])
    # stable Poisson: predictions carry the offset smoothing * column mean (see BCNMF)
    off = (lambda A: 0.1 * A.mean(axis=0)) if loss != "frobenius" else (lambda A: 0.0)
    dx = sum(wm * _div(A, codes @ B + off(A), loss)
             for wm, A, B in zip(w, X, m.modality_components_))
    dy = sum(wm * _div(A, m.background_codes_ @ B + off(A), loss)
             for wm, A, B in zip(w, Y, m.modality_components_))
    np.testing.assert_allclose(m.history_["target"][-1], dx, rtol=1e-6)
    np.testing.assert_allclose(m.history_["background"][-1], dy, rtol=1e-6)
    rec = m.inverse_transform(codes)
    assert [r.shape for r in rec] == [A.shape for A in X]
    # transform solves the target codes with the bases fixed: no worse than the fit's
    new = m.transform(X)
    assert new.shape == codes.shape
    dx_new = sum(wm * _div(A, new @ B + off(A), loss)
                 for wm, A, B in zip(w, X, m.modality_components_))
    assert dx_new <= dx * (1 + 1e-6)


def test_balanced_weights_stop_the_larger_modality_dominating():
    """Modality b, 100x larger in scale, is driven by two latent programs and
    modality a by a third; with two topics and no weights both go to b and a
    is left unexplained; balanced weights give a its share."""
    rng = np.random.default_rng(1)
    c = rng.gamma(2, 1, (80, 3))
    pa = np.zeros((3, 10))
    pa[2] = rng.gamma(2, 1, 10)
    pb = np.zeros((3, 10))
    pb[0, :5] = pb[1, 5:] = 1.0
    X = [rng.poisson(c @ pa + 0.1).astype(float), 100.0 * rng.poisson(c @ pb + 0.1)]

    def rel_err(model):
        rec = model.inverse_transform(model.fit_transform(X))
        return [np.linalg.norm(A - R) / np.linalg.norm(A) for A, R in zip(X, rec)]

    err_none = rel_err(MultiModalBCNMF(2, weights=None, **FIT))
    err_bal = rel_err(MultiModalBCNMF(2, weights="balanced", **FIT))
    assert err_bal[0] < 0.5 * err_none[0]
    assert err_none[0] > 0.5                  # a neglected without weights


def test_sparse_equals_dense():
    X, Y = _planted()
    dense = MultiModalBCNMF(3, **FIT).fit_transform(X, background=Y)
    sparse = MultiModalBCNMF(3, **FIT).fit_transform([sp.csr_matrix(A) for A in X],
                                                    background=[sp.csr_matrix(A) for A in Y])
    np.testing.assert_allclose(sparse, dense, rtol=1e-6, atol=1e-9)


def test_errors():
    X, Y = _planted()
    with pytest.raises(TypeError, match="list of matrices"):
        MultiModalBCNMF(2).fit(X[0])
    with pytest.raises(ValueError, match="one background matrix per target modality"):
        MultiModalBCNMF(2).fit(X, background=Y[:1])
    with pytest.raises(ValueError, match="same cells"):
        MultiModalBCNMF(2).fit([X[0], X[1][:10]])
    with pytest.raises(ValueError, match="one finite positive number per modality"):
        MultiModalBCNMF(2, weights=[1.0, -1.0]).fit(X, background=Y)
    with pytest.raises(ValueError, match="modality 1"):
        MultiModalBCNMF(2).fit(X, background=[Y[0], Y[1][:, :3]])
    m = MultiModalBCNMF(2, **FIT).fit(X, background=Y)
    with pytest.raises(ValueError, match="fitted with"):
        m.transform([X[0][:, :5], X[1]])


@pytest.mark.parametrize("loss", LOSSES)
def test_save_and_load_round_trip(tmp_path, loss):
    import bcnmf

    X, Y = _planted(scale_b=100.0)
    model = MultiModalBCNMF(3, beta_loss=loss, **FIT).fit(X, background=Y)
    loaded = bcnmf.load(model.save(tmp_path / "mm.npz"))
    assert type(loaded) is MultiModalBCNMF
    np.testing.assert_array_equal(loaded.weights_, model.weights_)
    for a, b in zip(loaded.modality_components_, model.modality_components_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
    np.testing.assert_array_equal(loaded.transform(Y, as_background=True),
                                  model.transform(Y, as_background=True))
    codes = model.transform(X)
    for a, b in zip(loaded.inverse_transform(codes), model.inverse_transform(codes)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="numpy only"):
        bcnmf.load(tmp_path / "mm.npz", device="cpu")
