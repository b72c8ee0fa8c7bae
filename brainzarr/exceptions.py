"""Every error brainzarr raises on purpose derives from :class:`BrainzarrError`.

Each class also derives from the builtin it replaced, so ``except ValueError`` (or
``FileExistsError``, ``ImportError``...) keeps working. An error that a parameter can fix
names it in ``options`` (e.g. ``{"overwrite": True}``): the message then ends with the Python
spelling (``pass overwrite=True``), and the command line prints its own flag instead
(``--overwrite``), see :func:`brainzarr.cli.error_message`.

Python's protocol errors stay builtins: ``IndexError`` from indexing out of range,
``AttributeError`` for a missing attribute, ``NotImplementedError`` from an abstract method; so
does a ``RuntimeError`` from a check of brainzarr's own bookkeeping, which reports a bug.
"""

from __future__ import annotations

__all__ = [
    "BrainzarrError",
    "StoreError",
    "StoreExistsError",
    "ResultExistsError",
    "ResultNotFoundError",
    "StoreLockedError",
    "ChunkError",
    "InsufficientDiskError",
    "CheckpointMismatchError",
    "MethodUnavailableError",
    "MissingDependencyError",
    "UnknownGeneError",
    "InputError",
    "InputTypeError",
    "DataNotFoundError",
    "StoreReadOnlyError",
    "ClusterError",
    "python_spelling",
]


def python_spelling(options: dict) -> str:
    """``{"overwrite": True}`` -> ``overwrite=True``."""
    return ", ".join(f"{name}={value!r}" for name, value in options.items())


class BrainzarrError(Exception):
    """Base class of brainzarr's errors.

    Parameters
    ----------
    message : str
        What is wrong, in one line.
    options : dict, optional
        Parameters that would fix it, e.g. ``{"overwrite": True}``.
    """

    def __init__(self, message: str = "", *, options: dict | None = None):
        super().__init__(message)
        self.message = message
        self.options = dict(options or {})

    def __str__(self) -> str:
        if not self.options:
            return self.message
        return f"{self.message}; pass {python_spelling(self.options)}"


class StoreError(BrainzarrError, ValueError):
    """The path is not a brainzarr store, or not one this version can read."""


class StoreExistsError(BrainzarrError, FileExistsError):
    """The output exists and brainzarr will not replace it: another store, a store built with other
    settings, a file brainzarr did not write, or not a store at all."""


class ResultExistsError(BrainzarrError, FileExistsError):
    """A result group exists and ``overwrite`` was not given."""


class ResultNotFoundError(BrainzarrError, KeyError):
    """A result (method and dimension, on a split) that the store does not hold."""


class StoreLockedError(BrainzarrError, RuntimeError):
    """Another process is writing the store."""


class ChunkError(BrainzarrError, OSError):
    """A chunk of an array is missing or does not decode (a damaged store)."""


class InsufficientDiskError(BrainzarrError, OSError):
    """The disk lacks room for what a job would write; nothing was written."""


class CheckpointMismatchError(BrainzarrError, ValueError):
    """A checkpoint in ``checkpoint_dir`` was written for other data or settings."""


class MethodUnavailableError(BrainzarrError, ImportError):
    """A method whose module or optional dependency is not installed."""


class MissingDependencyError(BrainzarrError, ImportError):
    """An optional dependency (e.g. PyTorch) is not installed."""


class UnknownGeneError(BrainzarrError, ValueError):
    """Genes were asked for that the data does not have."""


class InputError(BrainzarrError, ValueError):
    """Input that brainzarr cannot use as given: a parameter's value, a table, an atlas, a mask,
    a target map, a device."""


class InputTypeError(BrainzarrError, TypeError):
    """An argument of a type that brainzarr does not take (a path where a Grid is needed...)."""


class DataNotFoundError(BrainzarrError, FileNotFoundError):
    """A file or folder that brainzarr was pointed to is not there: the AHBA donor folders, a
    mask, an atlas, target maps, a fitted model."""


class StoreReadOnlyError(BrainzarrError, PermissionError):
    """The store cannot be written (a read-only folder); nothing was computed."""


class ClusterError(BrainzarrError, ConnectionError):
    """The Dask scheduler that was named cannot be reached."""
