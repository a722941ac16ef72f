"""The `a3ext` command line: one subcommand per part of the project.

    a3ext demo                the whole assignment end to end, as an HTML report
    a3ext selftest            every op once against the float64 reference
    a3ext caption ...         image captioning: dataset, training, sampling, BLEU
    a3ext visualize ...       saliency maps, attributions, fooling images, class visualization
    a3ext style ...           neural style transfer, feature inversion, texture synthesis
    a3ext gan ...             GAN training, sampling, semi-supervised learning
    a3ext assets list|fetch   the offline photos, paintings, digits and weights

The face: each part adds its subcommand through its own ``register_cli(subparsers)``
(listed in ``_PARTS``, imported lazily); this module runs the chosen handler through
:func:`a3ext._cli_util.run_handler`, the one error-reporting path of every subcommand
(a bad file or value: one line naming it on stderr, exit status 2;
``A3EXT_TRACEBACK=1`` for the traceback).

May import: anything in a3ext (lazily, the parts' CLI modules); nothing in a3ext imports
it (``__main__`` and the ``a3ext`` script call :func:`main`).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ._cli_util import run_handler

# (module, function) pairs that each add their subcommand; imported lazily so
# `a3ext --help` stays fast and one broken part does not break the others.
_PARTS = [
    ("a3ext.demo.cli", "register_cli"),
    ("a3ext.captioning.cli", "register_cli"),
    ("a3ext.visualization.cli", "register_cli"),
    ("a3ext.style.cli", "register_cli"),
    ("a3ext.gan.cli", "register_cli"),
    ("a3ext.assets", "register_cli"),
]


def _selftest(args: argparse.Namespace) -> int:
    from . import selftest

    return 0 if selftest.run(seed=args.seed) else 1


def _version() -> str:
    import torch

    from . import __version__

    return f"a3ext {__version__} (torch {torch.__version__})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="a3ext",
        description="C++-accelerated RNN captioning, network visualization, style transfer and GANs.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("selftest", help="run every op once against the float64 reference and print a table")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_selftest)
    for module, fn in _PARTS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            # the part itself is absent from this checkout: skip it; a missing
            # dependency *inside* a present part is a real error
            if exc.name is None or not (module == exc.name or module.startswith(exc.name + ".")):
                raise
            continue
        getattr(mod, fn)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    return run_handler(f"a3ext {args.command}", args.func, args)


if __name__ == "__main__":
    sys.exit(main())
