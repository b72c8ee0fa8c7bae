"""Is a store whole? Every chunk of its voxel arrays present and decodable, no leftovers.

:func:`check_store` walks ``expression`` and every result group's voxel arrays, reads every
chunk (checking its crc32c checksum where the store has one) and reports what is damaged, the
scratch folders dead writers left, and the command that rebuilds what is lost. With
``repair=True`` it removes those scratch folders and marks the expression's damaged row blocks
as unwritten, so that running the same build again re-creates exactly them.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr

from ._atomic import remove_stale_partials, stale_partials
from ._location import open_group, zarr_store
from ._zarr import quiet_zarr
from .exceptions import ChunkError
from .store import Store, list_groups

__all__ = ["check_store", "CheckReport", "rebuild_command"]


@dataclass
class CheckReport:
    """What :func:`check_store` found."""

    store: Path
    arrays_checked: int = 0
    chunks_checked: int = 0
    damaged: dict = field(default_factory=dict)  # array -> [(chunk index, reason)]
    partials: list = field(default_factory=list)
    repaired: list = field(default_factory=list)
    commands: list = field(default_factory=list)
    unfinished: list = field(default_factory=list)  # expression's row blocks a build has yet to write

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.partials and not self.unfinished

    def describe(self) -> str:
        lines = [f"checked {self.chunks_checked:,} chunks or shards of {self.arrays_checked} arrays in {self.store}"]
        for array, items in self.damaged.items():
            lines.append(f"DAMAGED {array}: {len(items)} chunk(s) or shard(s)")
            for index, reason in items[:10]:
                lines.append(f"  {index}: {reason}")
            if len(items) > 10:
                lines.append(f"  ... and {len(items) - 10} more")
        for path in self.partials:
            lines.append(f"LEFTOVER {path} (scratch folder of a writer that died)")
        if self.unfinished:
            lines.append(
                f"UNFINISHED build: {len(self.unfinished)} row block(s) of expression not written yet "
                "(the build stopped before it finished)"
            )
        for item in self.repaired:
            lines.append(f"REPAIRED {item}")
        if self.commands:
            lines.append("to rebuild what is lost, run:" if self.damaged else "to finish the build, run:")
            lines += [f"  {c}" for c in self.commands]
        if self.ok:
            lines.append("the store is whole")
        return "\n".join(lines)


def _voxel_arrays(store: Store) -> list[str]:
    """Paths (inside the store) of the arrays to check: expression and the voxel arrays of every
    result group (fits, the evaluation's target maps, groups of one's own)."""
    out = ["expression"]
    for group in list_groups(store, prefix=None):
        for child in sorted((store.path / group).iterdir()):
            meta = child / "zarr.json"
            if meta.exists():
                node = json.loads(meta.read_text())
                names = node.get("attributes", {}).get("_ARRAY_DIMENSIONS") or node.get("dimension_names") or []
                if node.get("node_type") == "array" and "voxel" in names:
                    out.append(f"{group}/{child.name}")
    return out


def _check_array(store: Store, name: str) -> tuple[int, list]:
    with quiet_zarr():
        array = zarr.open_array(zarr_store(store.path), path=name, mode="r")
    damaged = []
    blocks = getattr(array, "shards", None) or array.chunks  # a sharded array's blocks are its shards
    grid = [range(-(-s // c)) for s, c in zip(array.shape, blocks)]
    n = 0
    for index in np.ndindex(*[len(g) for g in grid]):
        n += 1
        try:
            array.get_block_selection(index)
        except ChunkError as exc:
            damaged.append((index, str(exc).split(";")[0]))
        except Exception as exc:  # a codec's own error for an undecodable chunk
            damaged.append((index, f"does not decode ({type(exc).__name__}: {exc})"))
    return n, damaged


def rebuild_command(store: Store) -> str | None:
    """The ``brainzarr build`` command that built (and so resumes) the store, when recorded."""
    args = store.provenance.get("build_args")
    if not args:
        return None
    words = ["brainzarr", "build"]
    for key, value in args.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            words.append(flag)
        elif isinstance(value, (list, tuple)):
            words += [flag, ",".join(str(v) for v in value)]
        else:
            words += [flag, str(value)]
    words += ["--out", str(store.path)]
    return shlex.join(words)


def check_store(path, *, repair: bool = False) -> CheckReport:
    """Check every chunk of a store's voxel arrays; with ``repair`` mend what can be mended here.

    Parameters
    ----------
    path : str, Path or Store
    repair : bool
        Remove scratch folders of dead writers, and mark damaged row blocks of ``expression`` as
        not built (the next run of the same build re-creates them).
    """
    store = path if isinstance(path, Store) else Store(path, allow_incomplete=True)
    report = CheckReport(store.path)
    for name in _voxel_arrays(store):
        n, damaged = _check_array(store, name)
        report.arrays_checked += 1
        report.chunks_checked += n
        if damaged:
            report.damaged[name] = damaged
    report.partials = [] if store.remote else [str(p) for p in stale_partials(store.path)]
    if not store.complete:  # the blocks the build has not marked done are to come, not damaged
        with quiet_zarr():
            done = np.asarray(open_group(store.path, mode="r")["build_chunk_done"][:])
        report.unfinished = [int(b) for b in np.flatnonzero(done == 0)]
        pending = set(report.unfinished)
        kept = [(index, reason) for index, reason in report.damaged.pop("expression", []) if index[0] not in pending]
        if kept:
            report.damaged["expression"] = kept
    blocks = sorted({index[0] for index, _ in report.damaged.get("expression", [])})
    command = rebuild_command(store) or "the `brainzarr build` command that made this store (same settings)"
    if blocks:
        report.commands.append(command + ("" if repair else "   (after `brainzarr check --repair`)"))
    elif report.unfinished:
        report.commands.append(command)
    for name in report.damaged:
        if name.startswith("representations/"):
            parts = name.rsplit("/", 1)[0].split("/")
            method, dim = parts[-2], parts[-1].lstrip("k")
            command = f"brainzarr fit {shlex.quote(str(store.path))} --methods {method} --dims {dim} --overwrite"
            if len(parts) == 4:  # representations/<split>/<method>/k<dim>: refitted on the split it was fitted on
                command += f" --split {parts[1]}"
            if command not in report.commands:
                report.commands.append(command)
    if repair:
        for removed in [] if store.remote else remove_stale_partials(store.path):
            report.repaired.append(f"removed {removed}")
        report.partials = []
        if blocks:
            with quiet_zarr():
                root = open_group(store.path, mode="r+")
                expression = root["expression"]
                for index, _ in report.damaged["expression"]:  # damaged files go; the build writes them anew
                    damaged_file = store.path / "expression" / expression.metadata.encode_chunk_key(index)
                    damaged_file.unlink(missing_ok=True)
                done = root["build_chunk_done"]
                for b in blocks:
                    done[b] = 0
                root.attrs.update({"build_complete": False})
            report.repaired.append(f"marked row block(s) {blocks} of expression as not built")
    return report
