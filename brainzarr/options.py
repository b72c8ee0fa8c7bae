"""Global settings, as :func:`xarray.set_options`: progress bars and the dask.distributed client.

>>> import brainzarr
>>> with brainzarr.set_options(progress=False):
...     pass  # no bars in here
>>> brainzarr.get_options()["progress"] is None   # the default: bars on a terminal only
True

``progress``
    ``True`` always draws a bar, ``False`` never, ``None`` (default) only when stderr is a
    terminal, so a log file gets no bars unless asked. The environment variable
    ``BRAINZARR_PROGRESS`` (``1``/``0``) seeds the default when brainzarr is imported.
``client``
    A :class:`distributed.Client` every streamed pass runs on; ``None`` (default) uses the
    current default client when one exists (``with distributed.Client(...):``), else local
    threads.
"""

from __future__ import annotations

import os
import sys

from .exceptions import InputError, InputTypeError

__all__ = ["set_options", "get_options", "current_client", "show_progress"]


def _progress_from_env():
    value = os.environ.get("BRAINZARR_PROGRESS")
    if value is None or value.strip().lower() in ("", "auto"):
        return None
    return value.strip().lower() not in ("0", "false", "no", "off")


OPTIONS: dict = {"progress": _progress_from_env(), "client": None}


def _check_progress(value):
    if value == "auto":
        return None
    if value not in (None, True, False):
        raise InputError(f"progress must be True, False or None ('auto'), got {value!r}")
    return value


def _check_client(value):
    if value is not None and not (hasattr(value, "compute") and hasattr(value, "submit")):
        raise InputTypeError(f"client must be a distributed.Client or None, got {type(value).__name__}")
    return value


_VALIDATORS = {"progress": _check_progress, "client": _check_client}


class set_options:  # noqa: N801 - a function-like context manager, as xarray's
    """Set options for the rest of the session, or for a ``with`` block.

    Parameters
    ----------
    **options
        ``progress`` (bool or None: progress bars always, never, or on a terminal only) and
        ``client`` (a ``distributed.Client`` or None: the cluster streamed passes run on).
    """

    def __init__(self, **options):
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise InputError(f"unknown option(s) {', '.join(unknown)}; options: {', '.join(OPTIONS)}")
        checked = {name: _VALIDATORS[name](value) for name, value in options.items()}
        self._old = {name: OPTIONS[name] for name in checked}
        OPTIONS.update(checked)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        OPTIONS.update(self._old)


def get_options() -> dict:
    """A copy of the current options."""
    return dict(OPTIONS)


def show_progress(progress: bool | None = None) -> bool:
    """Whether to draw bars: ``progress`` when given, else the option, else on a terminal."""
    if progress is None:
        progress = OPTIONS["progress"]
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    return bool(progress)


def current_client(client=None):
    """The client to run on: ``client``, else the option, else dask.distributed's default client
    (only looked up when distributed is already imported), else None (local threads)."""
    if client is not None:
        return _check_client(client)
    if OPTIONS["client"] is not None:
        return OPTIONS["client"]
    if "distributed" in sys.modules:
        try:
            from distributed import default_client

            return default_client()
        except (ValueError, ImportError):
            return None
    return None
