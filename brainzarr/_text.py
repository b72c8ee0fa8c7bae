"""Text files that users give (region tables, look-up tables), whatever tool saved them."""

from __future__ import annotations

from pathlib import Path

from .exceptions import InputError

__all__ = ["read_user_text", "text_head"]


def read_user_text(path, what: str) -> str:
    """The text of ``path``: UTF-8 (a spreadsheet's byte-order mark dropped), else Latin-1 (an
    older tool's accented names), not the locale's encoding; a binary file is refused, naming
    ``what`` the file was given as."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None if b"\0" in raw else raw.decode("latin-1")
    if text is None or "\0" in text:
        raise InputError(f"{path} is not {what}: it is not text (an image given as {what}?)")
    return text


def text_head(path, n: int) -> str:
    """The first ``n`` characters of a UTF-8 text file, or "" when it cannot be read as one: how
    brainzarr knows a file it wrote (a table's columns, a report's title) before writing over it."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(n)
    except (OSError, UnicodeDecodeError):
        return ""
