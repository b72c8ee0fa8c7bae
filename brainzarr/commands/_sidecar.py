"""The JSON sidecars that commands write beside their files, as BIDS describes derivatives:
what the file holds, where it came from, and which brainzarr made it."""

from __future__ import annotations

import json
from pathlib import Path

from .._atomic import sidecar_path, write_text

__all__ = ["sidecar_path", "write_sidecar"]


def write_sidecar(path, record: dict) -> Path:
    """Write ``record`` (with ``GeneratedBy``: brainzarr and its version) as the sidecar of
    ``path``, whole or not at all; returns the sidecar's path."""
    from .._version import __version__

    record = {**record, "GeneratedBy": [{"Name": "brainzarr", "Version": __version__}]}
    return write_text(sidecar_path(path), json.dumps(record, indent=2) + "\n")
