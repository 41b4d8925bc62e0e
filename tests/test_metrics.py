import numpy as np
import pytest

from bcnmf.metrics import cluster_ari, l1_normalize_rows


def test_perfectly_separated_codes_give_ari_one_and_label_permutation_invariance():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 20)
    codes = np.where(labels[:, None] == 0, [5.0, 0.1], [0.1, 5.0]) + 0.01 * rng.random((40, 2))
    assert cluster_ari(codes, labels) == pytest.approx(1.0)
    assert cluster_ari(codes, 1 - labels) == pytest.approx(1.0)


def test_normalise_removes_cell_scale():
    labels = np.repeat([0, 1], 10)
    base = np.where(labels[:, None] == 0, [1.0, 0.2], [0.2, 1.0])
    scale = np.geomspace(1, 1e3, 20)[:, None]  # depth varies 1000-fold, unrelated to labels
    codes = base * scale
    assert cluster_ari(codes, labels, normalize=True) == pytest.approx(1.0)
    assert cluster_ari(codes, labels) < 1.0


def test_l1_normalize_rows_keeps_zero_rows_and_input():
    codes = np.array([[1.0, 3.0], [0.0, 0.0]])
    before = codes.copy()
    out = l1_normalize_rows(codes)
    np.testing.assert_allclose(out, [[0.25, 0.75], [0.0, 0.0]])
    np.testing.assert_array_equal(codes, before)


def test_non_finite_codes_give_nan_and_shape_mismatch_raises():
    labels = np.array([0, 1, 0])
    assert np.isnan(cluster_ari(np.array([[1.0], [np.nan], [2.0]]), labels))
    with pytest.raises(ValueError, match="do not match"):
        cluster_ari(np.ones((2, 2)), labels)


def test_agreement_records_a_protocol_that_reproduces_the_numbers():
    from bcnmf.metrics import cluster_agreement

    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1, 2], 15)
    codes = np.eye(3)[labels] * 4 + rng.random((45, 3))
    res = cluster_agreement(codes, labels, normalize=True)
    p = res.protocol
    assert p["normalize"] == "l1 per cell" and p["umap"] is None
    assert p["kmeans"] == {"n_clusters": 3, "n_init": 20, "random_state": 42, "threads": 1}
    assert "scikit-learn" in p["versions"]
    # rerunning from the recorded protocol gives the same clusters
    again = cluster_agreement(codes, labels, normalize=True,
                              n_clusters=p["kmeans"]["n_clusters"],
                              n_init=p["kmeans"]["n_init"],
                              random_state=p["kmeans"]["random_state"])
    np.testing.assert_array_equal(again.clusters, res.clusters)
    assert res.ari == cluster_ari(codes, labels, normalize=True)
    assert 0.0 <= res.nmi <= 1.0 and res.ari > 0.9


def test_umap_step_is_recorded_or_explains_what_is_missing():
    from bcnmf.metrics import cluster_agreement

    labels = np.repeat([0, 1], 30)
    codes = np.where(labels[:, None] == 0, [5.0, 0.1], [0.1, 5.0]) \
        + 0.1 * np.random.default_rng(2).random((60, 2))
    import importlib.util

    if importlib.util.find_spec("umap") is None:
        with pytest.raises(ImportError, match="umap-learn"):
            cluster_agreement(codes, labels, umap=True)
        return
    res = cluster_agreement(codes, labels, umap=True, umap_params={"n_neighbors": 10})
    assert res.protocol["umap"]["n_neighbors"] == 10
    assert "umap-learn" in res.protocol["versions"]
    assert res.ari > 0.9
