"""alpha="auto" (and n_components="auto"): the automatic choice before the fit.

* the automatic fit *is* the fixed-alpha fit at the chosen alpha (same seed, bit for bit),
  on dense, sparse and streamed inputs, and a number passed as alpha reproduces the fixed
  fits of the previous release (stored values);
* the rule on scripted screening rows: ties go to the smaller alpha, collapsed fits are not
  chosen, an edge choice that still rises extends the grid, in both directions;
* negative control: a target drawn like the background gives no contrast and a warning;
* the choice is reported (``alpha_``, ``alpha_path_``), saved with the model, shown with
  ``progress=True``, and bad combinations are refused with a clear error.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from bcnmf import BCNMF, factorize, load
from bcnmf.core import alpha_path
from bcnmf.exceptions import AlphaSelectionWarning, InvalidParameterError

# short fits on small data stop at max_iter: that is not what these tests are about
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

PATH_KEYS = {"n_components", "alpha", "contrast", "stability", "explained_target",
             "explained_background", "n_iter", "counted", "chosen"}


def _data(seed=0, n_x=60, n_y=70, f=16, planted=True):
    rng = np.random.default_rng(seed)
    Y = rng.poisson(2.0, size=(n_y, f)).astype(float)
    X = rng.poisson(2.0, size=(n_x, f)).astype(float)
    if planted:
        X[: n_x // 2, :4] += 6.0
    return X, Y


def _fit(X, Y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BCNMF(2, random_state=0, max_iter=200, **kw).fit(X, background=Y)


@pytest.mark.parametrize("loss", ["frobenius", "poisson"])
def test_auto_is_the_fixed_fit_at_the_chosen_alpha(loss):
    X, Y = _data()
    auto = _fit(X, Y, beta_loss=loss)
    assert auto.get_params()["alpha"] == "auto"
    fixed = _fit(X, Y, beta_loss=loss, alpha=auto.alpha_)
    np.testing.assert_array_equal(auto.components_, fixed.components_)
    np.testing.assert_array_equal(auto.background_codes_, fixed.background_codes_)
    assert auto.alpha_raw_ == fixed.alpha_raw_
    assert fixed.alpha_path_ is None and fixed.alpha_ == auto.alpha_


@pytest.mark.parametrize("loss", ["frobenius", "poisson"])
def test_the_path_table_reports_the_choice(loss):
    X, Y = _data()
    model = _fit(X, Y, beta_loss=loss)
    path = model.alpha_path_
    assert set(path) == PATH_KEYS
    n = len(path["alpha"])
    assert all(len(v) == n for v in path.values()) and n >= len(alpha_path.GRID)
    assert np.all(np.diff(path["alpha"]) > 0)
    assert path["chosen"].sum() == 1
    chosen = int(np.flatnonzero(path["chosen"])[0])
    assert path["alpha"][chosen] == model.alpha_ and path["counted"][chosen]
    assert np.all(np.isfinite(path["contrast"])) and np.all((path["contrast"] >= 0)
                                                           & (path["contrast"] <= 1))
    # half the target cells carry the planted program: they are better explained than
    # background cells, the other half like them (a contrast near 0.75)
    assert path["contrast"][chosen] > 0.65
    assert np.all(path["n_components"] == 2)


@pytest.mark.parametrize("loss", ["frobenius", "poisson"])
def test_engines_make_the_same_choice(loss, tmp_path):
    X, Y = _data()
    dense = _fit(X, Y, beta_loss=loss)
    csr = _fit(sp.csr_matrix(X), sp.csr_matrix(Y), beta_loss=loss)
    path = tmp_path / "x.npy"
    np.save(path, X)
    mm = _fit(np.load(path, mmap_mode="r"), Y, beta_loss=loss)
    for other in (csr, mm):
        assert other.alpha_ == dense.alpha_
        np.testing.assert_allclose(other.alpha_path_["contrast"], dense.alpha_path_["contrast"],
                                   atol=1e-9)
        np.testing.assert_allclose(other.components_, dense.components_, rtol=1e-6,
                                   atol=1e-9)


# values of BCNMF(2, alpha=1.5, init="random", random_state=3, max_iter=60) on
# _golden_data() written by the release before alpha="auto" existed: a number passed as
# alpha reproduces them from the same (random) start
GOLDEN = {
    "frobenius": ([[0.249554092767, 0.2026181383, 0.222282848537, 0.207051524896,
                    0.010354780923, 0.002525321663],
                   [0.134245741164, 0.23376835174, 0.186336236584, 0.19572079639,
                    0.025570525894, 0.014266109015]], -2768.6281875909344),
    "poisson": ([[0.225754609584, 0.238783059719, 0.229578245905, 0.238060235719,
                  0.000561432732, 0.001705394808],
                 [0.215216209896, 0.219571023939, 0.224916332293, 0.177697896289,
                  0.00091108403, 6.514487e-06]], -361.60595265062386),
}


def _golden_data():
    rng = np.random.default_rng(7)
    Y = rng.poisson(2.0, size=(60, 16)).astype(float)
    X = rng.poisson(2.0, size=(50, 16)).astype(float)
    X[:25, :4] += 6.0
    return X, Y


@pytest.mark.parametrize("loss", ["frobenius", "poisson"])
def test_a_number_as_alpha_reproduces_the_previous_release(loss):
    X, Y = _golden_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = BCNMF(2, alpha=1.5, beta_loss=loss, init="random", random_state=3,
                      max_iter=60).fit(X, background=Y)
    components, objective = GOLDEN[loss]
    np.testing.assert_allclose(model.components_[:, :6], components, rtol=1e-9, atol=1e-12)
    assert model.objective_ == pytest.approx(objective, rel=1e-10)
    assert model.alpha_ == 1.5 and model.alpha_path_ is None


def test_negative_control_no_program_no_contrast():
    """A target drawn exactly like the background: nothing to contrast, and the user is
    told so instead of getting a model that looks like a finding."""
    X, Y = _data(seed=3, n_x=150, n_y=150, planted=False)
    with pytest.warns(AlphaSelectionWarning, match="no alpha"):
        model = BCNMF(2, random_state=0, max_iter=200).fit(X, background=Y)
    # held-out cells: no better explained in the target than in the background
    assert model.alpha_path_["contrast"].max() < 0.5 + alpha_path.NULL_Z * alpha_path.null_se(
        150, 150)


def test_without_background_there_is_nothing_to_choose():
    X, _ = _data()
    model = BCNMF(2, random_state=0, max_iter=50).fit(X)
    assert model.alpha_ == 0.0 and model.alpha_path_ is None


def test_bad_combinations_are_refused():
    X, Y = _data()
    with pytest.raises(InvalidParameterError, match="relative scale"):
        BCNMF(2, alpha_scale="raw").fit(X, background=Y)
    with pytest.raises(InvalidParameterError, match="'auto' or a finite real"):
        BCNMF(2, alpha="best").fit(X, background=Y)
    with pytest.raises(ValueError, match="needs a background|pass background"):
        BCNMF("auto").fit(X)


def test_saved_models_keep_the_choice(tmp_path):
    X, Y = _data()
    model = _fit(X, Y)
    model.save(tmp_path / "m.npz")
    back = load(tmp_path / "m.npz")
    assert back.alpha_ == model.alpha_
    assert set(back.alpha_path_) == PATH_KEYS
    for key, value in model.alpha_path_.items():
        np.testing.assert_array_equal(back.alpha_path_[key], value)


def test_progress_reports_every_alpha(capsys):
    X, Y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = BCNMF(2, random_state=0, max_iter=100, progress=True).fit(X, background=Y)
    err = capsys.readouterr().err
    assert "alpha='auto'" in err
    assert f"alpha={model.alpha_path_['alpha'][-1]:g}" in err


@pytest.mark.parametrize("random_state", [None, np.random.default_rng(1),
                                          np.random.RandomState(2)])
def test_any_random_state(random_state):
    X, Y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = BCNMF(2, random_state=random_state, max_iter=100).fit(X, background=Y)
    assert model.alpha_ in model.alpha_path_["alpha"]


def test_missing_values():
    X, Y = _data()
    X[3, 2] = np.nan
    Y[5, 7] = np.nan
    model = _fit(X, Y)
    assert np.isfinite(model.alpha_) and np.all(np.isfinite(model.alpha_path_["contrast"]))


def test_factorize_reports_the_choice():
    X, Y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = factorize(X, 2, background=Y, random_state=0, max_iter=100)
    assert res.alpha in res.alpha_path["alpha"]
    fixed = factorize(X, 2, background=Y, random_state=0, max_iter=100, alpha=1.5)
    assert fixed.alpha == 1.5 and fixed.alpha_path is None


def test_n_components_auto():
    X, Y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = BCNMF("auto", random_state=0, max_iter=100).fit(X, background=Y)
    k = model.components_.shape[0]
    assert model.n_components_ == k and model.n_components == "auto"   # the parameter stays
    path = model.alpha_path_
    assert k in alpha_path.K_GRID
    assert sorted(set(path["n_components"].tolist())) == [kk for kk in alpha_path.K_GRID
                                                          if kk <= X.shape[1]]
    chosen = np.flatnonzero(path["chosen"])
    assert len(chosen) == 1 and path["n_components"][chosen[0]] == k
    assert model.transform(X).shape == (X.shape[0], k)


# -- the rule on scripted screening rows ----------------------------------------------------

def _row(alpha, contrast, explained=0.5):
    return {"n_components": 2, "alpha": alpha, "contrast": contrast,
            "stability": 1.0, "explained_target": explained, "explained_background": 0.0,
            "n_iter": 1}


def test_pick_prefers_the_best_contrast_and_the_smaller_alpha_on_ties():
    rows = [_row(0.25, 0.80), _row(0.5, 0.90), _row(1.0, 0.902), _row(2.0, 0.85)]
    assert alpha_path.pick(rows) == 1
    rows = [_row(0.25, 0.80), _row(0.5, 0.90), _row(1.0, 0.95)]
    assert alpha_path.pick(rows) == 2


def test_collapsed_fits_are_not_chosen():
    rows = [_row(0.5, 0.80, 0.4), _row(1.0, 0.85, 0.3), _row(5.0, 0.99, 0.01)]
    assert not alpha_path.counted(rows)[2]
    assert alpha_path.pick(rows) == 1


class _Scripted:
    """A stand-in for the screening fits: contrast as a function of alpha."""

    def __init__(self, contrast):
        self.contrast = contrast
        self.visited = []

    def run(self, k, alpha):
        self.visited.append(alpha)
        return _row(alpha, self.contrast(alpha))


def test_a_choice_still_rising_at_the_top_extends_the_grid_upwards():
    screen = _Scripted(lambda a: 0.5 + 0.04 * min(a, 8.0))
    rows = alpha_path.screen_alpha(screen, 2)
    assert screen.visited[:len(alpha_path.GRID)] == list(alpha_path.GRID)
    assert screen.visited[len(alpha_path.GRID):] == list(alpha_path.EXTEND[0])
    # the contrast stopped rising at 8: 8 is chosen, 12 ties and is larger
    assert rows[alpha_path.pick(rows)]["alpha"] == 8.0


def test_a_choice_still_rising_at_the_bottom_extends_the_grid_downwards():
    screen = _Scripted(lambda a: 0.9 - 0.2 * a)
    rows = alpha_path.screen_alpha(screen, 2)
    assert screen.visited[len(alpha_path.GRID):] == list(alpha_path.EXTEND[1])
    status, message = alpha_path._verdict(rows, alpha_path.pick(rows),
                                          [r["alpha"] for r in rows])
    assert status == "edge" and "edge of the screened range" in message


def test_an_inner_peak_does_not_extend():
    screen = _Scripted(lambda a: 0.9 - 0.05 * abs(a - 1.5))
    rows = alpha_path.screen_alpha(screen, 2)
    assert screen.visited == list(alpha_path.GRID)
    assert rows[alpha_path.pick(rows)]["alpha"] == 1.5


def test_too_few_cells_to_screen():
    X, Y = _data(n_x=12, n_y=30)
    with pytest.warns(AlphaSelectionWarning, match="at least 20 cells"):
        model = BCNMF(2, random_state=0, max_iter=50).fit(X, background=Y)
    assert model.alpha_ == 1.0 and model.alpha_path_ is None
    with pytest.raises(ValueError, match="n_components='auto' needs at least"):
        BCNMF("auto", random_state=0, max_iter=50).fit(X, background=Y)


def test_tl_records_the_choice():
    ad = pytest.importorskip("anndata")
    import pandas as pd

    import bcnmf

    X, Y = _data()
    adata = ad.AnnData(np.vstack([X, Y]),
                       obs=pd.DataFrame({"condition": ["case"] * len(X) + ["control"] * len(Y)},
                                        index=[f"c{i}" for i in range(len(X) + len(Y))]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bcnmf.tl.bcnmf(adata, "condition", background="control", n_components="auto",
                       beta_loss="poisson", max_iter=100)
    rec = adata.uns["bcnmf"]
    k = adata.obsm["X_bcnmf"].shape[1]
    chosen = np.flatnonzero(rec["alpha_path"]["chosen"])
    assert len(chosen) == 1 and rec["alpha_path"]["n_components"][chosen[0]] == k
    assert rec["alpha"] == rec["alpha_path"]["alpha"][chosen[0]]
