"""Shared test configuration: hypothesis profiles.

``HYPOTHESIS_PROFILE=ci`` (default) keeps the property tests fast and reproducible in CI:
few examples, no deadline (the first call compiles numba kernels), derandomised, and no
example database written to disk.  ``HYPOTHESIS_PROFILE=long`` runs many more examples
with random search, for a local or nightly run::

    HYPOTHESIS_PROFILE=long python -m pytest tests/test_properties.py
"""

import os
import warnings

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
