"""Region tables from voxel arrays: the mean of a store's expression (or of a result's
embedding, reconstruction or error map) over each region of an atlas.

abagen's ``get_expression_data`` makes a region x gene table from the samples in each region;
:func:`parcellate` makes one from a store's voxels, in one streamed pass (memory: the table,
plus a few row blocks). Its CSV (``brainzarr parcellate``) is the table that
``brainzarr build --source parcellated`` reads.
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from ._progress import job
from .nifti import _load, from_nifti
from .streaming import reusing_buffers, stream_blocks

__all__ = ["parcellate"]


def parcellate(data: xr.DataArray, atlas, *, background: int = 0, _stacklevel: int = 2) -> xr.DataArray:
    """The mean of ``data`` over the voxels of each region of ``atlas``.

    Parameters
    ----------
    data : xarray.DataArray
        ``(voxel,)`` or ``(voxel, d)`` from a store: ``ds.expression`` (or a selection of its
        genes or voxels), a result's ``embedding``, ``reconstruction`` or ``voxel_rmse``.
        NumPy- or dask-backed; a dask array is streamed block by block.
    atlas : str, Path or nibabel image
        Integer labels in MNI space, on any grid: each voxel takes the label at its centre
        (nearest atlas voxel). ``background`` marks voxels in no region.
    background : int
        The label of no region (default 0).

    Returns
    -------
    xarray.DataArray
        ``(region,)`` or ``(region, d)`` float64, with ``d``'s coordinate (genes, components)
        and ``n_voxels`` (per region). Every label of the atlas is a region; one that holds no
        voxel of ``data`` is NaN, with a warning, as abagen leaves regions without samples.

    Raises
    ------
    ValueError
        ``data`` has no voxel dimension or more than two dimensions, or the atlas holds
        non-integer values or no region.
    """
    if not isinstance(data, xr.DataArray) or "voxel" not in data.dims:
        raise ValueError("parcellate needs a DataArray with a 'voxel' dimension (e.g. ds.expression)")
    if data.ndim > 2:
        raise ValueError(f"parcellate takes (voxel,) or (voxel, d) arrays, got dims {data.dims}")
    img, path = _load(atlas)
    where = path if path is not None else "the atlas"
    regions = _atlas_labels(img, where, background)
    labels = from_nifti(img, data, interpolation="nearest", name="region").values
    labels = np.where(np.isnan(labels), background, np.rint(labels)).astype(np.int64)  # outside its view: none
    index = np.searchsorted(regions, labels)
    inside = (labels != background) & (index < len(regions))
    inside[inside] = regions[index[inside]] == labels[inside]

    other = next((d for d in data.dims if d != "voxel"), None)
    X = data.transpose("voxel", ...).data
    if other is None:
        X = X.reshape(-1, 1)
    sums = np.zeros((len(regions), X.shape[1]))
    with job("parcellate", unit="block"), reusing_buffers():
        start = 0
        for block in stream_blocks(X, desc="voxel blocks"):
            rows = slice(start, start + len(block))
            start = rows.stop
            _add_region_sums(sums, block, index[rows], inside[rows])
    counts = np.bincount(index[inside], minlength=len(regions))
    empty = counts == 0
    if empty.any():
        shown = ", ".join(map(str, regions[empty][:10])) + (" ..." if empty.sum() > 10 else "")
        warnings.warn(
            f"{empty.sum()} of {len(regions)} regions of {where} hold no voxel of the array: {shown}",
            stacklevel=_stacklevel,
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
    coords = {"region": regions, "n_voxels": ("region", counts)}
    if other is None:
        return xr.DataArray(means[:, 0], dims="region", coords=coords, name=data.name, attrs=_attrs(where, background))
    if other in data.coords:
        coords[other] = data[other].values
    return xr.DataArray(means, dims=("region", other), coords=coords, name=data.name, attrs=_attrs(where, background))


def _attrs(where, background) -> dict:
    return {"statistic": "mean over each region's voxels", "atlas": str(where), "background": int(background)}


def _atlas_labels(img, where, background) -> np.ndarray:
    """The atlas's region labels (sorted), refusing an image that is not a label image."""
    values = np.asanyarray(img.dataobj)
    if values.ndim == 4:
        if values.shape[3] != 1:
            raise ValueError(f"{where} has {values.shape[3]} volumes; an atlas is one volume of integer labels")
        values = values[..., 0]
    labels = np.unique(values[np.isfinite(values)])
    if not np.array_equal(labels, np.rint(labels)):
        raise ValueError(f"{where} holds non-integer values; an atlas is an image of integer region labels")
    labels = labels.astype(np.int64)
    labels = labels[labels != background]
    if not len(labels):
        raise ValueError(f"{where} has no region: every voxel is the background label {background}")
    return labels


def _add_region_sums(sums: np.ndarray, block: np.ndarray, index: np.ndarray, inside: np.ndarray) -> None:
    """Add to ``sums`` (regions, d) the rows of ``block`` that are ``inside`` a region, by region
    ``index``.

    A sparse (regions in the block x rows) indicator times the block: no copy of the block, and
    float32 sums of at most a block's rows (relative error ~1e-7), added up in float64 only for
    the regions the block touches.
    """
    from scipy import sparse

    rows = np.flatnonzero(inside)
    if not len(rows):
        return
    present, local = np.unique(index[rows], return_inverse=True)
    indicator = sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (local, rows)), shape=(len(present), len(block))
    )
    sums[present] += indicator @ np.asarray(block, dtype=np.float32)
