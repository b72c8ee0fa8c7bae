"""A region x gene table plus its atlas: what ``abagen.get_expression_data`` returns.

The table is a CSV whose first column is the atlas label (abagen writes it as ``label``)
and whose other columns are genes; the atlas is a NIfTI of integer labels in MNI space.
Every voxel of the build's mask that lies in a labelled region takes its region's row;
regions with no values (abagen gives all-NaN rows for regions no sample reached) are
dropped, so their voxels are left out of the store.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import xarray as xr

from .table import make_sample_table, resolve_genes

__all__ = ["load_parcellated", "atlas_on_grid"]


def _load_atlas(atlas):
    if isinstance(atlas, (str, Path)):
        if not Path(atlas).exists():
            raise FileNotFoundError(f"atlas file not found: {atlas}")
        return nib.load(str(atlas))
    return atlas


def atlas_on_grid(atlas, grid) -> np.ndarray:
    """Integer labels of ``atlas`` on ``grid`` (nearest-neighbour resampling), as a 3-D array."""
    from nilearn.image import resample_img

    img = _load_atlas(atlas)
    same = img.shape[:3] == grid.shape and np.allclose(img.affine, grid.affine)
    if not same:
        img = resample_img(
            img,
            target_affine=grid.affine,
            target_shape=grid.shape,
            interpolation="nearest",
            force_resample=True,
            copy_header=True,
        )
    data = np.asarray(img.dataobj)
    if data.ndim == 4:
        data = data[..., 0]
    return np.rint(np.nan_to_num(data)).astype(np.int64)


def load_parcellated(table, atlas, *, genes=None) -> xr.Dataset:
    """Read a region x gene table and its atlas as a sample table of regions.

    Parameters
    ----------
    table : str, Path or pandas.DataFrame
        Regions in rows (index or first column: the atlas label), genes in columns.
    atlas : str, Path or Nifti1Image
        Integer-labelled atlas in MNI space.
    genes : None, int, str or list of str

    Returns
    -------
    xarray.Dataset
        A sample table whose samples are regions (coordinate ``label``; x, y, z = the
        region's centroid), with ``attrs['atlas']`` and ``attrs['region_labels']``.
    """
    if isinstance(table, (str, Path)):
        if not Path(table).exists():
            raise FileNotFoundError(f"region table not found: {table}")
        frame = pd.read_csv(table, index_col=0)
        table_name = str(table)
    else:
        frame = table
        table_name = "DataFrame"
    try:
        labels = np.asarray(frame.index, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("the region table's first column must hold the atlas's integer labels") from None
    if not np.all(np.isfinite(labels)) or not np.allclose(labels, np.rint(labels)):
        raise ValueError("the region table's first column must hold the atlas's integer labels")
    labels = np.rint(labels).astype(np.int64)
    frame = frame.apply(pd.to_numeric, errors="coerce")
    empty = frame.isna().all(axis=1).to_numpy()
    if empty.any():
        warnings.warn(f"dropping {int(empty.sum())} region(s) with no values: {labels[empty].tolist()}", stacklevel=2)
        frame, labels = frame[~empty], labels[~empty]
    if frame.isna().to_numpy().any():
        bad = frame.columns[frame.isna().any()].tolist()
        raise ValueError(f"the region table has missing values in {len(bad)} gene(s), e.g. {bad[:3]}")
    gene_names = resolve_genes(genes, [str(c) for c in frame.columns])
    img = _load_atlas(atlas)
    data = np.rint(np.nan_to_num(np.asarray(img.dataobj))).astype(np.int64)
    if data.ndim == 4:
        data = data[..., 0]
    centroids = np.full((len(labels), 3), np.nan)
    for row, lab in enumerate(labels):
        ijk = np.argwhere(data == lab)
        if len(ijk):
            centroids[row] = (ijk.mean(axis=0) @ img.affine[:3, :3].T) + img.affine[:3, 3]
    missing = np.isnan(centroids[:, 0])
    if missing.all():
        raise ValueError("none of the table's labels occurs in the atlas")
    if missing.any():
        warnings.warn(f"{int(missing.sum())} table label(s) not in the atlas: {labels[missing].tolist()}", stacklevel=2)
        frame, labels, centroids = frame[~missing], labels[~missing], centroids[~missing]
    out = make_sample_table(
        frame[gene_names].to_numpy(dtype=np.float32),
        gene_names,
        centroids,
        donor=np.full(len(labels), "all"),
        structure=np.full(len(labels), "region"),
        sample_id=labels,
        source="parcellated",
        options={"table": table_name, "atlas": str(atlas)},
    )
    out = out.assign_coords(label=("sample", labels))
    out.attrs["atlas"] = str(atlas) if isinstance(atlas, (str, Path)) else atlas
    out.attrs["region_labels"] = True
    return out
