"""``ds.brain``: the accessor of a store's Dataset, carrying the validated store.

>>> ds = brainzarr.open_store("store/s8.zarr")  # doctest: +SKIP
>>> ds.brain.grid  # doctest: +SKIP
>>> ds.brain.fit("pca", 8)  # fits on the training voxels, writes representations/pca/k8  # doctest: +SKIP
>>> ds.brain.read("pca", 8).embedding  # doctest: +SKIP
>>> ds.brain.results()  # doctest: +SKIP

The store's schema was checked when the Dataset was opened; the accessor hands the same
:class:`~brainzarr.store.Store` to every job, which checks nothing again.
"""

from __future__ import annotations

import xarray as xr

from .grid import Grid
from .store import Store, store_grid

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
            path = self._ds.encoding.get("brainzarr_store")
            if path is None:
                raise ValueError("this Dataset was not opened with brainzarr.open_store; it has no store")
            self._store = Store.trusted(path, self._ds)
        return self._store

    @property
    def grid(self) -> Grid:
        """The grid of the store's voxels."""
        return store_grid(self._ds)

    def fit(self, method: str, n_components: int, **kwargs) -> xr.Dataset:
        """Fit ``method`` on the training voxels and write the result (:func:`brainzarr.fit_store`)."""
        from .models.store_fitting import fit_store

        return fit_store(self.store, method, n_components, **kwargs)

    def read(self, method: str, n_components: int, split: str | None = None) -> xr.Dataset:
        """The result group ``representations/<split>/<method>/k<n_components>`` (the store's split by default)."""
        from .models.store_fitting import result_group, split_scheme

        return self.store.read(result_group(method, n_components, split_scheme(self.store, split)))

    def model(self, method: str, n_components: int, split: str | None = None):
        """The fitted estimator of a result, rebuilt from its arrays."""
        from .models.store_fitting import load_model

        return load_model(self.store, method, n_components, split)

    def results(self) -> list[str]:
        """The result groups in the store."""
        return self.store.results()

    def rmse_table(self, **kwargs):
        """Train and test RMSE of every result (:func:`brainzarr.rmse_table`)."""
        from .models.store_fitting import rmse_table

        return rmse_table(self.store, **kwargs)
