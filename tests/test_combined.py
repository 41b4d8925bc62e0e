"""Combined-basis model: update rules, limits and the estimator."""

import numpy as np
import pytest

from bcnmf import CombinedBCNMF
from bcnmf.core.combined import combined_step, overlap
from bcnmf.core.updates import Parts, StepPolicy
from bcnmf.exceptions import InvalidParameterError

LOSSES = ["frobenius", "kullback-leibler"]


def _objective(X, Y, cx, cy, S, T, lam, loss):
    def div(A, P):
        if loss == "frobenius":
            return np.sum((A - P) ** 2)
        return np.sum(A * np.log(A / P) - A + P)
    return div(X, cx @ (S + T)) + div(Y, cy @ S) + lam * overlap(S, T)


def _parts(A, C, B, loss):
    if loss == "frobenius":
        return Parts(C.T @ A, C.T @ C)
    return Parts(C.T @ (A / (C @ B)), C.sum(axis=0))


def _ratios(X, Y, cx, cy, S, T, lam, loss):
    """num / den of both bases, read off one step with eps = 0."""
    s, t = S.copy(), T.copy()
    combined_step(s, t, _parts(X, cx, S + T, loss), _parts(Y, cy, S, loss), lam, loss,
                  StepPolicy(eps=0.0))
    return {"S": s / S, "T": t / T}


@pytest.mark.parametrize("loss", LOSSES)
def test_step_is_a_gradient_split(loss):
    """The multiplicative step is x <- x * num / den with den - num equal to
    the gradient of the objective (finite differences; half of it for the
    squared error, whose data terms are halved by convention)."""
    rng = np.random.default_rng(1)
    X, Y = rng.random((7, 5)) + 0.1, rng.random((6, 5)) + 0.1
    cx, cy = rng.random((7, 2)) + 0.1, rng.random((6, 2)) + 0.1
    S, T = rng.random((2, 5)) + 0.1, rng.random((2, 5)) + 0.1
    lam = 0.7
    ratios = _ratios(X, Y, cx, cy, S, T, lam, loss)
    px, py = _parts(X, cx, S + T, loss), _parts(Y, cy, S, loss)
    dens = _denominators(px, py, S, T, lam, loss)
    h = 1e-6
    for which, base in (("S", S), ("T", T)):
        grad = np.zeros_like(base)
        for idx in np.ndindex(base.shape):
            up, dn = base.copy(), base.copy()
            up[idx] += h
            dn[idx] -= h
            args = (up, T) if which == "S" else (S, up)
            args_dn = (dn, T) if which == "S" else (S, dn)
            grad[idx] = (_objective(X, Y, cx, cy, *args, lam, loss)
                         - _objective(X, Y, cx, cy, *args_dn, lam, loss)) / (2 * h)
        half = 0.5 if loss == "frobenius" else 1.0
        den = dens[which]
        np.testing.assert_allclose(den - ratios[which] * den, half * grad, rtol=1e-5,
                                   atol=1e-7)


def _denominators(px, py, S, T, lam, loss):
    if loss == "frobenius":
        common = px.second @ (S + T)
        den_s = common + py.second @ S
    else:
        common = np.broadcast_to(px.second[:, None], S.shape)
        den_s = common + py.second[:, None]
    m = S @ T.T
    w = lam if loss == "frobenius" else 2 * lam
    return {"S": den_s + w * m @ T, "T": common + w * m.T @ S}


@pytest.mark.parametrize("loss", LOSSES)
def test_without_target_part_the_shared_step_is_joint_nmf(loss):
    """Limit T = 0, lam = 0: the shared basis takes the plain NMF step of
    the stacked data [X; Y] with codes [C_X; C_Y]."""
    rng = np.random.default_rng(2)
    X, Y = rng.random((8, 6)) + 0.1, rng.random((5, 6)) + 0.1
    cx, cy = rng.random((8, 3)) + 0.1, rng.random((5, 3)) + 0.1
    S, T = rng.random((3, 6)) + 0.1, np.zeros((3, 6))
    s, t = S.copy(), T.copy()
    combined_step(s, t, _parts(X, cx, S, loss), _parts(Y, cy, S, loss), 0.0, loss,
                  StepPolicy(eps=0.0))
    A, C = np.vstack([X, Y]), np.vstack([cx, cy])
    p = _parts(A, C, S, loss)
    den = p.second @ S if loss == "frobenius" else np.broadcast_to(p.second[:, None], S.shape)
    np.testing.assert_allclose(s, S * p.cross / den, rtol=1e-12)
    assert np.all(t == 0)


def _planted(seed=0):
    rng = np.random.default_rng(seed)
    prog = np.zeros((3, 30))
    prog[0, :10] = prog[1, 10:20] = prog[2, 20:] = 1.0
    Y = rng.poisson(rng.gamma(2, 1, (80, 2)) @ prog[:2] + 0.1).astype(float)
    cx = rng.gamma(2, 1, (100, 3))
    cx[:50, 2] = 0
    X = rng.poisson(cx @ prog + 0.1).astype(float)
    return X, Y


@pytest.mark.parametrize("loss", LOSSES)
def test_target_program_goes_to_the_target_basis(loss):
    X, Y = _planted()
    m = CombinedBCNMF(3, beta_loss=loss, random_state=0, max_iter=2000, tol=1e-3)
    m.fit(X, background=Y)
    T, S = m.components_target_, m.components_shared_
    assert T[:, 20:].sum() / T.sum() > 0.75          # target part on the target block
    assert S[:, 20:].sum() / S.sum() < 0.05          # shared part off it
    assert np.max(m.target_fraction()) > 0.8         # one topic is target-specific
    np.testing.assert_allclose(m.components_, S + T)
    np.testing.assert_allclose(m.components_.sum(axis=1), 1.0, rtol=1e-10)


def test_estimator_contract():
    X, Y = _planted(1)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    before = X32.copy()
    m = CombinedBCNMF(3, penalty=0.5, random_state=3, max_iter=300, tol=1e-3)
    codes = m.fit_transform(X32, background=Y32)
    assert np.array_equal(X32, before)
    assert codes.dtype == np.float32 and codes.shape == (100, 3)
    for a in (codes, m.components_shared_, m.components_target_, m.background_codes_):
        assert np.all(np.isfinite(a)) and np.all(a >= 0)
    h = m.history_
    np.testing.assert_allclose(h["objective"], h["target"] + h["background"] + h["penalty"])
    # transform: target cells on S + T, background cells on S (compared through
    # the reconstructions: codes near zero approach it sublinearly under MU)
    rec = m.inverse_transform(codes)
    rel = np.linalg.norm(m.inverse_transform(m.transform(X32)) - rec) / np.linalg.norm(rec)
    assert rel < 1e-2
    rec_y = m.background_codes_ @ m.components_shared_
    new_y = m.transform(Y32, as_background=True) @ m.components_shared_
    assert np.linalg.norm(new_y - rec_y) / np.linalg.norm(rec_y) < 1e-2
    assert m.inverse_transform(codes).shape == X.shape
    # same seed, same answer
    again = CombinedBCNMF(3, penalty=0.5, random_state=3, max_iter=300, tol=1e-3)
    np.testing.assert_array_equal(again.fit_transform(X32, background=Y32), codes)


def test_objective_decreases_without_penalty():
    X, Y = _planted(2)
    m = CombinedBCNMF(3, penalty=0.0, random_state=0, max_iter=60, tol=0).fit(X, background=Y)
    obj = m.history_["objective"]
    assert np.all(np.diff(obj) <= 1e-9 * obj[0])


def test_errors():
    X, Y = _planted()
    with pytest.raises(ValueError, match="needs a background"):
        CombinedBCNMF(2).fit(X)
    with pytest.raises(InvalidParameterError, match="'penalty' parameter"):
        CombinedBCNMF(2, penalty=-1.0).fit(X, background=Y)
    with pytest.raises(ValueError, match="features"):
        CombinedBCNMF(2).fit(X, background=Y[:, :5])


def test_save_and_load_round_trip(tmp_path):
    from bcnmf import load

    X, Y = _planted(3)
    m = CombinedBCNMF(3, penalty=0.5, random_state=0, max_iter=100, tol=0)
    m.fit(X, background=Y)
    path = m.save(tmp_path / "combined.npz")
    back = load(path)
    assert type(back) is CombinedBCNMF and back.get_params() == m.get_params()
    np.testing.assert_array_equal(back.components_shared_, m.components_shared_)
    np.testing.assert_array_equal(back.components_target_, m.components_target_)
    assert back.penalty_raw_ == m.penalty_raw_
    np.testing.assert_array_equal(back.transform(X), m.transform(X))
    np.testing.assert_array_equal(back.transform(Y, as_background=True),
                                  m.transform(Y, as_background=True))
