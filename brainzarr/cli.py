"""The ``brainzarr`` command line. Each sub-command lives in :mod:`brainzarr.commands`.

Messages go to the ``brainzarr`` logger (stderr, plain lines; ``--quiet`` keeps warnings and
errors only); results (tables, paths) go to stdout. Every failure is one line and a non-zero
exit unless ``--debug``; errors that a flag fixes name the flag.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import logging
import re
import sys
import warnings
from pathlib import Path

from ._validation import SPLIT_SYNONYMS, did_you_mean
from ._version import __version__
from .exceptions import BrainzarrError

#: sub-command modules, each with ``register(subparsers)`` that sets ``func`` on its parser.
COMMAND_MODULES = [
    "build",
    "info",
    "check",
    "export",
    "parcellate",
    "fit",
    "evaluate",
    "report",
    "reproduce",
    "inr",
    "demo",
]

log = logging.getLogger("brainzarr")


class _DefaultsHelp(argparse.HelpFormatter):
    """Each option's help ends with its default where the text does not give it already
    (``(default: nearest)``), as ``ArgumentDefaultsHelpFormatter`` does, without repeating a
    default said in words or showing those of flags."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        unsaid = default is None or default is False or default == argparse.SUPPRESS  # 0 is a default
        if not action.option_strings or unsaid or "default" in text.lower():
            return text
        if isinstance(default, (list, tuple)):
            default = ",".join(map(str, default))
        said = str(default).replace("%", "%%")
        if text.endswith(")"):  # "... (see `brainzarr inr`)": the default joins the last brackets
            return f"{text[:-1]}; default: {said})"
        return f"{text} (default: {said})"


class _Parser(argparse.ArgumentParser):
    """Reports a bad argument as one line (no usage block), as every other error; says each
    option's default in its help."""

    argv: list | None = None  # the command line being parsed, set by main() for its hints

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _DefaultsHelp)
        super().__init__(*args, **kwargs)

    def error(self, message):
        hint = (
            (_swallowed_store(message, self.argv, self) or _output_as_a_word(message, self.argv, self))
            if self.argv is not None
            else ""
        ) or _closest_choice(message)
        self.exit(2, f"{self.prog}: error: {message}{hint} (see {self.prog} --help)\n")


def _swallowed_store(message: str, argv: list, parser: argparse.ArgumentParser) -> str:
    """'; S was taken as one of --targets' values ...' when the store is missing because an
    option that takes several values (``--targets a b``) took it, as it does with the store last."""
    if not message.startswith("the following arguments are required") or "store" not in message:
        return ""
    from .store import is_store_root

    several = {s for a in parser._actions if a.nargs in ("+", "*") for s in a.option_strings}
    option = None
    for token in argv:
        if token.startswith("-"):
            option = token.split("=", 1)[0]
        elif option in several and (token.rstrip("/").endswith(".zarr") or is_store_root(Path(token))):
            return (
                f"; {token} was taken as one of the values of {option}, which takes several: name the store "
                f"first ({parser.prog} {token} {option} ...)"
            )
    return ""


def _closest_choice(message: str) -> str:
    """'; did you mean export?' for argparse's "invalid choice: 'exprot' (choose from ...)"."""
    found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if not found:
        return ""
    choices = re.findall(r"'([^']*)'", found.group(2))
    return did_you_mean(found.group(1), choices, SPLIT_SYNONYMS if "blocked" in choices else None)


def _output_as_a_word(message: str, argv: list, parser: argparse.ArgumentParser) -> str:
    """'; give s8.zarr with -o ...' when the required output is missing and the command line has a
    word the command takes no place for (``brainzarr build s8.zarr``, as ``brainzarr info s8.zarr``)."""
    if not message.startswith("the following arguments are required") or "-o/--out/--output" not in message:
        return ""
    words, takes_value = [], False
    for token in argv:
        if takes_value:
            takes_value = False
        elif token.startswith("-"):
            action = parser._option_string_actions.get(token.split("=", 1)[0])
            takes_value = "=" not in token and action is not None and action.nargs != 0
        else:
            words.append(token)
    commands = parser.prog.split()[1:]  # "brainzarr inr fit" -> inr, fit
    if words[: len(commands)] == commands:
        words = words[len(commands) :]
    positionals = [a for a in parser._actions if not a.option_strings]
    stray = words[len(positionals) :]
    if len(stray) != 1:
        return ""
    return f"; {parser.prog} takes what it writes as -o: {parser.prog} ... -o {stray[0]}"


def _add_common(parser: argparse.ArgumentParser) -> None:
    """--progress / --quiet on every leaf command."""
    for leaf in _parsers(parser):
        if any(isinstance(a, argparse._SubParsersAction) for a in leaf._actions):
            continue
        leaf.set_defaults(_leaf_parser=leaf)  # whose options an unknown argument is compared with
        names = {s for a in leaf._actions for s in a.option_strings}
        g = leaf.add_argument_group("output")
        if "--progress" not in names:
            g.add_argument(
                "--progress", action="store_true", help="always draw progress bars (default: only on a terminal)"
            )
        if "--quiet" not in names:
            g.add_argument("--quiet", action="store_true", help="only warnings and errors on stderr")


def _parsers(parser: argparse.ArgumentParser):
    """A parser and every sub-command's parser under it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="brainzarr", description="Whole-brain voxel x gene expression stores (AHBA) in xarray/Zarr.")
    parser.add_argument("--version", action="version", version=f"brainzarr {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"brainzarr.commands.{name}").register(sub)
    _add_common(parser)
    return parser


@contextlib.contextmanager
def _command_logging(quiet: bool):
    """brainzarr's messages on stderr, once each, for the duration of a command.

    They do not propagate to the root logger: a library that configures it on import (abagen
    calls ``logging.basicConfig``) would print each of them a second time, prefixed "INFO:".
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    saved = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(saved[0])  # setLevel, not .level: it also clears the loggers' cached levels
        log.propagate = saved[1]


#: what users of scikit-learn, nilearn or abagen may type -> brainzarr's option
SYNONYMS = {
    "--n-components": "--dims",
    "--n_components": "--dims",
    "--components": "--dims",
    "--random-state": "--seed",
    "--random_state": "--seed",
    "--epochs": "--max-epochs",
    "--n-epochs": "--max-epochs",
    "--max_epochs": "--max-epochs",
    "--n-jobs": "--workers",
    "--n_jobs": "--workers",
    "--output": "--out",
    "--labels": "--lut",  # nilearn's maskers take labels= or lut=
    "--lookup-table": "--lut",
    "--look-up-table": "--lut",
}


def _list_hints(extras, argv, leaf: argparse.ArgumentParser) -> list[str]:
    """'--methods pca nmf': for each option that takes one comma-separated list and is followed
    by words the command did not take, the list as one word (``--methods pca,nmf``)."""
    lists = {
        s for a in leaf._actions for s in a.option_strings if a.nargs is None and "comma-separated" in (a.help or "")
    }
    unplaced = sum(not token.startswith("-") for token in extras)  # words that went nowhere
    hints, i = [], 0
    while i < len(argv) and unplaced:
        name, sep, value = argv[i].partition("=")
        i += 1
        if name not in lists:
            continue
        values = [value] if sep else argv[i : i + 1]
        i += 0 if sep else 1
        stray = []
        while i < len(argv) and not argv[i].startswith("-") and len(stray) < unplaced:
            stray.append(argv[i])
            i += 1
        if values and stray:
            unplaced -= len(stray)
            hints.append(f"{name} takes one comma-separated list: {name} {','.join(values + stray)}")
    return hints


def unknown_arguments(extras, leaf: argparse.ArgumentParser, argv=()) -> str:
    """argparse's message for arguments a command does not take, with the option each one
    probably meant (a synonym from scikit-learn's vocabulary, or a near spelling), and for
    words after a comma-separated list's option (``argv``: the command line) the list they
    probably continue."""
    lists = _list_hints(extras, list(argv), leaf)
    if lists:
        return f"unrecognized arguments: {' '.join(extras)}; {'; '.join(lists)}"
    options = [s for a in leaf._actions for s in a.option_strings if s.startswith("--")]
    if "--store" in options:  # ``inr fit s.zarr``: the command takes its store as an option
        from .store import is_store_root

        stores = [t for t in extras if t.rstrip("/").endswith(".zarr") or is_store_root(Path(t))]
        if stores:
            return f"unrecognized arguments: {' '.join(extras)}; {leaf.prog} takes a store as --store {stores[0]}"
    hints = []
    for token in extras:
        name = token.split("=", 1)[0]
        if not name.startswith("-"):
            continue
        meant = SYNONYMS.get(name) or SYNONYMS.get(name.replace("_", "-"))
        if meant not in options:
            close = difflib.get_close_matches(name.replace("_", "-"), options, n=1, cutoff=0.75)
            meant = close[0] if close else None
        if meant is not None and meant != name:
            hints.append((name, meant))
    message = f"unrecognized arguments: {' '.join(extras)}"
    if len(hints) == 1:
        return f"{message}; did you mean {hints[0][1]}?"
    if hints:
        return f"{message}; did you mean {', '.join(f'{meant} for {name}' for name, meant in hints)}?"
    return message


def main(argv=None) -> int:
    parser = make_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    for each in _parsers(parser):
        each.argv = argv
    args, extras = parser.parse_known_args(argv)
    if extras:
        leaf = getattr(args, "_leaf_parser", parser)
        leaf.error(unknown_arguments(extras, leaf, argv))
    from .commands._args import refuse_outputs_in_a_store
    from .options import set_options

    leaf = getattr(args, "_leaf_parser", None)
    command = leaf.prog.removeprefix(f"{parser.prog} ") if leaf is not None else args.command  # "inr render"
    with _command_logging(getattr(args, "quiet", False)):
        try:
            with warnings.catch_warnings(), set_options(progress=True if getattr(args, "progress", False) else None):
                warnings.filterwarnings("ignore", message=".*(pkg_resources|unstable|Zarr format 3).*")
                warnings.simplefilter("ignore", FutureWarning)
                if not args.debug:
                    warnings.showwarning = _warning_line(command)
                refuse_outputs_in_a_store(args)
                return int(args.func(args) or 0)
        except KeyboardInterrupt:
            resume = getattr(args, "_resume", None)
            log.error("brainzarr: interrupted (%s)", resume(args) if resume else "run the same command again to resume")
            return 130
        except Exception as exc:  # every failure is one clear line unless --debug
            if args.debug:
                raise
            flags = {s for a in (leaf or parser)._actions for s in a.option_strings}
            log.error("brainzarr %s: error: %s", command, error_message(exc, flags))
            return 1


def _warning_line(command: str):
    """``warnings.showwarning`` for a command: one line on the log, as errors are, instead of
    Python's file, line number and source line (``--debug`` keeps those)."""

    def show(message, category, filename, lineno, file=None, line=None):
        log.warning("brainzarr %s: warning: %s", command, " ".join(str(message).split()))

    return show


def flag(name: str, value=True) -> str:
    """A parameter as the command line spells it: overwrite=True -> --overwrite."""
    text = "--" + name.replace("_", "-")
    return text if value is True else f"{text} {value}"


def error_message(exc: BaseException, flags=None) -> str:
    """One line for an error, with flag hints for brainzarr's own errors. ``flags``: the option
    strings of the command that failed; a hint it could not follow (a flag it does not take) is
    left out rather than given wrong."""
    if isinstance(exc, BrainzarrError):
        text = exc.message.strip().splitlines()[0] if exc.message.strip() else type(exc).__name__
        hints = [flag(k, v) for k, v in exc.options.items()]
        if hints and (flags is None or all(h.split()[0] in flags for h in hints)):
            text += "; pass " + " ".join(hints)
        return text
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, KeyError):
        text = text.strip("'\"")
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
        if exc.filename and str(exc.filename) not in text:
            text += f": {exc.filename}"
    if isinstance(exc, (ValueError, OSError, KeyError, ImportError, ConnectionError)):
        return text
    if _from_object_storage(exc):  # the endpoint went away, or refused a request, mid-job
        unreachable = any(c.__name__ == "ConnectionError" for c in type(exc).__mro__)
        return f"{'cannot reach the object store' if unreachable else 'object storage'}: {text}"
    return f"{type(exc).__name__}: {text} (run with --debug for the traceback)"


def _from_object_storage(exc: BaseException) -> bool:
    """Whether ``exc`` is botocore's (s3fs's client), told by module so that botocore need not
    be installed for the CLI to run."""
    return type(exc).__module__.partition(".")[0] in ("botocore", "aiobotocore")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
