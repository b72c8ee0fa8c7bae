"""The protocol every representation follows, and streaming helpers.

A representation is a scikit-learn style estimator (parameters in ``__init__``, learned
state with a trailing underscore) that accepts the store's ``expression`` in any of three
forms and returns results in the same form:

* a NumPy array (voxels, genes) — in memory;
* a dask array — streamed: ``fit`` reads row blocks one at a time, ``transform`` and
  ``inverse_transform`` are lazy and row-blockwise (nothing is computed until written);
* an xarray DataArray with dims (voxel, gene) — as dask/NumPy, with labels: ``transform``
  gives ``(voxel, component)``, ``inverse_transform`` gives ``(voxel, gene)``.

Subclasses implement

* ``_fit(X)``: X is a NumPy array or a dask array (stream it with :func:`iter_row_blocks`);
* ``_transform_block(X) -> Z`` and ``_inverse_block(Z) -> X`` on NumPy blocks;
* ``_param_arrays() -> {name: (dims, array)}`` and ``_set_param_arrays(dataset)`` so a
  fitted model round-trips through a store group as plain arrays (no pickles).
"""

from __future__ import annotations

import queue
import threading
from typing import ClassVar

import dask.array as da
import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

__all__ = ["Representation", "CheckpointMismatchError", "iter_row_blocks", "prefetch_spans", "as_array", "rmse"]


class CheckpointMismatchError(ValueError):
    """A checkpoint in ``checkpoint_dir`` was written for other data or settings."""


def as_array(X):
    """The array under a DataArray (dask or NumPy); arrays pass through."""
    return X.data if isinstance(X, xr.DataArray) else X


def iter_row_blocks(X, block_rows: int | None = None, *, prefetch: int = 1, dtype=np.float32):
    """Yield consecutive NumPy row blocks of a NumPy or dask array (all columns).

    For dask arrays a background thread reads up to ``prefetch`` blocks ahead, so reading
    (decompression) overlaps the caller's computation. Default block: the array's row chunks.
    """
    X = as_array(X)
    n = X.shape[0]
    if isinstance(X, da.Array):
        bounds = np.cumsum((0,) + X.chunks[0]) if block_rows is None else np.r_[np.arange(0, n, block_rows), n]
    else:
        step = block_rows or n
        bounds = np.r_[np.arange(0, n, step), n]
    spans = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    yield from prefetch_spans(X, spans, prefetch=prefetch, dtype=dtype)


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


def prefetch_spans(X, spans, *, prefetch: int = 1, dtype=np.float32):
    """Yield ``X[a:b]`` as NumPy arrays for each row range ``(a, b)`` of ``spans``, in that order.

    For dask arrays a background thread reads up to ``prefetch`` spans ahead.
    """
    if not isinstance(X, da.Array) or prefetch < 1:
        for a, b in spans:
            block = X[a:b]
            yield np.asarray(compute_rows(X, a, b, scheduler=None) if isinstance(X, da.Array) else block, dtype=dtype)
        return
    q: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def reader():
        try:
            for a, b in spans:
                if stop.is_set():
                    return
                q.put(np.asarray(compute_rows(X, a, b), dtype=dtype))
        except BaseException as exc:  # surface reader errors in the consumer
            q.put(exc)
        q.put(None)

    thread = threading.Thread(target=reader, daemon=True)
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


def rmse(X, X_hat) -> float:
    """Root mean squared error over all entries (streams dask arrays)."""
    err = (as_array(X) - as_array(X_hat)) ** 2
    value = err.mean()
    return float(value.compute() if isinstance(value, da.Array) else value)


class Representation(TransformerMixin, BaseEstimator):
    """Base class of brainzarr's representations (see the module docstring)."""

    #: short name used in store paths: representations/<method>/k<dim>
    method: ClassVar[str] = ""
    #: whether inverse_transform exists (every brainzarr representation provides one)
    has_inverse: ClassVar[bool] = True

    # ------------------------------------------------------------------ to implement
    def _fit(self, X):  # pragma: no cover - abstract
        raise NotImplementedError

    def _transform_block(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _inverse_block(self, Z: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _param_arrays(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _set_param_arrays(self, ds: xr.Dataset) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ public API
    def fit(self, X, y=None):
        """Learn the representation from X (voxels, genes): NumPy, dask or DataArray."""
        X = as_array(X)
        if X.ndim != 2:
            raise ValueError(f"expected a 2-D (voxels, genes) array, got shape {X.shape}")
        if not 1 <= self.n_components:
            raise ValueError("n_components must be at least 1")
        self.n_features_in_ = int(X.shape[1])
        self._fit(X)
        return self

    def transform(self, X):
        """Embed X: (voxels, genes) -> (voxels, n_components), in X's form."""
        check_is_fitted(self)
        return self._apply(X, self._transform_block, self._embedding_width(), "component")

    def inverse_transform(self, Z):
        """Reconstruct: (voxels, n_components) -> (voxels, genes), in Z's form."""
        check_is_fitted(self)
        return self._apply(Z, self._inverse_block, self.n_features_in_, "gene")

    def _embedding_width(self) -> int:
        return int(self.n_components)

    def _apply(self, X, fn, width, new_dim):
        labelled = isinstance(X, xr.DataArray)
        arr = as_array(X)
        if isinstance(arr, da.Array):
            if arr.numblocks[1] > 1:
                arr = arr.rechunk({1: -1})
            out = arr.map_blocks(
                lambda b: np.asarray(fn(np.asarray(b, dtype=np.float32)), dtype=np.float32),
                chunks=(arr.chunks[0], (width,)),
                dtype=np.float32,
            )
        else:
            out = np.asarray(fn(np.asarray(arr, dtype=np.float32)), dtype=np.float32)
        if not labelled:
            return out
        row_dim = X.dims[0]
        coords = {k: v for k, v in X.coords.items() if v.dims == (row_dim,) or k == row_dim}
        if new_dim == "component":
            coords["component"] = np.arange(1, width + 1)
        elif getattr(self, "genes_", None) is not None:
            coords["gene"] = self.genes_
        return xr.DataArray(out, dims=(row_dim, new_dim), coords=coords)

    # ------------------------------------------------------------------ persistence
    def to_dataset(self) -> xr.Dataset:
        """The fitted model as plain arrays (plus its parameters as attrs)."""
        check_is_fitted(self)
        ds = xr.Dataset({f"param_{k}": v for k, v in self._param_arrays().items()})
        ds.attrs.update(
            {
                "method": self.method,
                "class": type(self).__name__,
                "params": {k: _jsonable(v) for k, v in self.get_params().items()},
                "n_features_in": self.n_features_in_,
            }
        )
        return ds

    @classmethod
    def from_dataset(cls, ds: xr.Dataset):
        """Rebuild a fitted model written by :meth:`to_dataset` (arrays only, no pickles)."""
        model = cls(**ds.attrs.get("params", {}))
        model.n_features_in_ = int(ds.attrs["n_features_in"])
        params = xr.Dataset({k[len("param_") :]: v for k, v in ds.data_vars.items() if k.startswith("param_")})
        model._set_param_arrays(params.load())
        return model


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v if isinstance(v, (int, float, str, bool, type(None), dict)) else str(v)
