"""Whole-row blocks of a 2-D Zarr array, read fast: the reads behind every streamed pass.

A pass over the store (PCA's power iterations, NMF's epochs, the auto-encoder's streamed
batches) reads blocks of rows x every gene, i.e. one row of chunks (4096 x 128 each, 123 of
them for 15,633 genes). zarr-python 3.1 spends more time per chunk than decoding it, so
:class:`RowBlockReader` decodes the chunks itself, in a thread pool, each into a reused
per-thread buffer (fresh buffers cost more in page faults than the decoding), whenever the array
is in a format brainzarr writes: Zarr v3 on a local directory, regular chunks, little-endian
bytes, zstd or Blosc, optionally a crc32c checksum per chunk, optionally sharded (zarr's
``sharding_indexed`` codec with its index at the end). Anything else goes to zarr unchanged.
Both paths give identical arrays (tested). The measurements: ``docs/design.md``.

Packed arrays (``uint16`` with CF ``scale_factor``/``add_offset`` attributes, as xarray writes
and reads them) come out as float32, converted while each chunk is copied into the result
(:func:`~brainzarr.streaming.unpack.unpack_chunks`, compiled with numba where installed):
the conversion costs one pass over the block, not a second copy of it.

Reads that keep only some rows (the training voxels) copy the kept rows of each chunk straight
into the result, so no block-sized temporary is allocated per read.

A missing chunk or shard, a checksum mismatch or an undecodable chunk raises
:class:`~brainzarr.exceptions.ChunkError` naming the array and the chunk.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import zarr

from .._location import location, task_path, zarr_store
from .._zarr import quiet_zarr, verify_crc32c
from ..exceptions import ChunkError, InputError
from ..options import current_client
from .unpack import unpack_chunks, unpack_into

__all__ = ["RowBlockReader", "release_buffers", "reusing_buffers", "rows_read"]

log = logging.getLogger("brainzarr")

_READS: dict[str, int] = {}
_READS_LOCK = threading.Lock()


class _BufferPool:
    """Output blocks handed out again once nothing else holds them.

    A fresh 256 MB block costs ~65,000 page faults, about as long as decoding it; a pass reads
    block after block, each dropped before the one after next, so a few buffers serve it. A
    buffer is reused only when its reference count says no array (nor any view of it) is alive.
    Buffers are made ``capacity`` bytes large (a whole row of chunks), so that reads keeping
    different numbers of a block's rows (the training voxels) all fit in the same ones.
    At most :attr:`MAX_BUFFERS` buffers and :attr:`MAX_BYTES` are kept: a streamed pass holds
    three blocks at once (the one in use, one queued, one being read), an evaluation's RMSE
    tasks four (two threads, each with a block and its reconstruction); a buffer is only kept
    once it was needed, so keeping more raises no peak. Buffers are kept only inside a scope
    (:func:`reusing_buffers`) and on a dask.distributed worker (until the job that used it
    ends); a read made otherwise gets a block of its own, as any numpy read would.
    """

    MAX_BUFFERS = 4
    MAX_BYTES = 1 << 30

    def __init__(self):
        self._buffers: list[np.ndarray] = []
        self._lock = threading.Lock()
        self._scopes = 0
        #: blocks allocated fresh so far (not handed out again): how tests see reuse
        self.allocated = 0

    def get(self, shape, dtype, capacity: int = 0) -> np.ndarray:
        dtype = np.dtype(dtype)
        n = int(np.prod(shape)) * dtype.itemsize
        if self._scopes == 0 and not _in_dask_worker():  # a read by hand: nothing to keep it for
            with self._lock:
                self.allocated += 1
            return np.empty(shape, dtype)
        with self._lock:
            # references: the list, getrefcount's argument: nothing else holds it
            free = [i for i in range(len(self._buffers)) if sys.getrefcount(self._buffers[i]) <= 2]
            for i in free:
                if self._buffers[i].nbytes >= n:
                    return self._buffers[i][:n].view(dtype).reshape(shape)
            flat = np.empty(max(n, int(capacity)), dtype=np.uint8)
            self.allocated += 1
            if free and len(self._buffers) >= self.MAX_BUFFERS:  # a free one too small makes room
                del self._buffers[min(free, key=lambda i: self._buffers[i].nbytes)]
            if (
                len(self._buffers) < self.MAX_BUFFERS
                and sum(b.nbytes for b in self._buffers) + flat.nbytes <= self.MAX_BYTES
            ):
                self._buffers.append(flat)
            return flat[:n].view(dtype).reshape(shape)

    def clear(self) -> None:
        with self._lock:
            self._buffers.clear()

    def enter(self) -> None:
        with self._lock:
            self._scopes += 1

    def leave(self) -> bool:
        """End a scope; when it was the outermost, let the buffers go and say so."""
        with self._lock:
            self._scopes -= 1
            last = self._scopes == 0
        if last:
            self.clear()
        return last


_BUFFERS = _BufferPool()


def _in_dask_worker() -> bool:
    """Whether this thread runs a dask.distributed worker's task: a worker reuses its blocks
    from task to task (each task is a read or a block's work, never a pass) until the job's
    scope ends on the client (:func:`_release_on_workers`)."""
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return False
    try:
        distributed.get_worker()
    except ValueError:
        return False
    return True


def release_buffers() -> None:
    """Let go of the output blocks kept for the next read (up to four: 977 MiB at all genes).

    Passes and fits let them go themselves when they end, on the dask.distributed workers too
    (see :func:`reusing_buffers`), and reads outside them keep none; a worker that ran reads by
    hand (``client.compute`` over :func:`~brainzarr.streaming.expression_rows`) keeps its blocks
    until ``client.run(release_buffers)`` or the next job. Blocks still in use stay with whoever
    holds them.
    """
    _BUFFERS.clear()


@contextlib.contextmanager
def reusing_buffers():
    """Reuse the reader's output blocks from read to read inside this scope; let them go after.

    Every pass (:func:`~brainzarr.streaming.iter_row_blocks`, :func:`~brainzarr.streaming.block_reduce`,
    :func:`~brainzarr.streaming.compute_tasks`...) and every fit runs in one. Scopes nest: the
    blocks are kept from pass to pass until the outermost scope ends (a fit of ten passes
    allocates its blocks once), then released, so nothing block-sized stays allocated
    once a job is over. Reads outside any scope (a dask computation over
    :func:`~brainzarr.streaming.expression_rows` by hand) each get a block of their own: wrap
    such a computation in this scope to reuse them. When the outermost scope ends under a
    dask.distributed client, the workers let theirs go too.
    """
    _BUFFERS.enter()
    try:
        yield
    finally:
        if _BUFFERS.leave():
            _release_on_workers()


def _release_on_workers() -> None:
    """The workers of the current client let go of their blocks (~490 MiB each after a 4 mm
    all-gene PCA fit): a worker keeps them from task to task, and outlives the job."""
    client = current_client()
    if client is None or getattr(client, "asynchronous", False):
        return
    try:
        client.run(release_buffers)
    except Exception as exc:  # memory housekeeping must not hide the job's result or its error
        log.debug("the workers kept their reused blocks: %s", exc)


def rows_read(path) -> int:
    """Rows of the array at ``path`` read so far in this process (every row of a block counts,
    kept or not): a job divides the difference by the array's rows to count its passes."""
    return _READS.get(_key(path), 0)


def _key(path) -> str:
    text = str(path)
    return text if "://" in text else str(Path(text).resolve())


#: rows copied at a time from decoded chunks into the output block (see _DirectLayout.read)
_STRIP = 256

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
    those rows where the boolean ``keep`` (length ``b - a``) is true; ``out=`` gives the
    array to fill instead (C-contiguous, one row per row read). Picklable (it carries
    the path, not the open array), so its calls also run as dask.distributed tasks.
    """

    def __init__(self, path, *, direct: bool = True):
        self.path = path if "://" in str(path) else str(task_path(path))  # a URL keeps its storage options
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
                root = location(self.path)
                array = zarr.open_array(zarr_store(root.parent), path=root.name, mode="r")
            if array.ndim != 2:
                raise InputError(f"{self.path} has {array.ndim} dimensions; RowBlockReader reads 2-D arrays")
            self._local.array = array
            self._local.layout = _direct_layout(array) if self.direct else None
        return array

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        """What reads return: float32 for a packed array, else the array's dtype."""
        return np.dtype(np.float32) if self.packing is not None else np.dtype(self.array.dtype)

    @property
    def packing(self) -> tuple[float, float] | None:
        """(scale_factor, add_offset) of a packed integer array, else None."""
        packing = getattr(self._local, "packing", "unset")
        if packing == "unset":
            packing = self._local.packing = _packing(self.array)
        return packing

    def __call__(self, a: int, b: int, keep=None, *, out: np.ndarray | None = None) -> np.ndarray:
        n, width = self.shape
        a, b = int(a), int(b)
        if not 0 <= a <= b <= n:
            raise IndexError(f"rows {a}:{b} out of range for {n} rows")
        if keep is not None:
            keep = np.asarray(keep, dtype=bool)
            if keep.shape != (b - a,):
                raise InputError(f"keep has shape {keep.shape}, expected ({b - a},)")
            if keep.all():
                keep = None
        rows = b - a if keep is None else int(keep.sum())
        layout = self._direct(a, b)
        if out is not None:
            if out.shape != (rows, width) or out.dtype != self.dtype or not out.flags.c_contiguous:
                raise InputError(
                    f"out must be a C-contiguous {self.dtype} array of shape {(rows, width)}, "
                    f"not {out.dtype} {out.shape}"
                )
        elif layout is not None:  # direct reads reuse released output blocks (page faults)
            out = _BUFFERS.get((rows, width), self.dtype, capacity=layout.rows * width * self.dtype.itemsize)
        else:
            out = np.empty((rows, width), self.dtype)
        key = self.__dict__.get("_key") or self.__dict__.setdefault("_key", _key(self.path))
        with _READS_LOCK:
            _READS[key] = _READS.get(key, 0) + (b - a)
        if layout is not None:
            layout.read(a, b, out, keep)  # kept rows straight from the chunks, in parallel
        elif keep is None:
            self._read_zarr(a, b, out)
        else:
            scratch = getattr(self._local, "scratch", None)
            if scratch is None or scratch.shape[0] < b - a:
                scratch = self._local.scratch = np.empty((b - a, width), dtype=self.dtype)
            # mode="clip": np.compress (and take's default "raise") buffers `out`, a block-sized copy
            np.take(self._read_zarr(a, b, scratch[: b - a]), np.flatnonzero(keep), axis=0, out=out, mode="clip")
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

        packing = self.packing
        if packing is None:
            self.array.get_basic_selection(
                (slice(a, b), slice(None)), out=default_buffer_prototype().nd_buffer.from_numpy_array(out)
            )
            return out
        return unpack_into(self.array[a:b], out, *packing)


class _DirectLayout:
    """Where a chunk's bytes are and how to decode them, for the formats read directly."""

    def __init__(self, array, root: Path, *, codec, crc: bool, sharded: bool, index_crc: bool, packing):
        self.array = array
        self.root = root
        self.name = root.name
        self.rows, self.cols = (int(c) for c in array.chunks)  # inner chunks when sharded
        shard = getattr(array, "shards", None) if sharded else None
        self.shard_rows, self.shard_cols = (int(c) for c in (shard or array.chunks))
        self.per_shard = self.shard_cols // self.cols  # inner chunks along the genes of a shard
        self.sharded = sharded
        self.index_crc = index_crc
        self.dtype = np.dtype(array.dtype)
        self.codec = codec
        self.crc = bool(crc)
        self.packing = packing
        self._local = threading.local()

    def _missing(self, index):
        kind = "shard" if self.sharded else "chunk"
        return ChunkError(
            f"{kind} {index} of {self.name} is missing from {self.root.parent}; "
            "`brainzarr check` lists the damage and the command that rebuilds it"
        )

    def _file(self, i: int, s: int) -> np.ndarray:
        """The bytes of chunk or shard (i, s), read into this thread's reused buffer (no page
        faults of a fresh allocation per read; valid until this thread's next read). Reading
        beats mapping the file (measured, docs/design.md): mapped shards passed no faster from
        the page cache and 10-50 % slower from disk, and a 1 mm store outgrows the page cache."""
        path = self.root / self.array.metadata.encode_chunk_key((i, s))
        try:
            with open(path, "rb", buffering=0) as f:
                size = os.fstat(f.fileno()).st_size
                buf = getattr(self._local, "raw", None)
                if buf is None or len(buf) < size:
                    buf = self._local.raw = np.empty(-(-size // 65536) * 65536, dtype=np.uint8)
                view = buf[:size]
                got = f.readinto(memoryview(view))
        except FileNotFoundError:
            raise self._missing((i, s)) from None
        return view[:got]

    def _decode(self, raw, index, out: np.ndarray) -> np.ndarray:
        """One inner chunk decoded into ``out`` (rows x cols of the stored dtype); ``raw`` None:
        an empty chunk of a shard, the fill value."""
        if raw is None:
            out.fill(self.array.fill_value)
            return out
        if self.crc:
            raw = verify_crc32c(raw, self.name, index)
        flat = out.reshape(-1)
        try:
            if self.codec is None:  # stored uncompressed
                flat[...] = np.frombuffer(raw, dtype=self.dtype)
            else:
                self.codec.decode(raw, out=flat)
        except Exception as exc:  # numcodecs raises RuntimeError/ValueError for damaged frames
            raise ChunkError(f"chunk {index} of {self.name} does not decode ({exc})") from None
        return out

    def _inner_chunks(self, i: int, s: int):
        """(j, encoded bytes) of the inner chunks in row ``i`` of file column ``s``."""
        raw = self._file(i, s)
        if not self.sharded:
            yield s, raw
            return
        size = self._index_size()
        if len(raw) < size:
            raise ChunkError(f"shard {(i, s)} of {self.name} is truncated ({len(raw)} bytes)")
        table = self._index_table(raw[-size:], i, s)
        n_chunks = -(-int(self.array.shape[1]) // self.cols)  # the last shard may reach past the genes
        for k in range(min(self.per_shard, n_chunks - s * self.per_shard)):
            span = self._chunk_range(table, i, s, k, len(raw) - size)
            yield s * self.per_shard + k, None if span is None else raw[span[0] : span[0] + span[1]]

    def inner_chunk(self, i: int, j: int) -> np.ndarray:
        """The encoded bytes of inner chunk (i, j) alone: two positioned reads of its shard (the
        index, then the chunk), not the whole file; None for a chunk its shard marks empty."""
        if not self.sharded:
            return self._file(i, j)
        s, k = divmod(j, self.per_shard)
        path = self.root / self.array.metadata.encode_chunk_key((i, s))
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise self._missing((i, s)) from None
        try:
            size, index_size = os.fstat(fd).st_size, self._index_size()
            if size < index_size:
                raise ChunkError(f"shard {(i, s)} of {self.name} is truncated ({size} bytes)")
            index = np.frombuffer(os.pread(fd, index_size, size - index_size), dtype=np.uint8)
            span = self._chunk_range(self._index_table(index, i, s), i, s, k, size - index_size)
            if span is None:
                return None
            offset, nbytes = span
            raw = np.frombuffer(os.pread(fd, nbytes, offset), dtype=np.uint8)
        finally:
            os.close(fd)
        if len(raw) < nbytes:
            raise ChunkError(f"chunk {(i, j)} of {self.name} is truncated ({len(raw)} bytes)")
        return raw

    def _index_size(self) -> int:
        return 16 * self.per_shard * (self.shard_rows // self.rows) + (4 if self.index_crc else 0)

    def _index_table(self, index: np.ndarray, i: int, s: int) -> np.ndarray:
        """The shard index's (offset, nbytes) rows, its checksum verified."""
        if self.index_crc:
            index = verify_crc32c(index, self.name, (i, s))
        n = self.per_shard * (self.shard_rows // self.rows)
        return np.frombuffer(index[: 16 * n].tobytes(), dtype="<u8").reshape(n, 2)

    def _chunk_range(self, table: np.ndarray, i: int, s: int, k: int, payload: int) -> tuple[int, int] | None:
        """(offset, nbytes) of inner chunk k of shard (i, s), checked against the shard's payload;
        None for a chunk the shard's index marks empty: zarr's way of storing one that holds only
        the fill value (a shard brainzarr wrote before it wrote every chunk), not damage."""
        offset, nbytes = (int(v) for v in table[k])
        if offset == 2**64 - 1 and nbytes == 2**64 - 1:
            return None
        if offset + nbytes > payload:
            raise ChunkError(f"chunk {(i, s * self.per_shard + k)} of {self.name} lies outside its shard")
        return offset, nbytes

    def _scratch(self, n: int) -> np.ndarray:
        """This thread's decode buffer for ``n`` inner chunks (n, rows, cols), reused."""
        scratch = getattr(self._local, "scratch", None)
        if scratch is None or scratch.shape[0] < n:
            scratch = self._local.scratch = np.empty((n, self.rows, self.cols), dtype=self.dtype)
        return scratch

    def _files_per_task(self) -> int:
        """Chunk columns one task decodes before copying: a shard, or 16 unsharded chunks."""
        return 1 if self.sharded else 16

    def read(self, a: int, b: int, out: np.ndarray, keep=None) -> None:
        """Rows a:b (within one row of chunks), or those where ``keep``, into ``out``.

        Each task decodes a group of chunks side by side (a shard, or 16 chunks) and copies them
        out in strips of rows: every copied row segment is then a group's width long (8 KB for a
        shard of 2,048 float32 genes) instead of one chunk's (512 bytes), which is what makes the
        copy run near memcpy speed on a machine without transparent huge pages.
        """
        i = a // self.rows
        r0, r1 = a - i * self.rows, b - i * self.rows
        width = out.shape[1]
        n_files = -(-width // self.shard_cols)
        per_task = self._files_per_task()
        per_file = max(1, self.shard_cols // self.cols)
        if keep is not None:
            kept = np.concatenate([[0], np.cumsum(keep)])  # out row of each block row

        if self.packing is not None:
            # the output row of each block row (-1: not kept), for the compiled unpacking
            dest = np.arange(r1 - r0, dtype=np.int64) if keep is None else np.where(keep, kept[:-1], -1)

        def one(t):
            files = range(t * per_task, min((t + 1) * per_task, n_files))
            scratch = self._scratch(len(files) * per_file)
            decoded = []
            for s in files:
                for j, raw in self._inner_chunks(i, s):
                    slot = len(decoded)
                    self._decode(raw, (i, j), scratch[slot])
                    decoded.append((j, slot))
            if self.packing is not None:
                c0s = np.array([j * self.cols for j, _ in decoded], dtype=np.int64)
                unpack_chunks(scratch[: len(decoded)], out, c0s, *self.packing, r0, r1, dest)
                return
            for lo in range(r0, r1, _STRIP):
                hi = min(lo + _STRIP, r1)
                if keep is None:
                    target, pick = slice(lo - r0, hi - r0), None
                else:
                    pick = keep[lo - r0 : hi - r0]
                    target = slice(int(kept[lo - r0]), int(kept[hi - r0]))
                    if target.stop == target.start:
                        continue
                for j, slot in decoded:
                    c0, c1 = j * self.cols, min((j + 1) * self.cols, width)
                    part = scratch[slot, lo:hi, : c1 - c0]
                    out[target, c0:c1] = part if pick is None else part[pick]

        for _ in _pool().map(one, range(-(-n_files // per_task))):
            pass


def _packing(array) -> tuple[float, float] | None:
    """(scale_factor, add_offset) of an integer array with CF packing attributes, else None."""
    attrs = array.attrs
    if np.dtype(array.dtype).kind not in "iu" or "scale_factor" not in attrs:
        return None
    return float(attrs["scale_factor"]), float(attrs.get("add_offset", 0.0))


def _bytes_codec(codec):
    """numcodecs' decoder for a zarr bytes-to-bytes compressor brainzarr reads directly, or None."""
    import numcodecs
    from zarr.codecs import BloscCodec, ZstdCodec

    if isinstance(codec, ZstdCodec) and not codec.checksum:
        return numcodecs.Zstd()
    if isinstance(codec, BloscCodec):
        return numcodecs.Blosc()  # the frame header says how it was compressed
    return None


def _chain(codecs):
    """(numcodecs decoder, crc) for [bytes, zstd|blosc, crc32c?], or None."""
    from zarr.codecs import BytesCodec, Crc32cCodec

    codecs = tuple(codecs)
    crc = bool(codecs) and isinstance(codecs[-1], Crc32cCodec)
    if crc:
        codecs = codecs[:-1]
    if len(codecs) not in (1, 2) or not isinstance(codecs[0], BytesCodec):
        return None
    endian = getattr(codecs[0].endian, "value", codecs[0].endian)
    if endian not in (None, "little"):
        return None
    if len(codecs) == 1:
        return None, crc  # no compressor
    codec = _bytes_codec(codecs[1])
    return None if codec is None else (codec, crc)


def _direct_layout(array) -> _DirectLayout | None:
    """A :class:`_DirectLayout` when ``array`` is in a format read directly, else None."""
    from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec
    from zarr.storage import LocalStore

    meta = array.metadata
    if getattr(meta, "zarr_format", None) != 3 or not isinstance(array.store_path.store, LocalStore):
        return None
    if not hasattr(meta, "encode_chunk_key") or type(meta.chunk_grid).__name__ != "RegularChunkGrid":
        return None
    if not np.little_endian:
        return None
    codecs = tuple(meta.codecs)
    sharded, index_crc = False, False
    if len(codecs) == 1 and isinstance(codecs[0], ShardingCodec):
        sharding = codecs[0]
        location = getattr(sharding.index_location, "value", sharding.index_location)
        index = tuple(sharding.index_codecs)
        if location != "end" or not index or not isinstance(index[0], BytesCodec):
            return None
        if len(index) > 2 or (len(index) == 2 and not isinstance(index[1], Crc32cCodec)):
            return None
        inner = tuple(int(c) for c in array.chunks)
        shard = tuple(int(c) for c in array.shards)
        if inner[0] != shard[0] or shard[1] % inner[1]:
            return None  # brainzarr's shards hold whole rows of inner chunks
        sharded, index_crc, codecs = True, len(index) == 2, tuple(sharding.codecs)
    chain = _chain(codecs)
    if chain is None:
        return None
    root = Path(array.store_path.store.root) / array.store_path.path
    return _DirectLayout(
        array, root, codec=chain[0], crc=chain[1], sharded=sharded, index_crc=index_crc, packing=_packing(array)
    )
