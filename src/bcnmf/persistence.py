"""Saving and loading fitted models: numpy arrays plus JSON metadata, never pickle.

A model file is a zip archive (numpy's ``.npz`` container) holding

- one ``<name>.npy`` member per array (the basis, background codes, history, offsets), written
  and read with ``allow_pickle=False``;
- ``metadata.json``: format name and version, the library version that wrote it, the estimator
  class, its parameters, the fitted scalars, the feature names, the resolved numerical settings
  that :meth:`~bcnmf.BCNMF.transform` needs, and a SHA-256 checksum of the arrays.

``np.load(path)`` opens the arrays and any unzip tool shows the metadata. Loading checks the
format version (a file from a newer bcnmf is refused with a clear message), the checksum
(corrupted or truncated files are refused), and rebuilds an estimator whose ``transform`` gives
exactly the same output as the saved one.

Estimator classes are known by registration (:mod:`bcnmf.registry`): :class:`~bcnmf.BCNMF`
registers itself and every subclass, with the fitted attributes each keeps beyond its own, so this
module imports no estimator.
"""

from __future__ import annotations

import dataclasses
import io
import json
import numbers
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ._version import __version__
from .core.checkpoint import _checksum
from .core.fit import FitSettings, FitState
from .core.masked import MissingPrior
from .core.step import StepPolicy
from .core.backend import device_of, resolve_device, to_device, to_numpy
from .exceptions import _HEAD, ModelFormatError, _describe, _signature
from .registry import REGISTRY, Saved

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "save_model", "load_model", "read_metadata"]

FORMAT_NAME = "bcnmf-model"
#: bumped whenever a reader of the previous version could not read a new file correctly
FORMAT_VERSION = 1
_METADATA = "metadata.json"
_SCALARS = ("n_iter_", "objective_", "n_features_in_", "_n_features_out")


def _saved(model) -> Saved:
    """The registration of ``type(model)``'s name."""
    saved = REGISTRY.get(type(model).__name__)
    if saved is None:
        raise TypeError(f"Cannot save a {type(model).__name__}: it is not a registered estimator "
                        "class (bcnmf.registry.register).")
    return saved


def _json_param(name, value):
    """A JSON value for a constructor parameter (random generators are not portable)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple, np.ndarray)):   # e.g. one alpha per background
        return [_json_param(name, v) for v in value]
    if name == "random_state":
        return None  # a RandomState/Generator object: its state is not saved
    if name == "device":
        return str(value)  # a torch.device
    raise TypeError(f"Cannot save parameter {name}={value!r}: not a JSON value.")


def json_params(model) -> dict:
    """``model.get_params()`` as JSON values (a RandomState/Generator ``random_state``, whose
    state is not portable, becomes None)."""
    return {k: _json_param(k, v) for k, v in model.get_params().items()}


def _collect(model, feature_names=None):
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    arrays = {"components_": to_numpy(model.components_)}   # tensors are stored as numpy
    if model.background_codes_ is not None and not isinstance(model.background_codes_, list):
        arrays["background_codes_"] = to_numpy(model.background_codes_)
    # fitted state a class keeps in its own shape (lists, slices): `_state()` gives it as
    # named arrays and `_set_state(arrays)` restores it
    for name, a in model._state().items():
        arrays[f"state_{name}"] = np.asarray(a)
    for key, values in model.history_.items():
        arrays[f"history_{key}"] = np.asarray(values)
    saved = _saved(model)
    for name in saved.arrays:   # the class's declared fitted arrays (None: not saved)
        value = getattr(model, name)
        if value is not None:
            arrays[name] = to_numpy(value)
    state = model.fit_state_
    for which, offset in zip(("target", "background"), state.offsets):
        if offset is not None:
            arrays[f"offset_{which}"] = np.asarray(offset)
    for which, prior in zip(("target", "background"), state.missing_prior):
        if prior is not None:   # the fit's prior at missing entries (core/masked.py)
            arrays[f"missing_mean_{which}"] = np.asarray(prior.mean)
            arrays[f"missing_tau2_{which}"] = np.asarray(prior.tau2)
    for name, a in arrays.items():
        if a.dtype.hasobject:
            raise TypeError(f"Cannot save {name}: object arrays are not portable.")
    names_in = getattr(model, "feature_names_in_", None)
    names = names_in if feature_names is None else feature_names
    if names is not None and len(names) != model.components_.shape[1]:
        raise ValueError(f"feature_names has {len(names)} entries for "
                         f"{model.components_.shape[1]} features.")
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "estimator": type(model).__name__,
        "params": json_params(model),
        "attributes": {k: getattr(model, k) for k in _SCALARS + saved.scalars},
        "feature_names": None if names is None else [str(n) for n in names],
        "feature_names_in": names_in is not None,
        "settings": dataclasses.asdict(state.settings),
        "policy": dataclasses.asdict(state.policy),
        "history_keys": list(model.history_),
        "device": None if device_of(model.components_) is None
        else str(device_of(model.components_)),
        "arrays": {k: {"dtype": a.dtype.str, "shape": list(a.shape)} for k, a in arrays.items()},
        "sha256": _checksum(arrays),
    }
    meta["attributes"] = {k: (int(v) if isinstance(v, numbers.Integral) else float(v))
                          for k, v in meta["attributes"].items()}
    return arrays, meta


def save_model(model, path, *, feature_names=None) -> Path:
    """Save a fitted :class:`~bcnmf.BCNMF` to ``path`` (conventionally ``*.npz``).

    Parameters
    ----------
    model : BCNMF
        A fitted estimator.
    path : str or path-like
        Destination file; overwritten if it exists. Written to a temporary file first and
        renamed, so an interrupted save never leaves a half-written model under ``path``.
    feature_names : sequence of str, optional
        Names of the features, stored in the metadata (see :func:`read_metadata`) when the
        model was fitted on arrays without names; default ``feature_names_in_`` if present.
        Only names the model was fitted with (``feature_names_in_``) are restored as
        ``feature_names_in_`` on loading.

    Returns
    -------
    pathlib.Path
        The path written.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from bcnmf import BCNMF, load
    >>> rng = np.random.default_rng(0)
    >>> X, Y = rng.random((30, 6)), rng.random((20, 6))
    >>> model = BCNMF(2, alpha=1.5, random_state=0, max_iter=50, tol=0).fit(X, background=Y)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
    >>> _ = model.save(path)
    >>> bool(np.array_equal(load(path).transform(X), model.transform(X)))
    True
    """
    arrays, meta = _collect(model, feature_names)
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(_METADATA, json.dumps(meta, indent=1, allow_nan=True))
        for name, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
            zf.writestr(f"{name}.npy", buf.getvalue())
    tmp.replace(path)
    return path


_EXPECTED = "a zip archive of .npy arrays and metadata.json, written by model.save"
_DAMAGED = "It may be truncated or corrupted: save the model again."
#: metadata entries the loader reads, with their JSON types
_REQUIRED = {"arrays": dict, "params": dict, "settings": dict, "policy": dict,
             "attributes": dict, "history_keys": list, "feature_names": (list, type(None))}


def _corrupt(path, found, hint=_DAMAGED):
    return ModelFormatError(f"{path} is not a readable bcnmf model file (expected {_EXPECTED}): "
                            f"found {found}." + (f" {hint}" if hint else ""))


def _other_content(path):
    """A ModelFormatError for a file that is not a zip archive (None when it is one)."""
    with open(path, "rb") as f:
        head = f.read(_HEAD)
    signature = _signature(head)
    if signature == "zip":
        return None
    if signature == "empty":
        return _corrupt(path, _describe(signature, head))
    return _corrupt(path, _describe(signature, head),
                    "It is not a saved model; data files are read with bcnmf.io.read_table.")


def _without_metadata(path, members):
    names = sorted(m[:-4] if m.endswith(".npy") else m for m in members)
    if {"meta", "checksum"} <= set(names):
        return _corrupt(path, "a bcnmf fit checkpoint, not a saved model",
                        "Resume it with fit(..., resume=path).")
    shown = names[:6] + (["..."] if len(names) > 6 else [])
    return _corrupt(path, f"a zip archive with no {_METADATA} inside (it holds {shown})",
                    "An .npz of arrays is data: read it with bcnmf.io.read_table."
                    if names else _DAMAGED)


def _read(path):
    path = Path(path)
    if path.is_dir():
        raise _corrupt(path, "a directory", "Pass the model file (for a run folder of "
                       "`bcnmf fit`: its model.npz).")
    if not path.is_file():
        raise FileNotFoundError(f"No such model file: {path}")
    other = _other_content(path)
    if other is not None:
        raise other
    try:
        with zipfile.ZipFile(path) as zf:
            members = set(zf.namelist())
            if _METADATA not in members:
                raise _without_metadata(path, members)
            meta = json.loads(zf.read(_METADATA).decode("utf-8"))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
                raise _corrupt(path, f"a {_METADATA} that does not name the bcnmf model format",
                               "It is not a saved bcnmf model.")
            _check_version(path, meta)
            wrong = sorted(k for k, kind in _REQUIRED.items()
                           if not isinstance(meta.get(k), kind))
            if wrong:
                raise _corrupt(path, f"a {_METADATA} without valid {wrong}")
            arrays = {}
            for name, spec in meta["arrays"].items():
                if f"{name}.npy" not in members:
                    raise _corrupt(path, f"no array {name!r} (missing from the archive)")
                with zf.open(f"{name}.npy") as fh:
                    a = np.lib.format.read_array(io.BytesIO(fh.read()), allow_pickle=False)
                if a.dtype.str != spec["dtype"] or list(a.shape) != spec["shape"]:
                    raise _corrupt(path, f"array {name!r} with the wrong dtype or shape")
                arrays[name] = a
    except ModelFormatError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, KeyError, TypeError,
            ValueError, UnicodeDecodeError, zlib.error) as err:  # JSONDecodeError: ValueError
        raise _corrupt(path, f"a zip archive that cannot be read ({type(err).__name__}: {err})"
                       ) from err
    if _checksum(arrays) != meta.get("sha256"):
        raise _corrupt(path, "arrays whose checksum does not match the one in its metadata")
    return meta, arrays


def _check_version(path, meta):
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _corrupt(path, f"an invalid format version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{path} was written by bcnmf {meta.get('library_version', '?')} in model format "
            f"version {version}; this bcnmf ({__version__}) reads format versions up to "
            f"{FORMAT_VERSION}. Upgrade bcnmf to load it.")


def read_metadata(path) -> dict:
    """The metadata of a saved model (format, versions, parameters, ``feature_names``...),
    after the same checks as :func:`load_model`."""
    return _read(path)[0]


def load_model(path, *, device=None):
    """Load a model written by :func:`save_model` (or ``model.save``).

    Parameters
    ----------
    path : str or path-like
    device : str, torch.device or None, default=None
        None gives a numpy-backed model (``device=None``), whatever device the
        model was fitted on (recorded as ``read_metadata(path)["device"]``);
        a torch device moves ``components_`` and ``background_codes_`` there
        and sets the model's ``device``.

    Returns
    -------
    BCNMF
        A fitted estimator whose ``transform`` gives exactly the saved model's output.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    bcnmf.exceptions.ModelFormatError
        When the file is not a bcnmf model (a directory, a data file, a checkpoint), is
        corrupted or truncated, or was written in a newer format version; the message names
        the file and what was found there.
    """
    meta, arrays = _read(path)
    saved = REGISTRY.get(meta.get("estimator"))
    if saved is None:
        raise ModelFormatError(f"{path} holds a {meta.get('estimator')!r} model, which this "
                               f"bcnmf ({__version__}) does not know; it knows "
                               f"{sorted(REGISTRY)}.")
    cls = saved.cls
    valid = cls().get_params()
    if device is not None and "device" not in valid:
        raise ValueError(f"{cls.__name__} runs on numpy only, so it cannot be loaded onto "
                         f"device={device!r}; load it with device=None.")
    unknown = sorted(set(meta["params"]) - set(valid))
    if unknown:
        raise ModelFormatError(
            f"{path} was written by bcnmf {meta.get('library_version', '?')} with parameters "
            f"this bcnmf ({__version__}) does not know: {unknown}. Upgrade bcnmf to load it.")
    model = cls(**dict(meta["params"], **({"device": None} if "device" in meta["params"]
                                           else {})))
    try:
        settings = FitSettings(**meta["settings"])
        policy = StepPolicy(**meta["policy"])
    except TypeError as err:
        raise ModelFormatError(f"{path}: its numerical settings do not match this bcnmf "
                               f"({__version__}): {err}.") from None
    model.components_ = arrays["components_"]
    model.background_codes_ = arrays.get("background_codes_")
    model.history_ = {k: arrays[f"history_{k}"] for k in meta["history_keys"]}
    for name in saved.arrays:
        setattr(model, name, arrays.get(name))
    for key, value in meta["attributes"].items():
        setattr(model, key, value)
    if meta["feature_names"] is not None and meta.get("feature_names_in", True):
        model.feature_names_in_ = np.asarray(meta["feature_names"], dtype=object)
    model.fit_state_ = FitState(
        settings, policy, (arrays.get("offset_target"), arrays.get("offset_background")),
        tuple(MissingPrior(arrays[f"missing_mean_{w}"], arrays[f"missing_tau2_{w}"])
              if f"missing_mean_{w}" in arrays else None for w in ("target", "background")))
    model._set_state({k[len("state_"):]: a for k, a in arrays.items() if k.startswith("state_")})
    if device is not None:
        dev = resolve_device(device)
        model.set_params(device=device)
        model.components_ = to_device(model.components_, dev)
        if model.background_codes_ is not None:
            model.background_codes_ = to_device(model.background_codes_, dev)
    return model
