"""Every error brainzarr raises on purpose derives from :class:`BrainzarrError`.

Each class also derives from the builtin it replaced, so ``except ValueError`` (or
``FileExistsError``, ``ImportError``...) keeps working. An error that a parameter can fix
names it in ``options`` (e.g. ``{"overwrite": True}``): the message then ends with the Python
spelling (``pass overwrite=True``), and the command line prints its own flag instead
(``--overwrite``), see :func:`brainzarr.cli.error_message`.
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
    "DataNotFoundError",
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
    """The output exists: another store, a store built with other settings, or not a store at all."""


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
    """Input (a table, an atlas, a mask, a device) that brainzarr cannot use as given."""


class DataNotFoundError(BrainzarrError, FileNotFoundError):
    """Input data (e.g. the AHBA donor folders) is not where it was looked for."""
