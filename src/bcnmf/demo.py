"""End-to-end demo on the bundled mouse-protein data: ``bcnmf demo`` (or ``python -m bcnmf.demo``).

Fits PCA, plain NMF and bcNMF to the mouse-protein target against its background over several
fitting seeds, scores the fits against the genotype labels and writes a run folder with the HTML
report.  :func:`run_demo` does the work (:mod:`bcnmf._demo`, which documents the protocol and the
files written) and returns the results without printing; :func:`main` runs it as the command
line does (:mod:`bcnmf.cli` is the only place that prints).
"""

from __future__ import annotations

import sys

from ._demo import DEFAULT_OUT, DEMO_ALPHA, METHODS, N_COMPONENTS, format_table, run_demo

__all__ = ["DEFAULT_OUT", "DEMO_ALPHA", "N_COMPONENTS", "METHODS", "format_table", "run_demo",
           "main"]


def main(argv=None) -> int:
    """``python -m bcnmf.demo [options]``: the same as ``bcnmf demo [options]``."""
    from .cli import main as cli_main

    return cli_main(["demo", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
