"""Shared test configuration: hypothesis profiles.

``HYPOTHESIS_PROFILE=ci`` (default) keeps the property tests fast and reproducible in CI:
few examples, no deadline (the first call compiles numba kernels), derandomised, and no
example database written to disk.  ``HYPOTHESIS_PROFILE=long`` runs many more examples
with random search, for a local or nightly run::

    HYPOTHESIS_PROFILE=long python -m pytest tests/test_properties.py
"""

import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=10, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "long", max_examples=300, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# When a property fails, hypothesis's pytest plugin imports its patch writer (libcst), which
# emits a DeprecationWarning that ``filterwarnings = error`` turns into an INTERNALERROR that
# hides the falsifying example.  Import it once here with that warning silenced.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:  # libcst not installed: the plugin then skips the patch
        pass


@pytest.fixture(scope="session")
def contrast_fit():
    """A small fitted contrast (shared by test_pl.py and test_report.py; read only):
    ``(X, Y, model, codes)`` with 40 target and 30 background cells over 12 features, a
    target-only program on the first 3 features of half the target cells, and a 3-topic
    BCNMF fitted for 80 sweeps."""
    import numpy as np

    from bcnmf import BCNMF

    rng = np.random.default_rng(0)
    X = rng.poisson(2.0, size=(40, 12)).astype(float)
    X[:20, :3] += 6
    Y = rng.poisson(2.0, size=(30, 12)).astype(float)
    model = BCNMF(3, alpha=1.0, random_state=0, max_iter=80, tol=0)
    codes = model.fit_transform(X, background=Y)
    return X, Y, model, codes


def _central_gradient(f, x, rel_step=1e-6):
    """Central finite differences of the scalar ``f`` at ``x`` (steps relative to
    ``max(1, |x|)``)."""
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        h = rel_step * max(1.0, abs(x[idx]))
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        grad[idx] = (f(xp) - f(xm)) / (2 * h)
    return grad


@pytest.fixture
def central_gradient():
    """The finite-difference gradient used by every gradient-split test."""
    return _central_gradient
