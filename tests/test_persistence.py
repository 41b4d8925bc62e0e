"""Saved models: npz arrays + JSON metadata, exact round trip of transform, clear errors."""

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.exceptions import NotFittedError

import bcnmf
from bcnmf import BCNMF
from bcnmf.exceptions import ModelFormatError
from bcnmf.persistence import FORMAT_VERSION, read_metadata


def _data(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.poisson(2.0, size=(40, 10)).astype(dtype)
    X[:20, :3] += 5
    Y = rng.poisson(2.0, size=(30, 10)).astype(dtype)
    return X, Y


CASES = {
    "frobenius": dict(beta_loss="frobenius"),
    "poisson-stable-offsets": dict(beta_loss="poisson"),
    "poisson-reference-damped": dict(beta_loss="poisson", mode="reference", damping=0.5,
                                     alpha=1.5),
    "n_init": dict(n_init=3),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_round_trip_preserves_transform_exactly(tmp_path, case, dtype):
    X, Y = _data(dtype=dtype)
    model = BCNMF(3, random_state=0, max_iter=60, tol=0, **CASES[case])
    model.fit(X, background=Y)
    path = model.save(tmp_path / "m.npz")
    loaded = bcnmf.load(path)
    assert type(loaded) is BCNMF and loaded.get_params() == model.get_params()
    Z = _data(seed=5, dtype=dtype)[0]
    for A in (X, Z, sp.csr_matrix(Z)):
        np.testing.assert_array_equal(loaded.transform(A), model.transform(A))
    np.testing.assert_array_equal(loaded.transform(Y, as_background=True),
                                  model.transform(Y, as_background=True))
    assert loaded.components_.dtype == model.components_.dtype
    for attr in ("components_", "background_codes_", "restart_objectives_",
                 "restart_agreement_"):
        np.testing.assert_array_equal(getattr(loaded, attr), getattr(model, attr))
    for attr in ("n_iter_", "alpha_raw_", "objective_", "n_features_in_"):
        assert getattr(loaded, attr) == getattr(model, attr)
    assert loaded.history_.keys() == model.history_.keys()
    for key in model.history_:
        np.testing.assert_array_equal(loaded.history_[key], model.history_[key])
    np.testing.assert_array_equal(loaded.inverse_transform(loaded.transform(X)),
                                  model.inverse_transform(model.transform(X)))


def test_no_background_and_feature_names(tmp_path):
    X, _ = _data()
    frame = pd.DataFrame(X, columns=[f"gene{j}" for j in range(10)])
    model = BCNMF(2, random_state=0, max_iter=40, tol=0, alpha=1.5).fit(frame)
    loaded = bcnmf.load(model.save(tmp_path / "m.npz"))
    assert loaded.background_codes_ is None
    np.testing.assert_array_equal(loaded.feature_names_in_, model.feature_names_in_)
    np.testing.assert_array_equal(loaded.transform(frame), model.transform(frame))
    assert read_metadata(tmp_path / "m.npz")["feature_names"][0] == "gene0"


def test_descriptive_feature_names_do_not_become_feature_names_in(tmp_path):
    X, Y = _data()
    model = BCNMF(2, random_state=0, max_iter=40, tol=0, alpha=1.5).fit(X, background=Y)
    names = [f"p{j}" for j in range(10)]
    model.save(tmp_path / "m.npz", feature_names=names)
    assert read_metadata(tmp_path / "m.npz")["feature_names"] == names
    loaded = bcnmf.load(tmp_path / "m.npz")
    assert not hasattr(loaded, "feature_names_in_")  # arrays still transform without warning
    np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
    with pytest.raises(ValueError, match="feature_names has 3"):
        model.save(tmp_path / "bad.npz", feature_names=["a", "b", "c"])


def test_file_is_plain_npz_and_json(tmp_path):
    X, Y = _data()
    model = BCNMF(2, random_state=np.random.RandomState(0), max_iter=30, tol=0, alpha=1.5)
    model.fit(X, background=Y)
    path = model.save(tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as npz:  # no pickle needed anywhere
        arrays = {k: npz[k] for k in npz.files if k != "metadata.json"}
    assert all(not a.dtype.hasobject for a in arrays.values())
    np.testing.assert_array_equal(arrays["components_"], model.components_)
    with zipfile.ZipFile(path) as zf:
        meta = json.loads(zf.read("metadata.json"))
    assert meta["format"] == "bcnmf-model" and meta["format_version"] == FORMAT_VERSION
    assert meta["library_version"] == bcnmf.__version__ and meta["estimator"] == "BCNMF"
    assert len(meta["sha256"]) == 64 and meta["params"]["n_components"] == 2
    assert meta["params"]["random_state"] is None  # a RandomState object is not saved


def _rewrite(path, member, transform):
    """Copy the zip at ``path`` with ``member``'s bytes passed through ``transform``."""
    with zipfile.ZipFile(path) as zf:
        items = {name: zf.read(name) for name in zf.namelist()}
    items[member] = transform(items[member])
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in items.items():
            zf.writestr(name, data)


@pytest.fixture
def saved(tmp_path):
    X, Y = _data()
    model = BCNMF(2, random_state=0, max_iter=30, tol=0, alpha=1.5).fit(X, background=Y)
    return model.save(tmp_path / "m.npz")


def test_newer_format_version_is_refused(saved):
    def bump(raw):
        meta = json.loads(raw)
        meta["format_version"] = FORMAT_VERSION + 1
        meta["library_version"] = "99.0"
        return json.dumps(meta).encode()

    _rewrite(saved, "metadata.json", bump)
    with pytest.raises(ModelFormatError, match=r"bcnmf 99\.0 .* version 2.*Upgrade bcnmf"):
        bcnmf.load(saved)


def test_changed_array_fails_the_checksum(saved):
    def tamper(raw):
        a = np.lib.format.read_array(io.BytesIO(raw))
        a[0, 0] += 1.0
        buf = io.BytesIO()
        np.lib.format.write_array(buf, a)
        return buf.getvalue()

    _rewrite(saved, "components_.npy", tamper)
    with pytest.raises(ModelFormatError, match="checksum"):
        bcnmf.load(saved)


def test_truncated_and_garbled_files_are_refused(saved, tmp_path):
    data = saved.read_bytes()
    for name, content in {"truncated": data[: len(data) // 2],
                          "tail-cut": data[:-10],
                          "flipped": data[:200] + bytes([data[200] ^ 0xFF]) + data[201:],
                          "text": b"not a model at all"}.items():
        path = tmp_path / f"{name}.npz"
        path.write_bytes(content)
        with pytest.raises(ModelFormatError, match="not a readable bcnmf model"):
            bcnmf.load(path)
    with pytest.raises(FileNotFoundError):
        bcnmf.load(tmp_path / "missing.npz")


def test_other_npz_and_unknown_parameters_are_refused(saved, tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.ones(3))
    with pytest.raises(ModelFormatError, match="no metadata.json"):
        bcnmf.load(tmp_path / "plain.npz")

    def add_param(raw):
        meta = json.loads(raw)
        meta["params"]["new_knob"] = 1
        return json.dumps(meta).encode()

    _rewrite(saved, "metadata.json", add_param)
    with pytest.raises(ModelFormatError, match="new_knob"):
        bcnmf.load(saved)


def test_unfitted_model_cannot_be_saved(tmp_path):
    with pytest.raises(NotFittedError):
        BCNMF(2, alpha=1.5).save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()
