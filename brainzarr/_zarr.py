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
from pathlib import Path

import zarr
from zarr.storage import LocalStore

from .exceptions import ChunkError

__all__ = ["quiet_zarr", "StrictLocalStore", "chunk_index", "verify_crc32c", "checked_compressors"]


def checked_compressors() -> list:
    """zstd, then a crc32c checksum: the codecs of every voxel array brainzarr writes."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return [ZstdCodec(), Crc32cCodec()]


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


def verify_crc32c(data, array: str, index) -> memoryview:
    """The payload of a chunk that ends with a crc32c checksum, or ChunkError when it does not match."""
    import google_crc32c
    import numpy as np

    view = memoryview(data).cast("B")
    if len(view) < 4:
        raise ChunkError(f"chunk {index} of {array} is truncated ({len(view)} bytes)")
    stored = bytes(view[-4:])
    computed = np.uint32(google_crc32c.value(bytes(view[:-4]))).tobytes()
    if stored != computed:
        raise ChunkError(f"chunk {index} of {array} is corrupt (checksum mismatch, {len(view)} bytes)")
    return view[:-4]


class StrictLocalStore(LocalStore):
    """A :class:`zarr.storage.LocalStore` that raises :class:`ChunkError` for a missing chunk of a
    NaN-filled float array and for a chunk whose crc32c checksum does not match."""

    def __init__(self, root, *, read_only: bool = False):
        super().__init__(root, read_only=read_only)
        self._arrays: dict[str, tuple[bool, bool]] = {}

    def with_read_only(self, read_only: bool = False):
        return type(self)(self.root, read_only=read_only)

    def _kind(self, array: str) -> tuple[bool, bool]:
        """(must exist, has crc32c) for the chunks of ``array``."""
        if array not in self._arrays:
            try:
                meta = json.loads((Path(self.root) / array / "zarr.json").read_text())
            except (OSError, ValueError):
                meta = {}
            fill = meta.get("fill_value")
            dtype = str(meta.get("data_type", ""))
            nan_fill = dtype.startswith("float") and (fill == "NaN" or (isinstance(fill, float) and math.isnan(fill)))
            codecs = meta.get("codecs", [])
            names = [c.get("name") for c in codecs]
            if names and names[0] == "sharding_indexed":
                names = []  # a shard's checksum covers its index, checked by zarr
            self._arrays[array] = (nan_fill, bool(names) and names[-1] == "crc32c")
        return self._arrays[array]

    async def get(self, key, prototype=None, byte_range=None):
        value = await super().get(key, prototype, byte_range)
        where = chunk_index(key)
        if where is None:
            return value
        array, index = where
        must_exist, crc = self._kind(array)
        if value is None:
            if must_exist:
                raise ChunkError(
                    f"chunk {index} of {array or 'the array'} is missing from {self.root}; "
                    "`brainzarr check` lists the damage and the command that rebuilds it"
                )
            return None
        if crc and byte_range is None:
            verify_crc32c(value.as_numpy_array(), array, index)
        return value
