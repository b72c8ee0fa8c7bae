"""Mini-batch loaders for training on the store's ``expression``: in memory or streamed.

Two loaders with one interface (``loader.epoch(e)`` yields float32 row batches, every row
of the selection exactly once per epoch, in an order fixed by ``(random_state, e)``):

* :class:`MemoryLoader` — the rows are held in memory (a NumPy array, or a torch tensor on
  the GPU); each epoch draws a seeded permutation and slices batches from it.
* :class:`StreamingLoader` — the rows stay in the store. Reads are contiguous, aligned
  *spans* of rows (by default one row of store chunks, e.g. 4096 voxels x all genes, so each
  read decodes every chunk it touches exactly once), taken in a seeded random order. Spans
  are pooled in a shuffle buffer of ``shuffle_buffer`` rows, the pooled rows are permuted and
  cut into batches; the remainder carries over to the next fill. Rows are never read one at a
  time: random single-row access to a chunked store decodes a whole chunk per row
  (scverse/annbatch makes the same argument for its random contiguous blocks).

Reads are decoded straight into the shuffle buffer (a store's row blocks, through
:func:`~brainzarr.streaming.span_reader`): while a pool's batches train, a background thread
reads the next ``prefetch`` spans in behind it. The loader's memory is its buffer,
``shuffle_buffer`` rows plus ``1 + prefetch`` reads (:attr:`StreamingLoader.buffer_rows`), and
no block beside it; the batches do not depend on where or when rows were read.

How random are streamed batches? A batch mixes rows from the ``shuffle_buffer / span``
spans in the buffer. With the store's 4096-row chunks and a 1 GiB buffer (all 15,633 genes)
that is four random slabs of the brain per buffer; with ``read_rows=block_rows`` and a
store chunked in small row blocks the loader behaves like annbatch (random 32-row blocks).

Reads go through :mod:`brainzarr.streaming` (:func:`~brainzarr.streaming.row_spans`,
:func:`~brainzarr.streaming.prefetch`); the benchmarks of the loaders live in
``scripts/bench_fit.py`` (via :mod:`brainzarr.models._bench`).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask.array as da
import numpy as np

from .._deprecation import renamed_kwargs
from .._progress import step
from ..exceptions import InputError
from ..streaming import as_array, row_chunks, row_spans, span_reader
from ..streaming import prefetch as prefetch_spans

__all__ = ["MemoryLoader", "StreamingLoader", "load_rows", "available_memory", "SHUFFLE_BUFFER_BYTES"]

#: default shuffle-buffer size in bytes (rows = this / bytes per row, at least one span)
SHUFFLE_BUFFER_BYTES = 1 << 30


def available_memory() -> int:
    """Bytes of host memory available to this process (MemAvailable, cgroup limit aware)."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 4 << 30
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            avail = min(avail, int(limit) - used)
    except (OSError, ValueError):
        pass
    return max(int(avail), 0)


def _select(mask, n_rows):
    if mask is None:
        return None
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (n_rows,):
        raise InputError(f"row mask has shape {mask.shape}, expected ({n_rows},)")
    return mask


def load_rows(
    X,
    mask=None,
    *,
    out=None,
    block_rows: int = 32,
    prefetch: int = 2,
    desc: str = "loading rows",
):
    """Read the selected rows of ``X`` once, in order, span by span (background prefetch).

    ``out`` may be a preallocated array or tensor (e.g. on the GPU) with one row per
    selected row; by default a NumPy array is allocated. The spans count on the job's bar.
    """
    X = as_array(X)
    n = int(X.shape[0])
    mask = _select(mask, n)
    n_sel = n if mask is None else int(mask.sum())
    if out is None:
        out = np.empty((n_sel, int(X.shape[1])), dtype=np.float32)
    spans = loader_spans(X, read_rows=None, block_rows=block_rows)
    if mask is not None:
        spans = [s for s in spans if mask[s[0] : s[1]].any()]
    pos = 0
    if isinstance(out, np.ndarray):  # read straight into it: no block-sized temporary
        read = span_reader(X, spans)
        with step(len(spans), desc, unit="block") as bar:
            for i, (a, b) in enumerate(spans):
                pos += read(i, out[pos:], None if mask is None else mask[a:b])
                bar.update(1)
        return out
    with step(len(spans), desc, unit="block") as bar:
        for (a, b), block in zip(spans, prefetch_spans(X, spans, depth=prefetch)):
            if mask is not None:
                block = block[mask[a:b]]
            if hasattr(out, "copy_"):  # a torch tensor (maybe on the GPU)
                import torch

                out[pos : pos + len(block)].copy_(torch.from_numpy(block))
            else:
                out[pos : pos + len(block)] = block
            pos += len(block)
            bar.update(1)
    return out


def loader_spans(X, *, read_rows: int | None, block_rows: int) -> list[tuple[int, int]]:
    """The loaders' reads: multiples of ``block_rows`` aligned within the row chunks, whole
    chunks grouped up to ``read_rows`` (default one chunk; 1024 rows for unchunked arrays)."""
    chunks = row_chunks(X)
    if read_rows is None and not chunks:
        read_rows = 1024
    return row_spans(int(X.shape[0]), chunks, read_rows=read_rows, align=block_rows, group=True)


class MemoryLoader:
    """Batches drawn from rows held in memory (NumPy array or torch tensor, any device).

    Parameters
    ----------
    data : numpy.ndarray or torch.Tensor
        (rows, genes) float32, already in memory (on the training device for tensors).
    batch_size : int
    rows : array of int, optional
        Use only these rows of ``data`` (e.g. the training part); default all.
    random_state : int
        Epoch ``e`` uses the permutation drawn from ``(random_state, e)``.
    drop_last : bool
        Drop a final batch smaller than ``batch_size``.
    """

    @renamed_kwargs(seed="random_state")
    def __init__(self, data, batch_size: int = 128, *, rows=None, random_state: int = 0, drop_last: bool = False):
        self.data = data
        self.batch_size = int(batch_size)
        self.rows = np.arange(len(data)) if rows is None else np.asarray(rows, dtype=np.int64)
        self.random_state = int(random_state)
        self.drop_last = drop_last
        self._rows_t = None

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    def epoch(self, epoch: int):
        """Yield this epoch's batches (NumPy arrays, or tensors on the data's device)."""
        order = self.rows[np.random.default_rng([self.random_state, int(epoch), 1]).permutation(len(self.rows))]
        is_tensor = hasattr(self.data, "index_select")
        if is_tensor:
            import torch

            order = torch.from_numpy(order).to(self.data.device)
        stop = len(order) - (len(order) % self.batch_size if self.drop_last else 0)
        for i in range(0, stop, self.batch_size):
            idx = order[i : i + self.batch_size]
            yield self.data.index_select(0, idx) if is_tensor else self.data[idx]


class StreamingLoader:
    """Chunk-shuffled batches streamed from a chunked array (see the module docstring).

    Parameters
    ----------
    X : dask array, zarr array, NumPy array or DataArray
        (rows, genes).
    batch_size : int
    mask : bool array, optional
        Use only these rows (others are read with their span and dropped).
    block_rows : int
        Alignment and granularity of reads: spans are multiples of ``block_rows`` rows
        aligned within the row chunks.
    read_rows : int, optional
        Rows per read; default one row chunk (1024 rows for unchunked arrays).
    shuffle_buffer : int, optional
        Rows pooled and permuted before batches are cut; default about
        :data:`SHUFFLE_BUFFER_BYTES` of rows (at least one read, at least 8 batches).
    prefetch : int
        Reads made ahead by a background thread, into the buffer, while a pool's batches train
        (dask arrays; an in-memory array is only copied, so it is read when needed).
    random_state : int
        Epoch ``e``'s span order and in-buffer permutations come from ``(random_state, e)``.
    drop_last : bool
        Drop a final batch smaller than ``batch_size``.

    Attributes
    ----------
    buffer_rows : int
        Rows of the shuffle buffer: ``shuffle_buffer`` and room for the read that fills the
        pool and the reads ahead. Its float32 bytes are the loader's memory.
    """

    @renamed_kwargs(seed="random_state")
    def __init__(
        self,
        X,
        batch_size: int = 128,
        *,
        mask=None,
        block_rows: int = 32,
        read_rows=None,
        shuffle_buffer=None,
        prefetch: int = 2,
        random_state: int = 0,
        drop_last: bool = False,
    ):
        self.X = as_array(X)
        n, g = (int(s) for s in self.X.shape)
        self.batch_size = int(batch_size)
        self.mask = _select(mask, n)
        self.spans = loader_spans(self.X, read_rows=read_rows, block_rows=block_rows)
        if self.mask is not None:
            self.spans = [s for s in self.spans if self.mask[s[0] : s[1]].any()]
        longest = max((b - a for a, b in self.spans), default=1)
        if shuffle_buffer is None:
            shuffle_buffer = max(SHUFFLE_BUFFER_BYTES // (4 * max(g, 1)), 8 * self.batch_size)
        self.shuffle_buffer = max(int(shuffle_buffer), longest)
        self.prefetch = int(prefetch)
        self.random_state = int(random_state)
        self.drop_last = drop_last
        self._counts = [b - a if self.mask is None else int(np.count_nonzero(self.mask[a:b])) for a, b in self.spans]
        # reads ahead overlap decoding with training; an in-memory array is only copied
        self._ahead = max(self.prefetch, 0) if isinstance(self.X, da.Array) else 0
        # the read that reaches the pool's size lands whole, the reads ahead land behind it
        reads = max(self._counts, default=0)
        self.buffer_rows = max(self.shuffle_buffer, self.batch_size) + (1 + self._ahead) * reads

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0]) if self.mask is None else int(self.mask.sum())

    def epoch(self, epoch: int):
        """Yield this epoch's batches as float32 NumPy arrays."""
        rng = np.random.default_rng([self.random_state, int(epoch), 2])
        order = rng.permutation(len(self.spans))
        spans = [self.spans[i] for i in order]
        counts = [self._counts[i] for i in order]
        selects = [None if self.mask is None else self.mask[a:b] for a, b in spans]
        read = span_reader(self.X, spans)
        capacity = self.buffer_rows
        shape = (capacity, int(self.X.shape[1]))
        # the buffer is reused by the next epoch (first touches of a fresh GiB cost about a
        # second of page faults); an epoch started while another runs gets its own
        buffer, self._spare = getattr(self, "_spare", None), None
        if buffer is None or buffer.shape != shape:
            buffer = np.empty(shape, dtype=np.float32)
        ahead = ThreadPoolExecutor(1, thread_name_prefix="brainzarr-loader") if self._ahead else None
        # rows [0, filled) are the pool; [filled, filled + tail) were read ahead (spans k + 1 ...)
        filled = tail = 0
        unread = 0  # the first span neither read nor being read
        pending = []
        try:
            for k in range(len(spans)):
                if unread == k:
                    read(k, buffer[filled : filled + counts[k]], selects[k])
                    unread = k + 1
                else:
                    tail -= counts[k]
                filled += counts[k]
                # pools as a buffer of shuffle_buffer + batch_size rows filled block after block
                # would cut them (the batches do not depend on where or when rows were read)
                while (size := min(filled, self.shuffle_buffer + self.batch_size)) >= self.shuffle_buffer:
                    end = filled + tail
                    while ahead is not None and len(pending) < self._ahead and unread < len(spans):
                        if end + counts[unread] > capacity:
                            break
                        target = buffer[end : end + counts[unread]]
                        pending.append(ahead.submit(read, unread, target, selects[unread]))
                        end += counts[unread]
                        unread += 1
                    rest = yield from self._drain(buffer, size, rng, keep_remainder=True)
                    for future in pending:
                        future.result()
                    pending = []
                    tail = end - filled
                    _move_rows(buffer, size, end, rest)  # the pool's overflow and the reads ahead
                    filled, overflow = rest + filled - size, filled - size
                    if not overflow:
                        break
            yield from self._drain(buffer, filled, rng, keep_remainder=False)
        finally:
            for future in pending:
                future.cancel()
            if ahead is not None:
                ahead.shutdown(wait=True)  # no read may go on writing into a buffer the next epoch uses
            self._spare = buffer

    def _drain(self, buffer, filled, rng, *, keep_remainder):
        """Permute ``buffer[:filled]``, yield its full batches; return the rows left at the front."""
        order = rng.permutation(filled)
        n_full = filled // self.batch_size * self.batch_size
        for i in range(0, n_full, self.batch_size):
            yield buffer[order[i : i + self.batch_size]]
        rest = order[n_full:]
        if keep_remainder:
            buffer[: len(rest)] = buffer[rest]
            return len(rest)
        if len(rest) and not self.drop_last:
            yield buffer[rest]
        return 0


def _move_rows(buffer, start: int, end: int, to: int) -> None:
    """Rows ``[start, end)`` of ``buffer`` moved down to ``to`` (``to <= start``), in strips
    that never overlap their source, so no temporary the size of the rows is made."""
    strip = max(1, min(4096, start - to))
    for i in range(0, end - start, strip) if to < start else ():
        n = min(strip, end - start - i)
        buffer[to + i : to + i + n] = buffer[start + i : start + i + n]
