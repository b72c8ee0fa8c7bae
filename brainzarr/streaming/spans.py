"""Which contiguous row ranges a streamed pass reads: the one span function."""

from __future__ import annotations

import numpy as np

from ..exceptions import InputError

__all__ = ["row_spans", "row_chunks"]


def row_chunks(X) -> tuple[int, ...] | None:
    """Row-chunk lengths of a dask or zarr array, or None for an unchunked (NumPy) array."""
    X = getattr(X, "data", X) if type(X).__name__ == "DataArray" else X
    chunks = getattr(X, "chunks", None)
    if chunks is None:
        return None
    first = chunks[0]
    if isinstance(first, tuple):  # dask: ((c0, c1, ...), (...))
        return tuple(int(c) for c in first)
    n, step = int(X.shape[0]), int(first)  # zarr: (rows_per_chunk, cols_per_chunk)
    return tuple(min(step, n - a) for a in range(0, n, step))


def row_spans(
    n_rows: int, chunks=None, *, read_rows: int | None = None, align: int = 1, group: bool = False
) -> list[tuple[int, int]]:
    """Contiguous row ranges ``(a, b)`` that cover ``0..n_rows`` in order.

    Parameters
    ----------
    n_rows : int
    chunks : sequence of int, optional
        Row-chunk lengths. A span never crosses a chunk boundary (so each read decodes the
        chunks it touches once), except that ``group`` joins whole consecutive chunks.
    read_rows : int, optional
        Rows per span: default one chunk (the whole array when there are no chunks). A chunk
        longer than ``read_rows`` is cut into parts.
    align : int
        Parts of a chunk are multiples of ``align`` rows (the last part of a chunk may be
        shorter).
    group : bool
        Join whole consecutive chunks into one span while it stays within ``read_rows``.
    """
    if int(align) < 1:
        raise InputError(f"align (block_rows) must be at least 1, got {align}")
    bounds = np.cumsum((0, *tuple(chunks))) if chunks else np.array([0, n_rows])
    if read_rows is None:
        read_rows = int(max(np.diff(bounds))) if chunks else max(int(n_rows), 1)
    read_rows = max(int(read_rows), 1)
    step = max(int(align), read_rows // int(align) * int(align))
    spans: list[tuple[int, int]] = []
    whole_prev = False
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        if b <= a:
            continue
        if b - a > read_rows:  # parts of a chunk
            spans += [(s, min(s + step, b)) for s in range(a, b, step)]
            whole_prev = False
        elif group and whole_prev and b - spans[-1][0] <= read_rows:  # whole chunks, grouped
            spans[-1] = (spans[-1][0], b)
        else:
            spans.append((a, b))
            whole_prev = True
    return spans
