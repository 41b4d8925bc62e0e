"""Command-line entry points: argument parsing and printing only; the work is
done by library functions."""

from __future__ import annotations

import argparse

from .demo import DEFAULT_OUT, N_COMPONENTS, format_table, run_demo


def demo_main(argv=None) -> int:
    """Command-line entry point (``python -m bcnmf.demo``); returns 0."""
    parser = argparse.ArgumentParser(
        prog="python -m bcnmf.demo",
        description="bcNMF vs PCA and NMF on the bundled mouse-protein data (no network).")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--seeds", type=int, default=5,
                        help="number of fitting seeds (default: 5)")
    parser.add_argument("--quiet", action="store_true",
                        help="print only the paths written")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    results = run_demo(args.out, args.seeds)
    if not args.quiet:
        print(format_table(results))
        p = results["params"]
        print(f"\nbcNMF: n_components={N_COMPONENTS}, alpha={p['alpha']} "
              f"(alpha_raw_={p['alpha_raw_']:.6g}), n_iter_={p['n_iter_']} (seed 0)")
        if results["warnings"]:
            print(f"\n{len(results['warnings'])} warning(s) raised by the fits:")
            for note in results["warnings"]:
                print(f"  {note}")
        print("\nFiles written:")
    for path in results["files"].values():
        print(path)
    return 0
