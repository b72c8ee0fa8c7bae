"""Benchmarks of the auto-encoder's loaders (for ``scripts/bench_fit.py``): kept apart from the
loaders and the model, so that neither imports the other."""

from __future__ import annotations

import time

from ..exceptions import InputError
from ..streaming import as_array
from .autoencoder import AutoEncoder
from .loaders import MemoryLoader, StreamingLoader, load_rows

__all__ = ["loader_rate", "throughput", "throughput_rows"]


def loader_rate(
    X,
    mode: str = "stream",
    *,
    batch_size: int = 128,
    max_rows: int | None = None,
    random_state: int = 0,
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
        raise InputError(f"epochs must be at least 1, got {epochs}")
    t0 = time.perf_counter()
    if mode == "memory":
        loader = MemoryLoader(load_rows(X), batch_size, random_state=random_state)
    elif mode == "stream":
        loader = StreamingLoader(X, batch_size, random_state=random_state, **loader_options)
    else:
        raise InputError(f"unknown loader mode {mode!r}; choose 'memory' or 'stream'")
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
    random_state: int = 0,
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
    modes, max_rows, random_state, **loader_options
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
    ae = AutoEncoder(
        n_components,
        hidden=hidden,
        batch_size=batch_size,
        device=device,
        mixed_precision=mixed_precision,
        random_state=random_state,
    )
    train_rate = ae.training_throughput(int(X.shape[1]), n_batches=train_batches)
    out = []
    for mode in modes:
        r = loader_rate(X, mode, batch_size=batch_size, max_rows=max_rows, random_state=random_state, **loader_options)
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
    random_state: int = 0,
    **loader_options,
) -> list[dict]:
    """Benchmark table rows: the auto-encoder's training rate per code width (``method``
    'ae[train]'), then each loader's rate alone and its ratio to the fastest training rate
    ('ae[loader:memory]', 'ae[loader:stream]', ``dim`` None). Keys: method, dim,
    rows_per_s, ratio, load_s, first_epoch_rows_per_s. Arguments as :func:`throughput`."""
    X = as_array(X)
    rows = [
        {
            "method": "ae[train]",
            "dim": int(dim),
            "rows_per_s": AutoEncoder(
                int(dim), hidden=hidden, batch_size=batch_size, device=device, random_state=random_state
            ).training_throughput(int(X.shape[1]), n_batches=train_batches),
        }
        for dim in dims
    ]
    fastest = max(r["rows_per_s"] for r in rows)
    for mode in ("memory", "stream"):
        r = loader_rate(X, mode, batch_size=batch_size, max_rows=max_rows, random_state=random_state, **loader_options)
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
