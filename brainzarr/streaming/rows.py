"""A store's ``expression`` as a dask array of whole-row blocks: what every fit streams."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import zarr

from .._location import zarr_store
from .._zarr import quiet_zarr
from ..exceptions import InputError
from ..store import as_store
from .direct import direct_reads, register_direct
from .reader import RowBlockReader

__all__ = ["expression_rows", "direct_reads", "register_direct"]


def expression_rows(store, rows: int | None = None, mask=None, *, variable: str = "expression"):
    """The store's ``expression`` as a dask array of whole rows: one task per block of ``rows``
    voxels (default: the store's row chunk) reading every gene in one call.

    Parameters
    ----------
    store : str, Path or Store
        The store.
    rows : int, optional
        Rows per block (default: the store's row chunk, so each read decodes its chunks once).
    mask : bool array (voxel,), optional
        Keep only these rows (e.g. the training voxels). The result keeps one row block per
        block of the store (blocks with no selected row are left out), so a pass over it reads
        each block once.
    variable : str
        The (voxel, gene) array to read.

    Notes
    -----
    Reads go through :class:`~brainzarr.streaming.reader.RowBlockReader`, which decodes the
    chunks of a row block concurrently into one output array; tasks carry the path and the row
    range, never data, so they also run on dask.distributed workers.
    """
    store = as_store(store)
    path = store.path / variable
    with quiet_zarr():
        array = zarr.open_array(zarr_store(store.path, strict=False), path=variable, mode="r", zarr_format=3)
    n, width = (int(s) for s in array.shape)
    step = int(rows or array.chunks[0])
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (n,):
            raise InputError(f"row mask has shape {mask.shape}, expected ({n},)")
    reader = RowBlockReader(path)
    dtype = reader.dtype  # float32 for packed arrays
    where = str(path) if "://" in str(path) else str(path.resolve())
    name = f"{variable}-rows-{dask.base.tokenize(where, step, mask)}"
    blocks, reads = [], []
    for a in range(0, n, step):
        b = min(a + step, n)
        keep = None if mask is None or mask[a:b].all() else mask[a:b]
        n_rows = b - a if keep is None else int(keep.sum())
        if n_rows:
            task = dask.delayed(reader, pure=True)(a, b, keep, dask_key_name=f"{name}-{a}")
            blocks.append(da.from_delayed(task, shape=(n_rows, width), dtype=dtype))
            reads.append((a, b, keep))
    if not blocks:
        return da.zeros((0, width), dtype=dtype, chunks=(1, width))
    out = da.concatenate(blocks, axis=0)
    register_direct(out, reader, reads)
    return out
