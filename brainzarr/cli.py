"""The ``brainzarr`` command line. Each sub-command lives in :mod:`brainzarr.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from . import __version__

#: sub-command modules, each with ``register(subparsers)`` that sets ``func`` on its parser.
COMMAND_MODULES = ["build", "info", "export", "fit", "evaluate", "report", "inr", "demo"]


class UserError(Exception):
    """A problem with the user's input: reported as one line, no traceback."""


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainzarr", description="Whole-brain voxel x gene expression stores (AHBA) in xarray/Zarr."
    )
    parser.add_argument("--version", action="version", version=f"brainzarr {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"brainzarr.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"brainzarr.commands.{name}":
                raise
            continue  # a command not written yet
        module.register(sub)
    return parser


def main(argv=None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*(pkg_resources|unstable|Zarr format 3).*")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("brainzarr: interrupted (run the same command again to resume)", file=sys.stderr)
        return 130
    except Exception as exc:  # every failure is one clear line unless --debug
        if args.debug:
            raise
        print(f"brainzarr {args.command}: error: {_message(exc)}", file=sys.stderr)
        return 1


def _message(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, KeyError):
        text = text.strip("'\"")
    if isinstance(exc, (UserError, ValueError, FileNotFoundError, FileExistsError, KeyError)):
        return text
    return f"{type(exc).__name__}: {text} (run with --debug for the traceback)"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
