"""Block streaming, in one place: how every pass over a (voxels, genes) array reads it.

* :mod:`.reader` — :class:`RowBlockReader`: rows ``a:b`` x every gene of a Zarr array, the
  chunks decoded concurrently into one output (the read behind every pass);
* :mod:`.chunked` — :func:`~.chunked.packed_dask_array`: a packed array as a dask array whose
  chunks brainzarr decodes itself (``open_store``'s ``expression`` and ``reconstruction``);
* :mod:`.unpack` — :func:`~.unpack.unpack_chunks`: packed chunks to float32 rows in one compiled
  step (numba when installed, numpy otherwise);
* :mod:`.spans` — :func:`row_spans`: which contiguous row ranges a pass reads;
* :mod:`.passes` — prefetch, stream, read into a caller's buffer (:func:`span_reader`), reduce
  and the parallel pass (:func:`compute_tasks`), locally or on a dask.distributed client;
* :mod:`.rows` — :func:`expression_rows`: a store's array as a dask array of row blocks;
* :mod:`.direct` — which dask arrays a local pass reads with one reader call a row block.

Peak memory of a pass is a few row blocks, whatever the number of voxels.
"""

from .passes import (
    as_array,
    block_reduce,
    block_spans,
    cache_if_small,
    compute_rows,
    compute_tasks,
    iter_row_blocks,
    prefetch,
    select_rows,
    span_reader,
    stream_blocks,
    take_rows,
)
from .reader import RowBlockReader, release_buffers, reusing_buffers, rows_read
from .rows import expression_rows
from .spans import row_chunks, row_spans

__all__ = [
    "RowBlockReader",
    "as_array",
    "block_reduce",
    "block_spans",
    "cache_if_small",
    "compute_rows",
    "compute_tasks",
    "expression_rows",
    "iter_row_blocks",
    "prefetch",
    "release_buffers",
    "reusing_buffers",
    "row_chunks",
    "row_spans",
    "rows_read",
    "select_rows",
    "span_reader",
    "stream_blocks",
    "take_rows",
]
