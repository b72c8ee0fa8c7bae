"""Atomic writes: a directory or a file appears whole or not at all.

A scratch path sits beside the final one and is renamed over it on success (the previous
version survives any interruption). Scratch directories are named
``.<name>.partial-<host>-<pid>-<token>`` so that a later writer can tell a dead writer's
leftovers (:func:`stale_partials`) from a live one's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import uuid
from pathlib import Path

from ._location import user_path
from .exceptions import StoreExistsError

__all__ = [
    "atomic_directory",
    "atomic_file",
    "write_file",
    "write_text",
    "suffix_of",
    "stale_partials",
    "remove_stale_partials",
    "pid_alive",
    "refuse_foreign_outputs",
    "HOST",
]

#: a short tag of this machine in scratch names (hostnames may hold dots and dashes)
HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
_PARTIAL = ".partial-"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _scratch_name(final: Path) -> Path:
    return final.parent / f".{final.name}{_PARTIAL}{HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def atomic_directory(final, *, replace: bool = True):
    """Yield a scratch directory path to fill; on success it becomes ``final``.

    The scratch folder is created empty. With ``replace`` an existing ``final`` is swapped out
    (two renames) and then removed; without it, an existing ``final`` raises FileExistsError
    at the swap. On any failure the scratch folder is removed and ``final`` is untouched.
    """
    final = user_path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = _scratch_name(final)
    scratch.mkdir()
    try:
        yield scratch
        old = None
        if final.exists():
            if not replace:
                raise StoreExistsError(f"{final} appeared while it was being written")
            old = final.parent / f".{final.name}.old-{HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            final.rename(old)
        scratch.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(final, *, suffix: str = ""):
    """Yield a temporary path beside ``final``; on success it replaces ``final`` (os.replace).

    ``suffix`` ends the temporary name (writers that choose a format by the name, e.g. nibabel's
    ``.nii.gz``).
    """
    final = user_path(final)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_file(path, write) -> Path:
    """``write(scratch_path)``, then the scratch file (beside ``path``, with its suffix, so that
    writers choosing a format by the name choose the same) renamed over ``path``: the file
    appears whole or not at all. Returns ``path``."""
    path = user_path(path)
    with atomic_file(path, suffix=suffix_of(path)) as tmp:
        write(tmp)
    return path


def suffix_of(path) -> str:
    """The suffix that says a file's format: ``.nii.gz`` whole, else the last one."""
    path = Path(path)
    return ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix


def write_text(path, text: str) -> Path:
    """``Path(path).write_text(text, encoding="utf-8")``, whole or not at all."""
    return write_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _owner(name: str):
    """(host, pid) of a scratch or old-version name, or None."""
    for marker in (_PARTIAL, ".old-"):
        if marker in name:
            parts = name.rsplit(marker, 1)[1].split("-")
            if len(parts) == 3 and parts[1].isdigit():
                return parts[0], int(parts[1])
    return None


def stale_partials(root) -> list[Path]:
    """Scratch folders and files under ``root`` left by writers on this machine that are dead."""
    root = Path(root)
    found = []
    if not root.exists():
        return found
    for dirpath, dirnames, filenames in os.walk(root):
        for name in list(dirnames) + filenames:
            owner = _owner(name) if name.startswith(".") else None
            if owner is None:
                continue
            host, pid = owner
            if host == HOST and not pid_alive(pid):
                found.append(Path(dirpath) / name)
                if name in dirnames:
                    dirnames.remove(name)
    return sorted(found)


def remove_stale_partials(root) -> list[Path]:
    """Remove :func:`stale_partials` and return what was removed."""
    removed = stale_partials(root)
    for path in removed:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return removed


def sidecar_path(path) -> Path:
    """The JSON sidecar of a file, as BIDS names it: the same name, its format's suffix replaced
    by ``.json`` (``dk.csv`` -> ``dk.json``, ``apoe.nii.gz`` -> ``apoe.json``)."""
    path = user_path(path)
    return path.with_name(path.name[: len(path.name) - len(suffix_of(path))] + ".json")


def refuse_foreign_outputs(folder, names, *, ours: bool, job: str) -> None:
    """Stop before ``job`` writes into ``folder`` when a file it would replace (one of ``names``)
    is there and the folder is not one brainzarr wrote (``ours``): a researcher's own
    ``prediction.csv`` or ``index.html`` is never written over."""
    folder = user_path(folder)
    clash = [name for name in names if (folder / name).exists()]
    if clash and not ours:
        shown = ", ".join(clash[:3]) + (f" and {len(clash) - 3} more" if len(clash) > 3 else "")
        raise StoreExistsError(
            f"{folder} holds {shown}, which brainzarr did not write and {job} would replace: give another folder"
        )
