"""The store: one Zarr v3 group per dataset, opened as a dask-backed xarray Dataset.

Schema (version :data:`SCHEMA_VERSION`)
--------------------------------------
Root group attributes: ``brainzarr_schema_version``, ``affine`` (4x4 nested list),
``grid_shape``, ``resolution_mm``, ``space``, ``mask``, ``provenance`` (source and its options,
assignment, preprocessing, split, seeds, package versions), ``build_complete``.

Arrays:

* ``expression (voxel, gene)`` float32 in [0, 1], chunked ``(voxel_chunk, gene_chunk)``;
* voxel coordinates ``voxel`` (row number), ``i, j, k`` (grid indices), ``x, y, z`` (MNI mm),
  ``hemisphere`` ('L', 'R', 'M'), ``split`` ('train'/'test', the scheme chosen at build),
  ``split_random`` and ``split_blocked`` (both schemes, so every result can be reported
  under both); the grid's affine and shape are also attributes of coordinate ``i`` so they
  travel with every voxel-indexed DataArray;
* gene coordinate ``gene`` (symbol); ``clamp_low``, ``clamp_high`` (gene): the percentile
  bounds used to scale each gene;
* ``build_chunk_done (voxel_chunk)``: which row blocks are written (resume bookkeeping).

Results live in sub-groups (``representations/<split>/<method>/k<dim>``), written with
:func:`write_group` (atomic: an interrupted write leaves the previous result in place) and
read with :func:`read_group` or plain ``xarray.open_zarr(store, group=..., consolidated=False)``.

A :class:`Store` is a validated store: the schema is checked once when it is made, and every
function here takes either a path or a Store (a path is validated, a Store is trusted).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import warnings
from functools import cached_property
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

from ._atomic import atomic_directory, remove_stale_partials, stale_partials
from ._location import STORE_KEY, StoreLocationError, is_remote, location, open_group, user_path, zarr_store
from ._validation import did_you_mean
from ._zarr import checked_compressors, quiet_zarr
from .exceptions import (
    InputError,
    InputTypeError,
    ResultExistsError,
    ResultNotFoundError,
    StoreError,
    StoreExistsError,
    StoreLockedError,
    StoreReadOnlyError,
)
from .grid import Grid

__all__ = [
    "SCHEMA_VERSION",
    "Store",
    "as_store",
    "open_store",
    "check_schema",
    "store_grid",
    "grid_info",
    "write_group",
    "read_group",
    "list_groups",
    "group_writer",
    "store_lock",
    "removable_store",
    "selection_of_store",
    "VOXEL_COORDS",
    "quiet_zarr",
]

SCHEMA_VERSION = 1
VOXEL_COORDS = ("i", "j", "k", "x", "y", "z", "hemisphere", "split", "split_random", "split_blocked")
_BOOKKEEPING = ("build_chunk_done",)
#: folders inside a store that brainzarr itself keeps (not results)
HIDDEN_FOLDERS = (".checkpoints",)


def _root_attrs(path) -> dict:
    path = location(path)
    if not _exists(path):
        raise StoreError(f"no store at {path}")
    try:
        with quiet_zarr():
            group = zarr.open_group(zarr_store(path, strict=False), mode="r", zarr_format=3)
    except Exception as exc:  # zarr raises several kinds for "not a group"
        raise StoreError(_not_a_group(path, exc)) from None
    return dict(group.attrs)


def _not_a_group(path, exc: Exception) -> str:
    """Why ``path`` opens as no store: a file, a part of a store, a folder of stores, or not Zarr."""
    local = None if is_remote(path) else user_path(path)
    if local is not None and local.is_file():
        return f"{path} is a file; a store is a folder (such as store/s8.zarr)"
    enclosing = enclosing_store(path)
    if enclosing is not None:
        return f"{path} is inside the store {enclosing}, not a store itself: give {enclosing}"
    stores = [] if local is None else _stores_in(local)
    if stores:
        return f"{path} is a folder of stores: give one of them ({', '.join(stores[:5])}{', ...' * (len(stores) > 5)})"
    build = "build a store first (brainzarr.build_store, or brainzarr build)"
    if local is not None and (local / ".zgroup").is_file():
        return f"{path} is a Zarr v2 group; a brainzarr store is a Zarr v3 group: {build}"
    if local is not None and local.is_dir() and not (local / "zarr.json").exists():
        return f"{path} is a folder, not a Zarr store (it has no zarr.json): {build}"
    return f"{path} is not a Zarr v3 group ({type(exc).__name__}): {build}"


def is_store_root(folder: Path) -> bool:
    """Whether a local folder is the root of a brainzarr store (its zarr.json says so)."""
    try:
        return "brainzarr_schema_version" in json.loads((folder / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return False


def _stores_in(folder: Path, *, look_at: int = 1000) -> list[str]:
    """The brainzarr stores among a folder's first ``look_at`` entries."""
    import itertools

    try:
        return sorted(str(c) for c in itertools.islice(folder.iterdir(), look_at) if is_store_root(c))
    except OSError:  # not a folder, or not readable
        return []


def enclosing_store(path, *, itself: bool = False) -> str | None:
    """The brainzarr store that a local ``path`` lies inside (or is, with ``itself``), else None."""
    if is_remote(path):
        return None
    path = user_path(path)
    candidates = [path] * itself + list(path.parents) + ([] if path.is_absolute() else list(Path.cwd().parents))
    for candidate in candidates:
        if is_store_root(candidate):
            return str(Path.cwd() if candidate == Path(".") else candidate)
    return None


def refuse_output_in_a_store(path, *, may_be_a_store: bool = False) -> None:
    """Stop before anything is written when ``path`` (an output) lies inside a brainzarr store,
    or is one (unless ``may_be_a_store``: a store being built or resumed): the store would then
    hold files brainzarr did not put there, which an overwrite refuses to remove with it.

    Raises
    ------
    InputError
    """
    from .exceptions import InputError

    holder = enclosing_store(str(path), itself=not may_be_a_store)
    if holder is None:
        return
    where = "a brainzarr store" if os.path.abspath(holder) == os.path.abspath(path) else f"inside the store {holder}"
    raise InputError(f"{path} is {where}, which holds only what brainzarr writes there: write elsewhere")


def _exists(path) -> bool:
    """Whether a local path or a URL exists; a remote one's bucket must exist and be readable."""
    if not is_remote(path):
        return user_path(path).exists()
    fs = path.fs
    protocol, rest = str(path).split("://", 1)
    bucket = rest.split("/", 1)[0] if protocol in ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl") else None
    try:
        if bucket is not None:
            try:
                fs.info(bucket)
            except FileNotFoundError:
                raise StoreLocationError(f"no bucket {bucket!r} at {path} (or no permission to see it)") from None
        return fs.exists(path.path)
    except StoreLocationError:
        raise
    except Exception as exc:  # credentials, endpoint, network: botocore/aiohttp raise many kinds
        raise StoreLocationError(f"cannot reach {path}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    if "credential" in (name + text).lower():
        return "no valid credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or storage_options key/secret)"
    if "Forbidden" in text or "AccessDenied" in text or isinstance(exc, PermissionError):
        return "access denied: check the credentials and the bucket's permissions"
    return f"{name}: {text}" if text else name


def check_schema(path) -> dict:
    """Return the root attributes of a brainzarr store, or raise :class:`StoreError`."""
    if isinstance(path, Store):
        return path.attrs
    attrs = _root_attrs(path)
    version = attrs.get("brainzarr_schema_version")
    if version is None:
        enclosing = enclosing_store(path)
        if enclosing is not None:
            raise StoreError(f"{path} is inside the store {enclosing}, not a store itself: give {enclosing}")
        raise StoreError(f"{path} is a Zarr group but not a brainzarr store (no brainzarr_schema_version)")
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"{path} has brainzarr schema version {version}; this brainzarr reads "
            f"version {SCHEMA_VERSION}. Rebuild it with this version's build_store."
        )
    return attrs


class Store:
    """A brainzarr store whose schema has been checked: its path, attributes, data and results.

    Parameters
    ----------
    path : str or Path
        The store (a directory such as ``store/s8.zarr``).
    allow_incomplete : bool
        Accept a store whose build was interrupted.
    storage_options : dict, optional
        For a store at a URL (``s3://bucket/x.zarr``): fsspec options such as ``endpoint_url``,
        ``key``, ``secret`` (credentials otherwise come from the environment).

    Raises
    ------
    StoreError
        Not a brainzarr store, another schema version, or (without ``allow_incomplete``) an
        unfinished build.

    Notes
    -----
    ``os.fspath(store)`` is its path, so a Store goes wherever a path does.
    """

    def __init__(self, path, *, allow_incomplete: bool = False, storage_options: dict | None = None):
        self.path = location(path, storage_options)
        self.attrs = check_schema(self.path)
        if not self.complete and not allow_incomplete:
            raise StoreError(
                f"the build of {self.path} did not finish; run the same build again (same settings) to resume it"
            )

    @classmethod
    def trusted(cls, path, dataset: xr.Dataset) -> Store:
        """A Store for a Dataset that :func:`open_store` opened (validated then; not checked again)."""
        store = cls.__new__(cls)
        store.path, store.attrs = location(path), dict(dataset.attrs)
        store.__dict__["dataset"] = dataset
        return store

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    @property
    def complete(self) -> bool:
        return bool(self.attrs.get("build_complete", False))

    @property
    def provenance(self) -> dict:
        return self.attrs.get("provenance", {})

    @property
    def layout(self):
        """How ``expression`` is stored (:class:`brainzarr.layout.Layout`; stores built before
        layouts existed are float32, unsharded, without checksums)."""
        from .layout import Layout

        spec = self.provenance.get("layout")
        return Layout.from_spec(spec) if spec else Layout("float32", shard_genes=None, checksum=False)

    @cached_property
    def chunks(self) -> tuple[int, int]:
        """The (voxels, genes) chunk shape of ``expression`` (inner chunks when sharded)."""
        with quiet_zarr():
            array = zarr.open_array(zarr_store(self.path, strict=False), path="expression", mode="r", zarr_format=3)
        return tuple(int(c) for c in array.chunks)

    @cached_property
    def dataset(self) -> xr.Dataset:
        """The store as a dask-backed Dataset (voxel coordinates in memory)."""
        return _open_dataset(self)

    @cached_property
    def grid(self) -> Grid:
        return store_grid(self.dataset)

    def group_path(self, group: str) -> Path:
        return _group_dir(self.path, group)

    def results(self, prefix: str | None = "representations") -> list[str]:
        return list_groups(self, prefix)

    def read(self, group: str) -> xr.Dataset:
        return read_group(self, group)

    def write(self, group: str, data, *, overwrite: bool = False, attrs: dict | None = None) -> None:
        write_group(self, group, data, overwrite=overwrite, attrs=attrs)

    @property
    def remote(self) -> bool:
        return is_remote(self.path)

    def check_writable(self) -> None:
        """Raise StoreReadOnlyError (a PermissionError) when the store cannot be written (before any computation)."""
        if self.remote:
            return  # object storage says so at the first write
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise StoreReadOnlyError(f"the store {self.path} is read-only")


def as_store(store, *, allow_incomplete: bool = False) -> Store:
    """A :class:`Store` from a path (validated) or a Store (as is)."""
    if isinstance(store, Store):
        return store
    return Store(store, allow_incomplete=allow_incomplete)


def selection_of_store(ds: xr.Dataset, store: Store | None = None) -> str | None:
    """How a Dataset from :func:`open_store` differs from its whole store ("10 of 30 genes",
    ...), or None when it is the store's expression, every voxel and gene in order. A job that
    reads and writes the whole store (a fit) must not take such a Dataset for the store."""
    store = as_store(ds) if store is None else store
    with quiet_zarr():
        root = open_group(store.path, mode="r")
        n_voxels, genes = root["expression"].shape[0], np.asarray(root["gene"][:]).astype(str)
    voxels = ds["voxel"].values if "voxel" in ds.coords else np.arange(ds.sizes["voxel"])
    if (
        "expression" in ds
        and ds["expression"].dims == ("voxel", "gene")
        and np.array_equal(voxels, np.arange(n_voxels))
        and np.array_equal(ds["gene"].values.astype(str), genes)
    ):
        return None
    ours = (ds.sizes.get("voxel", 0), ds.sizes.get("gene", 0))
    if ours == (n_voxels, len(genes)):
        return "its voxels or genes in another order"
    return f"{ours[0]:,} of {n_voxels:,} voxels, {ours[1]:,} of {len(genes):,} genes"


def open_store(path, *, allow_incomplete: bool = False, chunks="auto-store") -> xr.Dataset:
    """Open a brainzarr store as a dask-backed :class:`xarray.Dataset`.

    Parameters
    ----------
    path : str, Path or Store
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
    store = as_store(path, allow_incomplete=allow_incomplete)
    if chunks == "auto-store":
        return store.dataset
    return _open_dataset(store, chunks=chunks)


def _open_dataset(store: Store, chunks="auto-store") -> xr.Dataset:
    with quiet_zarr():
        ds = xr.open_zarr(
            zarr_store(store.path),
            consolidated=_read_consolidated(store.path),
            chunks={} if chunks == "auto-store" else chunks,
            mask_and_scale=False,  # packed arrays decode to float32 below (xarray's CF gives float64)
        )
    ds = _unpacked(ds, _local_root(store))
    problems = []
    if "expression" not in ds or ds["expression"].dims != ("voxel", "gene"):
        problems.append("expression (voxel, gene)")
    problems += [c for c in (*VOXEL_COORDS, "gene") if c not in ds.variables]
    if problems:
        raise StoreError(f"{store.path} is missing {', '.join(problems)}; it is not a valid brainzarr store")
    ds = ds.drop_vars([v for v in _BOOKKEEPING if v in ds.variables])
    ds = ds.set_coords([c for c in VOXEL_COORDS if c in ds.data_vars])
    # voxel coordinates are small (a few bytes per voxel): hold them in memory
    ds = ds.assign_coords({c: ds[c].load() for c in (*VOXEL_COORDS, "voxel", "gene")})
    ds.encoding[STORE_KEY] = store.path
    return _in_a_fixed_order(_portable_grid(ds))


def _portable_grid(ds: xr.Dataset) -> xr.Dataset:
    """The affine on coordinate ``i`` as 16 numbers, row by row, instead of a 4 x 4 list:
    netCDF attributes are one-dimensional, and every variable selected from the store carries
    ``i`` (``to_netcdf`` refused them all). Stores keep the 4 x 4 list; :func:`grid_info`
    reads either."""
    if "i" in ds.coords and np.ndim(ds["i"].attrs.get("affine")) == 2:
        ds["i"].attrs["affine"] = np.asarray(ds["i"].attrs["affine"], dtype=float).ravel().tolist()
    return ds


def store_grid(ds_or_path) -> Grid:
    """The :class:`~brainzarr.grid.Grid` of a store (from an open Dataset, a Store or a path)."""
    if isinstance(ds_or_path, (xr.Dataset, xr.DataArray)):
        ds = ds_or_path
    else:
        ds = as_store(ds_or_path).dataset
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
                "affine": np.asarray(attrs["affine"], dtype=float).reshape(4, 4),  # 4 x 4 or 16
                "grid_shape": tuple(int(s) for s in attrs["grid_shape"]),
                **{k: attrs[k] for k in ("space", "mask", "resolution_mm") if k in attrs},
            }
    raise InputError(
        "no grid information (affine, grid_shape): select the data from a brainzarr store, or pass the grid explicitly"
    )


def voxel_coords(ds: xr.Dataset) -> dict:
    """The voxel coordinates of a store, for attaching to voxel-indexed results."""
    return {c: ds[c] for c in ("voxel", *VOXEL_COORDS) if c in ds.coords}


# --------------------------------------------------------------------------------- results
def _group_dir(path, group: str):
    group = group.strip("/")
    if not group or ".." in group.split("/"):
        raise InputError(f"bad group name {group!r}")
    return location(path) / group


def list_groups(path, prefix: str | None = "representations") -> list[str]:
    """Result groups under ``prefix`` that hold arrays (e.g. 'representations/pca/k8'); with
    ``prefix=None``, every group of the store that holds arrays (the evaluation's, and those
    written with :func:`write_group` under names of one's own), the store itself aside.

    Raises
    ------
    StoreError
        Nothing is at ``path`` (a mistyped path lists no groups otherwise).
    """
    root = location(path.path if isinstance(path, Store) else path)
    if not _exists(root):
        raise StoreError(f"no store at {root}")
    if is_remote(root):
        return _list_groups_remote(root, prefix)
    base = root if prefix is None else _group_dir(root, prefix)
    found = []
    for meta in sorted(base.rglob("zarr.json")) if base.exists() else []:
        d = meta.parent
        if d == root or any(part.startswith(".") for part in d.relative_to(root).parts):
            continue
        node = json.loads(meta.read_text())
        if node.get("node_type") == "group" and any(
            (c / "zarr.json").exists() and json.loads((c / "zarr.json").read_text()).get("node_type") == "array"
            for c in d.iterdir()
            if c.is_dir()
        ):
            found.append(str(d.relative_to(root)))
    return found


@contextlib.contextmanager
def group_writer(path, group: str, *, overwrite: bool = False):
    """Write a result group atomically: yields a scratch path to fill, then swaps it in.

    The scratch folder sits beside the final one; on success it replaces the group with two
    renames, so an interrupted write never damages the previous result, and on failure it
    is removed. Scratch folders that dead writers left beside it are removed first.

    Raises
    ------
    ResultExistsError
        If the group exists and ``overwrite`` is false.
    """
    store = as_store(path)
    final = _group_dir(store.path, group)
    _refuse_what_is_not_a_result(store, group)
    if _exists(final / "zarr.json") and not overwrite:
        raise ResultExistsError(f"{group} exists in {store.path}", options={"overwrite": True})
    # parents must be Zarr groups so that DataTree and zarr can walk the tree
    with quiet_zarr():
        root = open_group(store.path, mode="r+")
        parts = group.strip("/").split("/")
        for depth in range(1, len(parts)):
            root.require_group("/".join(parts[:depth]))
    if store.remote:
        with atomic_prefix(final) as scratch:
            yield scratch
    else:
        remove_stale_partials(final.parent)
        with atomic_directory(final) as scratch:
            yield scratch
    consolidate(store.path)


def _refuse_what_is_not_a_result(store: Store, group: str) -> None:
    """Stop a result written over what is not one: an array of the store (``expression``,
    ``split``: an overwrite would have replaced the store's data), a place inside one, a folder
    brainzarr keeps (``.checkpoints``), or a folder of results (``representations``, whose
    overwrite would remove every fit)."""
    parts = group.strip("/").split("/")
    if any(part.startswith(".") for part in parts):
        raise InputError(f"{group}: a result's name has no part starting with '.' (brainzarr keeps its folders there)")
    for depth in range(1, len(parts) + 1):
        name = "/".join(parts[:depth])
        meta = _group_dir(store.path, name) / "zarr.json"
        if _exists(meta) and json.loads(meta.read_text()).get("node_type") == "array":
            raise InputError(
                f"{name} is an array of the store {store.path}, not a result: give the result a name of its own, "
                f"e.g. analyses/{parts[-1]}"
            )
    inside = list_groups(store, group)
    if inside and group.strip("/") not in inside:
        shown = ", ".join(inside[:4]) + (f" and {len(inside) - 4} more" if len(inside) > 4 else "")
        raise InputError(f"{group} holds results ({shown}), not arrays of its own: name a result group of its own")


def write_group(path, group: str, data, *, overwrite: bool = False, attrs: dict | None = None) -> None:
    """Write a labelled Dataset or DataArray into the store under ``group``, atomically.

    Dask-backed variables are computed and written chunk by chunk (streamed). Grid
    information is attached to coordinate ``i`` when the data has voxel coordinates; data on a
    ``voxel`` dimension without them (an array computed with numpy, one value per voxel of the
    store, or rows named by a ``voxel`` coordinate of row numbers) get the store's, so that the
    group reads back as a map (``read_group(...)[name].brain.to_nifti()``, ``brainzarr export``).
    """
    store = as_store(path)
    if not isinstance(data, (xr.Dataset, xr.DataArray)):
        raise InputTypeError(f"write_group writes an xarray Dataset or DataArray, got {type(data).__name__}")
    ds = data.to_dataset(name=data.name or "data") if isinstance(data, xr.DataArray) else data
    # the encodings it was read with (the store's chunks on its coordinates) conflict with a
    # rechunked array's: xarray refused `.chunk({"voxel": 500})` naming split_blocked
    ds = _with_voxel_coords(ds.drop_encoding(), store)
    if attrs:
        ds = ds.assign_attrs(**attrs)
    ds = _with_json_attrs(ds)
    if "i" in ds.coords and "affine" not in ds["i"].attrs:
        ds["i"].attrs.update({k: store.attrs[k] for k in ("affine", "grid_shape", "space", "resolution_mm")})
    encoding = {  # every array checksummed, in memory or dask-backed: `brainzarr check` finds damage in it
        name: {"compressors": checked_compressors()}
        | ({"chunks": tuple(c[0] for c in var.chunks)} if var.chunks is not None else {})
        for name, var in ds.data_vars.items()
    }
    with group_writer(store, group, overwrite=overwrite) as scratch, quiet_zarr():
        ds.to_zarr(
            zarr_store(scratch, read_only=False, strict=False),
            mode="w",
            consolidated=False,
            zarr_format=3,
            encoding=encoding,
            write_empty_chunks=True,  # a chunk of NaN alone is written: a missing one reads as damage
        )


def _json_value(value, where: str):
    """``value`` as zarr's JSON attributes hold it: a date or time as ISO 8601 text, a path as
    text, a set as a sorted list, numpy scalars and arrays as numbers and lists; anything else
    is refused, naming it (xarray said only ``Invalid attribute in Dataset.attrs``)."""
    import datetime

    def plain(v):
        if isinstance(v, (datetime.date, datetime.time)):
            return v.isoformat()
        if isinstance(v, os.PathLike):
            return os.fspath(v)
        if isinstance(v, (set, frozenset)):
            return sorted(v, key=str)
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, np.ndarray):
            return v.tolist()
        raise InputTypeError(
            f"attribute {where} is a {type(v).__name__!r}, which a store's attributes (JSON) cannot hold; "
            "give it as text, a number, a list or a dict"
        )

    return json.loads(json.dumps(value, default=plain))


def _with_json_attrs(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with the attributes of it and of its variables in a form zarr writes (see
    :func:`_json_value`); those already so are kept as they are (numpy arrays too: xarray
    writes them)."""

    def fixed(attrs, owner):
        out = {}
        for key, value in attrs.items():
            try:
                json.dumps(value)
                out[key] = value
            except (TypeError, ValueError):
                if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in "biuf":
                    out[key] = value
                else:
                    out[key] = _json_value(value, f"{key!r}{owner}")
        return out

    ds = ds.copy(deep=False)
    ds.attrs = fixed(ds.attrs, "")
    for name, variable in ds.variables.items():
        variable.attrs = fixed(variable.attrs, f" of {name}")
    return ds


def _with_voxel_coords(ds: xr.Dataset, store: Store) -> xr.Dataset:
    """``ds`` with the store's voxel coordinates (i, j, k, x, ...) where it has a ``voxel``
    dimension without them: all of them for one row per voxel of the store, those of its rows
    for a ``voxel`` coordinate of row numbers; as it is otherwise (rows it cannot place)."""
    if "voxel" not in ds.dims or "i" in ds.coords:
        return ds
    coords = voxel_coords(store.dataset)
    if "voxel" in ds.coords:
        rows = np.asarray(ds["voxel"].values)
        if not np.issubdtype(rows.dtype, np.integer) or not np.isin(rows, coords["voxel"].values).all():
            return ds
        coords = {name: c.sel(voxel=rows) for name, c in coords.items()}
    elif ds.sizes["voxel"] != store.dataset.sizes["voxel"]:
        return ds
    return ds.assign_coords({name: c.variable for name, c in coords.items()})


def results_by_split(groups) -> list[str]:
    """One line per split of the fitted representations, each method's dims in numeric order
    (``representations/random: pca k2, k8, k32; nmf k8``), then any other group as it is."""
    fitted, other = {}, []
    for group in groups:
        parts = group.split("/")
        if len(parts) == 4 and parts[0] == "representations" and parts[3][:1] == "k" and parts[3][1:].isdigit():
            fitted.setdefault("/".join(parts[:2]), {}).setdefault(parts[2], []).append(int(parts[3][1:]))
        else:
            other.append(group)
    lines = [
        f"{split}: "
        + "; ".join(f"{method} " + ", ".join(f"k{d}" for d in sorted(dims)) for method, dims in methods.items())
        for split, methods in fitted.items()
    ]
    return lines + other


def read_group(path, group: str) -> xr.Dataset:
    """Open a result group written with :func:`write_group` (dask-backed)."""
    store = as_store(path, allow_incomplete=True)
    group = resolve_group(store, group)
    meta = _group_dir(store.path, group) / "zarr.json"
    if not _exists(meta):
        held = list_groups(store, prefix=None)
        groups = ", ".join(held[:12]) + (f" and {len(held) - 12} more" if len(held) > 12 else "")
        raise ResultNotFoundError(
            f"no group {group} in {store.path}; groups: {groups or 'none'}{did_you_mean(group, held)}"
        )
    if json.loads(meta.read_text()).get("node_type") == "array":
        raise InputError(f"{group} is an array of the store, not a result group: open_store(store)[{group!r}]")
    with quiet_zarr():
        ds = xr.open_zarr(
            zarr_store(store.path),
            group=group.strip("/"),
            consolidated=_read_consolidated(store.path),
            mask_and_scale=False,
        )
    return _in_a_fixed_order(_portable_grid(_unpacked(ds, _local_root(store, group))))


#: variables in this order first, the others after them by name
_FIRST = (
    "expression",
    "embedding",
    "reconstruction",
    "voxel_rmse",
    "rmse",
    "voxel",
    "gene",
    "component",
    *VOXEL_COORDS,
)


def _in_a_fixed_order(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with its data variables and coordinates in one order, every time it is opened.

    Zarr lists a group's arrays as an asynchronous listing returns them, and xarray keeps that
    order (and a set's, which changes with each process's hash seed), so without this the
    columns of ``to_dataframe()``, a netCDF file's variables and the repr changed from run to run.
    """

    def rank(name):
        return (0, _FIRST.index(name), "") if name in _FIRST else (1, 0, str(name))

    coords = xr.Coordinates(
        {name: ds.coords[name].variable for name in sorted(ds.coords, key=rank)}, indexes=dict(ds.xindexes)
    )
    out = xr.Dataset(
        {name: ds[name].variable for name in sorted(ds.data_vars, key=rank)}, coords=coords, attrs=ds.attrs
    )
    out.encoding = ds.encoding
    out.set_close(ds.close)
    return out


def _unpacked(ds: xr.Dataset, root=None) -> xr.Dataset:
    """Packed (uint16 + scale_factor) variables as lazy float32; NaN fill values left as stored.
    ``root``: the group's local directory, where brainzarr reads the packed arrays' chunks itself."""
    from .layout import unpack
    from .streaming.chunked import packed_dask_array

    out = {}
    for name, var in ds.data_vars.items():
        if var.dtype.kind not in "iu":
            continue
        fast = None
        if root is not None and var.ndim == 2 and "scale_factor" in var.attrs and var.chunks is not None:
            fast = packed_dask_array(Path(root) / name, var.chunks)
        out[name] = unpack(var, data=fast)
    return ds.assign(out)


def _local_root(store: Store, group: str = ""):
    """The local directory of a store's group, or None on object storage."""
    if is_remote(store.path):
        return None
    root = location(store.path)
    return root / group.strip("/") if group.strip("/") else root


def resolve_group(store, group: str) -> str:
    """``representations/<method>/k<n>`` (the layout before split levels) names the result of the
    store's split when no such group exists."""
    parts = group.strip("/").split("/")
    if len(parts) == 3 and parts[0] == "representations" and not _exists(_group_dir(store.path, group) / "zarr.json"):
        scheme = store.provenance.get("split", {}).get("scheme", "random")
        for split in dict.fromkeys((scheme, "random", "blocked")):
            candidate = f"representations/{split}/{parts[1]}/{parts[2]}"
            if _exists(_group_dir(store.path, candidate) / "zarr.json"):
                return candidate
    return group


def _read_consolidated(path) -> bool:
    """Open through the consolidated metadata on object storage (one read instead of one per
    node); local stores read their nodes directly (cheap, and never stale)."""
    if not is_remote(path):
        return False
    try:
        return "consolidated_metadata" in json.loads((location(path) / "zarr.json").read_text())
    except (OSError, ValueError):
        return False


def consolidate(path) -> None:
    """Write (or refresh) the root's consolidated metadata: every node's metadata in one document,
    so opening a store on object storage is one read and ``xarray.open_zarr`` opens any group of
    it without a warning. Called after every build and result write, so it stays current."""
    with quiet_zarr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not part of the Zarr format 3 specification"
        zarr.consolidate_metadata(zarr_store(path, read_only=False, strict=False))


def _list_groups_remote(root, prefix: str | None) -> list[str]:
    """Result groups on object storage, from the node listing (consolidated when present)."""
    with quiet_zarr():
        group = zarr.open_group(zarr_store(root), mode="r", zarr_format=3)
        nodes = dict(group.members(max_depth=None))
    found = set()
    for name, node in nodes.items():
        parts = name.split("/")
        under = prefix is None or name.startswith(prefix.strip("/") + "/")
        if isinstance(node, zarr.Array) and len(parts) > 1 and under:
            parent = "/".join(parts[:-1])
            if not any(p.startswith(".") for p in parts):
                found.add(parent)
    return sorted(found)


@contextlib.contextmanager
def atomic_prefix(final):
    """Object storage's stand-in for a rename: fill a scratch prefix, then copy it over ``final``
    with every node's ``zarr.json`` last and the group's own last of all, so a half-copied
    result is never seen as a group; the previous one is hidden (its zarr.json removed first)
    only once the new one is complete in scratch. The scratch prefix goes on success or failure."""
    import uuid

    scratch = final.parent / f".{final.name}.partial-{uuid.uuid4().hex[:8]}"
    fs = final.fs
    try:
        yield scratch
        objects = sorted(fs.find(scratch.path))
        metadata = [o for o in objects if o.endswith("zarr.json")]
        data = [o for o in objects if not o.endswith("zarr.json")]
        if fs.exists(final.path):
            if fs.exists(f"{final.path}/zarr.json"):
                fs.rm(f"{final.path}/zarr.json")
            fs.rm(final.path, recursive=True)
        root_meta = f"{scratch.path}/zarr.json"
        for obj in data + sorted(m for m in metadata if m != root_meta) + [root_meta]:
            fs.copy(obj, final.path + obj[len(scratch.path) :])
    finally:
        if fs.exists(scratch.path):
            fs.rm(scratch.path, recursive=True)


def store_partials(path) -> list[Path]:
    """Scratch folders in the store left by writers that died (removable)."""
    return stale_partials(path)


# ------------------------------------------------------------------------------ ownership
def removable_store(path) -> None:
    """Raise :class:`StoreExistsError` unless an overwrite may remove ``path`` (a brainzarr store only)."""
    if is_remote(path):
        _removable_remote(location(path))
        return
    _removable_local(path)


def _removable_remote(path) -> None:
    try:
        check_schema(path)
    except StoreError as exc:
        raise StoreExistsError(f"{path} exists and is not a brainzarr store ({exc}); refusing to remove it") from None
    foreign = [p.name for p in path.iterdir() if not (p.name == "zarr.json" or _exists(p / "zarr.json"))]
    foreign = [n for n in foreign if n not in HIDDEN_FOLDERS and ".partial-" not in n]
    if foreign:
        shown = ", ".join(sorted(foreign)[:5])
        raise StoreExistsError(f"{path} holds objects brainzarr did not write ({shown}); refusing to remove it")


def _removable_local(path) -> None:
    """Raise :class:`StoreExistsError` unless ``path`` is something an overwrite may remove.

    Only a brainzarr store (finished, or an unfinished build brainzarr started: both carry
    ``brainzarr_schema_version``) holding nothing but what brainzarr writes may be removed;
    never the current directory or one of its parents.
    """
    path = user_path(path)
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise StoreExistsError(f"{path} is the current directory or one of its parents; refusing to remove it")
    try:
        check_schema(path)
    except StoreError as exc:
        raise StoreExistsError(f"{path} exists and is not a brainzarr store ({exc}); refusing to remove it") from None
    foreign = [p.name for p in path.iterdir() if not _brainzarr_entry(p)]
    if foreign:
        shown = ", ".join(sorted(foreign)[:5]) + (" ..." if len(foreign) > 5 else "")
        raise StoreExistsError(f"{path} holds files brainzarr did not write ({shown}); refusing to remove it")


def _brainzarr_entry(p: Path) -> bool:
    """A top-level entry of a store that brainzarr writes: zarr metadata, arrays and groups,
    its own hidden folders and scratch folders."""
    if p.name == "zarr.json":
        return True
    if p.is_dir():
        return (p / "zarr.json").exists() or p.name in HIDDEN_FOLDERS or ".partial-" in p.name or ".old-" in p.name
    return False


# ---------------------------------------------------------------------------------- locking
def _lock_path(path) -> Path:
    path = user_path(path)
    return path.parent / f".{path.name}.lock"


@contextlib.contextmanager
def store_lock(path, *, exclusive: bool = True, what: str = "writing"):
    """Hold the store's lock for a job: exclusive for a build, shared for a fit (local stores only)."""
    if is_remote(path):  # object storage has no file locks: one writer at a time is the user's to arrange
        yield
        return
    with _local_lock(path, exclusive=exclusive, what=what):
        yield


@contextlib.contextmanager
def _local_lock(path, *, exclusive: bool = True, what: str = "writing"):
    """Hold an OS lock (``flock``) on a store for the time of a job.

    A build holds it exclusively; fits hold it shared (several fits of one store may run at
    once, but not while it is being built). The lock file ``.<name>.lock`` beside the store
    holds the owner's pid and host for the message; the OS releases the lock when the owner
    dies, so a lock is never stale. The file is removed when the last holder leaves.

    Raises
    ------
    StoreLockedError
        Another process holds the lock in a conflicting mode.
    """
    import fcntl

    lock = _lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _lock_owner(fd)
            os.close(fd)
            raise StoreLockedError(f"the store {path} is being {owner}; wait for it to finish") from None
        # the file may have been removed (by a holder leaving) between our open and our lock
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        if exclusive:
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "what": what}).encode())
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the last holder removes the file
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)
        except BlockingIOError:
            pass
        os.close(fd)


def _lock_owner(fd) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if "pid" in info:
        return f"{info.get('what', 'written')} by pid {info['pid']} on {info.get('host', '?')}"
    return "used by another process (a fit)"


def remove_tree(path) -> None:
    """Remove a store that :func:`removable_store` accepted."""
    if is_remote(path):
        location(path).fs.rm(location(path).path, recursive=True)
    else:
        shutil.rmtree(path)
