"""The package's metadata: ranges, never exact pins, and the warning policy of the suite."""

from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


@pytest.fixture(scope="module")
def project():
    if not PYPROJECT.is_file():
        pytest.skip(f"{PYPROJECT} not found (tests run from an installed copy)")
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))


def _requirements(project):
    meta = project["project"]
    yield "dependencies", meta["dependencies"]
    for extra, reqs in meta["optional-dependencies"].items():
        yield f"extra {extra!r}", reqs


def test_no_exact_pins(project):
    pinned = [f"{where}: {req}" for where, reqs in _requirements(project) for req in reqs
              if any(spec.operator in ("==", "===") for spec in Requirement(req).specifier)]
    assert not pinned, f"exact pins in pyproject.toml: {pinned}"


def test_every_requirement_has_a_lower_bound(project):
    loose = [f"{where}: {req}" for where, reqs in _requirements(project) for req in reqs
             if not any(spec.operator in (">=", ">", "~=") for spec in Requirement(req).specifier)]
    assert not loose, f"requirements without a lower bound: {loose}"


def test_optional_libraries_are_extras_not_core(project):
    core = {Requirement(r).name for r in project["project"]["dependencies"]}
    assert not core & {"torch", "anndata", "scanpy", "dask", "distributed", "matplotlib"}


def test_upstream_deprecations_do_not_fail_the_suite(project):
    policy = project["tool"]["pytest"]["ini_options"]["filterwarnings"]
    assert policy[0] == "error"
    for category in ("DeprecationWarning", "PendingDeprecationWarning", "FutureWarning"):
        assert f"default::{category}" in policy


def test_the_library_s_own_warnings_are_errors_in_tests():
    import warnings

    from bcnmf.exceptions import AlphaSelectionWarning, DivergenceWarning

    for category in (AlphaSelectionWarning, DivergenceWarning):
        with pytest.raises(category):
            warnings.warn("raised", category)
    with warnings.catch_warnings(record=True) as caught:   # reported, not raised
        warnings.warn("upstream", DeprecationWarning)
    assert [w.category for w in caught] == [DeprecationWarning]
