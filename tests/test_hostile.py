"""Hostile-input corpus.

Every case either raises a clear error -- asserted with ``match=`` on a message that names
the problem and says what is accepted -- or is a documented handling, asserted here:
finite, non-negative outputs and the caller's data unchanged.  ``docs/reliability.md``
lists every case and what it returns; keep the two in step.

Cases already covered by ``tests/test_validation.py`` (empty inputs, 3-D, strings, complex,
every sparse format, integer/boolean/float16 conversion, empty rows and columns, one cell,
one feature, n_components > n_features) are not repeated; this file adds the positions and
counts in the messages, both losses, both positions (X and background), both doors
(:class:`BCNMF` and :func:`factorize`), ``transform``, and the cases the issue adds.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal

from bcnmf import BCNMF, factorize
from bcnmf.datasets import normalize_log1p
from bcnmf.exceptions import DivergenceWarning, TransformedDataWarning

LOSSES = ["frobenius", "kullback-leibler"]
MODES = ["stable", "reference"]
FAST = dict(max_iter=8, tol=0, alpha=1.0, random_state=0)


def counts(seed=0, shape=(12, 5), lam=2.0):
    return np.random.default_rng(seed).poisson(lam, shape).astype(np.float64)


X0, Y0 = counts(0, (12, 5)), counts(1, (9, 5))


def dense_or(container, a):
    return sp.csr_matrix(a) if container == "csr" else a


def snapshot(a):
    """Deep copy of everything a fit could alter in the caller's object."""
    if a is None:
        return None
    if sp.issparse(a):
        c = a.copy()
        parts = [getattr(a, n) for n in ("data", "indices", "indptr", "row", "col")
                 if hasattr(a, n)]
        return a.format, a.shape, c, [np.array(p, copy=True) for p in parts]
    if isinstance(a, pd.DataFrame):
        return a.copy(deep=True)
    return np.array(a, copy=True), getattr(a, "flags", None) and a.flags.c_contiguous


def assert_unchanged(a, snap):
    if a is None:
        return
    if sp.issparse(a):
        fmt, shape, c, parts = snap
        assert a.format == fmt and a.shape == shape
        now = [getattr(a, n) for n in ("data", "indices", "indptr", "row", "col")
               if hasattr(a, n)]
        for p, q in zip(now, parts, strict=True):
            assert_array_equal(p, q)  # NaN compare equal here, unlike a != c
        assert_array_equal(a.toarray(), c.toarray())
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, snap)
    else:
        arr, c_contig = snap
        assert_array_equal(a, arr)
        assert a.dtype == arr.dtype
        assert a.flags.c_contiguous == c_contig


def assert_sane(*arrays):
    """Finite and non-negative (the library's promise for every accepted input)."""
    for a in arrays:
        if a is None:
            continue
        a = np.asarray(a)
        assert np.all(np.isfinite(a)), "non-finite output"
        assert np.all(a >= 0), "negative output"


def raises_both(err, match, X, Y=None, k=2, **kw):
    """Both doors raise ``err`` matching ``match``; neither changes the inputs."""
    snaps = snapshot(X), snapshot(Y)
    params = {**FAST, **kw}
    with pytest.raises(err, match=match):
        BCNMF(k, **params).fit(X, background=Y)
    with pytest.raises(err, match=match):
        factorize(X, k, background=Y, **params)
    assert_unchanged(X, snaps[0])
    assert_unchanged(Y, snaps[1])


def fit_both(X, Y=None, k=2, **kw):
    """Fit through both doors; assert they agree, outputs are sane, inputs unchanged."""
    snaps = snapshot(X), snapshot(Y)
    params = {**FAST, **kw}
    model = BCNMF(k, **params)
    codes = model.fit_transform(X, background=Y)
    res = factorize(X, k, background=Y, **params)
    assert_array_equal(codes, res.codes)
    assert_array_equal(model.components_, res.components)
    assert_sane(codes, model.components_, model.background_codes_, model.transform(X))
    for values in model.history_.values():  # the objective may be negative, never NaN
        assert np.all(np.isfinite(values))
    assert_unchanged(X, snaps[0])
    assert_unchanged(Y, snaps[1])
    return model, res


def place(bad, where):
    """(X, background) with ``bad`` as the target or as the background."""
    return (bad, Y0) if where == "X" else (X0, bad)


def with_values(a, cells, value):
    a = np.array(a, dtype=np.float64, copy=True)
    for i, j in cells:
        a[i, j] = value
    return a


# --------------------------------------------------------------------------------------------
# missing values (NaN): fitted around in dense input, refused in sparse input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", ["X", "background"])
def test_nan_is_a_missing_value_in_dense_input(loss, mode, where):
    """Accepted: NaN marks a missing entry, left out of the fit (tests/test_masked.py checks
    the numerics); outputs finite and non-negative, inputs unchanged (NaN still there)."""
    base = X0 if where == "X" else Y0
    X, Y = place(with_values(base, [(4, 1), (2, 3), (4, 4)], np.nan), where)
    with warnings.catch_warnings():
        if mode == "reference" and loss == "kullback-leibler":
            warnings.filterwarnings("ignore", ".*the Poisson contrast is running away",
                                    DivergenceWarning)
        fit_both(X, Y, beta_loss=loss, mode=mode)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("where", ["X", "background"])
def test_nan_in_sparse_input_is_refused_with_the_alternative(loss, where):
    base = X0 if where == "X" else Y0
    bad = sp.csr_matrix(with_values(base, [(4, 1), (2, 3), (4, 4)], np.nan))
    X, Y = place(bad, where)
    raises_both(ValueError,
                rf"Input {where} is sparse and contains NaN: 3 NaN value\(s\), the first at "
                r"row 2, column 3\. \w+ fits around missing values \(NaN\) in dense input "
                rf"only; pass a dense array \({where}\.toarray\(\), NaN marking the missing "
                r"entries\) if it fits in memory, or impute them", X, Y, beta_loss=loss)


@pytest.mark.parametrize("where", ["X", "background"])
def test_all_nan_rows_and_columns(where):
    """Accepted (documented): a cell with no observed entry gets codes at the code floor
    (about 0); a feature missing from one matrix is fitted from the other; a feature missing
    from both gets basis weights at the basis floor (stable mode)."""
    base = np.array(X0 if where == "X" else Y0, copy=True)
    base[1, :] = np.nan       # a cell entirely missing
    base[:, 3] = np.nan       # a feature entirely missing
    X, Y = place(base, where)
    model, res = fit_both(X, Y, max_iter=30)
    codes = res.codes if where == "X" else res.background_codes
    assert codes[1].max() <= 1e-9 * codes.max()
    _, both = fit_both(np.where(np.arange(5) == 3, np.nan, X), np.where(np.arange(5) == 3,
                                                                         np.nan, Y), max_iter=30)
    assert both.components[:, 3].max() <= 1e-9
    # transform of the empty cell: zero codes, not NaN
    assert model.transform(X if where == "X" else Y)[1].max() <= 1e-9


@pytest.mark.parametrize("where", ["X", "background"])
def test_entirely_missing_matrix_is_refused(where):
    X, Y = place(np.full((4, 5), np.nan), where)
    raises_both(ValueError, rf"Input {where} has no observed values: all 20 entries are "
                            r"missing \(NaN or masked\)", X, Y)


def test_minibatch_refuses_missing_values():
    from bcnmf import MiniBatchBCNMF
    with pytest.raises(ValueError, match=r"Input X contains NaN: 1 NaN value\(s\), the first "
                                         r"at row 0, column 4\. MiniBatchBCNMF does not "
                                         r"support missing values; impute them"):
        MiniBatchBCNMF(2, random_state=0).fit(with_values(X0, [(0, 4)], np.nan))


# --------------------------------------------------------------------------------------------
# rejected: non-finite and negative values, with counts and positions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("container", ["dense", "csr"])
@pytest.mark.parametrize("where", ["X", "background"])
@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_inf_is_reported_with_count_and_position(loss, container, where, value):
    base = X0 if where == "X" else Y0
    X, Y = place(dense_or(container, with_values(base, [(3, 0), (5, 2)], value)), where)
    raises_both(ValueError,
                rf"Input {where} contains infinity: 2 infinity value\(s\), the first at row 3, "
                r"column 0\. \w+ needs finite, non-negative values", X, Y, beta_loss=loss)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("container", ["dense", "csr"])
@pytest.mark.parametrize("where", ["X", "background"])
def test_negative_is_reported_with_count_and_smallest(loss, container, where):
    base = X0 if where == "X" else Y0
    bad = with_values(base, [(1, 1)], -0.5)
    bad[6, 2] = -3.0
    X, Y = place(dense_or(container, bad), where)
    raises_both(ValueError,
                rf"Negative values in data passed to \w+ \({where}\); bcNMF needs non-negative "
                r"data .*: 2 negative value\(s\), the smallest -3 at row 6, column 2\.",
                X, Y, beta_loss=loss)


def test_missing_values_in_transform_are_solved_around():
    model = BCNMF(2, **FAST).fit(X0)
    codes = model.transform(with_values(X0, [(0, 4)], np.nan))
    assert_sane(codes)
    with pytest.raises(ValueError, match=r"Input X is sparse and contains NaN"):
        model.transform(sp.csr_matrix(with_values(X0, [(0, 4)], np.nan)))


def test_pandas_missing_values_are_missing():
    """Nullable integer columns with pd.NA arrive as NaN: the same fit as a NaN array."""
    frame = pd.DataFrame(X0.astype(int), columns=[f"g{j}" for j in range(5)]).astype("Int64")
    frame.iloc[2, 1] = pd.NA
    _, res = fit_both(frame, None)
    assert_array_equal(res.codes, factorize(with_values(X0, [(2, 1)], np.nan), 2,
                                            **FAST).codes)


# --------------------------------------------------------------------------------------------
# object arrays
# --------------------------------------------------------------------------------------------


def test_numeric_object_array_is_converted_like_float():
    """scikit-learn converts numeric object arrays to float64; so do we (documented)."""
    model, res = fit_both(X0.astype(object), Y0)
    ref = factorize(X0, 2, background=Y0, **FAST)
    assert res.codes.dtype == np.float64
    assert_array_equal(res.codes, ref.codes)


def test_object_array_with_none_is_a_missing_value():
    bad = X0.astype(object)
    bad[3, 2] = None
    _, res = fit_both(bad, Y0)
    assert_array_equal(res.codes, factorize(with_values(X0, [(3, 2)], np.nan), 2, background=Y0,
                                            **FAST).codes)


def test_object_array_with_huge_python_int():
    bad = X0.astype(object)
    bad[0, 0] = 10 ** 400
    raises_both(ValueError, r"X contains a number too large for float64 .* expected a matrix "
                            r"of finite, non-negative numbers", bad, Y0)


# --------------------------------------------------------------------------------------------
# pandas: feature names, mismatches and transposed tables
# --------------------------------------------------------------------------------------------

GENES = [f"gene{j}" for j in range(5)]


def frame(a, columns=GENES, prefix="cell"):
    return pd.DataFrame(a, columns=columns, index=[f"{prefix}{i}" for i in range(len(a))])


def test_dataframes_with_names_equal_arrays():
    model, res = fit_both(frame(X0), frame(Y0, prefix="bg"))
    assert_array_equal(model.feature_names_in_, np.array(GENES, dtype=object))
    assert_array_equal(res.codes, factorize(X0, 2, background=Y0, **FAST).codes)


def test_same_names_in_another_order():
    raises_both(ValueError, r"Feature names of X and background differ at 2 position\(s\), "
                            r"first at column 0 \('gene0' vs 'gene1'\): they are the same "
                            r"features in another order; reorder the background's columns "
                            r"to match X \(background\[X.columns\]\)",
                frame(X0), frame(Y0, columns=["gene1", "gene0", *GENES[2:]]))


def test_names_missing_from_the_background():
    raises_both(ValueError, r"differ at 1 position\(s\), first at column 4 \('gene4' vs "
                            r"'other'\): 1 feature\(s\) of X are not in the background "
                            r"\(e\.g\. 'gene4'\); select the shared features",
                frame(X0), frame(Y0, columns=[*GENES[:4], "other"]))


def test_transposed_background_detected_from_names():
    """A features x cells background: its index holds X's feature names.  Square on purpose
    (5 cells x 5 genes), so that the shapes alone cannot tell."""
    bg = frame(Y0[:5]).T  # rows = genes, columns = cell names
    raises_both(ValueError, r"background looks transposed: its row labels are the feature "
                            r"names \(columns\) of X\. \w+ expects cells x features in both; "
                            r"pass background\.T", frame(X0), bg)


def test_transposed_target_detected_from_names():
    raises_both(ValueError, r"X looks transposed: its row labels are the feature names "
                            r"\(columns\) of the background\. .* pass X\.T",
                frame(X0[:5]).T, frame(Y0))


@pytest.mark.parametrize("where", ["X", "background"])
def test_transposed_array_hint_from_shapes(where):
    """Without names a transposed matrix shows as a feature-count mismatch; the message says
    that the row count matches the other's feature count."""
    if where == "background":
        X, Y = X0, counts(2, (5, 7))          # 5 rows = X's 5 features
        hint = r"The background has 5 rows, as many as X has features: .* pass its transpose"
    else:
        X, Y = counts(2, (5, 12)), Y0          # 5 rows of X = the background's 5 features
        hint = r"X has 5 rows, as many as the background has features: .* pass its transpose"
    raises_both(ValueError, r"X has \d+ features but background has \d+; .*" + hint, X, Y)


def test_mixed_type_column_names_rejected_through_both_doors():
    cols = ["a", "b", 3, "d", "e"]
    raises_both(TypeError, r"Feature names are only supported if all input features have "
                           r"string names", pd.DataFrame(X0, columns=cols), Y0)
    raises_both(TypeError, r"Feature names are only supported if all input features have "
                           r"string names", frame(X0), pd.DataFrame(Y0, columns=cols))


def test_transform_with_other_names_or_no_names():
    """scikit-learn's contract, kept: other names -> error; no names -> UserWarning."""
    model = BCNMF(2, **FAST).fit(frame(X0), background=frame(Y0))
    with pytest.raises(ValueError, match=r"feature names should match those that were passed"):
        model.transform(frame(X0, columns=[*GENES[:4], "other"]))
    with pytest.warns(UserWarning, match=r"X does not have valid feature names"):
        model.transform(X0)


# --------------------------------------------------------------------------------------------
# shapes: 1-D, n_components against the shape, extremely sparse
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["X", "background"])
def test_one_dimensional_input(where):
    X, Y = place(np.ones(5), where)
    raises_both(ValueError, r"(?s)Expected 2D array, got 1D array instead.*Reshape your data", X, Y)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("mode", MODES)
def test_n_components_at_and_above_min_shape(loss, mode):
    """Accepted: K up to n_features, even when K >= the number of cells (scikit-learn's NMF
    with init='random' accepts any K; we cap K at n_features because the basis is K x F and
    topics beyond F are exact duplicates in every fit).  Outputs are finite, non-negative."""
    kw = dict(beta_loss=loss, mode=mode, alpha=1.5)
    fit_both(X0, Y0, 5, **kw)                       # K = n_features = min(shape)
    fit_both(X0[:3], Y0[:2], 3, **kw)               # K = n_cells of the target
    fit_both(X0[:2], Y0[:2], 5, **kw)               # K > n_cells (target and background)
    raises_both(ValueError, r"n_components=6 is larger than the number of features \(5\); "
                            r"\w+ accepts 1 <= n_components <= n_features", X0, Y0, 6, **kw)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("container", ["dense", "csr"])
def test_extremely_sparse(loss, mode, container):
    """A cell with a single count, a target with a single stored entry: finite and
    non-negative; the single-count cell is explained by a non-negative code."""
    single = np.zeros((6, 5))
    single[2, 3] = 1.0
    X = np.array(X0, copy=True)
    X[0] = 0.0
    X[0, 1] = 1.0                                        # one cell with one count
    for target in (X, single):
        with warnings.catch_warnings():
            if mode == "reference" and loss == "kullback-leibler":
                # the authors' unbounded Poisson contrast runs away on a near-empty target;
                # the documented DivergenceWarning says so (stable mode bounds it)
                warnings.filterwarnings("ignore", ".*the Poisson contrast is running away",
                                        DivergenceWarning)
            model, _ = fit_both(dense_or(container, target), dense_or(container, Y0),
                                beta_loss=loss, mode=mode)
        recon = model.transform(dense_or(container, target)) @ model.components_
        assert_sane(recon)


def test_single_count_cell_is_reconstructed_in_stable_mode():
    X = np.array(X0, copy=True)
    X[0] = 0.0
    X[0, 1] = 1.0
    model = BCNMF(2, beta_loss="kullback-leibler", max_iter=200, random_state=0, alpha=1.5)
    model.fit(sp.csr_matrix(X))
    row = model.transform(X[:1]) @ model.components_
    # at the KL optimum of a cell's codes, its prediction has the cell's total
    assert_allclose(row.sum(), 1.0, rtol=1e-3)


# --------------------------------------------------------------------------------------------
# scale: huge and tiny values
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("scale", [1e30, 1e-30])
def test_huge_and_tiny_values_stay_finite(loss, mode, dtype, scale):
    """1e30 and 1e-30 never give NaN: finite, non-negative outputs, or (squared error of
    1e30 in float32, whose squares overflow) a clear error saying what to do."""
    X, Y = (X0 * scale).astype(dtype), (Y0 * scale).astype(dtype)
    kw = dict(beta_loss=loss, mode=mode, alpha=1.5)
    if loss == "frobenius" and dtype == np.float32 and scale > 1:
        raises_both(ValueError, r"X is too large for the frobenius loss in float32: its "
                                r"squared Frobenius norm \(.*\) exceeds .* Divide X and the "
                                r"background by a common factor .* or pass float64", X, Y, **kw)
        return
    with warnings.catch_warnings():
        # a fixed number of sweeps at a scale this far from 1 may stop short
        warnings.filterwarnings("ignore", "Maximum number of iterations")
        model, res = fit_both(X, Y, **kw)
    assert res.codes.dtype == dtype
    if scale > 1:  # the fit carries the scale (no collapse to zero)
        recon = res.codes @ res.components
        assert recon.sum() > 1e-3 * scale * X0.sum()


@pytest.mark.parametrize("dtype,scale,loss,what", [
    (np.float64, 1e200, "frobenius", r"too large for the frobenius loss in float64: its "
                                     r"squared Frobenius norm"),
    (np.float64, 1e307, "kullback-leibler", r"too large for the kullback-leibler loss in "
                                            r"float64: its total"),
    (np.float32, 1e37, "kullback-leibler", r"too large for the kullback-leibler loss in "
                                           r"float32: its total"),
    (np.float64, 1e-170, "frobenius", r"too small for the frobenius loss: its squared "
                                      r"Frobenius norm underflows .* Multiply X and the "
                                      r"background by a common factor"),
])
@pytest.mark.parametrize("where", ["X", "background"])
def test_scale_beyond_the_dtype_is_a_clear_error(dtype, scale, loss, what, where):
    bad = ((X0 if where == "X" else Y0) * scale).astype(dtype)
    X, Y = place(bad, where)
    X, Y = X.astype(dtype), Y.astype(dtype)
    raises_both(ValueError, rf"{where} is {what}", X, Y, beta_loss=loss)


def test_scale_checked_in_transform():
    model = BCNMF(2, **FAST).fit(X0)
    with pytest.raises(ValueError, match=r"X is too large for the frobenius loss in float64"):
        model.transform(X0 * 1e200)


@pytest.mark.parametrize("loss,scale", [("frobenius", 1e-8), ("kullback-leibler", 1e-14),
                                        ("frobenius", 1e6), ("kullback-leibler", 1e8)])
def test_stable_mode_is_scale_equivariant(loss, scale):
    """With absolute epsilons, data around 1e-8 (squared error) or 1e-14 (KL) would collapse
    to the code floor: stable mode's epsilons act as on the data divided by their mean
    (core/fit.py step_policy)."""
    kw = dict(beta_loss=loss, max_iter=100, tol=0, alpha=1.0, random_state=0)
    ref = factorize(X0, 2, background=Y0, **kw)
    small = factorize(X0 * scale, 2, background=Y0 * scale, **kw)
    assert_allclose(small.components, ref.components, rtol=1e-3, atol=1e-6)
    assert_allclose(small.codes / scale, ref.codes, rtol=1e-3, atol=1e-6 * ref.codes.max())


# --------------------------------------------------------------------------------------------
# log-transformed data given to the Poisson loss
# --------------------------------------------------------------------------------------------


def log_cases():
    c = counts(3, (30, 8))
    return {"log1p": np.log1p(c), "log2(1+x)": np.log2(1.0 + c),
            "normalize_log1p": np.asarray(normalize_log1p(c, target_sum=1e4)),
            "normalize_log1p float32": np.asarray(normalize_log1p(c)).astype(np.float32)}


@pytest.mark.parametrize("case", list(log_cases()))
@pytest.mark.parametrize("where", ["X", "background"])
@pytest.mark.parametrize("container", ["dense", "csr"])
def test_log_transformed_data_to_poisson_warns(case, where, container):
    """Accepted (the generalised KL divergence is defined for any non-negative values) with
    a TransformedDataWarning that says what to do; the fit is still finite."""
    logged = dense_or(container, log_cases()[case])
    other = counts(4, (20, 8))
    X, Y = (logged, other) if where == "X" else (other, logged)
    for fit in (lambda: BCNMF(2, beta_loss="poisson", **FAST).fit(X, background=Y),
                lambda: factorize(X, 2, background=Y, beta_loss="poisson", **FAST)):
        with pytest.warns(TransformedDataWarning,
                          match=rf"{where} looks log-transformed .* Poisson \(kullback-leibler\)"
                                r" loss, which models raw counts\. Pass the raw counts, or use "
                                r"beta_loss='frobenius'"):
            fit()


def test_log_transformed_data_to_poisson_warns_in_transform():
    model = BCNMF(2, beta_loss="poisson", **FAST).fit(counts(3, (30, 8)))
    with pytest.warns(TransformedDataWarning, match="X looks log-transformed"):
        model.transform(log_cases()["log1p"])


def _not_logged():
    rng = np.random.default_rng(5)
    c = counts(3, (30, 8))
    data = np.load(_mice_path())
    return {"raw counts": c, "uniform": rng.random((30, 8)), "gamma": rng.gamma(1.0, 3.0,
                                                                                (30, 8)),
            "proportions": c / np.maximum(c.sum(axis=1, keepdims=True), 1),
            "counts per 10k": c / np.maximum(c.sum(axis=1, keepdims=True), 1) * 1e4,
            "counts times 1e-30": c * 1e-30,
            "mice_protein": np.nan_to_num(data["X"]).T}


def _mice_path():
    from importlib.resources import files
    return files("bcnmf") / "data" / "mice_protein.npz"


@pytest.mark.parametrize("case", ["raw counts", "uniform", "gamma", "proportions",
                                  "counts per 10k", "counts times 1e-30", "mice_protein"])
def test_no_log_warning_for_other_non_negative_data(case):
    """No false alarm on counts, intensities, proportions (warnings are errors here)."""
    X = _not_logged()[case]
    factorize(X, 2, beta_loss="poisson", **FAST)


def test_log_transformed_data_to_frobenius_does_not_warn():
    logged = log_cases()["normalize_log1p"]
    fit_both(logged, logged[::-1], beta_loss="frobenius")


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_zero_target_with_background(loss, dtype):
    """Was a core bug (found by the long hypothesis profile): init='random' floored the
    target's scale at float64's tiny (0 in float32) and scaled the background codes by its
    inverse, which overflowed float32.  The scale now floors at the working dtype's tiny and
    an all-zero target takes its scale from the background."""
    X, Y = np.zeros((3, 4), dtype), np.ones((2, 4), dtype)
    res = factorize(X, 2, background=Y, beta_loss=loss, max_iter=5, tol=0, random_state=0,
                    alpha=1.5)
    assert_sane(res.codes, res.components, res.background_codes)


def test_reference_mode_keeps_the_authors_absolute_eps():
    """Only stable mode rescales its epsilons; reference mode reproduces the authors'."""
    from bcnmf.core.fit import EPS, FitSettings, step_policy
    from bcnmf.core.source import RowSource, scan
    for loss in LOSSES:
        for scale in (1e-8, 1.0, 1e6):
            s = FitSettings(2, loss, 1.0, "raw", "reference", "uniform", None, 0.1, 5, 0.0, 1)
            info = scan(RowSource(X0 * scale), loss, None)
            policy = step_policy(info, s)
            assert policy.eps == EPS[loss] and policy.basis_eps is None


# --------------------------------------------------------------------------------------------
# resource guard: dense intermediates beyond a share of available memory
# --------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_memory(monkeypatch):
    """1000 bytes available and memory_fraction=0.2: a 200-byte limit (5 cells of 5 float64)."""
    from bcnmf.core import guard
    monkeypatch.setattr(guard, "available_memory", lambda: 1000)
    with guard.config_context(memory_fraction=0.2):
        yield guard


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("layout", ["fortran", "int", "c-float"])
def test_guard_switches_to_blocks(tiny_memory, loss, layout):
    """A whole-matrix copy (memory order or dtype conversion, 480 bytes) above the limit is
    replaced by blocks of cells that fit: the same fit up to rounding.  C-ordered float data
    are read in place and are not affected."""
    kw = dict(beta_loss=loss, max_iter=20, tol=0, random_state=0, alpha=1.5)
    with tiny_memory.config_context(memory_fraction=1.0):
        ref = factorize(X0, 2, background=Y0, **kw)
        ref_blocks = factorize(X0, 2, background=Y0, block_size=5, **kw)
    data = {"fortran": np.asfortranarray(X0), "int": X0.astype(np.int64), "c-float": X0}
    assert tiny_memory.block_rows_for(data[layout], "X", None, np.float64) == (
        None if layout == "c-float" else 5)
    res = factorize(data[layout], 2, background=np.asfortranarray(Y0), **kw)
    assert_allclose(res.components, ref.components, rtol=1e-9, atol=1e-15)
    assert_allclose(res.codes, ref_blocks.codes, rtol=1e-9, atol=1e-15)
    model = BCNMF(2, **kw).fit(np.asfortranarray(X0))
    assert_sane(model.transform(np.asfortranarray(X0)))


def test_guard_stops_with_how_to_proceed(tiny_memory):
    from bcnmf.core.guard import MemoryLimitError
    with pytest.raises(MemoryLimitError, match=r"X has missing values: the masked fit's "
                                               r"zero-filled copy and mask would need a dense "
                                               r"array of 540 bytes, more than "
                                               r"memory_fraction=0.2 of the 1000 bytes "
                                               r"available\. Impute or drop the missing values"
                                               r".*bcnmf\.set_config\(memory_fraction=\.\.\.\)"):
        factorize(with_values(X0, [(0, 0)], np.nan), 2, background=Y0, **FAST)
    wide = np.asfortranarray(counts(2, (4, 40)))
    with pytest.raises(MemoryLimitError, match=r"One cell of X \(40 features\) would need a "
                                               r"dense array of 320 bytes.* Select fewer "
                                               r"features, or pass sparse input"):
        BCNMF(2, **FAST).fit(wide)


def test_guard_configuration(monkeypatch):
    import bcnmf
    from bcnmf.core import guard
    assert guard.available_memory() > 0
    assert bcnmf.get_config() == {"memory_fraction": 0.5}
    monkeypatch.setenv("BCNMF_MEMORY_FRACTION", "0.25")
    assert bcnmf.get_config()["memory_fraction"] == 0.25
    with guard.config_context(memory_fraction=0.1):
        assert bcnmf.get_config()["memory_fraction"] == 0.1
    assert bcnmf.get_config()["memory_fraction"] == 0.25
    for bad in (0, 1.5, "half", True):
        with pytest.raises(ValueError, match=r"memory_fraction must be a real in \(0, 1\]"):
            bcnmf.set_config(memory_fraction=bad)
