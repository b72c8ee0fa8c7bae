"""Whole-row blocks of a 2-D Zarr array, read fast: the reads behind every streamed pass.

A pass over the store (PCA's power iterations, NMF's epochs, the auto-encoder's streamed
batches) reads blocks of rows x every gene, i.e. one row of chunks (4096 x 128 each, 123 of
them for 15,633 genes). zarr-python 3.1 spends more time per chunk than decoding it, so
:class:`RowBlockReader` decodes the chunks itself, in a thread pool, each into a reused
per-thread buffer (fresh buffers cost more in page faults than the decoding), when the array
is in the format brainzarr writes (Zarr v3 on a local directory, regular chunks, little-endian
bytes + zstd, optionally + crc32c, no sharding), and hands everything else to zarr unchanged.
Both paths give identical arrays (tested). The measurements: ``docs/design.md``.

Reads that keep only some rows (the training voxels) copy the kept rows of each chunk
straight into the result (through zarr: into a scratch buffer reused by the reader, then
compressed), so no block-sized temporary is allocated per read.

A missing chunk, a checksum mismatch or an undecodable chunk raises
:class:`~brainzarr.exceptions.ChunkError` naming the array and the chunk.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import zarr

from .._zarr import StrictLocalStore, quiet_zarr, verify_crc32c
from ..exceptions import ChunkError

__all__ = ["RowBlockReader"]

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(os.cpu_count() or 1, 1), thread_name_prefix="brainzarr-decode")
        return _POOL


class RowBlockReader:
    """Rows ``a:b`` (all columns) of a 2-D Zarr array, optionally only some of them.

    Parameters
    ----------
    path : str or Path
        The array's directory (e.g. ``store.zarr/expression``).
    direct : bool
        Decode the chunks directly when the format allows it (see the module docstring);
        False always reads through zarr.

    Notes
    -----
    Calling ``reader(a, b, keep=None)`` returns a new float array of rows ``a:b``, or of
    those rows where the boolean ``keep`` (length ``b - a``) is true. Picklable (it carries
    the path, not the open array), so its calls also run as dask.distributed tasks.
    """

    def __init__(self, path, *, direct: bool = True):
        self.path = str(path)
        self.direct = bool(direct)
        self._local = threading.local()

    def __getstate__(self):
        return {"path": self.path, "direct": self.direct}

    def __setstate__(self, state):
        self.__init__(state["path"], direct=state["direct"])

    def __repr__(self):
        return f"RowBlockReader({self.path!r})"

    @property
    def array(self) -> zarr.Array:
        array = getattr(self._local, "array", None)
        if array is None:
            with quiet_zarr():
                root = Path(self.path)
                array = zarr.open_array(StrictLocalStore(root.parent, read_only=True), path=root.name, mode="r")
            if array.ndim != 2:
                raise ValueError(f"{self.path} has {array.ndim} dimensions; RowBlockReader reads 2-D arrays")
            self._local.array = array
            self._local.layout = _direct_layout(array) if self.direct else None
        return array

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(s) for s in self.array.shape)

    def __call__(self, a: int, b: int, keep=None) -> np.ndarray:
        n, width = self.shape
        a, b = int(a), int(b)
        if not 0 <= a <= b <= n:
            raise IndexError(f"rows {a}:{b} out of range for {n} rows")
        if keep is not None:
            keep = np.asarray(keep, dtype=bool)
            if keep.shape != (b - a,):
                raise ValueError(f"keep has shape {keep.shape}, expected ({b - a},)")
            if keep.all():
                keep = None
        rows = b - a if keep is None else int(keep.sum())
        out = np.empty((rows, width), dtype=self.array.dtype)
        layout = self._direct(a, b)
        if layout is not None:
            layout.read(a, b, out, keep)  # kept rows straight from the chunks, in parallel
        elif keep is None:
            self._read_zarr(a, b, out)
        else:
            scratch = getattr(self._local, "scratch", None)
            if scratch is None or scratch.shape[0] < b - a:
                scratch = self._local.scratch = np.empty((b - a, width), dtype=self.array.dtype)
            np.compress(keep, self._read_zarr(a, b, scratch[: b - a]), axis=0, out=out)
        return out

    def read_into(self, a: int, b: int, out: np.ndarray) -> np.ndarray:
        """Read rows ``a:b`` into ``out`` (C-contiguous, shape ``(b - a, columns)``) and return it."""
        layout = self._direct(a, b)
        if layout is not None:
            layout.read(a, b, out)
            return out
        return self._read_zarr(a, b, out)

    def _direct(self, a: int, b: int):
        """The direct layout when it can serve rows a:b (inside one row of chunks), else None."""
        _ = self.array  # opens the array and sets the layout on this thread
        layout = self._local.layout
        if layout is not None and a < b and a // layout.rows == (b - 1) // layout.rows:
            return layout
        return None

    def _read_zarr(self, a: int, b: int, out: np.ndarray) -> np.ndarray:
        from zarr.core.buffer import default_buffer_prototype

        self.array.get_basic_selection(
            (slice(a, b), slice(None)), out=default_buffer_prototype().nd_buffer.from_numpy_array(out)
        )
        return out


class _DirectLayout:
    """Where a chunk's bytes are and how to decode them, for the one format read directly."""

    def __init__(self, array, root: Path, crc: bool = False):
        self.array = array
        self.root = root
        self.rows, self.cols = (int(c) for c in array.chunks)
        self.dtype = np.dtype(array.dtype)
        self.crc = bool(crc)
        import numcodecs

        self.codec = numcodecs.Zstd()
        self._local = threading.local()

    def _chunk(self, i: int, j: int) -> np.ndarray:
        """Chunk (i, j) decoded into this thread's scratch buffer (valid until its next call).

        Raises
        ------
        ChunkError
            The chunk is missing, fails its checksum or does not decode.
        """
        name = self.root.name
        try:
            raw = (self.root / self.array.metadata.encode_chunk_key((i, j))).read_bytes()
        except FileNotFoundError:
            raise ChunkError(
                f"chunk {(i, j)} of {name} is missing from {self.root.parent}; "
                "`brainzarr check` lists the damage and the command that rebuilds it"
            ) from None
        if self.crc:
            raw = verify_crc32c(raw, name, (i, j))
        # decoding into a reused buffer is 2.5x faster than letting the codec allocate one:
        # a fresh 2-MB buffer per chunk costs more in page faults than zstd spends decoding
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = np.empty(self.rows * self.cols, dtype=self.dtype)
        try:
            self.codec.decode(raw, out=scratch)
        except Exception as exc:  # numcodecs raises RuntimeError/ValueError for damaged frames
            raise ChunkError(f"chunk {(i, j)} of {name} does not decode ({exc})") from None
        return scratch.reshape(self.rows, self.cols)

    def read(self, a: int, b: int, out: np.ndarray, keep=None) -> None:
        """Rows a:b (within one row of chunks), or those where ``keep``, into ``out``."""
        i = a // self.rows
        r0, r1 = a - i * self.rows, b - i * self.rows
        width = out.shape[1]

        def one(j):
            c0, c1 = j * self.cols, min((j + 1) * self.cols, width)
            chunk = self._chunk(i, j)
            if keep is None:
                out[:, c0:c1] = chunk[r0:r1, : c1 - c0]
            else:
                out[:, c0:c1] = chunk[r0:r1][keep, : c1 - c0]

        for _ in _pool().map(one, range(-(-width // self.cols))):
            pass


def _direct_layout(array) -> _DirectLayout | None:
    """A :class:`_DirectLayout` when ``array`` is in the format read directly, else None."""
    from zarr.codecs import BytesCodec, Crc32cCodec, ZstdCodec
    from zarr.storage import LocalStore

    meta = array.metadata
    if getattr(meta, "zarr_format", None) != 3 or not isinstance(array.store_path.store, LocalStore):
        return None
    codecs = tuple(meta.codecs)
    crc = bool(codecs) and isinstance(codecs[-1], Crc32cCodec)
    if crc:
        codecs = codecs[:-1]
    if (
        len(codecs) != 2
        or not isinstance(codecs[0], BytesCodec)
        or not isinstance(codecs[1], ZstdCodec)
        or codecs[1].checksum
    ):
        return None
    dtype = np.dtype(array.dtype)
    little = dtype.byteorder in ("<", "|") or (dtype.byteorder == "=" and np.little_endian)
    endian = getattr(codecs[0].endian, "value", codecs[0].endian)
    if dtype.itemsize > 1 and (endian not in (None, "little") or not little):
        return None
    if not hasattr(meta, "encode_chunk_key") or type(meta.chunk_grid).__name__ != "RegularChunkGrid":
        return None
    root = Path(array.store_path.store.root) / array.store_path.path
    return _DirectLayout(array, root, crc=crc)
