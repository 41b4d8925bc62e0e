"""End-to-end demo on the bundled mouse-protein data: ``bcnmf demo`` (or ``python -m bcnmf.demo``).

Fits PCA, plain NMF and bcNMF to the mouse-protein target against its background over several
fitting seeds, scores the fits against the genotype labels and writes a run folder with the HTML
report.  bcNMF runs with the library's defaults (alpha chosen without labels) and no shared
topics; NMF gets the same budget (restarts and iterations); three near-empty target cells
(missing proteins filled with 0 by the loader) are kept and reported in the printed notes.
:func:`run_demo` does the work (:mod:`bcnmf._demo`, which documents the protocol and the files
written) and returns the results without printing; :func:`main` runs it as the command
line does (:mod:`bcnmf.cli` is the only place that prints).
"""

from __future__ import annotations

import sys

from ._demo import (DEFAULT_OUT, DEFAULT_SEEDS, DEMO_ALPHA, DEMO_MAX_ITER, DEMO_N_INIT,
                    DEMO_N_SHARED, METHODS, N_COMPONENTS, format_notes, format_table, run_demo)

__all__ = ["DEFAULT_OUT", "DEFAULT_SEEDS", "DEMO_ALPHA", "DEMO_MAX_ITER", "DEMO_N_INIT",
           "DEMO_N_SHARED", "N_COMPONENTS", "METHODS", "format_notes", "format_table",
           "run_demo", "main"]


def main(argv=None) -> int:
    """``python -m bcnmf.demo [options]``: the same as ``bcnmf demo [options]``."""
    from .cli import main as cli_main

    return cli_main(["demo", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
