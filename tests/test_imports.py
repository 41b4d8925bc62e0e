"""Importing bcnmf (and touching its lazy submodules) loads no heavy optional library."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import bcnmf

HEAVY = ("anndata", "scanpy", "matplotlib", "torch", "dask")
SRC = str(Path(bcnmf.__file__).resolve().parents[1])


def _loaded_after(code):
    """Heavy modules in sys.modules after running ``code`` in a fresh interpreter."""
    probe = (f"import sys; sys.path.insert(0, {SRC!r})\n{code}\n"
             "import json; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & "
             f"set({HEAVY!r}))))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("code", [
    "import bcnmf",
    "import bcnmf; bcnmf.tl; bcnmf.pl; bcnmf.io; bcnmf.report; bcnmf.load",
    "import bcnmf.cli; bcnmf.cli.build_parser()",
    "import bcnmf; bcnmf.select_model; bcnmf.topic_enrichment; bcnmf.match_topics",
])
def test_import_loads_no_heavy_library(code):
    assert _loaded_after(code) == []


def test_the_probe_sees_heavy_imports():
    # the check above can fail: a heavy import is reported
    pytest.importorskip("matplotlib")
    assert _loaded_after("import bcnmf, matplotlib") == ["matplotlib"]
