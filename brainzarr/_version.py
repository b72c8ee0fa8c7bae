"""The package version (its own module, so that any module can import it without a cycle)."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("brainzarr")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"
