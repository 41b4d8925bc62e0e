"""A git revision of this repository checked out beside the working tree, for the
benchmarks that compare this tree with it (``speed_compare.py``, ``bitwise_compare.py``)."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def short_rev(rev: str) -> str:
    """The abbreviated commit of ``rev``."""
    return subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, check=True,
                          capture_output=True, text=True).stdout.strip()


@contextlib.contextmanager
def baseline_src(rev: str):
    """The ``src`` folder of ``rev`` in a temporary git worktree, removed on exit."""
    with tempfile.TemporaryDirectory(prefix="bcnmf-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), rev], cwd=REPO,
                       check=True)
        try:
            yield tree / "src"
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO)
