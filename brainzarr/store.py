"""The store: one Zarr v3 group per dataset, opened as a dask-backed xarray Dataset.

Schema (version :data:`SCHEMA_VERSION`)
--------------------------------------
Root group attributes: ``brainzarr_schema_version``, ``affine`` (4x4 nested list),
``grid_shape``, ``resolution_mm``, ``space``, ``mask``, ``provenance`` (source and its options,
assignment, preprocessing, split, seeds, package versions), ``build_complete``.

Arrays:

* ``expression (voxel, gene)`` float32, chunked ``(voxel_chunk, gene_chunk)``;
* voxel coordinates ``voxel`` (row number), ``i, j, k`` (grid indices), ``x, y, z`` (MNI mm),
  ``hemisphere`` ('L', 'R', 'M'), ``split`` ('train'/'test', the scheme chosen at build),
  ``split_random`` and ``split_blocked`` (both schemes, so every result can be reported
  under both); the grid's affine and shape are also attributes of coordinate ``i`` so they
  travel with every voxel-indexed DataArray;
* gene coordinate ``gene`` (symbol); ``clamp_low``, ``clamp_high`` (gene): the percentile
  bounds used to scale each gene;
* ``build_chunk_done (voxel_chunk)``: which row blocks are written (resume bookkeeping).

Results live in sub-groups (``representations/<method>/k<dim>``), written with
:func:`write_group` (atomic: an interrupted write leaves the previous result in place) and
read with :func:`read_group` or plain ``xarray.open_zarr(store, group=...)``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import uuid
import warnings
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

from .grid import Grid

__all__ = [
    "SCHEMA_VERSION",
    "StoreError",
    "ResultExistsError",
    "open_store",
    "store_grid",
    "write_group",
    "read_group",
    "list_groups",
    "group_writer",
    "VOXEL_COORDS",
    "expression_rows",
]

SCHEMA_VERSION = 1
VOXEL_COORDS = ("i", "j", "k", "x", "y", "z", "hemisphere", "split", "split_random", "split_blocked")
_BOOKKEEPING = ("build_chunk_done",)


class StoreError(ValueError):
    """The path is not a brainzarr store, or not one this version can read."""


class ResultExistsError(FileExistsError):
    """A result group exists and ``overwrite`` was not given."""


@contextlib.contextmanager
def quiet_zarr():
    """Silence zarr's warnings about fixed-width string dtypes (xarray writes them for coords)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(unstable|not part of the Zarr format 3|vlen-utf8).*")
        for name in ("UnstableSpecificationWarning", "ZarrUserWarning"):
            if hasattr(zarr.errors, name):
                warnings.filterwarnings("ignore", category=getattr(zarr.errors, name))
        yield


def _root_attrs(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise StoreError(f"no store at {path}")
    try:
        with quiet_zarr():
            group = zarr.open_group(str(path), mode="r", zarr_format=3)
    except Exception as exc:  # zarr raises several kinds for "not a group"
        raise StoreError(
            f"{path} is not a Zarr v3 group ({type(exc).__name__}); build a store with `brainzarr build`"
        ) from None
    return dict(group.attrs)


def check_schema(path) -> dict:
    """Return the root attributes of a brainzarr store, or raise :class:`StoreError`."""
    attrs = _root_attrs(path)
    version = attrs.get("brainzarr_schema_version")
    if version is None:
        raise StoreError(f"{path} is a Zarr group but not a brainzarr store (no brainzarr_schema_version)")
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"{path} has brainzarr schema version {version}; this brainzarr reads "
            f"version {SCHEMA_VERSION}. Rebuild it with this version's `brainzarr build`."
        )
    return attrs


def open_store(path, *, allow_incomplete: bool = False, chunks="auto-store") -> xr.Dataset:
    """Open a brainzarr store as a dask-backed :class:`xarray.Dataset`.

    Parameters
    ----------
    path : str or Path
        The store (a directory such as ``store/s8.zarr``).
    allow_incomplete : bool
        Open a store whose build was interrupted (unwritten rows read as NaN).
    chunks : "auto-store", dict or None
        Dask chunks; by default the store's own chunks.

    Raises
    ------
    StoreError
        Not a brainzarr store, another schema version, a broken schema, or an unfinished build.
    """
    attrs = check_schema(path)
    if not attrs.get("build_complete", False) and not allow_incomplete:
        raise StoreError(
            f"the build of {path} did not finish; run the same `brainzarr build` command again to resume it"
        )
    with quiet_zarr():
        ds = xr.open_zarr(str(path), consolidated=False, chunks={} if chunks == "auto-store" else chunks)
    problems = []
    if "expression" not in ds or ds["expression"].dims != ("voxel", "gene"):
        problems.append("expression (voxel, gene)")
    problems += [c for c in VOXEL_COORDS + ("gene",) if c not in ds.variables]
    if problems:
        raise StoreError(f"{path} is missing {', '.join(problems)}; it is not a valid brainzarr store")
    ds = ds.drop_vars([v for v in _BOOKKEEPING if v in ds.variables])
    ds = ds.set_coords([c for c in VOXEL_COORDS if c in ds.data_vars])
    # voxel coordinates are small (a few bytes per voxel): hold them in memory
    ds = ds.assign_coords({c: ds[c].load() for c in VOXEL_COORDS + ("voxel", "gene")})
    return ds


def expression_rows(path, rows: int | None = None, mask=None):
    """The store's ``expression`` as a dask array of whole rows: one task per block of ``rows``
    voxels (default: the store's row chunk) reading every gene in one zarr call.

    Parameters
    ----------
    path : str or Path
        The store.
    rows : int, optional
        Rows per block (default: the store's row chunk, so each read decodes its chunks once).
    mask : bool array (voxel,), optional
        Keep only these rows (e.g. the training voxels). The result keeps one row block per
        block of the store (blocks with no selected row are left out), so a pass over it reads
        each block once.

    Notes
    -----
    zarr fetches and decodes the chunks of one call concurrently, so passes over all genes of
    row blocks (fitting, training) read about twice as fast as through per-chunk tasks; the
    reads go through :class:`~brainzarr.rowblocks.RowBlockReader` (faster still on the
    store's own chunk format).
    """
    check_schema(path)
    import dask
    import dask.array as da

    with quiet_zarr():
        array = zarr.open_array(str(Path(path) / "expression"), mode="r", zarr_format=3)
    n, width = (int(s) for s in array.shape)
    step = int(rows or array.chunks[0])
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (n,):
            raise ValueError(f"row mask has shape {mask.shape}, expected ({n},)")
    from .rowblocks import RowBlockReader

    reader = RowBlockReader(str(Path(path) / "expression"))
    name = f"expression-rows-{dask.base.tokenize(str(Path(path).resolve()), step, mask)}"
    blocks = []
    for a in range(0, n, step):
        b = min(a + step, n)
        keep = None if mask is None or mask[a:b].all() else mask[a:b]
        n_rows = b - a if keep is None else int(keep.sum())
        if n_rows:
            task = dask.delayed(reader, pure=True)(a, b, keep, dask_key_name=f"{name}-{a}")
            blocks.append(da.from_delayed(task, shape=(n_rows, width), dtype=array.dtype))
    if not blocks:
        return da.zeros((0, width), dtype=array.dtype, chunks=(1, width))
    return da.concatenate(blocks, axis=0)


def store_grid(ds_or_path) -> Grid:
    """The :class:`~brainzarr.grid.Grid` of a store (from an open Dataset or a path)."""
    ds = ds_or_path if isinstance(ds_or_path, (xr.Dataset, xr.DataArray)) else open_store(ds_or_path)
    info = grid_info(ds)
    ijk = np.column_stack([np.asarray(ds[c].values) for c in "ijk"])
    return Grid.from_ijk(
        ijk, info["grid_shape"], info["affine"], space=info.get("space", "MNI152"), name=info.get("mask", "store")
    )


def grid_info(obj) -> dict:
    """Affine and grid shape of a store Dataset or of a voxel-indexed DataArray taken from one."""
    for attrs in (obj.attrs, obj["i"].attrs if "i" in obj.coords else {}):
        if "affine" in attrs and "grid_shape" in attrs:
            return {
                "affine": np.asarray(attrs["affine"], dtype=float),
                "grid_shape": tuple(int(s) for s in attrs["grid_shape"]),
                **{k: attrs[k] for k in ("space", "mask", "resolution_mm") if k in attrs},
            }
    raise ValueError(
        "no grid information (affine, grid_shape): select the data from a brainzarr store, or pass the grid explicitly"
    )


def voxel_coords(ds: xr.Dataset) -> dict:
    """The voxel coordinates of a store, for attaching to voxel-indexed results."""
    return {c: ds[c] for c in ("voxel",) + VOXEL_COORDS if c in ds.coords}


# --------------------------------------------------------------------------------- results
def _group_dir(path, group: str) -> Path:
    group = group.strip("/")
    if not group or ".." in group.split("/"):
        raise ValueError(f"bad group name {group!r}")
    return Path(path) / group


def list_groups(path, prefix: str = "representations") -> list[str]:
    """Result groups under ``prefix`` that hold arrays (e.g. 'representations/pca/k8')."""
    base = _group_dir(path, prefix)
    found = []
    for meta in sorted(base.rglob("zarr.json")) if base.exists() else []:
        d = meta.parent
        if any(part.startswith(".") for part in d.relative_to(path).parts):
            continue
        node = json.loads(meta.read_text())
        if node.get("node_type") == "group" and any(
            (c / "zarr.json").exists() and json.loads((c / "zarr.json").read_text()).get("node_type") == "array"
            for c in d.iterdir()
            if c.is_dir()
        ):
            found.append(str(d.relative_to(path)))
    return found


@contextlib.contextmanager
def group_writer(path, group: str, *, overwrite: bool = False):
    """Write a result group atomically: yields a scratch path to fill, then swaps it in.

    The scratch folder sits beside the final one; on success it replaces the group with two
    renames, so an interrupted write never damages the previous result, and on failure it
    is removed.

    Raises
    ------
    ResultExistsError
        If the group exists and ``overwrite`` is false.
    """
    check_schema(path)
    final = _group_dir(path, group)
    if final.exists() and not overwrite:
        raise ResultExistsError(f"{group} exists in {path}; pass overwrite=True (CLI: --overwrite) to replace it")
    # parents must be Zarr groups so that DataTree and zarr can walk the tree
    with quiet_zarr():
        root = zarr.open_group(str(path), mode="r+", zarr_format=3)
        for depth in range(1, len(group.strip("/").split("/"))):
            root.require_group("/".join(group.strip("/").split("/")[:depth]))
    token = uuid.uuid4().hex[:8]
    scratch = final.parent / f".{final.name}.partial-{token}"
    try:
        yield scratch
        old = final.parent / f".{final.name}.old-{token}"
        if final.exists():
            final.rename(old)
        scratch.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def write_group(path, group: str, data, *, overwrite: bool = False, attrs: dict | None = None) -> None:
    """Write a labelled Dataset or DataArray into the store under ``group``, atomically.

    Dask-backed variables are computed and written chunk by chunk (streamed). Grid
    information is attached to coordinate ``i`` when the data has voxel coordinates.
    """
    ds = data.to_dataset(name=data.name or "data") if isinstance(data, xr.DataArray) else data
    if attrs:
        ds = ds.assign_attrs(**attrs)
    if "i" in ds.coords and "affine" not in ds["i"].attrs:
        store_attrs = check_schema(path)
        ds["i"].attrs.update({k: store_attrs[k] for k in ("affine", "grid_shape", "space", "resolution_mm")})
    encoding = {
        name: {"chunks": tuple(c[0] for c in var.chunks)}
        for name, var in ds.data_vars.items()
        if var.chunks is not None
    }
    with group_writer(path, group, overwrite=overwrite) as scratch, quiet_zarr():
        ds.to_zarr(str(scratch), mode="w", consolidated=False, zarr_format=3, encoding=encoding)


def read_group(path, group: str) -> xr.Dataset:
    """Open a result group written with :func:`write_group` (dask-backed)."""
    check_schema(path)
    if not _group_dir(path, group).exists():
        raise KeyError(f"no group {group} in {path}; groups: {', '.join(list_groups(path)) or 'none'}")
    with quiet_zarr():
        return xr.open_zarr(str(path), group=group.strip("/"), consolidated=False)
