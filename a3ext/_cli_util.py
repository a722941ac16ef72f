"""The one error-reporting path of every ``a3ext`` command line.

A bad input -- a missing, unreadable or corrupt file (an image that is not an image,
a damaged checkpoint, a missing data directory), an unknown asset or class, a wrong
value -- is answered with ONE line on stderr that names it, and exit status 2::

    a3ext visualize saliency: --image notes.jpg: cannot identify image file 'notes.jpg' (A3EXT_TRACEBACK=1 ...)

Each part wraps its handlers with :func:`user_errors` when it registers them (so a
handler called directly, as the tests do, behaves the same), and the face
(:mod:`a3ext.cli`) runs every handler through :func:`run_handler` too (so a part that
does not wrap its handlers, like ``a3ext assets``, is covered). A handler that reads a
file given on the command line does it inside :func:`reading`, which names the option
and the file whatever the reader's own message says. ``A3EXT_TRACEBACK=1`` in the
environment re-raises instead, for the full traceback.

May import: the standard library only. The parts import this module; it imports no
part (their exception classes are looked up in ``sys.modules`` when one is raised).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import sys
from collections.abc import Callable, Iterator

__all__ = ["UserInputError", "reading", "describe", "is_user_error", "run_handler", "user_errors",
           "standalone_main", "TRACEBACK_ENV", "EXIT_USER_ERROR"]

#: Set to a non-empty value to get the traceback instead of the one-line message.
TRACEBACK_ENV = "A3EXT_TRACEBACK"
#: The exit status of a bad input (argparse uses 2 for bad options too).
EXIT_USER_ERROR = 2

# a3ext exceptions that mean a bad input although they are not ValueError/OSError
# subclasses: (module, class name), found in sys.modules when the module was loaded.
_PART_ERRORS = (("a3ext.models", "WeightsError"), ("a3ext.assets", "AssetUnavailableError"))
_INPUT_ERRORS = (OSError, ValueError, TypeError, KeyError, EOFError, pickle.UnpicklingError)


class UserInputError(Exception):
    """A bad input given on the command line; the message names it."""


def describe(exc: BaseException) -> str:
    """``exc`` as one line: its message's first line (an ``OSError`` with a file name as
    ``reason: file``; a ``KeyError`` with its type, since its message is only the key)."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.strerror}: {os.fsdecode(exc.filename)}"
        if exc.filename2 is not None:
            text += f" -> {os.fsdecode(exc.filename2)}"
    else:
        text = str(exc)
        if isinstance(exc, KeyError):
            text = f"KeyError: {text}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


@contextlib.contextmanager
def reading(path, what: str) -> Iterator[None]:
    """Read the file ``path`` given as ``what`` (an option name such as ``--image``):
    any error while reading becomes a :class:`UserInputError` naming both (chained to
    the original)."""
    try:
        yield
    except UserInputError:
        raise
    except Exception as exc:
        reason = describe(exc)
        name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else str(path)
        raise UserInputError(f"{what}: {reason}" if name in reason else f"{what} {name}: {reason}") from exc


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` means a bad input (one line, exit 2) rather than a bug."""
    if isinstance(exc, (UserInputError, *_INPUT_ERRORS)):
        return True
    for module, name in _PART_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return True
    return False


def run_handler(prog: str, handler: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """``handler(args)`` as an exit status; a bad input prints ``prog: <one line>`` on
    stderr and gives :data:`EXIT_USER_ERROR` (``A3EXT_TRACEBACK=1``: re-raised)."""
    try:
        return int(handler(args) or 0)
    except Exception as exc:
        if not is_user_error(exc) or os.environ.get(TRACEBACK_ENV):
            raise
        print(f"{prog}: {describe(exc)} ({TRACEBACK_ENV}=1 shows the traceback)", file=sys.stderr)
        return EXIT_USER_ERROR


def user_errors(prog: str, handler: Callable[[argparse.Namespace], int | None]) -> Callable[[argparse.Namespace], int]:
    """``handler`` run through :func:`run_handler` (what a part passes to ``set_defaults(func=...)``)."""
    def func(args: argparse.Namespace) -> int:
        return run_handler(prog, handler, args)

    func.__name__ = getattr(handler, "__name__", "handler")
    func.__doc__ = handler.__doc__
    return func


def standalone_main(register_cli: Callable, argv: list[str], prog: str = "a3ext") -> int:
    """Parse ``argv`` with only the subcommands ``register_cli`` adds and run the chosen
    handler: a part's own entry point (``python -m a3ext.gan.cli``, what ``torchrun -m``
    runs) without importing the face."""
    parser = argparse.ArgumentParser(prog=prog)
    register_cli(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return EXIT_USER_ERROR
    return run_handler(f"{prog} {args.command}", args.func, args)
