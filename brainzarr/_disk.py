"""Room on the disk before writing gigabytes: estimate, compare, refuse with one line."""

from __future__ import annotations

import shutil
from pathlib import Path

from .exceptions import InsufficientDiskError

__all__ = ["require_free", "human"]

#: left free on top of the estimate: the larger of 1 GiB and 2 % of the disk
_MARGIN_BYTES, _MARGIN_FRACTION = 1 << 30, 0.02


def human(nbytes: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(nbytes) < 1000 or unit == "TB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1000
    return f"{nbytes:.1f} TB"


def _existing(path: Path) -> Path:
    path = Path(path).resolve()
    while not path.exists():
        path = path.parent
    return path


def require_free(path, nbytes: int, what: str) -> None:
    """Raise :class:`InsufficientDiskError` unless the disk of ``path`` has room for ``nbytes``
    more (plus a margin), before anything is written."""
    usage = shutil.disk_usage(_existing(path))
    margin = max(_MARGIN_BYTES, int(_MARGIN_FRACTION * usage.total))
    if nbytes + margin > usage.free:
        raise InsufficientDiskError(
            f"{what} needs about {human(nbytes)} (plus {human(margin)} kept free); "
            f"{_existing(path)} has {human(usage.free)} free"
        )
