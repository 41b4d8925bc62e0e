"""Tests for bcnmf.datasets: simulation, normalisation and data loaders."""

import hashlib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bcnmf.datasets import (
    CellTypeCounts,
    ContrastiveCounts,
    SampleCounts,
    TargetBackground,
    load_mice_protein,
    load_shared_dataset,
    make_cell_type_counts,
    make_contrastive_counts,
    make_sample_counts,
    normalize_log1p,
)

SHARED_DATA = Path(__file__).parents[2] / "shared" / "data"
MICE_PROTEIN_SHA256 = "7355c2ccb8f974fd4692fdeea1cf9fd4e735947e1b78e8baf810f1335511287e"

needs_shared = pytest.mark.skipif(
    not (SHARED_DATA / "mice_protein" / "mice_protein.npz").is_file(),
    reason=f"developer benchmark data not present at {SHARED_DATA}",
)

SMALL = dict(n_genes=600, n_target=200, n_background=150)


@pytest.fixture(scope="module")
def sim():
    """The reference simulation of the paper, beta = 8, generated once."""
    return make_contrastive_counts(8.0, random_state=0)


# --------------------------------------------------------------------------------------------
# make_contrastive_counts
# --------------------------------------------------------------------------------------------


def test_simulation_shapes_dtypes_and_counts(sim):
    assert isinstance(sim, ContrastiveCounts)
    assert sim.X.shape == (1000, 3000)
    assert sim.Y.shape == (1000, 3000)
    for counts in (sim.X, sim.Y):
        assert isinstance(counts, np.ndarray)
        assert counts.dtype == np.float64
        assert (counts >= 0).all()
        np.testing.assert_array_equal(counts, np.round(counts))
    assert sim.labels.shape == (1000,) and sim.labels.dtype == np.int64
    assert sim.target_class.shape == (1000,) and sim.target_class.dtype == np.int64
    assert sim.background_class.shape == (1000,) and sim.background_class.dtype == np.int64
    assert sim.shared_programs.shape == (5, 3000)
    assert sim.target_programs.shape == (2, 3000)
    assert sim.beta == 8.0
    np.testing.assert_array_equal(sim.target_genes, np.arange(1250, 1490))
    assert sim.target_genes.dtype == np.int64


def test_simulation_is_frozen(sim):
    with pytest.raises(AttributeError):
        sim.beta = 1.0
    assert "1000x3000" in repr(sim)


def test_simulation_subtypes_exact_and_shuffled(sim):
    np.testing.assert_array_equal(np.bincount(sim.labels), [500, 500])
    # shuffled: not one sorted run
    assert np.count_nonzero(np.diff(sim.labels)) > 100
    for classes in (sim.target_class, sim.background_class):
        counts = np.bincount(classes, minlength=5)
        assert counts.size == 5
        assert counts.min() > 150  # uniform over 5 classes, 1000 cells


def test_simulation_program_blocks(sim):
    shared, target = sim.shared_programs, sim.target_programs
    assert (shared > 0).all() and (target > 0).all()  # noise on every gene
    for k in range(5):
        block = np.arange(250 * k, 250 * (k + 1))
        off = np.setdiff1d(np.arange(3000), block)
        # Gamma(2, 0.6) has mean 1.2; Gamma(0.5, 0.01) noise has mean 0.005
        assert 1.0 < shared[k, block].mean() < 1.4
        assert shared[k, off].mean() < 0.01
    for j in range(2):
        block = np.arange(1250 + 120 * j, 1250 + 120 * (j + 1))
        off = np.setdiff1d(np.arange(3000), block)
        # Gamma(2, 0.9) has mean 1.8; Gamma(0.5, 0.005) noise has mean 0.0025
        assert 1.5 < target[j, block].mean() < 2.1
        assert target[j, off].mean() < 0.005


def test_simulation_target_genes_enriched_in_target(sim):
    target_genes = sim.target_genes
    shared_genes = np.arange(1250)
    noise_genes = np.arange(1490, 3000)
    ratio_target = sim.X[:, target_genes].mean() / sim.Y[:, target_genes].mean()
    ratio_shared = sim.X[:, shared_genes].mean() / sim.Y[:, shared_genes].mean()
    ratio_noise = sim.X[:, noise_genes].mean() / sim.Y[:, noise_genes].mean()
    # expected ~1.27 at beta = 8 (shared-program noise dominates the target genes' mean)
    assert ratio_target > 1.15
    assert 0.9 < ratio_shared < 1.1
    assert 0.9 < ratio_noise < 1.1
    # per subtype: each subtype's own block is clearly higher than in the background
    for j in range(2):
        block = np.arange(1250 + 120 * j, 1250 + 120 * (j + 1))
        own = sim.X[sim.labels == j][:, block].mean()
        other = sim.X[sim.labels != j][:, block].mean()
        assert own / other > 1.3


def test_simulation_beta_scales_shared_programs():
    shared_genes = np.arange(1250)
    low = make_contrastive_counts(8.0, random_state=3)
    high = make_contrastive_counts(16.0, random_state=3)
    # programs and cell assignments do not depend on beta
    np.testing.assert_array_equal(low.shared_programs, high.shared_programs)
    np.testing.assert_array_equal(low.labels, high.labels)
    ratio = high.Y[:, shared_genes].mean() / low.Y[:, shared_genes].mean()
    assert 1.9 < ratio < 2.1
    zero = make_contrastive_counts(0.0, random_state=3)
    assert zero.Y[:, shared_genes].mean() < 0.1  # only 0.02 + nuisance remain
    # at beta = 0 the target genes are strongly enriched in X
    tg = zero.target_genes
    assert zero.X[:, tg].mean() / zero.Y[:, tg].mean() > 3.0


def test_simulation_reproducible_and_seed_dependent():
    a = make_contrastive_counts(4.0, random_state=7, **SMALL)
    b = make_contrastive_counts(4.0, random_state=7, **SMALL)
    c = make_contrastive_counts(4.0, random_state=8, **SMALL)
    for name in ("X", "Y", "labels", "target_class", "shared_programs", "target_programs"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.X, c.X)
    assert not np.array_equal(a.labels, c.labels)
    # a Generator is used as given
    d = make_contrastive_counts(4.0, random_state=np.random.default_rng(7), **SMALL)
    np.testing.assert_array_equal(a.X, d.X)
    e = make_contrastive_counts(4.0, random_state=None, **SMALL)
    assert e.X.shape == a.X.shape


def test_simulation_sparse_equals_dense():
    dense = make_contrastive_counts(2.0, random_state=1, **SMALL)
    sparse = make_contrastive_counts(2.0, random_state=1, sparse=True, **SMALL)
    for d, s in ((dense.X, sparse.X), (dense.Y, sparse.Y)):
        assert sp.issparse(s) and s.format == "csr" and s.dtype == np.float64
        np.testing.assert_array_equal(s.toarray(), d)
    np.testing.assert_array_equal(dense.labels, sparse.labels)


def test_simulation_scales_blocks_with_n_genes():
    data = make_contrastive_counts(8.0, n_genes=600, n_target=7, n_background=5)
    # 250 * 600 // 3000 = 50 genes per shared block, 120 * 600 // 3000 = 24 per target block
    np.testing.assert_array_equal(data.target_genes, np.arange(250, 298))
    assert data.X.shape == (7, 600) and data.Y.shape == (5, 600)
    np.testing.assert_array_equal(np.bincount(data.labels), [4, 3])
    assert data.shared_programs[1, 50:100].mean() > 0.5
    assert data.shared_programs[1, 100:].mean() < 0.05


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(beta=-1.0), ValueError, "beta must be >= 0"),
        (dict(beta=float("nan")), ValueError, "beta must be a finite"),
        (dict(beta="8"), ValueError, "beta must be a finite"),
        (dict(n_genes=24), ValueError, "n_genes must be >= 25"),
        (dict(n_genes=300.0), TypeError, "n_genes must be an int"),
        (dict(n_target=1), ValueError, "n_target must be >= 2"),
        (dict(n_background=0), ValueError, "n_background must be >= 1"),
        (dict(random_state=-3), ValueError, "random_state must be a non-negative int"),
        (dict(random_state="seed"), TypeError, "random_state must be None"),
        (dict(random_state=np.random.RandomState(0)), TypeError, "random_state must be None"),
    ],
)
def test_simulation_rejects_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_contrastive_counts(**kwargs)


# --------------------------------------------------------------------------------------------
# normalize_log1p
# --------------------------------------------------------------------------------------------


def _reference_normalize(X, target_sum):
    """Slow, obviously correct reference: row by row in float64."""
    X = np.asarray(X, dtype=np.float64)
    out = np.zeros_like(X)
    for i, row in enumerate(X):
        total = row.sum()
        if total > 0:
            out[i] = np.log1p(row / total * target_sum)
    return out


def _counts(seed=0, shape=(30, 20), dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.poisson(1.0, size=shape).astype(dtype)
    X[rng.random(shape) < 0.5] = 0
    X[3] = 0  # an all-zero row
    return X


@pytest.mark.parametrize("target_sum", [1e4, 1.0, 123.5])
def test_normalize_row_sums(target_sum):
    X = _counts()
    Z = normalize_log1p(X, target_sum)
    totals = np.expm1(Z).sum(axis=1)
    nonzero = X.sum(axis=1) > 0
    np.testing.assert_allclose(totals[nonzero], target_sum, rtol=1e-12)
    np.testing.assert_array_equal(Z[~nonzero], 0.0)
    np.testing.assert_allclose(Z, _reference_normalize(X, target_sum), rtol=1e-12)


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (np.float32, np.float32),
        (np.float64, np.float64),
        (np.int64, np.float64),
        (np.int32, np.float64),
        (np.uint16, np.float64),
    ],
)
def test_normalize_dtype(dtype, expected):
    X = _counts(dtype=dtype)
    Z = normalize_log1p(X)
    assert Z.dtype == expected
    Zs = normalize_log1p(sp.csr_matrix(X))
    assert Zs.dtype == expected
    rtol = 1e-5 if expected == np.float32 else 1e-12
    np.testing.assert_allclose(Z, _reference_normalize(X, 1e4), rtol=rtol)
    np.testing.assert_allclose(Zs.toarray(), Z, rtol=rtol)
    nonzero = X.sum(axis=1) > 0
    np.testing.assert_allclose(
        np.expm1(Z.astype(np.float64)).sum(axis=1)[nonzero], 1e4, rtol=rtol * 10
    )


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "lil"])
@pytest.mark.parametrize("container", [sp.csr_matrix, sp.csr_array])
def test_normalize_sparse_equals_dense(fmt, container):
    X = _counts(seed=2)
    Xs = container(X).asformat(fmt)
    Z = normalize_log1p(Xs)
    assert sp.issparse(Z) and Z.format == "csr"
    assert isinstance(Z, sp.sparray) == isinstance(Xs, sp.sparray)
    assert Z.nnz == np.count_nonzero(X)  # sparsity kept
    np.testing.assert_allclose(Z.toarray(), normalize_log1p(X), rtol=1e-12)


def test_normalize_sparse_with_duplicate_entries():
    # COO/CSR with duplicates: entries must be summed before log1p
    row = np.array([0, 0, 1, 2])
    col = np.array([1, 1, 0, 2])
    val = np.array([1.0, 2.0, 4.0, 5.0])
    coo = sp.coo_matrix((val, (row, col)), shape=(3, 3))
    csr = sp.csr_matrix((val, (row, col)), shape=(3, 3))
    csr_dup = sp.csr_matrix((val, col, np.array([0, 2, 3, 4])), shape=(3, 3))
    expected = normalize_log1p(coo.toarray())
    for Xs in (coo, csr, csr_dup):
        np.testing.assert_allclose(normalize_log1p(Xs).toarray(), expected, rtol=1e-12)
    assert csr_dup.nnz == 4  # input untouched


def test_normalize_does_not_modify_input():
    X = _counts(seed=4)
    X_before = X.copy()
    normalize_log1p(X)
    np.testing.assert_array_equal(X, X_before)
    Xs = sp.csr_matrix(X)
    data_before = Xs.data.copy()
    normalize_log1p(Xs)
    np.testing.assert_array_equal(Xs.data, data_before)
    Xf = X.astype(np.float32)
    normalize_log1p(Xf)
    np.testing.assert_array_equal(Xf, X_before.astype(np.float32))


def test_normalize_copy_false_works_in_place():
    X = _counts(seed=5)
    expected = normalize_log1p(X)
    out = normalize_log1p(X, copy=False)
    assert out is X
    np.testing.assert_allclose(X, expected, rtol=1e-12)
    Xs = sp.csr_matrix(_counts(seed=5))
    out = normalize_log1p(Xs, copy=False)
    assert out is Xs
    np.testing.assert_allclose(Xs.toarray(), expected, rtol=1e-12)
    # integer input cannot be normalised in place: a new float array, input unchanged
    Xi = _counts(seed=5, dtype=np.int64)
    out = normalize_log1p(Xi, copy=False)
    assert out is not Xi and out.dtype == np.float64
    np.testing.assert_array_equal(Xi, _counts(seed=5, dtype=np.int64))


def test_normalize_zero_rows_and_empty():
    X = np.zeros((4, 3))
    X[1] = [0.0, 2.0, 0.0]
    for Z in (normalize_log1p(X), normalize_log1p(sp.csr_matrix(X)).toarray()):
        assert np.isfinite(Z).all()
        np.testing.assert_array_equal(Z[[0, 2, 3]], 0.0)
        np.testing.assert_allclose(Z[1], [0.0, np.log1p(1e4), 0.0])
    assert normalize_log1p(np.zeros((0, 5))).shape == (0, 5)
    assert normalize_log1p(sp.csr_matrix((3, 0))).shape == (3, 0)


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (np.array([[1.0, -1.0]]), "non-negative values.*1 negative"),
        (np.array([[1.0, np.nan]]), "finite values.*1 NaN and 0 Inf"),
        (np.array([[np.inf, 1.0]]), "finite values.*0 NaN and 1 Inf"),
        (np.array([1.0, 2.0]), "2-D array, got 1 dimension"),
        (np.ones((2, 2, 2)), "2-D array, got 3 dimension"),
        (np.array([["a", "b"]]), "numeric array"),
        (np.array([[1 + 1j]]), "real values"),
        (sp.csr_matrix(np.array([[0.0, -2.0]])), "non-negative values"),
        (sp.csr_matrix(np.array([[0.0, np.nan]])), "finite values"),
        (sp.coo_array(np.array([1.0, 2.0])), "2-D matrix, got 1 dimension"),
    ],
)
def test_normalize_rejects_bad_input(X, match):
    with pytest.raises(ValueError, match=match):
        normalize_log1p(X)


@pytest.mark.parametrize("target_sum", [0, -1.0, np.inf, np.nan, "1e4", True])
def test_normalize_rejects_bad_target_sum(target_sum):
    with pytest.raises(ValueError, match="target_sum must be a positive finite number"):
        normalize_log1p(np.ones((2, 2)), target_sum)


@settings(max_examples=40, deadline=None)
@given(
    X=arrays(
        np.int64,
        st.tuples(st.integers(1, 8), st.integers(1, 8)),
        elements=st.integers(0, 1000),
    ),
    target_sum=st.floats(1e-3, 1e6),
)
def test_normalize_matches_reference_property(X, target_sum):
    Z = normalize_log1p(X, target_sum)
    np.testing.assert_allclose(Z, _reference_normalize(X, target_sum), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        normalize_log1p(sp.csc_matrix(X), target_sum).toarray(), Z, rtol=1e-10, atol=1e-12
    )


# --------------------------------------------------------------------------------------------
# load_mice_protein
# --------------------------------------------------------------------------------------------


def test_mice_protein_file_sha256():
    ref = resources.files("bcnmf") / "data" / "mice_protein.npz"
    digest = hashlib.sha256(ref.read_bytes()).hexdigest()
    assert digest == MICE_PROTEIN_SHA256
    readme = (resources.files("bcnmf") / "data" / "README.md").read_text(encoding="utf-8")
    assert MICE_PROTEIN_SHA256 in readme
    assert "CC BY 4.0" in readme


def test_mice_protein_shapes_and_labels():
    data = load_mice_protein()
    assert isinstance(data, TargetBackground)
    assert data.X.shape == (270, 77) and data.Y.shape == (135, 77)
    assert data.X.dtype == np.float64 and data.Y.dtype == np.float64
    assert data.X.flags.c_contiguous and data.Y.flags.c_contiguous
    assert (data.X >= 0).all() and (data.Y >= 0).all()
    assert data.labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(data.labels), [135, 135])
    assert list(data.label_names) == ["Control", "Ts65Dn"]
    assert data.feature_names.shape == (77,) and data.feature_names[0] == "DYRK1A_N"
    assert data.X_missing is None and data.Y_missing is None
    # 18 target mice and 9 background mice, 15 replicates each
    _, target_counts = np.unique(data.target_samples, return_counts=True)
    _, background_counts = np.unique(data.background_samples, return_counts=True)
    assert target_counts.size == 18 and (target_counts == 15).all()
    assert background_counts.size == 9 and (background_counts == 15).all()
    # each mouse has one genotype
    for mouse in np.unique(data.target_samples):
        assert np.unique(data.labels[data.target_samples == mouse]).size == 1


def test_mice_protein_masks():
    data = load_mice_protein(return_masks=True)
    assert data.X_missing.shape == (270, 77) and data.X_missing.dtype == bool
    assert data.Y_missing.shape == (135, 77) and data.Y_missing.dtype == bool
    assert int(data.X_missing.sum()) == 324
    assert int(data.Y_missing.sum()) == 199
    np.testing.assert_array_equal(data.X[data.X_missing], 0.0)
    np.testing.assert_array_equal(data.Y[data.Y_missing], 0.0)


# --------------------------------------------------------------------------------------------
# load_shared_dataset
# --------------------------------------------------------------------------------------------


@needs_shared
def test_shared_mice_protein_matches_shipped_copy():
    shared = load_shared_dataset("mice_protein", root=SHARED_DATA, return_masks=True)
    shipped = load_mice_protein(return_masks=True)
    for name in (
        "X",
        "Y",
        "labels",
        "label_names",
        "feature_names",
        "target_samples",
        "background_samples",
        "X_missing",
        "Y_missing",
    ):
        np.testing.assert_array_equal(getattr(shared, name), getattr(shipped, name))
    raw = np.load(SHARED_DATA / "mice_protein" / "mice_protein.npz", allow_pickle=False)
    np.testing.assert_array_equal(shared.X, raw["X"].T.astype(np.float64))
    raw.close()


@needs_shared
def test_shared_default_root(monkeypatch):
    monkeypatch.delenv("BCNMF_SHARED_DATA", raising=False)
    data = load_shared_dataset("mice_protein")
    assert data.X.shape == (270, 77)
    assert data.X_missing is None
    monkeypatch.setenv("BCNMF_SHARED_DATA", str(SHARED_DATA))
    assert load_shared_dataset("mice_protein").Y.shape == (135, 77)


@needs_shared
def test_shared_mnist_daisy_demo_without_samples():
    if not (SHARED_DATA / "mnist_daisy_demo" / "mnist_daisy_demo.npz").is_file():
        pytest.skip(f"mnist_daisy_demo not present under {SHARED_DATA}")
    data = load_shared_dataset("mnist_daisy_demo", root=SHARED_DATA, return_masks=True)
    assert data.X.shape == (200, 784) and data.Y.shape == (150, 784)
    np.testing.assert_array_equal(np.bincount(data.labels), [100, 100])
    assert data.target_samples is None and data.X_missing is None


def test_shared_missing_file_message(tmp_path, monkeypatch):
    expected = str(tmp_path / "nope" / "nope.npz")
    with pytest.raises(FileNotFoundError, match="shared dataset 'nope' not found") as info:
        load_shared_dataset("nope", root=tmp_path)
    assert expected in str(info.value)
    monkeypatch.setenv("BCNMF_SHARED_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="BCNMF_SHARED_DATA") as info:
        load_shared_dataset("nope")
    assert expected in str(info.value)


@pytest.mark.parametrize("name", ["../mice_protein", "a/b", "", "..", 3])
def test_shared_rejects_bad_name(name, tmp_path):
    with pytest.raises(ValueError, match="name must be a dataset folder name"):
        load_shared_dataset(name, root=tmp_path)


# --------------------------------------------------------------------------------------------
# make_cell_type_counts
# --------------------------------------------------------------------------------------------

CELLS = dict(n_genes=500, n_target=600, n_background=300, n_types=4, n_response=20)


@pytest.fixture(scope="module")
def cells():
    """A small cell-type simulation at strength 1 and the same seed at strength 0."""
    return (
        make_cell_type_counts(1.0, random_state=2, **CELLS),
        make_cell_type_counts(0.0, random_state=2, **CELLS),
    )


def _response_ratio(data, genes, cells=None):
    """Stimulated over unstimulated expression of ``genes``, relative to the oracle.

    Each cell's counts on ``genes`` are divided by its counts on the non-response genes (which
    the stimulus leaves alone), then by the same ratio computed from the cell's type profile,
    so library sizes and the cell-type composition of the two groups cancel: 1 means no
    response, the response factor ``1 + 10 g u`` otherwise.
    """
    X = np.asarray(data.X)
    genes = np.atleast_1d(genes)
    rest = np.setdiff1d(np.arange(X.shape[1]), data.response_genes)
    observed = X[:, genes].sum(axis=1) / X[:, rest].sum(axis=1)
    profiles = data.type_profiles[data.target_type]
    oracle = profiles[:, genes].sum(axis=1) / profiles[:, rest].sum(axis=1)
    keep = np.ones(X.shape[0], bool) if cells is None else cells
    stim, unstim = keep & (data.labels == 1), keep & (data.labels == 0)
    return (observed[stim].mean() / oracle[stim].mean()) / (
        observed[unstim].mean() / oracle[unstim].mean()
    )


def test_cell_types_shapes_dtypes_and_counts(cells):
    data = cells[0]
    assert isinstance(data, CellTypeCounts)
    assert data.X.shape == (600, 500) and data.Y.shape == (300, 500)
    for counts in (data.X, data.Y):
        assert isinstance(counts, np.ndarray) and counts.dtype == np.float64
        assert (counts >= 0).all()
        np.testing.assert_array_equal(counts, np.round(counts))
    for name, size in (("labels", 600), ("target_type", 600), ("background_type", 300)):
        values = getattr(data, name)
        assert values.shape == (size,) and values.dtype == np.int64
    assert data.target_type.min() >= 0 and data.target_type.max() <= 3
    assert set(np.unique(data.background_type)) <= {0, 1, 2, 3}
    assert data.type_profiles.shape == (4, 500) and data.type_profiles.dtype == np.float64
    assert data.response_genes.shape == (20,) and data.response_genes.dtype == np.int64
    assert data.strength == 1.0 and isinstance(data.strength, float)
    with pytest.raises(AttributeError):
        data.strength = 0.0
    assert repr(data) == (
        "CellTypeCounts(X=<600x500 float64>, Y=<300x500 float64>, strength=1.0, n_types=4, "
        "n_response_genes=20)"
    )


def test_cell_types_labels_exactly_half_and_shuffled(cells):
    labels = cells[0].labels
    np.testing.assert_array_equal(np.bincount(labels), [300, 300])
    assert np.count_nonzero(np.diff(labels)) > 100
    odd = make_cell_type_counts(n_genes=30, n_target=7, n_background=3, n_types=2, n_response=3)
    np.testing.assert_array_equal(np.bincount(odd.labels), [4, 3])


def test_cell_types_profiles_and_markers(cells):
    data = cells[0]
    profiles = data.type_profiles
    assert (profiles > 0).all()
    np.testing.assert_allclose(profiles.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(data.response_genes, np.unique(data.response_genes))
    assert 0 <= data.response_genes[0] and data.response_genes[-1] < 500
    # two types differ from the base profile only on their 25 marker genes (5% of 500), by
    # U(2, 20) factors, up to one renormalising constant
    n_markers = 25
    for a, b in ((0, 1), (2, 3)):
        ratio = profiles[a] / profiles[b]
        constant = np.median(ratio)
        changed = ~np.isclose(ratio, constant, rtol=1e-9)
        assert n_markers <= changed.sum() <= 2 * n_markers
        scaled = ratio[changed] / constant
        assert (scaled > 1 / 20 - 1e-9).all() and (scaled < 20 + 1e-9).all()
        assert (np.abs(np.log(scaled)) > np.log(2) - 1e-9).sum() >= n_markers
    # the same type proportions in target and background
    target_share = np.bincount(data.target_type, minlength=4) / 600
    background_share = np.bincount(data.background_type, minlength=4) / 300
    np.testing.assert_allclose(target_share, background_share, atol=0.1)


def test_cell_types_library_sizes():
    data = make_cell_type_counts(n_genes=200, n_target=400, n_background=400, n_types=3,
                                 n_response=5, library_size=1000.0, random_state=4)
    totals = data.Y.sum(axis=1)
    # LogNormal(log 1000, 0.5): median 1000, a spread of about e^0.5 between quartiles
    assert 850 < np.median(totals) < 1150
    q25, q75 = np.percentile(np.log(totals), [25, 75])
    assert 0.45 < (q75 - q25) / (2 * 0.6745 * 0.5) < 1.6


def test_cell_types_overdispersion():
    kwargs = dict(n_genes=100, n_target=2, n_background=2000, n_types=1, n_response=1,
                  random_state=5)
    poisson_like = make_cell_type_counts(dispersion=1e6, **kwargs)
    overdispersed = make_cell_type_counts(dispersion=0.5, **kwargs)
    top = np.argmax(poisson_like.type_profiles[0])
    var_poisson = poisson_like.Y[:, top].var()
    var_over = overdispersed.Y[:, top].var()
    # same mean; the Gamma mixing with shape 0.5 adds 2 mu^2 to the variance
    np.testing.assert_allclose(overdispersed.Y[:, top].mean(), poisson_like.Y[:, top].mean(),
                               rtol=0.15)
    assert var_over > 2.0 * var_poisson


def test_cell_types_reproducible_and_seed_dependent():
    small = dict(n_genes=120, n_target=40, n_background=30, n_types=3, n_response=6)
    a = make_cell_type_counts(0.5, random_state=7, **small)
    b = make_cell_type_counts(0.5, random_state=7, **small)
    c = make_cell_type_counts(0.5, random_state=8, **small)
    names = ("X", "Y", "labels", "target_type", "background_type", "type_profiles",
             "response_genes")
    for name in names:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for name in ("X", "Y", "labels", "type_profiles", "response_genes"):
        assert not np.array_equal(getattr(a, name), getattr(c, name))
    d = make_cell_type_counts(0.5, random_state=np.random.default_rng(7), **small)
    np.testing.assert_array_equal(a.X, d.X)
    assert make_cell_type_counts(0.5, random_state=None, **small).X.shape == a.X.shape


def test_cell_types_sparse_equals_dense():
    small = dict(n_genes=150, n_target=50, n_background=40, n_types=3, n_response=8)
    dense = make_cell_type_counts(1.0, random_state=1, **small)
    sparse = make_cell_type_counts(1.0, random_state=1, sparse=True, **small)
    for d, s in ((dense.X, sparse.X), (dense.Y, sparse.Y)):
        assert sp.issparse(s) and s.format == "csr" and s.dtype == np.float64
        np.testing.assert_array_equal(s.toarray(), d)
    for name in ("labels", "target_type", "background_type", "type_profiles", "response_genes"):
        np.testing.assert_array_equal(getattr(dense, name), getattr(sparse, name))


def test_cell_types_response_on_response_genes_only(cells):
    data = cells[0]
    # the response factor 1 + 10 g u lies in [2.5, 23.5] at strength 1; about 10 on average
    pooled = _response_ratio(data, data.response_genes)
    assert 4.0 < pooled < 23.5
    per_type = np.array(
        [_response_ratio(data, data.response_genes, data.target_type == t) for t in range(4)]
    )
    assert (per_type > 2.5 * 0.8).all() and (per_type < 23.5 * 1.2).all()
    # the response depends on the cell type (g_t differs between types)
    assert (per_type.max() - 1) / (per_type.min() - 1) > 1.3
    # every well-expressed response gene is higher in stimulated cells
    X = data.X
    stim, unstim = data.labels == 1, data.labels == 0
    expected = 3000 * data.type_profiles[data.target_type[unstim]].mean(axis=0)
    strong = data.response_genes[expected[data.response_genes] >= 1.0]
    assert strong.size >= 3
    assert (X[stim][:, strong].mean(axis=0) > 1.5 * X[unstim][:, strong].mean(axis=0)).all()
    # a well-expressed non-response gene (high in every type, so not a rare type's marker)
    # does not move, nor do the non-response genes together
    rest = np.setdiff1d(np.arange(500), data.response_genes)
    gene = rest[np.argmax(data.type_profiles[:, rest].min(axis=0))]
    assert 0.85 < _response_ratio(data, gene) < 1.18
    totals = X[:, rest].sum(axis=1)
    assert 0.9 < totals[stim].mean() / totals[unstim].mean() < 1.1


def test_cell_types_strength_zero_means_no_response(cells):
    strong, null = cells
    # with one seed everything but X is the same at every strength
    for name in ("Y", "labels", "target_type", "background_type", "type_profiles",
                 "response_genes"):
        np.testing.assert_array_equal(getattr(strong, name), getattr(null, name))
    assert null.strength == 0.0
    # strength 0: stimulated and unstimulated cells have the same expectation on the response
    # genes. Any strength >= 0.3 gives a factor of at least 1 + 10 * 0.09 * 0.5 = 1.45.
    assert abs(_response_ratio(null, null.response_genes) - 1.0) < 0.15
    assert _response_ratio(strong, strong.response_genes) > 1.45
    subtle = make_cell_type_counts(0.3, random_state=2, **CELLS)
    assert _response_ratio(subtle, subtle.response_genes) > 1.45


def test_cell_types_edge_sizes():
    one = make_cell_type_counts(n_genes=10, n_target=4, n_background=2, n_types=1, n_response=10)
    np.testing.assert_array_equal(one.response_genes, np.arange(10))
    np.testing.assert_array_equal(one.target_type, 0)
    np.testing.assert_array_equal(one.background_type, 0)
    np.testing.assert_allclose(one.type_profiles.sum(), 1.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(strength=-0.5), ValueError, "strength must be >= 0"),
        (dict(strength=float("nan")), ValueError, "strength must be a finite real"),
        (dict(strength=float("inf")), ValueError, "strength must be a finite real"),
        (dict(strength="1"), ValueError, "strength must be a finite real"),
        (dict(strength=True), ValueError, "strength must be a finite real"),
        (dict(n_genes=0), ValueError, "n_genes must be >= 1"),
        (dict(n_genes=100.0), TypeError, "n_genes must be an int"),
        (dict(n_target=1), ValueError, "n_target must be >= 2"),
        (dict(n_background=0), ValueError, "n_background must be >= 1"),
        (dict(n_types=0), ValueError, "n_types must be >= 1"),
        (dict(n_types=2.5), TypeError, "n_types must be an int"),
        (dict(n_response=0), ValueError, "n_response must be >= 1"),
        (dict(n_genes=50, n_response=51), ValueError, r"n_response must be <= n_genes \(50\)"),
        (dict(dispersion=0.0), ValueError, "dispersion must be > 0"),
        (dict(dispersion=-1.0), ValueError, "dispersion must be > 0"),
        (dict(dispersion=float("inf")), ValueError, "dispersion must be a finite real"),
        (dict(library_size=0), ValueError, "library_size must be > 0"),
        (dict(library_size=float("nan")), ValueError, "library_size must be a finite real"),
        (dict(library_size=None), ValueError, "library_size must be a finite real"),
        (dict(random_state=-1), ValueError, "random_state must be a non-negative int"),
        (dict(random_state="seed"), TypeError, "random_state must be None"),
        (dict(sparse="yes"), TypeError, "sparse must be a bool"),
    ],
)
def test_cell_types_rejects_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_cell_type_counts(**kwargs)


# --------------------------------------------------------------------------------------------
# make_sample_counts
# --------------------------------------------------------------------------------------------


def test_sample_counts_shapes_labels_and_counts():
    data = make_sample_counts(0.5, n_samples=4, n_background_samples=3, cells_per_sample=7,
                              n_genes=40, n_programs=3, random_state=0)
    assert isinstance(data, SampleCounts)
    assert data.X.shape == (28, 40) and data.Y.shape == (21, 40)
    for counts in (data.X, data.Y):
        assert counts.dtype == np.float64 and (counts >= 0).all()
        np.testing.assert_array_equal(counts, np.round(counts))
    assert [str(s) for s in np.unique(data.samples)] == [f"target_{i}" for i in range(1, 5)]
    assert [str(s) for s in np.unique(data.background_samples)] == [
        f"background_{i}" for i in range(1, 4)]
    assert (np.unique(data.samples, return_counts=True)[1] == 7).all()
    assert data.programs.shape == (3, 40) and data.planted_program.shape == (40,)
    np.testing.assert_allclose(data.programs.sum(axis=1), 1.0)
    np.testing.assert_allclose(data.planted_program.sum(), 1.0)
    np.testing.assert_array_equal(data.planted_genes, np.arange(30, 40))
    assert data.sample_offsets.shape == (7, 4) and data.gene_factors.shape == (7, 40)
    assert "SampleCounts(" in repr(data) and "n_samples=4" in repr(data)


def test_sample_counts_reproducible_sparse_and_effect_only_changes_x():
    a = make_sample_counts(0.0, random_state=3)
    b = make_sample_counts(0.0, random_state=3)
    c = make_sample_counts(0.0, random_state=4)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.Y, b.Y)
    assert not np.array_equal(a.X, c.X)
    s = make_sample_counts(0.0, random_state=3, sparse=True)
    assert sp.issparse(s.X) and sp.issparse(s.Y)
    np.testing.assert_array_equal(s.X.toarray(), a.X)
    planted = make_sample_counts(1.0, random_state=3)
    np.testing.assert_array_equal(planted.Y, a.Y)
    np.testing.assert_array_equal(planted.sample_offsets, a.sample_offsets)
    genes = planted.planted_genes
    gain = planted.X[:, genes].sum() / a.X[:, genes].sum()
    rest = np.delete(planted.X, genes, axis=1).sum() / np.delete(a.X, genes, axis=1).sum()
    assert gain > 20 and 0.8 < rest < 1.25


def test_sample_counts_null_has_no_condition_effect():
    """Over many seeds, per-gene target minus background means average to zero with
    effect=0 (every sample is drawn alike); the planted effect shows on its genes."""
    from scipy import stats

    def differences(effect):
        out = []
        for seed in range(150):
            d = make_sample_counts(effect, n_samples=3, cells_per_sample=4, n_genes=20,
                                   random_state=seed)
            out.append(d.X.mean(axis=0) - d.Y.mean(axis=0))
        return np.array(out)

    null = differences(0.0)
    p = stats.ttest_1samp(null, 0.0, axis=0).pvalue
    assert p.min() > 0.001 / 20  # no gene differs (Bonferroni over 20 genes)
    planted = differences(0.5)
    genes = make_sample_counts(0.5, n_genes=20, random_state=0).planted_genes
    assert stats.ttest_1samp(planted[:, genes], 0.0, axis=0).pvalue.max() < 1e-6


def test_sample_counts_samples_differ_more_than_cells_allow():
    """The random effects make cells of one sample alike: per gene, the spread of the sample
    means of the expression shares exceeds what independent cells give (F-like ratio about
    1), and it does not without effects."""
    def ratio(sample_effect, gene_effect):
        d = make_sample_counts(0.0, n_samples=6, cells_per_sample=40,
                               sample_effect=sample_effect, gene_effect=gene_effect,
                               random_state=0)
        share = d.X / d.X.sum(axis=1, keepdims=True)
        _, which = np.unique(d.samples, return_inverse=True)
        means = np.array([share[which == s].mean(axis=0) for s in range(6)])
        within = np.mean([share[which == s].var(axis=0, ddof=1) for s in range(6)], axis=0)
        seen = within > 0
        return np.median(means.var(axis=0, ddof=1)[seen] / (within[seen] / 40))

    assert ratio(0.5, 0.3) > 4
    assert ratio(0.5, 0.0) > 4 and ratio(0.0, 0.3) > 4
    assert ratio(0.0, 0.0) < 2


@pytest.mark.parametrize("kwargs, error, match", [
    ({"effect": -1.0}, ValueError, "effect must be >= 0"),
    ({"n_samples": 0}, ValueError, "n_samples must be >= 1"),
    ({"n_background_samples": 1.5}, TypeError, "n_background_samples must be an int"),
    ({"cells_per_sample": 0}, ValueError, "cells_per_sample must be >= 1"),
    ({"n_genes": 3}, ValueError, "n_genes must be >= 4"),
    ({"sample_effect": float("nan")}, ValueError, "sample_effect must be a finite"),
    ({"gene_effect": -0.1}, ValueError, "gene_effect must be >= 0"),
    ({"library_size": 0.0}, ValueError, "library_size must be > 0"),
    ({"sparse": "yes"}, TypeError, "sparse must be a bool"),
])
def test_sample_counts_rejects_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_sample_counts(**kwargs)
