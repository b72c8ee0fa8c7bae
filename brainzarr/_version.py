"""The package version (its own module, so that any module can import it without a cycle)."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("brainzarr")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"


def generated_by() -> list[dict]:
    """The ``GeneratedBy`` entry of a record brainzarr writes beside its files (BIDS derivatives)."""
    return [{"Name": "brainzarr", "Version": __version__}]


def made_by_brainzarr(record) -> bool:
    """Whether a JSON record (a sidecar, ``evaluation.json``) names brainzarr in ``GeneratedBy``."""
    entries = record.get("GeneratedBy", []) if isinstance(record, dict) else []
    return any(isinstance(entry, dict) and entry.get("Name") == "brainzarr" for entry in entries)
