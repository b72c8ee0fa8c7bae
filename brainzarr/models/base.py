"""The protocol every representation follows.

A representation is a scikit-learn estimator (parameters in ``__init__``, learned state with a
trailing underscore, ``get_params``/``set_params``, tags) that accepts the store's
``expression`` in any of these forms and returns results in the same form:

* a NumPy array or any array-like (voxels, genes) — in memory, validated as scikit-learn does
  (finite values, at least the samples the method needs, ``n_features_in_``);
* a dask array — streamed: ``fit`` reads row blocks one at a time
  (:mod:`brainzarr.streaming`), ``transform`` and ``inverse_transform`` are lazy and
  row-blockwise (nothing is computed until written);
* an xarray DataArray with dims (voxel, gene) — as dask/NumPy, with labels: ``transform``
  gives ``(voxel, component)``, ``inverse_transform`` gives ``(voxel, gene)`` with the genes
  it was fitted on.

Outputs are float32 (the store's dtype), whatever the input's float type.

Subclasses implement

* ``_fit(X)``: X is a float NumPy array or a dask array;
* ``_transform_block(X) -> Z`` and ``_inverse_block(Z) -> X`` on NumPy blocks;
* ``_param_arrays() -> {name: (dims, array)}`` and ``_set_param_arrays(dataset)`` so a
  fitted model round-trips through a store group as plain arrays (no pickles).
"""

from __future__ import annotations

import os
from typing import ClassVar

import dask.array as da
import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils._set_output import _wrap_data_with_container
from sklearn.utils.validation import check_is_fitted, validate_data

from .._progress import job
from .._validation import SEED, check_params, whole_number
from ..exceptions import CheckpointMismatchError, InputError, InputTypeError
from ..streaming.passes import as_array
from ..streaming.reader import reusing_buffers

__all__ = ["Representation", "CheckpointMismatchError", "rmse", "row_sse"]


def rmse(X, X_hat) -> float:
    """Root mean squared error over all entries (streams dask arrays)."""
    err = (as_array(X) - as_array(X_hat)) ** 2
    value = err.mean()
    return float(value.compute() if isinstance(value, da.Array) else value)


def row_sse(R: np.ndarray, X: np.ndarray, step: int = 512) -> np.ndarray:
    """Per-row sum of squared differences, a few rows at a time (no block-sized temporaries)."""
    out = np.empty(len(R), dtype=np.float64)
    for a in range(0, len(R), step):
        diff = R[a : a + step] - X[a : a + step]
        out[a : a + step] = np.einsum("ij,ij->i", diff, diff, dtype=np.float64)
    return out


class Representation(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Base class of brainzarr's representations (see the module docstring).

    As scikit-learn's decompositions, it names its outputs ``pca0, pca1, ...``
    (``get_feature_names_out``) and takes ``set_output(transform="pandas")``, which applies to
    in-memory inputs: a dask or DataArray input gives its lazy, labelled result whatever the
    output setting, so a global ``sklearn.set_config(transform_output="pandas")`` never makes a
    store-sized pass load into memory.
    """

    def __init_subclass__(cls, **kwargs):
        # scikit-learn would wrap every transform a subclass defines, turning a lazy dask
        # result into a DataFrame (computing it); transform wraps in-memory results itself
        super().__init_subclass__(auto_wrap_output_keys=None, **kwargs)
        cls._sklearn_auto_wrap_output_keys = _WRAPPED

    #: short name used in store paths: representations/<split>/<method>/k<dim>
    method: ClassVar[str] = ""
    #: whether inverse_transform exists (every brainzarr representation provides one)
    has_inverse: ClassVar[bool] = True
    #: fewest training rows the method can fit
    min_samples: ClassVar[int] = 2
    #: said when n_components is not a whole number (PCA: how to choose k by explained variance)
    _n_components_hint: ClassVar[str] = ""
    #: what each numeric parameter takes, checked when fitting (as scikit-learn's
    #: ``_parameter_constraints``)
    _bounds: ClassVar[dict] = {}

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

    # ------------------------------------------------------------------ scikit-learn
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.input_tags.allow_nan = False
        return tags

    def _validate_input(self, X, *, reset: bool):
        """X as a float NumPy array (validated) or a dask array (shape checked); labels kept apart."""
        if isinstance(X, (xr.Dataset, str, os.PathLike)):
            what = "the Dataset" if isinstance(X, xr.Dataset) else f"the path {X}"
            raise InputTypeError(
                f"{type(self).__name__} takes a (voxels, genes) array such as ds.expression, not {what}; "
                "to fit a store and write the result into it: brainzarr.fit_store(store, method, n_components)"
            )
        arr = as_array(X)
        if isinstance(arr, da.Array):
            if arr.ndim != 2:
                raise InputError(f"expected a 2-D (voxels, genes) array, got shape {arr.shape}")
            if reset:
                self.n_features_in_ = int(arr.shape[1])
            elif int(arr.shape[1]) != self.n_features_in_:
                raise InputError(
                    f"X has {arr.shape[1]} features, but {type(self).__name__} is expecting "
                    f"{self.n_features_in_} features as input"
                )
            if arr.dtype.kind not in "fiub":
                raise InputError(f"expected numbers, got dtype {arr.dtype}")
            return arr
        return validate_data(
            self,
            arr,
            reset=reset,
            dtype=[np.float32, np.float64],
            ensure_min_samples=self.min_samples if reset else 1,
            ensure_min_features=1,
        )

    # ------------------------------------------------------------------ public API
    def fit(self, X, y=None):
        """Learn the representation from X (voxels, genes): array-like, dask or DataArray."""
        labels = _feature_labels(X)
        arr = self._validate_input(X, reset=True)
        if whole_number(self.n_components, "n_components", hint=self._n_components_hint) < 1:
            raise InputError(f"n_components must be at least 1, got {self.n_components}")
        if "random_state" in self.get_params(deep=False):
            whole_number(self.random_state, "random_state", hint=SEED)
        check_params(self, self._bounds)
        if self.__sklearn_tags__().input_tags.positive_only and not isinstance(arr, da.Array) and (arr < 0).any():
            raise InputError(f"Negative values in data passed to {type(self).__name__}.fit")
        with job(f"{self.method or type(self).__name__} fit", unit="block"), reusing_buffers():
            self._fit(arr)
        if labels is not None:
            self.feature_dim_, self.genes_ = labels
        return self

    def transform(self, X):
        """Embed X: (voxels, genes) -> (voxels, n_components), in X's form."""
        check_is_fitted(self)
        X = self._with_fitted_genes(X)
        arr = self._validate_input(X, reset=False)
        out = self._apply(X, arr, self._transform_block, self._embedding_width(), "component")
        if isinstance(out, np.ndarray):  # in memory: as set_output asks (a DataFrame, ...)
            return _wrap_data_with_container("transform", out, X, self)
        return out

    def _with_fitted_genes(self, X):
        """A DataArray's genes taken by label, in the order of the fit: the same genes in another
        order (a store built from another gene list, a ``.sel`` by a sorted list) would otherwise
        be embedded by position, each gene weighted as another. Genes beyond the fit's are left
        out; a gene of the fit that X lacks is refused, naming it."""
        genes = getattr(self, "genes_", None)
        dim = getattr(self, "feature_dim_", "gene")
        if genes is None or not isinstance(X, xr.DataArray) or X.ndim != 2 or dim not in X.dims:
            return X
        if X.dims[1] != dim:
            rows = next(d for d in X.dims if d != dim)
            raise InputError(
                f"X has dims {X.dims}; {type(self).__name__} embeds rows of {rows} with its {dim}s as columns: "
                f"give X.transpose({rows!r}, {dim!r})"
            )
        if dim not in X.coords:  # no labels to go by: by position, as an array
            return X
        genes = np.asarray(genes)
        have = np.asarray(X[dim].values)
        if have.shape == genes.shape and (have == genes).all():
            return X
        present = set(have.tolist())
        missing = [g for g in genes.tolist() if g not in present]
        if missing:
            shown = ", ".join(map(str, missing[:5])) + (f" and {len(missing) - 5:,} more" if len(missing) > 5 else "")
            raise InputError(
                f"X lacks {len(missing):,} of the {len(genes):,} {dim}s {type(self).__name__} was fitted on: {shown}"
            )
        if len(present) < len(have):
            raise InputError(f"X repeats {dim}s ({len(have) - len(present):,} of {len(have):,}): select each once")
        return X.sel({dim: genes})

    def fit_transform(self, X, y=None):
        """Fit to X, then embed it (scikit-learn's wraps its result whatever the input)."""
        return self.fit(X, y).transform(X)

    def inverse_transform(self, X):
        """Reconstruct: (voxels, n_components) -> (voxels, genes), in the input's form."""
        check_is_fitted(self)
        arr = as_array(X)
        if not isinstance(arr, da.Array):
            arr = np.asarray(arr)
            if arr.dtype.kind not in "fc":
                arr = arr.astype(np.float64)
        if arr.ndim != 2 or arr.shape[1] != self._embedding_width():
            raise InputError(
                f"inverse_transform expects ({self._embedding_width()},) components per row, got shape {arr.shape}"
            )
        return self._apply(X, arr, self._inverse_block, self.n_features_in_, getattr(self, "feature_dim_", "gene"))

    def _embedding_width(self) -> int:
        return int(self.n_components)

    @property
    def _n_features_out(self) -> int:
        """The embedding's width, once fitted (what ``get_feature_names_out`` counts)."""
        check_is_fitted(self)
        return self._embedding_width()

    def _apply(self, X, arr, fn, width, new_dim):
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
        if not isinstance(X, xr.DataArray):
            return out
        row_dim = X.dims[0]
        coords = {k: v for k, v in X.coords.items() if v.dims == (row_dim,) or k == row_dim}
        if new_dim == "component":
            coords["component"] = np.arange(1, width + 1)
        elif getattr(self, "genes_", None) is not None:
            coords[new_dim] = self.genes_
        # named as a fit in the store names them; unnamed, xarray took the dask graph's key ('lambda-9bec...')
        name = "embedding" if new_dim == "component" else "reconstruction"
        return xr.DataArray(out, dims=(row_dim, new_dim), coords=coords, name=name)

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
        params = dict(ds.attrs.get("params", {}))
        names = set(cls._get_param_names())
        model = cls(**{k: v for k, v in params.items() if k in names})
        model.n_features_in_ = int(ds.attrs["n_features_in"])
        arrays = xr.Dataset({k[len("param_") :]: v for k, v in ds.data_vars.items() if k.startswith("param_")})
        model._set_param_arrays(arrays.load())
        return model


def _feature_labels(X):
    """(dim name, labels) of a DataArray's second dimension, when it has a coordinate."""
    if isinstance(X, xr.DataArray) and X.ndim == 2 and X.dims[1] in X.coords:
        return X.dims[1], np.asarray(X[X.dims[1]].values)
    return None


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v if isinstance(v, (int, float, str, bool, type(None), dict)) else str(v)


#: the outputs that follow ``set_output`` (scikit-learn reads this to offer ``set_output``)
_WRAPPED = {"transform"}
Representation._sklearn_auto_wrap_output_keys = _WRAPPED
