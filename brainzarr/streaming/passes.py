"""Streamed passes over the row blocks of a (voxels, genes) array.

A *pass* reads every row block once. The forms:

* :func:`prefetch` / :func:`iter_row_blocks` / :func:`stream_blocks` — the blocks themselves,
  read one ahead by a background thread (in order, or shuffled at the block level), for
  estimators that must see them one at a time;
* :func:`block_reduce` — a map-reduce: ``fn(block)`` returns a tuple of arrays and the pass
  returns their sums; locally it streams the blocks, on a dask.distributed client (see
  :mod:`brainzarr.options`) the blocks are mapped on the workers and summed in a tree;
* :func:`compute_tasks` — the parallel pass: dask tasks (one per block, each owning whole
  chunks) run on local threads or on the client, counted on the job's progress bar.

Memory is a few blocks, whatever the number of voxels: the out-of-core property.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import reduce

import dask
import dask.array as da
import numpy as np
from dask.callbacks import Callback
from dask.system import CPU_COUNT

from .._progress import step
from ..exceptions import InputError
from ..options import current_client
from .reader import reusing_buffers
from .spans import row_spans

__all__ = [
    "as_array",
    "compute_rows",
    "prefetch",
    "span_reader",
    "iter_row_blocks",
    "stream_blocks",
    "block_reduce",
    "block_spans",
    "compute_tasks",
    "cache_if_small",
    "select_rows",
    "take_rows",
]

_TREE_FANIN = 8


def as_array(X):
    """The array under a DataArray (dask or NumPy); arrays pass through."""
    return X.data if type(X).__name__ == "DataArray" else X


def _spans_of(X, block_rows: int | None) -> list[tuple[int, int]]:
    """The dask row chunks, or steps of ``block_rows`` rows (the whole array for NumPy)."""
    n = int(X.shape[0])
    if block_rows is None and isinstance(X, da.Array):
        return row_spans(n, X.chunks[0])
    return row_spans(n, None, read_rows=block_rows or max(n, 1))


def compute_rows(X: da.Array, a: int, b: int, scheduler: str | None = "threads") -> np.ndarray:
    """``X[a:b]`` of a dask array, computed.

    When the rows are one chunk of ``X`` (the usual case: spans follow the row chunks), the
    chunk's task is computed as is: ``Array.compute`` would copy its result once more.
    """
    part = X[a:b]
    if part.numblocks == (1, 1):
        (task,) = part.to_delayed(optimize_graph=False).ravel()
        return task.compute(scheduler=scheduler)
    return part.compute(scheduler=scheduler)


def prefetch(X, spans, *, depth: int = 1, dtype=np.float32):
    """Yield ``X[a:b]`` as NumPy arrays for each row range ``(a, b)`` of ``spans``, in order.

    For dask arrays a background thread reads up to ``depth`` spans ahead, so reading
    (decompression) overlaps the caller's computation; arrays made by
    :func:`~brainzarr.streaming.expression_rows` are read by the store's reader directly.
    """
    spans = list(spans)
    direct = _direct_blocks(X, spans)
    if direct is not None:  # the store's reader, called without dask
        reader, reads = direct
        calls = [(lambda r=r: reader(*r)) for r in reads]
    elif isinstance(X, da.Array):
        calls = [(lambda a=a, b=b: np.asarray(compute_rows(X, a, b), dtype=dtype)) for a, b in spans]
    else:
        calls = [(lambda a=a, b=b: np.asarray(X[a:b], dtype=dtype)) for a, b in spans]
    with reusing_buffers():  # the reader's blocks serve block after block, then go with the pass
        if depth < 1 or not isinstance(X, da.Array):
            for call in calls:
                yield call()
            return
        yield from _threaded(calls, depth)


def span_reader(X, spans):
    """``read(i, out, select=None)``: rows ``spans[i]`` of ``X`` (those where the boolean
    ``select`` over them is true) written into ``out[:n]``; returns ``n``.

    Arrays made by :func:`~brainzarr.streaming.expression_rows` whose row blocks are the spans
    are decoded by the store's reader straight into ``out``: no block-sized temporary, which is
    what lets a loader keep its reads inside its own buffer. Other arrays are read a block at a
    time and copied.
    """
    spans = list(spans)
    direct = _direct_blocks(X, spans)

    def read(i: int, out: np.ndarray, select=None) -> int:
        a, b = spans[i]
        select = None if select is None else np.asarray(select, dtype=bool)
        if direct is not None:
            reader, reads = direct
            s0, s1, keep = reads[i]
            if select is not None:  # the selected ones among the rows the block keeps
                chosen = np.zeros(s1 - s0, dtype=bool)
                chosen[np.arange(s1 - s0) if keep is None else np.flatnonzero(keep)] = select
                keep = chosen
            n = s1 - s0 if keep is None else int(np.count_nonzero(keep))
            reader(s0, s1, keep, out=out[:n])
            return n
        if isinstance(X, da.Array):
            block = np.asarray(compute_rows(X, a, b), dtype=np.float32)
        else:
            block = np.asarray(X[a:b], dtype=np.float32)
        if select is None:
            out[: len(block)] = block
            return len(block)
        rows = np.flatnonzero(select)
        # mode="clip": with the default "raise" numpy buffers `out` (a block-sized copy again)
        np.take(block, rows, axis=0, out=out[: len(rows)], mode="clip")
        return len(rows)

    return read


def _direct_blocks(X, spans):
    """The reader calls behind ``spans`` when X is an unchanged expression_rows array whose row
    blocks are exactly these spans (in any order), else None."""
    from .direct import direct_reads

    found = direct_reads(X) if isinstance(X, da.Array) else None
    if found is None:
        return None
    reader, reads = found
    bounds = np.cumsum((0, *X.chunks[0]))
    index = {(int(a), int(b)): i for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))}
    try:
        return reader, [reads[index[(int(a), int(b))]] for a, b in spans]
    except KeyError:
        return None


def _threaded(calls, depth: int = 1):
    """Yield ``call()`` for each call, run one ahead in a background thread."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def worker():
        try:
            for call in calls:
                if stop.is_set():
                    return
                q.put(call())
        except BaseException as exc:  # surface errors in the consumer
            q.put(exc)
        q.put(None)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


def iter_row_blocks(X, block_rows: int | None = None, *, depth: int = 1, dtype=np.float32):
    """Yield consecutive NumPy row blocks of a NumPy or dask array (all columns).

    Default block: the array's row chunks (dask), the whole array (NumPy).
    """
    X = as_array(X)
    yield from prefetch(X, _spans_of(X, block_rows), depth=depth, dtype=dtype)


def stream_blocks(X, *, block_rows: int | None = None, rng: np.random.Generator | None = None, desc: str | None = None):
    """Yield NumPy row blocks of ``X`` (float32), in order or, given ``rng``, in random block order.

    Shuffling permutes whole blocks (each read contiguously, never row by row); callers shuffle
    rows inside a block themselves. With ``desc`` the blocks count on the job's progress bar.
    """
    X = as_array(X)
    spans = _spans_of(X, block_rows)
    if rng is not None:
        spans = [spans[i] for i in rng.permutation(len(spans))]
    if isinstance(X, da.Array):
        blocks = prefetch(X, spans)
    else:
        blocks = (np.asarray(X[a:b], dtype=np.float32) for a, b in spans)
    if desc is None:
        yield from blocks
        return
    with step(len(spans), desc, unit="block") as bar:
        for block in blocks:
            yield block
            bar.update(1)


def block_reduce(
    X,
    fn,
    *,
    block_rows: int | None = None,
    desc: str | None = None,
    combine=None,
    per_block=None,
):
    """Sum ``fn(block)`` (a tuple of arrays) over the row blocks of ``X``: one streamed pass.

    Runs on the current dask.distributed client when there is one (tree reduction), else locally.

    Parameters
    ----------
    X : array or DataArray
        (rows, columns), dask or NumPy.
    fn : callable
        ``fn(block)`` -> a tuple of arrays (``fn(block, extra)`` with ``per_block``).
    block_rows : int, optional
        Rows a block (default: the dask row chunks; all rows for NumPy).
    desc : str, optional
        What the job's progress bar counts the blocks as.
    combine : callable, optional
        ``combine(a, b)`` -> one part from two (default: their sums, array by array), e.g. an
        element-wise minimum.
    per_block : sequence, optional
        One more argument of ``fn`` for each row block, in order (:func:`block_spans` gives the
        blocks' rows): e.g. the block's columns of a matrix over the rows, so that each task
        carries its own part and not the whole.
    """
    X = as_array(X)
    combine = _sum_two if combine is None else combine
    if per_block is not None:
        per_block, n_blocks = list(per_block), len(_spans_of(X, block_rows))
        if len(per_block) != n_blocks:
            raise InputError(f"per_block has {len(per_block)} items for {n_blocks} row blocks")
    client = current_client()
    if client is not None and isinstance(X, da.Array):
        return _distributed_reduce(X, fn, block_rows, client, desc, combine, per_block)
    total = None
    for i, block in enumerate(stream_blocks(X, block_rows=block_rows, desc=desc)):
        part = fn(block) if per_block is None else fn(block, per_block[i])
        total = part if total is None else combine(total, part)
    if total is None:
        raise InputError("cannot stream an array with no rows")
    return total


def block_spans(X, block_rows: int | None = None) -> list[tuple[int, int]]:
    """The ``(start, stop)`` rows of each block a pass over ``X`` reads, in order."""
    return _spans_of(as_array(X), block_rows)


def _sum_two(a, b):
    return tuple(x + y for x, y in zip(a, b, strict=True))


def _combined(combine, *parts):
    return reduce(combine, parts)


def _distributed_reduce(X, fn, block_rows, client, desc, combine, per_block):
    if block_rows is not None:
        X = X.rechunk({0: block_rows})
    blocks = X.rechunk({1: -1}).astype(np.float32).to_delayed().ravel().tolist()
    apply = dask.delayed(fn, pure=True)
    if per_block is None:
        level = [apply(b) for b in blocks]
    else:
        level = [apply(b, extra) for b, extra in zip(blocks, per_block, strict=True)]
    leaves = list(level)
    merge = dask.delayed(_combined, pure=True)
    while len(level) > 1:
        level = [merge(combine, *level[i : i + _TREE_FANIN]) for i in range(0, len(level), _TREE_FANIN)]
    return compute_tasks(level, client=client, desc=desc or "streaming", track=leaves)[0]


class _CountCallback(Callback):
    """Advance a bar when a task whose key is one of ``keys`` finishes."""

    def __init__(self, bar, keys):
        super().__init__()
        self._bar = bar
        self._keys = set(keys)

    def _posttask(self, key, result, dsk, state, worker_id):
        if key in self._keys:
            self._bar.update(1)


def compute_tasks(tasks, *, client=None, desc="working", num_workers=None, track=None):
    """Compute ``tasks`` (dask delayed objects) and return their results in order.

    Parameters
    ----------
    tasks : list of dask.delayed.Delayed
    client : distributed.Client, optional
        Run on this cluster; default: the current client (:func:`brainzarr.options.current_client`),
        else the local threaded scheduler.
    desc : str
        What the job's progress bar says while these tasks run.
    num_workers : int, optional
        Threads of the local scheduler (default: the CPU count).
    track : list of Delayed, optional
        Tasks the bar counts (default: ``tasks``), e.g. the leaves of a reduction.
    """
    tasks = list(tasks)
    if not tasks:
        return []
    client = current_client(client)
    track = tasks if track is None or client is not None else list(track)
    with step(len(track), desc, unit="task") as bar, reusing_buffers():
        if client is not None:
            from distributed import as_completed

            futures = client.compute(tasks)
            try:
                for _ in as_completed(futures):
                    bar.update(1)
                return client.gather(futures)
            except BaseException:
                client.cancel(futures)
                raise
        # our own pool, so that when a task fails the ones still running finish before the error
        # reaches the caller (dask's shared pool lets them go on writing into a scratch folder
        # the caller is already removing)
        pool = ThreadPoolExecutor(num_workers or CPU_COUNT)
        try:
            with _CountCallback(bar, [t.key for t in track]):
                return list(dask.compute(*tasks, scheduler="threads", pool=pool))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


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
    if not isinstance(X, da.Array) or max_bytes is None or current_client() is not None or X.size * 4 > max_bytes:
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
    bounds = np.cumsum((0, *X.chunks[0]))
    parts = [X[a:b][mask[a:b]] for a, b in zip(bounds[:-1], bounds[1:]) if mask[a:b].any()]
    return da.concatenate(parts, axis=0) if parts else X[:0]


def take_rows(X, rows) -> np.ndarray:
    """Rows ``rows`` (sorted indices) of a NumPy or dask array, in memory as float32."""
    sub = as_array(X)[np.asarray(rows)]
    return np.asarray(sub.compute() if isinstance(sub, da.Array) else sub, dtype=np.float32)
