"""Combined-basis model: update rules, limits and the estimator."""

import numpy as np
import pytest

from bcnmf import CombinedBCNMF
from bcnmf.core.combined import combined_step, normalize_untied, overlap, untied_step
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
def test_step_is_a_gradient_split(loss, central_gradient):
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
    objective = {"S": lambda b: _objective(X, Y, cx, cy, b, T, lam, loss),
                 "T": lambda b: _objective(X, Y, cx, cy, S, b, lam, loss)}
    for which, base in (("S", S), ("T", T)):
        grad = central_gradient(objective[which], base)
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


# --- untied form: separate codes for shared and target-specific topics -----------------------

def _untied_objective(X, Y, cx, cy, S, T, lam, loss):
    def div(A, P):
        if loss == "frobenius":
            return np.sum((A - P) ** 2)
        return np.sum(A * np.log(A / P) - A + P)
    return div(X, cx @ np.vstack([S, T])) + div(Y, cy @ S) + lam * overlap(S, T)


def _untied_state(rng, ks=2, kt=3):
    X, Y = rng.random((7, 5)) + 0.1, rng.random((6, 5)) + 0.1
    cx, cy = rng.random((7, ks + kt)) + 0.1, rng.random((6, ks)) + 0.1
    S, T = rng.random((ks, 5)) + 0.1, rng.random((kt, 5)) + 0.1
    return X, Y, cx, cy, S, T


@pytest.mark.parametrize("loss", LOSSES)
def test_untied_step_is_a_gradient_split(loss, central_gradient):
    """x <- x * num / den with den - num equal to (half, for squared error)
    the finite-difference gradient of the untied objective, for both bases;
    num and den are recovered from two steps that differ only in eps."""
    rng = np.random.default_rng(4)
    X, Y, cx, cy, S, T = _untied_state(rng)
    lam = 0.7
    px = _parts(X, cx, np.vstack([S, T]), loss)
    py = _parts(Y, cy, S, loss)
    # r0 = num / den and r1 = num / (den + 1): den = r1 / (r0 - r1), num = r0 den
    steps = []
    for eps in (0.0, 1.0):
        s, t = S.copy(), T.copy()
        untied_step(s, t, px, py, lam, loss, StepPolicy(eps=eps))
        steps.append((s / S, t / T))
    half = 0.5 if loss == "frobenius" else 1.0
    objective = {"S": lambda b: _untied_objective(X, Y, cx, cy, b, T, lam, loss),
                 "T": lambda b: _untied_objective(X, Y, cx, cy, S, b, lam, loss)}
    for i, (which, base) in enumerate((("S", S), ("T", T))):
        r0, r1 = steps[0][i], steps[1][i]
        den = r1 / (r0 - r1)
        num = r0 * den
        grad = central_gradient(objective[which], base)
        np.testing.assert_allclose(den - num, half * grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("loss", LOSSES)
def test_untied_with_equal_codes_is_the_tied_step(loss):
    """Limit to the tied (authors') form: when every target cell has the same
    codes for its shared and its target topics (C_s = C_t = C, K_s = K_t),
    the untied step of both bases is the tied step."""
    rng = np.random.default_rng(5)
    X, Y, _, cy, S, T = _untied_state(rng, ks=3, kt=3)
    c = rng.random((7, 3)) + 0.1
    lam = 0.3
    s1, t1 = S.copy(), T.copy()
    untied_step(s1, t1, _parts(X, np.hstack([c, c]), np.vstack([S, T]), loss),
                _parts(Y, cy, S, loss), lam, loss, StepPolicy(eps=0.0))
    s2, t2 = S.copy(), T.copy()
    combined_step(s2, t2, _parts(X, c, S + T, loss), _parts(Y, cy, S, loss), lam, loss,
                  StepPolicy(eps=0.0))
    np.testing.assert_allclose(s1, s2, rtol=1e-12)
    np.testing.assert_allclose(t1, t2, rtol=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
def test_untied_without_target_part_the_shared_step_is_joint_nmf(loss):
    """Limit T = 0, lam = 0: the shared basis takes the plain NMF step of the
    stacked data [X; Y] with codes [C_s; C_Y] (the base model at alpha = 0)."""
    rng = np.random.default_rng(6)
    X, Y, cx, cy, S, T = _untied_state(rng)
    T[:] = 0.0
    s, t = S.copy(), T.copy()
    untied_step(s, t, _parts(X, cx, np.vstack([S, T]), loss), _parts(Y, cy, S, loss), 0.0,
                loss, StepPolicy(eps=0.0))
    A, C = np.vstack([X, Y]), np.vstack([cx[:, :2], cy])
    p = _parts(A, C, S, loss)
    den = p.second @ S if loss == "frobenius" else np.broadcast_to(p.second[:, None], S.shape)
    np.testing.assert_allclose(s, S * p.cross / den, rtol=1e-12)
    assert np.all(t == 0)


def test_untied_normalisation_keeps_the_products():
    """The gauge fix rescales rows of S and T to unit L1 norm and moves the
    scales into the matching code columns: C_X [S; T] and C_Y S unchanged."""
    rng = np.random.default_rng(7)
    X, Y, cx, cy, S, T = _untied_state(rng)
    before_x, before_y = cx @ np.vstack([S, T]), cy @ S
    normalize_untied(S, T, [cx], [cy], 0.0)
    np.testing.assert_allclose(S.sum(axis=1), 1.0)
    np.testing.assert_allclose(T.sum(axis=1), 1.0)
    np.testing.assert_allclose(cx @ np.vstack([S, T]), before_x)
    np.testing.assert_allclose(cy @ S, before_y)


@pytest.mark.parametrize("loss", LOSSES)
def test_untied_target_program_goes_to_the_target_basis(loss):
    """Planted: two programs in both data sets, a third only in half of the
    target cells.  The target topic must carry the third program, the shared
    topics must not, and the target codes must find the cells that have it."""
    X, Y = _planted()
    m = CombinedBCNMF(3, n_target_components=1, beta_loss=loss, random_state=0,
                      max_iter=2000, tol=1e-3)
    codes = m.fit_transform(X, background=Y)
    S, T = m.components_shared_, m.components_target_
    assert S.shape == (2, 30) and T.shape == (1, 30) and codes.shape == (100, 3)
    assert T[0, 20:].sum() > 0.9                       # rows have unit L1 norm
    assert S[:, 20:].sum(axis=1).max() < 0.05
    ct = codes[:, m.target_slice_][:, 0]
    # the program's cells stand out: probability that a cell with it has a larger
    # target code than one without (area under the ROC curve)
    assert np.mean(ct[50:, None] > ct[None, :50]) > 0.95
    np.testing.assert_allclose(m.components_, np.vstack([S, T]))
    np.testing.assert_array_equal(m.target_fraction(), [0.0, 0.0, 1.0])


def test_untied_estimator_contract():
    X, Y = _planted(1)
    m = CombinedBCNMF(4, n_target_components=2, random_state=3, max_iter=300, tol=1e-3)
    codes = m.fit_transform(X, background=Y)
    assert m.target_slice_ == slice(2, 4)
    assert m.background_codes_.shape == (80, 2)
    h = m.history_
    np.testing.assert_allclose(h["objective"], h["target"] + h["background"] + h["penalty"])
    rec = m.inverse_transform(codes)
    rel = np.linalg.norm(m.inverse_transform(m.transform(X)) - rec) / np.linalg.norm(rec)
    assert rel < 1e-2
    np.testing.assert_array_equal(m.target_codes(X), m.transform(X)[:, 2:])
    rec_y = m.background_codes_ @ m.components_shared_
    new_y = m.transform(Y, as_background=True) @ m.components_shared_
    assert np.linalg.norm(new_y - rec_y) / np.linalg.norm(rec_y) < 1e-2
    again = CombinedBCNMF(4, n_target_components=2, random_state=3, max_iter=300, tol=1e-3)
    np.testing.assert_array_equal(again.fit_transform(X, background=Y), codes)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    before = X32.copy()
    c32 = CombinedBCNMF(4, n_target_components=2, random_state=3, max_iter=50,
                        tol=0).fit_transform(X32, background=Y32)
    assert np.array_equal(X32, before)
    assert c32.dtype == np.float32 and np.all(np.isfinite(c32)) and np.all(c32 >= 0)


@pytest.mark.parametrize("shared_init", ["background", "random"])
def test_untied_objective_decreases_without_penalty(shared_init):
    """Without the penalty every step is a majorisation step of a plain
    minimisation and the gauge fix leaves the data terms unchanged."""
    X, Y = _planted(2)
    m = CombinedBCNMF(4, n_target_components=1, penalty=0.0, shared_init=shared_init,
                      random_state=0, max_iter=60, tol=0).fit(X, background=Y)
    obj = m.history_["objective"]
    assert np.all(np.diff(obj) <= 1e-9 * obj[0])


def test_untied_errors():
    X, Y = _planted()
    with pytest.raises(InvalidParameterError, match="n_target_components=3 must be smaller"):
        CombinedBCNMF(3, n_target_components=3).fit(X, background=Y)
    with pytest.raises(InvalidParameterError, match="'n_target_components' parameter"):
        CombinedBCNMF(3, n_target_components=0).fit(X, background=Y)
    with pytest.raises(InvalidParameterError, match="'shared_init' parameter"):
        CombinedBCNMF(3, n_target_components=1, shared_init="nmf").fit(X, background=Y)
    with pytest.raises(InvalidParameterError, match="untied form only"):
        CombinedBCNMF(3, shared_init="background").fit(X, background=Y)


def test_untied_save_and_load_round_trip(tmp_path):
    from bcnmf import load

    X, Y = _planted(3)
    m = CombinedBCNMF(4, n_target_components=1, random_state=0, max_iter=100, tol=0)
    m.fit(X, background=Y)
    back = load(m.save(tmp_path / "untied.npz"))
    assert type(back) is CombinedBCNMF and back.get_params() == m.get_params()
    np.testing.assert_array_equal(back.components_shared_, m.components_shared_)
    np.testing.assert_array_equal(back.components_target_, m.components_target_)
    assert back.target_slice_ == m.target_slice_ == slice(3, 4)
    np.testing.assert_array_equal(back.transform(X), m.transform(X))
    np.testing.assert_array_equal(back.target_codes(X), m.target_codes(X))
    np.testing.assert_array_equal(back.transform(Y, as_background=True),
                                  m.transform(Y, as_background=True))


def test_untied_blocks_equal_one_block():
    """Cells swept in blocks give the fit of one block (sums in another order)."""
    X, Y = _planted(4)
    fits = [CombinedBCNMF(4, n_target_components=1, random_state=0, max_iter=50, tol=0,
                          block_size=b).fit(X, background=Y) for b in (None, 30)]
    np.testing.assert_allclose(fits[1].components_, fits[0].components_, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(fits[1].background_codes_, fits[0].background_codes_,
                               rtol=1e-6, atol=1e-9)
