"""A packed 2-D array of a local store as a dask array whose chunks brainzarr decodes itself.

``open_store`` and ``read_group`` give packed arrays (``expression``, ``reconstruction``) as lazy
float32. Through zarr-python every inner chunk costs more in Python than in decoding: one gene's
1 mm map (460 inner chunks, one per row block) took 1.6 s, of which decoding is a tenth. Where
the array is in a format :class:`~brainzarr.streaming.RowBlockReader` decodes directly, each
dask chunk reads its inner chunks with two positioned reads of the shard (its index, then the
chunk's bytes), checks the crc32c, decodes and unpacks them: 0.14 s for the same map. The
values are those of :func:`brainzarr.layout.unpack` (float32 multiply, then float32 add), bit
for bit; a missing or damaged chunk raises :class:`~brainzarr.exceptions.ChunkError` naming it.
"""

from __future__ import annotations

import os

import numpy as np

from .reader import RowBlockReader
from .unpack import unpack_into

__all__ = ["PackedChunks", "packed_dask_array"]


class PackedChunks:
    """Any rectangle of a packed 2-D array, as float32 (what dask's chunks read).

    Parameters
    ----------
    path : str or Path
        The array's directory (e.g. ``store.zarr/expression``). Picklable: it carries the path.
    """

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, path):
        self.path = str(path)
        self._reader = RowBlockReader(self.path)

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])

    def __repr__(self):
        return f"PackedChunks({self.path!r})"

    @property
    def shape(self) -> tuple[int, int]:
        return self._reader.shape

    def layout(self):
        """The reader's direct layout on this thread, or None where the format needs zarr."""
        _ = self._reader.array  # opens the array and sets this thread's layout
        layout = self._reader._local.layout
        return layout if layout is not None and layout.packing is not None else None

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (2 - len(key))
        boxes, inner = [], []
        for k, n in zip(key, self.shape, strict=True):
            if isinstance(k, slice) and k.step in (None, 1):
                lo, hi, _ = k.indices(n)
                boxes.append((lo, max(lo, hi)))
                inner.append(slice(None))
            elif isinstance(k, (int, np.integer)):
                i = int(k) + n if k < 0 else int(k)
                if not 0 <= i < n:
                    raise IndexError(f"index {k} out of range for {n}")
                boxes.append((i, i + 1))
                inner.append(0)
            else:  # steps or index arrays: read their bounding box, then index it
                idx = np.arange(n)[k]
                lo = int(idx.min()) if idx.size else 0
                boxes.append((lo, int(idx.max()) + 1 if idx.size else 0))
                inner.append(idx - lo)
        (r0, r1), (c0, c1) = boxes
        box = self._box(r0, r1, c0, c1)
        return box[:, inner[1]][inner[0]]  # one axis at a time: outer indexing, as zarr's

    def _box(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        out = np.empty((r1 - r0, c1 - c0), dtype=np.float32)
        if out.size == 0:
            return out
        layout = self.layout()
        if layout is None:  # zarr reads it, unpacked as unpack() does
            raw = self._reader.array[r0:r1, c0:c1]
            scale, offset = self._reader.packing
            unpack_into(raw, out, scale, offset)
            return out
        scale, offset = layout.packing
        scratch = layout._scratch(1)[0]
        for i in range(r0 // layout.rows, -(-r1 // layout.rows)):
            a, b = max(r0, i * layout.rows), min(r1, (i + 1) * layout.rows)
            for j in range(c0 // layout.cols, -(-c1 // layout.cols)):
                g0, g1 = max(c0, j * layout.cols), min(c1, (j + 1) * layout.cols)
                layout._decode(layout.inner_chunk(i, j), (i, j), scratch)
                part = scratch[a - i * layout.rows : b - i * layout.rows, g0 - j * layout.cols : g1 - j * layout.cols]
                unpack_into(part, out[a - r0 : b - r0, g0 - c0 : g1 - c0], scale, offset)
        return out


def packed_dask_array(path, chunks):
    """The packed 2-D array at ``path`` as a float32 dask array with ``chunks``, read by
    :class:`PackedChunks`; None where brainzarr does not decode its format itself (object
    storage, another codec), so the caller keeps zarr's reading."""
    import dask.array as da
    from dask.base import tokenize

    chunked = PackedChunks(path)
    try:
        if chunked.layout() is None:
            return None
        written = os.stat(os.path.join(chunked.path, "zarr.json")).st_mtime_ns  # a rewrite is another array
    except (OSError, ValueError):
        return None
    array = da.from_array(
        chunked,
        chunks=chunks,
        name=f"brainzarr-packed-{tokenize(chunked.path, written)}",
        asarray=False,
        fancy=False,
        lock=False,
        meta=np.empty((0, 0), dtype=np.float32),
    )
    # a local pass over the whole array (ds.expression.data, as an estimator's fit or parcellate
    # streams it) reads whole row blocks with one reader call each, not chunk by chunk through
    # dask (4 mm, all genes: 0.3 s instead of 3.5 s)
    from .direct import register_direct

    register_direct(array, chunked._reader)
    return array
