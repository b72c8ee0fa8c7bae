"""Mini-batch loaders for training on the store's ``expression``: in memory or streamed.

Two loaders with one interface (``loader.epoch(e)`` yields float32 row batches, every row
of the selection exactly once per epoch, in an order fixed by ``(seed, e)``):

* :class:`MemoryLoader` — the rows are held in memory (a NumPy array, or a torch tensor on
  the GPU); each epoch draws a seeded permutation and slices batches from it.
* :class:`StreamingLoader` — the rows stay in the store. Reads are contiguous, aligned
  *spans* of rows (by default one row of store chunks, e.g. 4096 voxels x all genes, so each
  read decodes every chunk it touches exactly once), taken in a seeded random order by a
  background thread (``prefetch`` reads ahead). Spans are pooled in a shuffle buffer of
  ``shuffle_buffer`` rows, the pooled rows are permuted and cut into batches; the remainder
  carries over to the next fill. Rows are never read one at a time: random single-row
  access to a chunked store decodes a whole chunk per row (scverse/annbatch makes the same
  argument for its random contiguous blocks).

How random are streamed batches? A batch mixes rows from the ``shuffle_buffer / span``
spans in the buffer. With the store's 4096-row chunks and a 1 GiB buffer (all 15,633 genes)
that is four random slabs of the brain per buffer; with ``read_rows=block_rows`` and a
store chunked in small row blocks the loader behaves like annbatch (random 32-row blocks).

:func:`loader_rate` measures a loader alone (rows/s); :func:`throughput` puts it next to the
auto-encoder's consumption (rows/s of forward + backward + Adam step), for the benchmarks.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .base import as_array, prefetch_spans

__all__ = [
    "MemoryLoader",
    "StreamingLoader",
    "load_rows",
    "row_chunks",
    "available_memory",
    "loader_rate",
    "throughput",
    "throughput_rows",
]

#: default shuffle-buffer size in bytes (rows = this / bytes per row, at least one span)
SHUFFLE_BUFFER_BYTES = 1 << 30


def row_chunks(X) -> tuple[int, ...] | None:
    """Row-chunk lengths of a dask or zarr array, or None for an unchunked (NumPy) array."""
    chunks = getattr(X, "chunks", None)
    if chunks is None:
        return None
    first = chunks[0]
    if isinstance(first, tuple):  # dask: ((c0, c1, ...), (...))
        return tuple(int(c) for c in first)
    n, step = int(X.shape[0]), int(first)  # zarr: (rows_per_chunk, cols_per_chunk)
    return tuple(min(step, n - a) for a in range(0, n, step))


def make_spans(
    n_rows: int, chunks: tuple[int, ...] | None, *, read_rows: int | None, block_rows: int
) -> list[tuple[int, int]]:
    """Contiguous read spans: multiples of ``block_rows`` aligned to the row chunks.

    A span never crosses a chunk boundary when ``read_rows`` is at most the chunk length;
    a larger ``read_rows`` groups whole consecutive chunks. The last span of a chunk may be
    shorter (the chunk's remainder).
    """
    if block_rows < 1:
        raise ValueError(f"block_rows must be at least 1, got {block_rows}")
    bounds = np.cumsum((0,) + tuple(chunks)) if chunks else np.array([0, n_rows])
    if read_rows is None:
        read_rows = int(max(np.diff(bounds))) if chunks else 1024
    read_rows = int(read_rows)
    step = max(block_rows, read_rows // block_rows * block_rows)
    spans: list[tuple[int, int]] = []
    whole_prev = False
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        if b - a > read_rows:  # parts of a chunk
            spans += [(s, min(s + step, b)) for s in range(a, b, step)]
            whole_prev = False
        elif whole_prev and b - spans[-1][0] <= read_rows:  # whole chunks, grouped up to read_rows
            spans[-1] = (spans[-1][0], b)
        else:
            spans.append((a, b))
            whole_prev = True
    return spans


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
        raise ValueError(f"row mask has shape {mask.shape}, expected ({n_rows},)")
    return mask


def load_rows(
    X,
    mask=None,
    *,
    out=None,
    block_rows: int = 32,
    prefetch: int = 2,
    progress: bool = False,
    desc: str = "loading rows",
):
    """Read the selected rows of ``X`` once, in order, span by span (background prefetch).

    ``out`` may be a preallocated array or tensor (e.g. on the GPU) with one row per
    selected row; by default a NumPy array is allocated. ``progress`` shows a bar (rows).
    """
    from tqdm.auto import tqdm

    X = as_array(X)
    n = int(X.shape[0])
    mask = _select(mask, n)
    n_sel = n if mask is None else int(mask.sum())
    if out is None:
        out = np.empty((n_sel, int(X.shape[1])), dtype=np.float32)
    spans = make_spans(n, row_chunks(X), read_rows=None, block_rows=block_rows)
    if mask is not None:
        spans = [s for s in spans if mask[s[0] : s[1]].any()]
    pos = 0
    with tqdm(total=n_sel, desc=desc, unit="row", unit_scale=True, disable=not progress, leave=False) as bar:
        for (a, b), block in zip(spans, prefetch_spans(X, spans, prefetch=prefetch)):
            if mask is not None:
                block = block[mask[a:b]]
            if hasattr(out, "copy_"):  # a torch tensor (maybe on the GPU)
                import torch

                out[pos : pos + len(block)].copy_(torch.from_numpy(block))
            else:
                out[pos : pos + len(block)] = block
            pos += len(block)
            bar.update(len(block))
    return out


class MemoryLoader:
    """Batches drawn from rows held in memory (NumPy array or torch tensor, any device).

    Parameters
    ----------
    data : numpy.ndarray or torch.Tensor
        (rows, genes) float32, already in memory (on the training device for tensors).
    batch_size : int
    rows : array of int, optional
        Use only these rows of ``data`` (e.g. the training part); default all.
    seed : int
        Epoch ``e`` uses the permutation drawn from ``(seed, e)``.
    drop_last : bool
        Drop a final batch smaller than ``batch_size``.
    """

    def __init__(self, data, batch_size: int = 128, *, rows=None, seed: int = 0, drop_last: bool = False):
        self.data = data
        self.batch_size = int(batch_size)
        self.rows = np.arange(len(data)) if rows is None else np.asarray(rows, dtype=np.int64)
        self.seed = int(seed)
        self.drop_last = drop_last
        self._rows_t = None

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    def epoch(self, epoch: int):
        """Yield this epoch's batches (NumPy arrays, or tensors on the data's device)."""
        order = self.rows[np.random.default_rng([self.seed, int(epoch), 1]).permutation(len(self.rows))]
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
        Reads queued ahead by the background thread.
    seed : int
        Epoch ``e``'s span order and in-buffer permutations come from ``(seed, e)``.
    drop_last : bool
        Drop a final batch smaller than ``batch_size``.
    """

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
        seed: int = 0,
        drop_last: bool = False,
    ):
        self.X = as_array(X)
        n, g = (int(s) for s in self.X.shape)
        self.batch_size = int(batch_size)
        self.mask = _select(mask, n)
        self.spans = make_spans(n, row_chunks(self.X), read_rows=read_rows, block_rows=block_rows)
        if self.mask is not None:
            self.spans = [s for s in self.spans if self.mask[s[0] : s[1]].any()]
        longest = max((b - a for a, b in self.spans), default=1)
        if shuffle_buffer is None:
            shuffle_buffer = max(SHUFFLE_BUFFER_BYTES // (4 * max(g, 1)), 8 * self.batch_size)
        self.shuffle_buffer = max(int(shuffle_buffer), longest)
        self.prefetch = int(prefetch)
        self.seed = int(seed)
        self.drop_last = drop_last

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0]) if self.mask is None else int(self.mask.sum())

    def epoch(self, epoch: int):
        """Yield this epoch's batches as float32 NumPy arrays."""
        rng = np.random.default_rng([self.seed, int(epoch), 2])
        spans = [self.spans[i] for i in rng.permutation(len(self.spans))]
        width = int(self.X.shape[1])
        shape = (self.shuffle_buffer + self.batch_size, width)
        # the buffer is reused by the next epoch (first touches of a fresh GiB cost about a
        # second of page faults); an epoch started while another runs gets its own
        buffer, self._spare = getattr(self, "_spare", None), None
        if buffer is None or buffer.shape != shape:
            buffer = np.empty(shape, dtype=np.float32)
        try:
            filled = 0
            for (a, b), block in zip(spans, prefetch_spans(self.X, spans, prefetch=self.prefetch)):
                if self.mask is not None:
                    block = block[self.mask[a:b]]
                while len(block):
                    take = min(len(block), len(buffer) - filled)
                    buffer[filled : filled + take] = block[:take]
                    filled += take
                    block = block[take:]
                    if filled >= self.shuffle_buffer:
                        filled = yield from self._drain(buffer, filled, rng, keep_remainder=True)
            yield from self._drain(buffer, filled, rng, keep_remainder=False)
        finally:
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


def loader_rate(
    X,
    mode: str = "stream",
    *,
    batch_size: int = 128,
    max_rows: int | None = None,
    seed: int = 0,
    epochs: int = 2,
    **loader_options,
) -> dict:
    """Rows/s of one loader alone.

    Parameters
    ----------
    X : dask array, NumPy array or DataArray
        (rows, genes).
    mode : {'memory', 'stream'}
        'memory' reads the rows in first (timed separately as ``load_s``), then times
        drawing batches; 'stream' times :class:`StreamingLoader` end to end.
    max_rows : int, optional
        Use at most this many rows (the first ones: a contiguous prefix).
    epochs : int
        Epochs drawn. The rate is that of the epochs after the first (the loader's steady
        state over a training run: its first epoch also allocates the shuffle buffer), or of
        the one epoch when ``epochs`` is 1; the first epoch's rate is reported apart.
    **loader_options
        Passed to :class:`StreamingLoader` (block_rows, read_rows, shuffle_buffer, prefetch).

    Returns
    -------
    dict
        ``mode``, ``rows`` (per epoch), ``rows_per_s``, ``first_epoch_rows_per_s``, ``load_s``.
    """
    X = as_array(X)
    if max_rows is not None and X.shape[0] > max_rows:
        X = X[:max_rows]
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    t0 = time.perf_counter()
    if mode == "memory":
        loader = MemoryLoader(load_rows(X), batch_size, seed=seed)
    elif mode == "stream":
        loader = StreamingLoader(X, batch_size, seed=seed, **loader_options)
    else:
        raise ValueError(f"unknown loader mode {mode!r}; choose 'memory' or 'stream'")
    load_s = time.perf_counter() - t0
    rates = []
    for epoch in range(int(epochs)):
        t0 = time.perf_counter()
        rows = sum(len(batch) for batch in loader.epoch(epoch))
        rates.append(rows / max(time.perf_counter() - t0, 1e-9))
    steady = rates[1:] or rates
    return {
        "mode": mode,
        "rows": rows,
        "rows_per_s": len(steady) / sum(1 / r for r in steady),
        "first_epoch_rows_per_s": rates[0],
        "load_s": load_s,
    }


def throughput(
    X,
    *,
    batch_size: int = 128,
    n_components: int = 8,
    hidden=(500, 250, 125),
    device: str = "cpu",
    mixed_precision: bool = True,
    modes=("memory", "stream"),
    max_rows: int | None = 20_000,
    train_batches: int = 20,
    seed: int = 0,
    **loader_options,
) -> list[dict]:
    """Rows/s of the loaders alone next to the auto-encoder's consumption, one row per mode.

    Parameters
    ----------
    X : dask array, NumPy array or DataArray
        (rows, genes), e.g. the store's ``expression``.
    batch_size, n_components, hidden, device, mixed_precision
        The auto-encoder whose consumption is timed (as :class:`~.autoencoder.AutoEncoder`):
        forward, backward and Adam step on batches already on the device.
    modes, max_rows, seed, **loader_options
        As :func:`loader_rate`.
    train_batches : int
        Training steps timed (after one warm-up step).

    Returns
    -------
    list of dict
        ``mode``, ``rows``, ``loader_rows_per_s``, ``train_rows_per_s``, ``ratio`` (loader /
        training; the target is >= 5), ``load_s`` (memory mode: reading the rows in),
        ``first_epoch_rows_per_s`` (see :func:`loader_rate`).
    """
    from .autoencoder import AutoEncoder

    ae = AutoEncoder(
        n_components,
        hidden=hidden,
        batch_size=batch_size,
        device=device,
        mixed_precision=mixed_precision,
        random_state=seed,
    )
    train_rate = ae.training_throughput(int(X.shape[1]), n_batches=train_batches)
    out = []
    for mode in modes:
        r = loader_rate(X, mode, batch_size=batch_size, max_rows=max_rows, seed=seed, **loader_options)
        out.append(
            {
                "mode": mode,
                "rows": r["rows"],
                "loader_rows_per_s": r["rows_per_s"],
                "train_rows_per_s": train_rate,
                "ratio": r["rows_per_s"] / train_rate,
                "load_s": r["load_s"],
                "first_epoch_rows_per_s": r["first_epoch_rows_per_s"],
            }
        )
    return out


def throughput_rows(
    X,
    dims=(2, 128),
    *,
    batch_size: int = 128,
    hidden=(500, 250, 125),
    device: str = "auto",
    max_rows: int | None = 20_000,
    train_batches: int = 10,
    seed: int = 0,
    **loader_options,
) -> list[dict]:
    """Benchmark table rows: the auto-encoder's training rate per code width (``method``
    'ae[train]'), then each loader's rate alone and its ratio to the fastest training rate
    ('ae[loader:memory]', 'ae[loader:stream]', ``dim`` None). Keys: method, dim,
    rows_per_s, ratio, load_s, first_epoch_rows_per_s. Arguments as :func:`throughput`."""
    from .autoencoder import AutoEncoder

    X = as_array(X)
    rows = [
        {
            "method": "ae[train]",
            "dim": int(dim),
            "rows_per_s": AutoEncoder(
                int(dim), hidden=hidden, batch_size=batch_size, device=device, random_state=seed
            ).training_throughput(int(X.shape[1]), n_batches=train_batches),
        }
        for dim in dims
    ]
    fastest = max(r["rows_per_s"] for r in rows)
    for mode in ("memory", "stream"):
        r = loader_rate(X, mode, batch_size=batch_size, max_rows=max_rows, seed=seed, **loader_options)
        rows.append(
            {
                "method": f"ae[loader:{mode}]",
                "dim": None,
                "rows_per_s": r["rows_per_s"],
                "ratio": r["rows_per_s"] / fastest,
                "load_s": r["load_s"],
                "first_epoch_rows_per_s": r["first_epoch_rows_per_s"],
            }
        )
    return rows
