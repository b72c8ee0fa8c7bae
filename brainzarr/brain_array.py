"""``da.brain``: the accessor of voxel-indexed DataArrays (NIfTI export, region means, grid, plot).

>>> ds.expression.sel(gene="APOE").brain.to_nifti("apoe.nii.gz")  # doctest: +SKIP
>>> ds.expression.sel(gene="APOE").brain.plot("apoe.png")  # doctest: +SKIP
>>> ds.expression.brain.parcellate("atlas.nii.gz")  # (region, gene) means  # doctest: +SKIP
>>> regions.sel(gene="APOE").brain.to_nifti("apoe-atlas.nii.gz")  # on the atlas  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import xarray as xr

from .exceptions import InputError
from .grid import Grid
from .nifti import NIFTI_SUFFIXES, to_nifti, to_volume, voxel_grid, write_nifti

__all__ = ["BrainArrayAccessor"]


@xr.register_dataarray_accessor("brain")
class BrainArrayAccessor:
    """``da.brain``: NIfTI export and grid of a voxel-indexed DataArray (one selected from a store)."""

    def __init__(self, da: xr.DataArray):
        self._da = da

    def _voxels(self) -> xr.DataArray:
        """The voxel-indexed array; a region table (from :func:`brainzarr.parcellate`) on its atlas's voxels."""
        if "voxel" not in self._da.dims and "region" in self._da.dims:
            from .parcellate import region_map

            return region_map(self._da)
        return self._da

    def to_nifti(
        self, path=None, background: float = 0.0, *, grid=None, dtype=np.float32, like=None
    ) -> nib.Nifti1Image:
        """The image (see :func:`brainzarr.nifti.to_nifti`; ``like=`` writes on another grid).

        With ``path`` (.nii or .nii.gz) the file is written a few volumes at a time
        (:func:`brainzarr.nifti.write_nifti`, memory independent of the number of volumes) and
        the image returned is the saved file, loaded lazily. A region table (from
        :func:`brainzarr.parcellate`) is written on its atlas's grid, each region's voxels
        taking its value (:func:`brainzarr.parcellate.region_map`).
        """
        da = self._voxels()
        if path is None:
            return to_nifti(da, grid, background=background, dtype=dtype, like=like)
        if not str(path).endswith(NIFTI_SUFFIXES):
            raise InputError(f"a NIfTI file name must end in .nii or .nii.gz, got {Path(path).name!r}")
        return nib.load(write_nifti(da, path, grid, background=background, dtype=dtype, like=like))

    def to_netcdf(self, path, **kwargs) -> Path:
        """Write the array as netCDF, its attributes in forms netCDF holds (see
        :func:`brainzarr.netcdf.to_netcdf`)."""
        from .netcdf import to_netcdf

        return to_netcdf(self._da, path, **kwargs)

    def to_volume(self, background: float = 0.0, *, grid=None, dtype=None) -> np.ndarray:
        """The values on the full 3-D (or 4-D) grid as a numpy array; ``background`` elsewhere."""
        return to_volume(self._voxels(), grid, background=background, dtype=dtype)

    @property
    def grid(self) -> Grid:
        """The grid of the DataArray's voxels (mask = the voxels present, in the store's affine)."""
        return voxel_grid(self._voxels())

    def parcellate(
        self, atlas, *, background: int = 0, weighting: str = "centre", lut=None, strategy: str = "mean"
    ) -> xr.DataArray:
        """The mean (or another ``strategy``) over each region of ``atlas`` (see
        :func:`brainzarr.parcellate.parcellate`)."""
        from .parcellate import parcellate

        return parcellate(
            self._da, atlas, background=background, weighting=weighting, lut=lut, strategy=strategy, _stacklevel=3
        )

    def plot(self, path=None, **kwargs):
        """Plot the map with :func:`brainzarr.plots.plot_map` (a region table: on its atlas)."""
        from .plots import plot_map

        return plot_map(self._voxels(), path, **kwargs)

    def plot_surface(self, path=None, **kwargs):
        """Plot the map on the cortical surface with :func:`brainzarr.plots.plot_surface`."""
        from .plots import plot_surface

        return plot_surface(self._voxels(), path, **kwargs)
