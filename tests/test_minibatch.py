"""Online bcNMF (MiniBatchBCNMF).

* one batch holding every cell is exactly the full-batch fit, for any
  forgetting factor, and at the defaults (stopping rule and final code
  refinement included); the stream accumulators of ``partial_fit`` are not
  (negative control);
* ``partial_fit`` over a sequence of blocks equals the first epoch of ``fit``
  over the same batches (fresh codes per batch), for full and no memory, and
  every epoch of it without memory;
* outputs are finite and non-negative, inputs unchanged, runs reproducible;
* on a planted problem the online fit recovers the target topics;
* stable Poisson carries BCNMF's shared topics (one batch without memory
  equals the full-batch fit; the simulated subtypes are recovered);
* parameters are validated with clear messages.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal

from bcnmf import BCNMF, MiniBatchBCNMF
from bcnmf.exceptions import ConvergenceWarning, InvalidParameterError

LOSSES = ["frobenius", "kullback-leibler"]

def _data(seed=0, n_x=60, n_y=40, n_features=10):
    rng = np.random.default_rng(seed)
    return rng.random((n_x, n_features)), rng.random((n_y, n_features))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("mode", ["stable", "reference"])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("forget", [0.0, 0.7, 1.0])
def test_one_batch_of_every_cell_equals_the_full_batch_fit(loss, mode, sparse, forget):
    X, Y = _data()
    if sparse:
        X[X < 0.3] = 0
        Y[Y < 0.3] = 0
        X, Y = sp.csr_matrix(X), sp.csr_matrix(Y)
    # (without shared topics here: their schedules differ, tested below)
    full = BCNMF(3, alpha=0.7, beta_loss=loss, mode=mode, max_iter=20, tol=0, random_state=0,
                 n_shared=0)
    codes = full.fit_transform(X, background=Y)
    online = MiniBatchBCNMF(3, alpha=0.7, beta_loss=loss, mode=mode, max_iter=20, tol=0,
                            batch_size=10_000, forget_factor=forget, max_no_improvement=None,
                            random_state=0, n_shared=0)
    online_codes = online.fit_transform(X, background=Y)
    assert online.n_steps_ == 20 and online.n_iter_ == 20
    assert_allclose(online.components_, full.components_, rtol=1e-10, atol=1e-14)
    assert_allclose(online_codes, codes, rtol=1e-10, atol=1e-14)
    assert_allclose(online.background_codes_, full.background_codes_, rtol=1e-10, atol=1e-14)
    # the step's record is the full-batch objective of the state entering it
    assert_array_equal(online.history_["iteration"], np.arange(20))
    recorded = full.history_["iteration"][:-1]
    assert_allclose(online.history_["objective"][recorded], full.history_["objective"][:-1],
                    rtol=1e-10)


@pytest.mark.filterwarnings("ignore::bcnmf.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("loss, shared", [("frobenius", 10), ("kullback-leibler", 0),
                                            ("kullback-leibler", 10)])
def test_defaults_with_one_batch_are_the_full_batch_fit(monkeypatch, loss, shared):
    """At the defaults (forgetting factor, tol and its stopping rule,
    max_iter, max_no_improvement, final code refinement), a batch holding
    every cell is BCNMF at its defaults: the same number of sweeps, topics
    and refined codes (after max_iter sweeps, or stopped by tol).  Stable
    Poisson with shared topics, whose codes the online engine updates at
    every step: with BCNMF's shared schedule set to every sweep."""
    from bcnmf.core import fit as core_fit

    monkeypatch.setattr(core_fit, "SHARED_EVERY", 1)
    X, Y = _data(8, n_features=16)
    full = BCNMF(3, beta_loss=loss, random_state=0, n_shared=shared, alpha=1.5)
    codes = full.fit_transform(X, background=Y)
    online = MiniBatchBCNMF(3, beta_loss=loss, random_state=0, n_shared=shared)
    assert online.batch_size > X.shape[0]
    online_codes = online.fit_transform(X, background=Y)
    assert full.n_iter_ > 20
    assert online.n_iter_ == online.n_steps_ == full.n_iter_
    assert_allclose(online.components_, full.components_, rtol=1e-9, atol=1e-13)
    assert_allclose(online_codes, codes, rtol=1e-9, atol=1e-12)
    assert_allclose(online.background_codes_, full.background_codes_, rtol=1e-9, atol=1e-12)
    # max_no_improvement does not apply to full-batch steps
    strict = MiniBatchBCNMF(3, beta_loss=loss, random_state=0, n_shared=shared,
                            max_no_improvement=1)
    assert_array_equal(strict.fit_transform(X, background=Y), online_codes)


@pytest.mark.parametrize("loss", LOSSES)
def test_stream_accumulators_are_not_the_full_batch_step(loss):
    """Negative control of the test above: the accumulators of a stream
    (partial_fit's: past parts decay by the forgetting factor and the new
    ones are added) on a batch of every cell, met twice, are not the
    full-batch step; the accumulators of a fit (every batch once, by its
    latest parts) are."""
    from bcnmf.core.online import OnlineState, online_step

    X, Y = _data(9)
    model = MiniBatchBCNMF(3, beta_loss=loss, max_iter=2, tol=0, random_state=0,
                           n_shared=0)
    full = BCNMF(**{k: v for k, v in model.get_params().items()
                    if k in BCNMF(alpha=1.5).get_params()}).fit(X, background=Y)
    bases = {}
    for batch in (None, 0):
        cx, cy = model._start(X, Y, model._params(), None)
        state = OnlineState.start(model._online.basis, None, 0 if batch is None else 1)
        for _ in range(2):
            online_step(state, X, cx, Y, cy, model._settings, model._policy, 0.7, False, 0,
                        [cx, cy], batch)
        bases[batch] = state.basis
    assert_allclose(bases[0], full.components_, rtol=1e-10, atol=1e-14)
    assert not np.allclose(bases[None], full.components_, rtol=1e-3, atol=0)


def test_fit_over_batches_applies_the_contrast_of_the_whole_data():
    """fit knows all cells: a relative alpha and the stable Poisson offsets are
    BCNMF's, whatever the batches; partial_fit's are those of its block."""
    X, Y = _data(10, n_features=16)
    kw = dict(beta_loss="kullback-leibler", max_iter=2, tol=0, random_state=0,
              n_shared=0, alpha=1.5)
    full = BCNMF(3, **kw).fit(X, background=Y)
    online = MiniBatchBCNMF(3, batch_size=20, max_no_improvement=None, **kw)
    online.fit(X, background=Y)
    assert online.alpha_raw_ == pytest.approx(full.alpha_raw_, rel=1e-12)
    for a, b in zip(online.fit_state_.offsets, full.fit_state_.offsets):
        assert_allclose(a, b, rtol=1e-12)
    block = MiniBatchBCNMF(3, **kw).partial_fit(X[:20], background=Y[:20])
    assert block.alpha_raw_ == pytest.approx(BCNMF(3, **kw).fit(X[:20], background=Y[:20])
                                             .alpha_raw_, rel=1e-12)
    assert block.alpha_raw_ != pytest.approx(full.alpha_raw_, rel=1e-3)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("forget, epochs", [(0.0, 2), (1.0, 1)])
def test_partial_fit_over_blocks_equals_fit(loss, forget, epochs):
    """partial_fit cannot know that a block comes back: its accumulators add
    a revisited block's parts to its older ones, where fit replaces them;
    the two agree over the first epoch, and over every epoch without
    memory.  With a raw alpha and no Poisson offsets: the data-level
    statistics, which fit takes from all cells and partial_fit from the
    blocks seen so far."""
    X, Y = _data(1, n_x=90, n_y=60)
    start = np.random.default_rng(5).random((3, X.shape[1])) + 0.1
    # no shared topics: partial_fit fits them on its first block, fit on every cell
    kw = dict(alpha=0.7, alpha_scale="raw", smoothing=0.0, beta_loss=loss, tol=0,
              max_no_improvement=None, forget_factor=forget, fresh_restarts=True,
              random_state=0, n_shared=0)
    fitted = MiniBatchBCNMF(3, batch_size=30, max_iter=epochs, **kw)
    n = X.shape[0]
    fitted.fit(X, background=Y, init_components=start, init_codes=np.ones((n, 3)),
               init_background_codes=np.ones((Y.shape[0], 3)))
    online = MiniBatchBCNMF(3, batch_size=30, **kw)
    for _ in range(epochs):
        for (lo, hi), (ly, hy) in zip([(0, 30), (30, 60), (60, 90)],
                                      [(0, 20), (20, 40), (40, 60)]):
            online.partial_fit(X[lo:hi], background=Y[ly:hy], init_components=start)
    assert online.n_steps_ == fitted.n_steps_ == 3 * epochs
    assert_allclose(online.components_, fitted.components_, rtol=1e-10, atol=1e-14)
    assert_allclose(online.history_["objective"], fitted.history_["objective"], rtol=1e-10)
    # codes agree except at the code floor, which is relative to the mean cell total of
    # the data that initialised the model (the first block vs all cells)
    assert_allclose(online.transform(X), fitted.transform(X), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("loss", LOSSES)
def test_outputs_finite_inputs_unchanged_and_reproducible(loss):
    X, Y = _data(2, n_x=120, n_y=80)
    Xs, Ys = X.copy(), Y.copy()
    runs = []
    for _ in range(2):
        with pytest.warns(ConvergenceWarning, match="Maximum number of epochs 3"):
            model = MiniBatchBCNMF(4, beta_loss=loss, batch_size=25, max_iter=3, tol=1e-12,
                                   max_no_improvement=None, random_state=3)
            codes = model.fit_transform(X, background=Y)
        runs.append((codes, model.components_))
        for a in (codes, model.components_, model.background_codes_):
            assert np.all(np.isfinite(a)) and np.all(a >= 0)
    assert_array_equal(X, Xs)
    assert_array_equal(Y, Ys)
    assert_array_equal(runs[0][0], runs[1][0])
    assert_array_equal(runs[0][1], runs[1][1])
    assert model.n_steps_ == 15 and model.n_iter_ == 3
    assert model.history_["smoothed"].shape == (15,)
    assert_allclose(model.components_.sum(axis=1), 1.0, rtol=1e-9)


def test_online_fit_finds_the_full_batch_topics_on_a_planted_problem():
    """Target = shared + two target-only programs on disjoint features; the
    background has only the shared program."""
    rng = np.random.default_rng(4)
    f = 30
    shared = np.zeros(f)
    shared[:10] = 1.0
    target = np.zeros((2, f))
    target[0, 10:20] = 1.0
    target[1, 20:30] = 1.0
    which = rng.integers(0, 2, 600)
    X = (rng.random((600, 1)) + 0.5) * shared + (rng.random((600, 1)) + 0.5) * target[which]
    Y = (rng.random((400, 1)) + 0.5) * shared
    full = BCNMF(2, alpha=1.5, random_state=0).fit(X, background=Y)
    model = MiniBatchBCNMF(2, alpha=1.5, batch_size=60, max_iter=30, tol=0,
                           max_no_improvement=None, random_state=0)
    codes = model.fit_transform(X, background=Y)
    order = np.argsort(np.argmax(full.components_[:, 10:], axis=1))
    mine = np.argsort(np.argmax(model.components_[:, 10:], axis=1))
    assert_allclose(model.components_[mine], full.components_[order], atol=0.02)
    assert model.components_[:, 10:].sum() > 1.6      # most mass on the target programs
    agree = np.mean(np.argmax(codes, axis=1) == which)
    assert max(agree, 1 - agree) > 0.98


@pytest.mark.parametrize("param, value, match", [
    ("batch_size", 0, "'batch_size' parameter of MiniBatchBCNMF must be an int >= 1"),
    ("forget_factor", 1.5, "'forget_factor' parameter of MiniBatchBCNMF must be a real in"),
    ("fresh_restarts", "yes", "'fresh_restarts' parameter of MiniBatchBCNMF must be True"),
    ("max_no_improvement", 0, "'max_no_improvement' parameter of MiniBatchBCNMF must be"),
])
def test_parameters_are_validated(param, value, match):
    X, Y = _data()
    with pytest.raises(InvalidParameterError, match=match):
        MiniBatchBCNMF(2, **{param: value}).fit(X, background=Y)


@pytest.mark.parametrize("loss", ["poisson", "frobenius"])
@pytest.mark.parametrize("sparse", [False, True])
def test_n_shared_online_equal_the_full_batch_fit(monkeypatch, sparse, loss):
    """Stable mode with a background: the online engine fixes the same
    shared topics as BCNMF (the background's NMF) and learns only the
    contrastive topics; one batch of every cell without memory is the
    full-batch fit that updates the shared codes at every sweep."""
    from bcnmf.core import fit as core_fit

    monkeypatch.setattr(core_fit, "SHARED_EVERY", 1)
    X, Y = _data(6, n_features=16)
    if sparse:
        X[X < 0.3] = 0
        Y[Y < 0.3] = 0
        X, Y = sp.csr_matrix(X), sp.csr_matrix(Y)
    kw = dict(alpha=0.7, beta_loss=loss, max_iter=20, tol=0, random_state=0,
              n_shared=2)
    full = BCNMF(3, **kw)
    codes = full.fit_transform(X, background=Y)
    online = MiniBatchBCNMF(3, batch_size=10_000, forget_factor=0.0, max_no_improvement=None,
                            **kw)
    online_codes = online.fit_transform(X, background=Y)
    assert online.components_.shape == (3, 16) and online_codes.shape == (X.shape[0], 3)
    assert_allclose(online.components_, full.components_, rtol=1e-10, atol=1e-14)
    assert_allclose(online_codes, codes, rtol=1e-10, atol=1e-14)
    assert_allclose(online.background_codes_, full.background_codes_, rtol=1e-10, atol=1e-14)
    # floor, then the fixed topics
    for a, b in zip(online.fit_state_.offsets, full.fit_state_.offsets):
        assert a.shape == (3, 16)
        assert_allclose(a, b, rtol=1e-10)
    new = X[::2] * 2.0
    assert_allclose(online.transform(new), full.transform(new), rtol=1e-8, atol=1e-12)
    # partial_fit fits the shared topics on its first block's background
    part = MiniBatchBCNMF(3, **kw).partial_fit(X, background=Y)
    assert part.components_.shape == (3, 16) and part.fit_state_.offsets[0].shape == (3, 16)
    assert_allclose(part.fit_state_.offsets[0][1:], full.fit_state_.offsets[0][1:],
                    rtol=1e-10)
    assert part.background_codes_.shape == (Y.shape[0], 3)
    assert np.isfinite(part.transform(new)).all()


@pytest.mark.filterwarnings("ignore::bcnmf.exceptions.ConvergenceWarning")
def test_online_poisson_with_n_shared_recovers_the_simulated_subtypes():
    """The raw-count simulation at beta 8: stable Poisson online recovers the
    target subtypes with the shared topics, as BCNMF does (0.97 here; 0.56
    online without them)."""
    from bcnmf.datasets import make_contrastive_counts
    from bcnmf.metrics import cluster_ari

    sim = make_contrastive_counts(8.0, n_genes=1500, n_target=400, n_background=400,
                                  random_state=0, sparse=True)
    kw = dict(beta_loss="poisson", alpha=1.5, batch_size=200, max_iter=100, random_state=0)
    codes = MiniBatchBCNMF(2, **kw).fit_transform(sim.X, background=sim.Y)
    assert cluster_ari(codes, sim.labels, normalize=True) > 0.9
    assert cluster_ari(codes, sim.labels) > 0.9


@pytest.mark.filterwarnings("ignore::bcnmf.exceptions.ConvergenceWarning")
def test_no_improvement_does_not_stop_while_the_topics_move(monkeypatch):
    """Four batches per epoch on the raw-count simulation: the smoothed objective
    stalls in the first steps while the topics still move.  Steps whose topics
    move more than STALE_CHANGE are not stale, so the fit goes on until the
    topics find the subtypes; counting every step without improvement (the
    negative control) stops it after a few steps."""
    from bcnmf import minibatch
    from bcnmf.datasets import make_contrastive_counts
    from bcnmf.metrics import cluster_ari

    assert minibatch.STALE_CHANGE == 1e-3
    sim = make_contrastive_counts(8.0, random_state=0, sparse=True)
    kw = dict(beta_loss="poisson", alpha=1.5, batch_size=250, max_iter=60, tol=0,
              max_no_improvement=3, random_state=0)
    model = MiniBatchBCNMF(2, **kw)
    codes = model.fit_transform(sim.X, background=sim.Y)
    assert model.n_iter_ == 60
    assert cluster_ari(codes, sim.labels, normalize=True) > 0.9
    monkeypatch.setattr(minibatch, "STALE_CHANGE", np.inf)
    stopped = MiniBatchBCNMF(2, **kw).fit(sim.X, background=sim.Y)
    assert stopped.n_steps_ < 10


@pytest.mark.parametrize("loss", LOSSES)
def test_save_and_load(tmp_path, loss):
    """A fitted MiniBatchBCNMF (with its shared topics in the offsets) is saved and
    loaded like BCNMF and transforms identically; partial_fit on the loaded model says
    that the running accumulators were not saved."""
    import bcnmf

    X, Y = _data(7, n_features=24)
    model = MiniBatchBCNMF(3, beta_loss=loss, batch_size=20, max_iter=3, tol=0, n_shared=3,
                           max_no_improvement=None, random_state=0).fit(X, background=Y)
    path = model.save(tmp_path / "online.npz")
    loaded = bcnmf.load(path)
    assert type(loaded) is MiniBatchBCNMF and loaded.n_steps_ == model.n_steps_ == 9
    assert loaded.get_params() == model.get_params()
    for a, b in zip(loaded.fit_state_.offsets, model.fit_state_.offsets):
        assert a.shape == (1 + 3, 24)   # the floor (zero for squared error), 3 shared topics
        assert_array_equal(a, b)
    assert_array_equal(loaded.transform(X), model.transform(X))
    assert_array_equal(loaded.transform(Y, as_background=True),
                       model.transform(Y, as_background=True))
    with pytest.raises(ValueError, match=r"loaded from a file.*get_params\(\)\)"
                                         r"\.partial_fit.*init_components"):
        loaded.partial_fit(X, background=Y)
    fresh = MiniBatchBCNMF(**loaded.get_params()).partial_fit(
        X, background=Y, init_components=loaded.components_)
    assert fresh.components_.shape == (3, 24)
