"""``a3ext demo [--out DIR] [--quick] [--parts ...] [--force]``: run the whole assignment
and write an offline HTML report (``DIR/index.html``), its PNGs and ``DIR/metrics.json``.

May import: :mod:`a3ext._cli_util` and the demo's :mod:`.stage_list` and :mod:`.runner`
(lazily, so ``a3ext --help`` stays fast); nothing imports it but the package and the face.
"""
from __future__ import annotations

import argparse

from .._cli_util import user_errors
from .stage_list import STAGES

__all__ = ["register_cli", "run_cli"]


def _parts(text: str) -> list[str]:
    parts = [p for p in text.replace(",", " ").split() if p]
    bad = [p for p in parts if p not in STAGES]
    if bad or not parts:
        raise argparse.ArgumentTypeError(f"expected stage names among {', '.join(STAGES)} (comma-separated), "
                                         f"but got {text!r}")
    return parts


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, but got {text!r}")
    return value


def run_cli(args: argparse.Namespace) -> int:
    """The ``demo`` subcommand: 0 when every stage succeeded, 1 when one failed."""
    from .runner import run_demo

    parts = [p for group in (args.parts or [list(STAGES)]) for p in group]
    result = run_demo(args.out, quick=args.quick, parts=parts, tiny=getattr(args, "tiny", False), force=args.force,
                      progress=not args.no_progress, threads=args.threads)
    print(result["index"])
    return 0 if result["ok"] else 1


def register_cli(subparsers) -> None:
    """Add ``demo`` to the ``a3ext`` parser (``set_defaults(func=run_cli)``)."""
    p = subparsers.add_parser(
        "demo", help="run every part of the assignment and write an HTML report",
        description="Run captioning, network visualization, style transfer and GANs on the embedded data and "
                    "write DIR/index.html (one offline page), its PNGs and DIR/metrics.json. An interrupted run "
                    "resumes from the stages it completed; a failed stage is reported and the others still run "
                    "(exit code 1).")
    p.add_argument("--out", default="a3ext_demo", metavar="DIR", help="output folder (default: ./a3ext_demo)")
    p.add_argument("--quick", action="store_true", help="smaller settings: under 10 minutes on 2 cores")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # test settings, seconds per stage
    p.add_argument("--parts", type=_parts, nargs="+", metavar="PART",
                   help="stages to run, space- or comma-separated: captioning, visualization, style, gan (default: all)")
    p.add_argument("--force", action="store_true", help="rerun stages already completed in DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (the per-stage log lines stay)")
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="torch threads (default: torch's default, the number of cores); 1 helps on a busy machine")
    p.set_defaults(func=user_errors("a3ext demo", run_cli))
