"""How a (voxel, gene) array is laid out on disk: value type, compressor, shards, checksums.

The default (chosen from ``scripts/bench_store.py``; the table and the reasons are in
``docs/design.md``) packs values in [0, 1] as ``uint16`` with CF ``scale_factor`` (step
1/65535, largest error 1/131070, far below any RMSE the study reports), compresses each chunk
with zstd, appends a crc32c checksum, and groups the chunks of a row block into shards of
:data:`SHARD_GENES` genes, so a 1 mm store holds a few thousand files instead of 56,000 while
each build task still writes whole shards (misaligned concurrent writes lose data: zarr-python
#3682). ``float32`` stays an option.

Reconstructions use the same packing over a wider range (:data:`RECONSTRUCTION_RANGE`), since
a linear model's reconstruction may leave [0, 1] a little.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ._validation import did_you_mean
from .exceptions import InputError, InputTypeError

__all__ = ["Layout", "DEFAULT_LAYOUT", "COMPRESSORS", "SHARD_GENES", "RECONSTRUCTION_RANGE", "unpack"]

#: genes per shard: 16 chunks of 128 genes; a 1 mm row block of 15,633 genes is 8 shards
SHARD_GENES = 2048
#: the range packed reconstructions cover (values beyond it are clipped)
RECONSTRUCTION_RANGE = (-0.5, 1.5)
_UINT16_MAX = 65535


def _compressor(name: str):
    from zarr.codecs import BloscCodec, ZstdCodec

    table = {
        "zstd": lambda: ZstdCodec(level=0),
        "zstd-1": lambda: ZstdCodec(level=1),
        "zstd-9": lambda: ZstdCodec(level=9),
        "blosc-zstd-shuffle": lambda: BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
        "blosc-lz4": lambda: BloscCodec(cname="lz4", clevel=5, shuffle="noshuffle"),
        "blosc-lz4-shuffle": lambda: BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
        "none": lambda: None,
    }
    if name not in table:
        raise InputError(f"unknown compressor {name!r}; choose from {', '.join(table)}{did_you_mean(name, table)}")
    return table[name]()


#: compressor names a layout takes
COMPRESSORS = ("zstd", "zstd-1", "zstd-9", "blosc-zstd-shuffle", "blosc-lz4", "blosc-lz4-shuffle", "none")


@dataclass(frozen=True)
class Layout:
    """The on-disk form of a (voxel, gene) array.

    Parameters
    ----------
    dtype : {'uint16', 'float32'}
        ``uint16``: values packed with CF ``scale_factor``/``add_offset`` over ``value_range``
        (decoded to float32 by brainzarr's readers); ``float32``: as computed.
    compressor : str
        One of :data:`COMPRESSORS`.
    shard_genes : int or None
        Genes per shard (a multiple of the chunk's genes); None: no shards, one file a chunk.
    checksum : bool
        A crc32c checksum after every chunk, so damage is found, never read as data.
    value_range : (float, float)
        What ``uint16`` covers; values beyond are clipped.
    """

    dtype: str = "uint16"
    compressor: str = "zstd"
    shard_genes: int | None = SHARD_GENES
    checksum: bool = True
    value_range: tuple = (0.0, 1.0)

    def __post_init__(self):
        if self.dtype not in ("uint16", "float32"):
            raise InputError(f"dtype must be 'uint16' or 'float32', got {self.dtype!r}")
        _compressor(self.compressor)
        if self.shard_genes is not None and int(self.shard_genes) < 1:
            raise InputError(f"shard_genes must be positive or None, got {self.shard_genes}")
        low, high = (float(v) for v in self.value_range)
        if not high > low:
            raise InputError(f"value_range must be (low, high) with high > low, got {self.value_range}")

    @property
    def packed(self) -> bool:
        return self.dtype == "uint16"

    @property
    def scale_factor(self) -> float:
        low, high = self.value_range
        return (float(high) - float(low)) / _UINT16_MAX

    @property
    def add_offset(self) -> float:
        return float(self.value_range[0])

    def compressors(self) -> list:
        codec = _compressor(self.compressor)
        codecs = [] if codec is None else [codec]
        if self.checksum:
            from zarr.codecs import Crc32cCodec

            codecs.append(Crc32cCodec())
        return codecs

    def shards(self, chunks, n_genes: int):
        """The shard shape for these chunks, or None."""
        if self.shard_genes is None:
            return None
        rows, cols = (int(c) for c in chunks)
        per = max(1, int(self.shard_genes) // cols)
        return rows, min(per, -(-int(n_genes) // cols)) * cols

    def write_step(self, chunks, n_genes: int) -> int:
        """Genes one write covers: whole shards (or one chunk of genes when unsharded)."""
        shards = self.shards(chunks, n_genes)
        return int(shards[1] if shards else chunks[1])

    def encoding(self, chunks, n_genes: int) -> dict:
        """The xarray ``to_zarr`` encoding of such an array."""
        enc = {"chunks": tuple(int(c) for c in chunks), "compressors": self.compressors()}
        shards = self.shards(chunks, n_genes)
        if shards is not None:
            enc["shards"] = shards
        if self.packed:
            enc.update(dtype="uint16", scale_factor=self.scale_factor, add_offset=self.add_offset, _FillValue=None)
        return enc

    def pack(self, values: np.ndarray) -> np.ndarray:
        """Float values as stored: rounded to the nearest uint16 step (clipped to the range)."""
        if not self.packed:
            return np.asarray(values, dtype=np.float32)
        steps = (np.asarray(values, dtype=np.float32) - np.float32(self.add_offset)) / np.float32(self.scale_factor)
        np.clip(steps, 0, _UINT16_MAX, out=steps)
        return np.rint(steps, out=steps).astype(np.uint16)

    def to_attrs(self) -> dict:
        out = asdict(self)
        out["value_range"] = [float(v) for v in self.value_range]
        return out

    @classmethod
    def from_spec(cls, spec) -> Layout:
        """A Layout from a Layout, a dict of its fields, or a dtype name ('uint16', 'float32')."""
        if isinstance(spec, Layout):
            return spec
        if spec is None:
            return DEFAULT_LAYOUT
        if isinstance(spec, str):
            return cls(dtype=spec)
        if isinstance(spec, dict):
            return cls(**{k: tuple(v) if k == "value_range" else v for k, v in spec.items()})
        raise InputTypeError(f"a layout is a Layout, a dict or 'uint16'/'float32', got {type(spec).__name__}")

    def for_reconstruction(self) -> Layout:
        """The same layout over :data:`RECONSTRUCTION_RANGE`."""
        return Layout(self.dtype, self.compressor, self.shard_genes, self.checksum, RECONSTRUCTION_RANGE)


DEFAULT_LAYOUT = Layout()


def unpack(da, data=None):
    """A packed (integer, CF ``scale_factor``) DataArray as float32, lazily; others unchanged.

    xarray's own CF decoding gives float64 for scale factors read from JSON attributes; brainzarr
    opens stores with ``mask_and_scale=False`` and decodes here, chunk by chunk, to float32
    (a float32 multiply, then a float32 add). ``data``: the same values already unpacked, as a
    lazy array (:func:`brainzarr.streaming.chunked.packed_dask_array` reads them faster).
    """
    if np.dtype(da.dtype).kind not in "iu" or "scale_factor" not in da.attrs:
        return da
    attrs = dict(da.attrs)
    scale = np.float32(attrs.pop("scale_factor"))
    offset = np.float32(attrs.pop("add_offset", 0.0))
    attrs.pop("_FillValue", None)
    if data is not None:
        out = da.copy(data=data)
    else:
        out = da.astype(np.float32) * scale
        if offset:
            out = out + offset
    out.attrs = attrs
    # the storage's shards do not describe a selection of the array (xarray would refuse to write it)
    encoding = {k: v for k, v in da.encoding.items() if k not in ("shards", "preferred_chunks")}
    out.encoding = dict(encoding, scale_factor=float(scale), add_offset=float(offset))
    return out
