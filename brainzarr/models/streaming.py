"""Streaming passes over row blocks, shared by the linear models (PCA, kernel PCA, NMF).

A *pass* reads every row block of a (voxels, genes) array once. Two forms:

* :func:`block_reduce` — a map-reduce: ``fn(block)`` returns a tuple of arrays and the pass
  returns their sums. Locally it streams blocks one after another (memory: one block being
  read plus one being used, plus the accumulators); on a dask.distributed client (see
  :func:`fit_context`) the blocks are mapped on the workers and summed in a tree.
* :func:`stream_blocks` — the blocks themselves, in order or shuffled at the block level, for
  estimators that must see them one at a time (mini-batch NMF).

:func:`fit_context` is how the pipeline hands a client and the progress setting to a model's
``fit`` without making them estimator parameters (they are not part of the model).
"""

from __future__ import annotations

import contextlib
import contextvars
from functools import reduce

import dask
import dask.array as da
import numpy as np
from tqdm.auto import tqdm

from ..parallel import compute_tasks, progress_enabled
from .base import as_array, iter_row_blocks

__all__ = ["fit_context", "block_reduce", "stream_blocks", "row_spans", "take_rows", "cache_if_small", "select_rows"]

_CONTEXT: contextvars.ContextVar = contextvars.ContextVar(
    "brainzarr_fit_context", default={"client": None, "progress": False}
)
_TREE_FANIN = 8


@contextlib.contextmanager
def fit_context(*, client=None, progress: bool | None = None):
    """Within this block, streaming passes run on ``client`` (if given) and show progress bars."""
    token = _CONTEXT.set({"client": client, "progress": progress_enabled(progress)})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def row_spans(X, block_rows: int | None = None) -> list[tuple[int, int]]:
    """Row ranges of the blocks a pass reads: the dask row chunks, or ``block_rows`` rows."""
    X = as_array(X)
    n = X.shape[0]
    if block_rows is None and isinstance(X, da.Array):
        bounds = np.cumsum((0,) + X.chunks[0])
    else:
        bounds = np.r_[np.arange(0, n, block_rows or max(n, 1)), n]
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def cache_if_small(X, max_bytes: int | None, block_rows: int | None = None):
    """``(X in memory, block rows)`` when X takes at most ``max_bytes`` (float32), else ``(X, block_rows)``.

    Estimators that pass over the data many times (PCA, NMF) then read the store once; above
    the budget every pass streams, so memory stays bounded whatever the number of voxels. The
    in-memory copy is a NumPy array read block by block (no transient 2x); its passes keep the
    store's row blocks (``block_rows`` defaults to the largest row chunk), so per-block
    temporaries stay block-sized. Not used under a dask.distributed client (the workers hold the
    data there).
    """
    X = as_array(X)
    if (
        not isinstance(X, da.Array)
        or max_bytes is None
        or _CONTEXT.get()["client"] is not None
        or X.size * 4 > max_bytes
    ):
        return X, block_rows
    held = np.empty(X.shape, dtype=np.float32)
    start = 0
    for block in stream_blocks(X, desc="reading into memory"):
        held[start : start + len(block)] = block
        start += len(block)
    return held, block_rows or max(X.chunks[0])


def select_rows(X, mask):
    """``X[mask]`` that keeps one output row block per input row block.

    dask's own boolean indexing re-balances the output's row chunks, so each of them straddles
    two blocks of the store and a pass reads every block twice; this does not.
    """
    mask = np.asarray(mask, dtype=bool)
    if not isinstance(X, da.Array):
        return X[mask]
    bounds = np.cumsum((0,) + X.chunks[0])
    parts = [X[a:b][mask[a:b]] for a, b in zip(bounds[:-1], bounds[1:]) if mask[a:b].any()]
    return da.concatenate(parts, axis=0) if parts else X[:0]


def take_rows(X, rows) -> np.ndarray:
    """Rows ``rows`` (sorted indices) of a NumPy or dask array, in memory as float32."""
    sub = as_array(X)[np.asarray(rows)]
    return np.asarray(sub.compute() if isinstance(sub, da.Array) else sub, dtype=np.float32)


def stream_blocks(X, *, block_rows: int | None = None, rng: np.random.Generator | None = None, desc: str | None = None):
    """Yield NumPy row blocks of ``X`` (float32), in order or, given ``rng``, in random block order.

    Shuffling permutes whole blocks (each read contiguously, never row by row); callers shuffle
    rows inside a block themselves. Dask arrays are read one block ahead in the background.
    """
    X = as_array(X)
    spans = row_spans(X, block_rows)
    if rng is not None:
        spans = [spans[i] for i in rng.permutation(len(spans))]
    show = _CONTEXT.get()["progress"] and desc is not None
    if isinstance(X, da.Array) and rng is not None:
        # a lazily re-ordered view whose row chunks are the spans: prefetch follows that order
        view = da.concatenate([X[a:b] for a, b in spans], axis=0).rechunk({0: tuple(b - a for a, b in spans)})
        blocks = iter_row_blocks(view)
    elif isinstance(X, da.Array):
        blocks = iter_row_blocks(X, block_rows)
    else:
        blocks = (np.asarray(X[a:b], dtype=np.float32) for a, b in spans)
    with tqdm(total=len(spans), desc=desc, unit="block", disable=not show, leave=False) as bar:
        for block in blocks:
            yield block
            bar.update(1)


def block_reduce(X, fn, *, block_rows: int | None = None, desc: str | None = None):
    """Sum ``fn(block)`` (a tuple of arrays) over the row blocks of ``X``: one streamed pass.

    Runs on the client of :func:`fit_context` when there is one (tree reduction), else locally.
    """
    X = as_array(X)
    ctx = _CONTEXT.get()
    if ctx["client"] is not None and isinstance(X, da.Array):
        return _distributed_reduce(X, fn, block_rows, ctx, desc)
    total = None
    for block in stream_blocks(X, block_rows=block_rows, desc=desc):
        part = fn(block)
        total = part if total is None else tuple(t + p for t, p in zip(total, part))
    if total is None:
        raise ValueError("cannot stream an array with no rows")
    return total


def _sum_parts(*parts):
    return reduce(lambda a, b: tuple(x + y for x, y in zip(a, b)), parts)


def _distributed_reduce(X, fn, block_rows, ctx, desc):
    if block_rows is not None:
        X = X.rechunk({0: block_rows})
    blocks = X.rechunk({1: -1}).astype(np.float32).to_delayed().ravel().tolist()
    apply = dask.delayed(fn, pure=True)
    level = [apply(b) for b in blocks]
    leaves = list(level)
    while len(level) > 1:
        level = [dask.delayed(_sum_parts)(*level[i : i + _TREE_FANIN]) for i in range(0, len(level), _TREE_FANIN)]
    return compute_tasks(level, client=ctx["client"], desc=desc or "streaming", progress=ctx["progress"], track=leaves)[
        0
    ]
