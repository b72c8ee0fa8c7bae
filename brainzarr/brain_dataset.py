"""``ds.brain``: the accessor of a store's Dataset, carrying the validated store.

>>> ds = brainzarr.open_store("store/s8.zarr")  # doctest: +SKIP
>>> ds.brain.grid  # doctest: +SKIP
>>> ds.brain.fit("pca", 8)  # fits on the training voxels, writes representations/pca/k8  # doctest: +SKIP
>>> ds.brain.read("pca", 8).embedding  # doctest: +SKIP
>>> ds.brain.results()  # doctest: +SKIP
>>> X_train = ds.brain.expression("train")  # doctest: +SKIP
>>> ds.sel(gene=["APOE", "SST"]).brain.to_netcdf("two-genes.nc")  # doctest: +SKIP

The store's schema was checked when the Dataset was opened; the accessor hands the same
:class:`~brainzarr.store.Store` to every job, which checks nothing again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from ._location import NO_STORE, dataset_store
from ._validation import SPLIT_SYNONYMS, did_you_mean
from .exceptions import InputError, InputTypeError
from .grid import Grid
from .store import Store, selection_of_store, store_grid

__all__ = ["BrainDatasetAccessor"]


@xr.register_dataset_accessor("brain")
class BrainDatasetAccessor:
    """``ds.brain`` on a Dataset opened with :func:`brainzarr.open_store`."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        """The store the Dataset was opened from."""
        if self._store is None:
            path = dataset_store(self._ds)
            if path is None:
                raise InputError(
                    f"this Dataset has no store: {NO_STORE}; select voxels with .sel or .isel "
                    "(ds.sel(voxel=ds.hemisphere == 'L')), which keep the store"
                )
            self._store = Store.trusted(path, self._ds)
        return self._store

    @property
    def grid(self) -> Grid:
        """The grid of the store's voxels."""
        return store_grid(self._ds)

    def to_netcdf(self, path, **kwargs) -> Path:
        """Write the Dataset (or a selection of it, or a result) as netCDF, with its provenance
        as JSON text and its affine as 16 numbers (see :func:`brainzarr.netcdf.to_netcdf`);
        xarray's own ``to_netcdf`` refuses their dict and 4 x 4 list."""
        from .netcdf import to_netcdf

        return to_netcdf(self._ds, path, **kwargs)

    def expression(self, split: str | None = None, *, scheme: str | None = None, where=None) -> xr.DataArray:
        """The store's ``expression`` on every voxel, on one part of a split, or on the voxels of
        a mask, streamed in the store's whole row blocks by its reader (what
        :func:`brainzarr.fit_store` reads).

        ``ds.brain.expression("train")`` holds the values and labels of
        ``ds.expression.where(ds.split == "train", drop=True)``, and
        ``ds.brain.expression(where=ds.hemisphere == "L")`` those of
        ``ds.expression.where(ds.hemisphere == "L", drop=True)``; a pass over either (an
        estimator's fit) runs several times faster: dask's boolean indexing reads the store chunk
        by chunk, in row blocks that each straddle two of the store's.

        Parameters
        ----------
        split : str, optional
            A label of the split: ``"train"`` or ``"test"`` (``"buffer"`` in the blocked split).
            None: every voxel.
        scheme : {'random', 'blocked'}, optional
            Which split (default: the store's, coordinate ``split``).
        where : boolean DataArray or array over ``voxel``, optional
            Keep only the voxels where it is true (a region, a hemisphere, a tissue class);
            with ``split``, the voxels of that part where it is true.

        Returns
        -------
        xarray.DataArray
            ``(voxel, gene)`` float32, dask-backed, with the voxel coordinates and genes. On a
            Dataset that is a selection of the store (fewer voxels or genes), the same
            selection through xarray.
        """
        from .preprocess import SPLIT_SCHEMES
        from .streaming import expression_rows

        ds = self._ds
        name = "split" if scheme is None else f"split_{scheme}"
        if name not in ds.coords:
            hint = did_you_mean(scheme, SPLIT_SCHEMES, SPLIT_SYNONYMS)
            raise InputError(f"unknown split scheme {scheme!r}; choose from random, blocked{hint}")
        mask = None
        if split is not None:
            labels = ds[name].values
            present = sorted(set(labels.tolist()))
            if split not in present:
                raise InputError(f"{name} has no {split!r} voxels; its labels: {', '.join(present)}")
            mask = labels == split
        if where is not None:
            chosen = self._voxel_mask(where)
            mask = chosen if mask is None else mask & chosen
        template = ds["expression"] if mask is None else ds["expression"].isel(voxel=np.flatnonzero(mask))
        if not self._is_whole_store():
            return template
        data = expression_rows(self.store, mask=mask)
        return xr.DataArray(data, coords=template.coords, dims=template.dims, name="expression", attrs=template.attrs)

    def _voxel_mask(self, where) -> np.ndarray:
        """``where`` as a boolean NumPy mask over the Dataset's voxels, aligned on ``voxel``."""
        n = self._ds.sizes["voxel"]
        if isinstance(where, xr.DataArray):
            if where.dims != ("voxel",):
                raise InputError(f"where= must lie along voxel alone; it has dims {where.dims}")
            voxels = self._ds["voxel"].values if "voxel" in self._ds.coords else None
            if voxels is not None and "voxel" in where.coords and not np.array_equal(where["voxel"].values, voxels):
                if where.sizes["voxel"] != n or not np.isin(voxels, where["voxel"].values).all():
                    raise InputError(
                        f"where= covers {where.sizes['voxel']:,} voxels, not the Dataset's {n:,}; "
                        "make it from the Dataset's coordinates, e.g. ds.hemisphere == 'L'"
                    )
                where = where.sel(voxel=voxels)  # the Dataset's order
            where = where.values
        where = np.asarray(where)
        if where.dtype != bool:
            raise InputTypeError(
                f"where= must be boolean (a condition such as ds.hemisphere == 'L'); got {where.dtype}"
            )
        if where.shape != (n,):
            raise InputError(f"where= has shape {where.shape}; the Dataset has {n:,} voxels")
        return where

    def _is_whole_store(self) -> bool:
        """Whether the Dataset's expression is the store's, every voxel and gene in order."""
        return selection_of_store(self._ds, self.store) is None

    def fit(self, method: str, n_components: int, **kwargs) -> xr.Dataset:
        """Fit ``method`` on the store's training voxels and write the result
        (:func:`brainzarr.fit_store`). On a selection of the store (fewer voxels or genes) it is
        refused: the fit would read and write the whole store, not the selection; an estimator
        fits a selection (``PCA(8).fit(sub.brain.expression("train"))``)."""
        from .models.store_fitting import fit_store

        return fit_store(self._ds, method, n_components, **kwargs)

    def read(self, method: str, n_components: int, split: str | None = None) -> xr.Dataset:
        """The result group ``representations/<split>/<method>/k<n_components>`` (the store's split by
        default); :class:`~brainzarr.ResultNotFoundError` names the results the store holds."""
        from .models.store_fitting import read_result

        return read_result(self.store, method, n_components, split)

    def model(self, method: str, n_components: int, split: str | None = None):
        """The fitted estimator of a result, rebuilt from its arrays."""
        from .models.store_fitting import load_model

        return load_model(self.store, method, n_components, split)

    def results(self, prefix: str | None = "representations") -> list[str]:
        """The result groups in the store: the fitted representations, or those under another
        ``prefix``; ``prefix=None`` gives every group (the evaluation's, and those written with
        :func:`~brainzarr.write_group` under names of one's own)."""
        return self.store.results(prefix)

    def rmse_table(self, **kwargs):
        """Train and test RMSE of every result (:func:`brainzarr.rmse_table`)."""
        from .models.store_fitting import rmse_table

        return rmse_table(self.store, **kwargs)
