"""Small zarr helpers every layer uses: quiet warnings, and a local store that never reads a
missing or damaged chunk as data.

zarr reads a missing chunk as the fill value (NaN for brainzarr's float arrays) without a word,
and a corrupt one fails deep in a codec with no array or chunk named. :class:`StrictLocalStore`
raises :class:`~brainzarr.exceptions.ChunkError` instead, naming the array and the chunk:

* a chunk key of a float array whose fill value is NaN (every voxel array brainzarr writes:
  valid data is never all-NaN, so such a chunk is always written) that is missing;
* a chunk whose codecs end with ``crc32c`` (stores built by this version) whose checksum does
  not match its bytes.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings

import zarr
from zarr.storage import LocalStore

from .exceptions import ChunkError

__all__ = [
    "quiet_zarr",
    "StrictLocalStore",
    "StrictFsspecStore",
    "chunk_index",
    "verify_crc32c",
    "checked_compressors",
    "every_chunk",
]


def checked_compressors() -> list:
    """zstd, then a crc32c checksum: the codecs of every voxel array brainzarr writes."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return [ZstdCodec(), Crc32cCodec()]


def every_chunk(array):
    """``array`` writing every chunk, those that hold only its fill value too. zarr skips them
    by default, and a missing chunk of a packed array reads as damage (``ChunkError``): a gene
    at its minimum over a whole row block packs to zeros, the fill value, and such a store could
    not be read."""
    return array.with_config({"write_empty_chunks": True})


@contextlib.contextmanager
def quiet_zarr():
    """Silence zarr's warnings about fixed-width string dtypes (xarray writes them for coords)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(unstable|not part of the Zarr format 3|vlen-utf8).*")
        for name in ("UnstableSpecificationWarning", "ZarrUserWarning"):
            if hasattr(zarr.errors, name):
                warnings.filterwarnings("ignore", category=getattr(zarr.errors, name))
        yield


def chunk_index(key: str) -> tuple[str, tuple[int, ...]] | None:
    """('expression', (3, 5)) for a v3 chunk key 'expression/c/3/5', else None."""
    array, sep, rest = key.rpartition("/c/")
    if not sep:
        if key.startswith("c/"):
            array, rest = "", key[2:]
        else:
            return None
    parts = rest.split("/")
    if not all(p.isdigit() for p in parts):
        return None
    return array, tuple(int(p) for p in parts)


_CRC32C = None  # the checksum function, chosen on first use


def crc32c_function():
    """The fastest crc32c available: ``crc32c`` (the ``[fast]`` extra: hardware instructions,
    the GIL released, so decode threads check in parallel), else ``google_crc32c`` (zarr's own
    dependency, which holds the GIL: a 2-thread pass checks at one thread's rate)."""
    global _CRC32C
    if _CRC32C is None:
        try:
            import crc32c

            if not getattr(crc32c, "hardware_based", True):
                raise ImportError("crc32c without hardware support")
            _CRC32C = crc32c.crc32c
        except ImportError:
            import google_crc32c

            _CRC32C = google_crc32c.value
    return _CRC32C


def verify_crc32c(data, array: str, index):
    """The payload (a uint8 view, no copy) of bytes that end with a crc32c checksum, or
    ChunkError when the checksum does not match."""
    import numpy as np

    view = data.reshape(-1).view(np.uint8) if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)
    if len(view) < 4:
        raise ChunkError(f"chunk {index} of {array} is truncated ({len(view)} bytes)")
    stored = view[-4:].tobytes()
    computed = np.uint32(crc32c_function()(view[:-4])).tobytes()
    if stored != computed:
        raise ChunkError(f"chunk {index} of {array} is corrupt (checksum mismatch, {len(view)} bytes)")
    return view[:-4]


def _kind_of(meta: dict) -> dict:
    """What to check for the chunks of an array, from its zarr.json."""
    fill = meta.get("fill_value")
    dtype = str(meta.get("data_type", ""))
    nan_fill = dtype.startswith("float") and (fill == "NaN" or (isinstance(fill, float) and math.isnan(fill)))
    packed = "scale_factor" in meta.get("attributes", {})  # brainzarr writes every chunk of these
    codecs = meta.get("codecs", [])
    names = [c.get("name") for c in codecs]
    kind = {"must_exist": nan_fill or packed, "crc": bool(names) and names[-1] == "crc32c", "shard": False}
    if names and names[0] == "sharding_indexed":
        config = codecs[0].get("configuration", {})
        inner = [c.get("name") for c in config.get("codecs", [])]
        index = [c.get("name") for c in config.get("index_codecs", [])]
        shape = meta.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape", [])
        chunk = config.get("chunk_shape", [])
        n = 1
        for a, b in zip(shape, chunk):
            n *= -(-int(a) // int(b))
        kind.update(
            shard=True,
            crc=bool(inner) and inner[-1] == "crc32c",
            index_crc=index[-1:] == ["crc32c"] and config.get("index_location", "end") == "end",
            index_bytes=16 * n + 4,
        )
    return kind


class _Strict:
    """Mixin of a zarr store: missing chunks of arrays brainzarr writes whole, and bytes whose
    crc32c does not match, raise :class:`ChunkError` naming the array and the chunk."""

    def _init_strict(self):
        self._arrays: dict[str, dict] = {}

    async def _kind(self, array: str, prototype) -> dict:
        if array not in self._arrays:
            try:
                raw = await super().get(f"{array}/zarr.json" if array else "zarr.json", prototype)
                meta = json.loads(raw.to_bytes()) if raw is not None else {}
            except (OSError, ValueError):
                raw, meta = b"", {}
            # an array whose metadata is not there: the store is not at this path for this reader
            self._arrays[array] = {**_kind_of(meta), "unseen": raw is None}
        return self._arrays[array]

    def _where(self) -> str:
        return str(getattr(self, "root", None) or getattr(self, "path", ""))

    async def get_partial_values(self, prototype, key_ranges):
        from zarr.core.buffer import default_buffer_prototype

        key_ranges = list(key_ranges)
        values = await super().get_partial_values(prototype, key_ranges)
        out = []
        for (key, byte_range), value in zip(key_ranges, values):
            where = chunk_index(key)
            kind = None if where is None else await self._kind(where[0], prototype or default_buffer_prototype())
            out.append(self._checked(key, value, byte_range, where, kind))
        return out

    async def get(self, key, prototype=None, byte_range=None):
        from zarr.core.buffer import default_buffer_prototype

        prototype = prototype or default_buffer_prototype()
        value = await super().get(key, prototype, byte_range)
        where = chunk_index(key)
        kind = None if where is None else await self._kind(where[0], prototype)
        return self._checked(key, value, byte_range, where, kind)

    def _checked(self, key, value, byte_range, where, kind):
        if where is None:
            return value
        array, index = where
        what = "shard" if kind["shard"] else "chunk"
        name = array or "the array"
        if value is None:
            if kind.get("unseen"):  # its chunks would read as the fill value: wrong numbers, silently
                raise ChunkError(
                    f"{name} is not in {self._where()} as seen here (its zarr.json is missing): the store "
                    "moved, or a dask worker does not see the folder it is in (give every worker the same path)"
                )
            if kind["must_exist"]:
                raise ChunkError(
                    f"{what} {index} of {name} is missing from {self._where()}; "
                    "`brainzarr check` lists the damage and the command that rebuilds it"
                )
            return None
        if not kind["shard"]:
            if kind["crc"] and byte_range is None:
                verify_crc32c(value.as_numpy_array(), name, index)
            return value
        from zarr.abc.store import RangeByteRequest, SuffixByteRequest

        data = value.as_numpy_array()
        if byte_range is None and kind.get("index_crc"):  # a whole shard: its index is at the end
            verify_crc32c(data[-kind["index_bytes"] :], name, index)
        elif isinstance(byte_range, SuffixByteRequest) and kind.get("index_crc"):
            if len(data) < kind["index_bytes"]:
                raise ChunkError(f"shard {index} of {name} is truncated ({len(data)} bytes)")
            verify_crc32c(data[-kind["index_bytes"] :], name, index)
        elif isinstance(byte_range, RangeByteRequest) and kind["crc"]:
            verify_crc32c(data, f"{name} (a chunk in shard {index})", index)
        return value


class StrictLocalStore(_Strict, LocalStore):
    """A :class:`zarr.storage.LocalStore` with brainzarr's checks (see :class:`_Strict`)."""

    def __init__(self, root, *, read_only: bool = False):
        super().__init__(root, read_only=read_only)
        self._init_strict()

    def with_read_only(self, read_only: bool = False):
        return type(self)(self.root, read_only=read_only)


def _fsspec_store_class():
    from zarr.storage import FsspecStore

    class StrictFsspecStore(_Strict, FsspecStore):
        """A :class:`zarr.storage.FsspecStore` (object storage) with brainzarr's checks."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._init_strict()

        def with_read_only(self, read_only: bool = False):
            store = super().with_read_only(read_only)
            store._init_strict()
            return store

    return StrictFsspecStore


class _LazyFsspec:
    """``StrictFsspecStore`` built on first use (zarr's FsspecStore imports fsspec)."""

    _cls = None

    def __getattr__(self, name):
        if _LazyFsspec._cls is None:
            _LazyFsspec._cls = _fsspec_store_class()
        return getattr(_LazyFsspec._cls, name)


StrictFsspecStore = _LazyFsspec()
