"""Voxel-indexed DataArrays <-> NIfTI images, and the ``.brain`` xarray accessor.

Any DataArray with a ``voxel`` dimension (a gene's map, an embedding, a reconstruction, a
test-set error map...) that was selected from a brainzarr store knows its grid: the store puts
the affine and grid shape in the attributes of coordinate ``i``, and the voxels' grid indices
in coordinates ``i, j, k``. :func:`to_nifti` places the values on that grid;
:func:`from_nifti` reads an image (an atlas, a PET map, a previously exported map) onto the
voxels of a store, resampling with nilearn when the image lies on another grid.

>>> import brainzarr.nifti  # registers the accessor  # doctest: +SKIP
>>> ds.expression.sel(gene="APOE").brain.to_nifti("apoe.nii.gz")  # doctest: +SKIP
>>> pet = from_nifti("pet_1mm.nii.gz", ds)  # (voxel,) on the store's voxels  # doctest: +SKIP

Header written by :func:`to_nifti`
----------------------------------
* sform and qform both equal to the grid's affine, with code 4 (``NIFTI_XFORM_MNI_152``) when
  the grid's space is an MNI space (the default), else code 2 (aligned). FSL/FSLeyes use the
  sform when its code is non-zero, nibabel/nilearn use the sform, SPM reads either; writing
  both the same keeps every tool in agreement. When the affine has shears (which a qform cannot
  represent) the qform code is 0 so that no tool uses an approximation.
* ``xyzt_units``: millimetres; no time unit (the 4th axis is a component/gene axis, not time).
* intent: ``NIFTI_INTENT_ESTIMATE`` (the value at each voxel is an estimate: interpolated
  expression, an embedding coordinate ...), ``intent_name`` = the variable's label (16 chars).
* ``cal_min``/``cal_max``: the finite range of the data, so viewers open with a sensible
  display range.
* ``descrip`` (80 chars): ``brainzarr <name> <scalar coords>``, e.g. ``brainzarr expression
  gene=APOE``.
* a NIfTI comment extension (code 6) holding JSON: the name, the scalar coordinates and, for
  4-D images, the name and labels of the 4th axis, so that :func:`from_nifti` gives back a
  ``(voxel, component)`` array with its labels. Other tools ignore it.

Labels (``ds.split``, ``ds.hemisphere``: strings) are written as a label image: 0 outside the
brain, ``1, 2, ...`` for the labels in sorted order (``uint8``, or ``int16`` beyond 255 labels),
intent ``NIFTI_INTENT_LABEL``, and ``{code: label}`` in the extension and, as far as it fits,
in ``descrip`` (``brainzarr split 1=test 2=train``); :func:`from_nifti` gives back the labels
on the grid the image was written on, and on another grid by nearest neighbour (its default for
an image of intent label).

Writing onto another grid (``like=``)
------------------------------------
:func:`to_nifti` and :func:`write_nifti` write on the store's own grid by default (nilearn's
MNI152 2009 template grid: 197 x 233 x 189 at 1 mm). ``like=`` writes on another grid instead:
a NIfTI image or path (its affine and shape are used, its data ignored), a :class:`Grid`, or the
name of one of FSL's standard grids, :data:`FSL_GRIDS` (``"MNI152_T1_1mm"``: 182 x 218 x 182,
``"MNI152_T1_2mm"``: 91 x 109 x 91, both stored left-right flipped as FSL's templates are).
Each output voxel takes the value of the store voxel whose centre is nearest (no
interpolation, nilearn's ``interpolation="nearest"``); on a grid of the same voxel size whose
origin differs by whole voxels, as FSL's and nilearn's MNI152 grids do, that is an exact
re-indexing. Store voxels whose centres fall outside the other grid are dropped with a
warning. A grid evidently not in MNI space (the check below) is refused for a store in MNI space.

The MNI-space check
-------------------
The header's xform codes are not trusted (many MNI-space files carry code 1 "scanner", many
tools write 2), so the check is geometric: the image's field of view in millimetres (the box
spanned by its voxel centres) is compared with the MNI brain box
:data:`MNI_BRAIN_BOX` = [-90, 91] x [-126, 91] x [-72, 109] mm. An image is *evidently not in
MNI space* when its box does not intersect the brain box at all, or when the centre of its box
lies further than 1.5 brain-box half-widths from the brain box's centre (normalised distance;
any brain region - even a cropped cerebellum or a pole - has its centre within about 1, while a
native scan written with voxel indices as millimetres, e.g. a 256 x 256 x 176 image with an
origin in its corner, lies at about 2.1). Native-space scans whose scanner coordinates happen
to be centred near the MNI origin pass the check: it catches evident mistakes only. The check
runs only when the target grid is in an MNI space and the image is not on the target's own grid;
``check_space=False`` turns it off. The same check refuses an atlas (:func:`brainzarr.parcellate`),
a target map or an external embedding (:mod:`brainzarr.evaluate`), a build's mask and a
``like=`` grid evidently not in MNI space; these take no switch: each must be in MNI space.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import xarray as xr

from ._atomic import atomic_file, suffix_of, write_file
from ._disk import require_free
from ._location import user_path
from ._progress import job, step
from ._validation import did_you_mean
from ._version import __version__
from ._volumes import checked_volume, load_volume
from .exceptions import DataNotFoundError, InputError, InputTypeError
from .grid import MNI152_SPACE, Grid, ijk_to_xyz
from .store import grid_info, refuse_output_in_a_store

__all__ = [
    "to_nifti",
    "write_nifti",
    "from_nifti",
    "save_nifti",
    "to_volume",
    "voxel_grid",
    "MNI_BRAIN_BOX",
    "NIFTI_SUFFIXES",
    "FSL_GRIDS",
]

#: Extent of the MNI152 brain in millimetres: (min, max) along x, y and z.
MNI_BRAIN_BOX = np.array([[-90.0, 91.0], [-126.0, 91.0], [-72.0, 109.0]])
#: An image whose field-of-view centre is further than this from the centre of
#: :data:`MNI_BRAIN_BOX`, in units of the box's half-widths, is evidently not in MNI space.
MNI_CENTRE_TOLERANCE = 1.5

#: FSL's standard MNI152 grids, ``name: (shape, affine)``, as in FSL's
#: ``data/standard/MNI152_T1_{1,2}mm.nii.gz`` (x runs right to left).
FSL_GRIDS = {
    "MNI152_T1_1mm": ((182, 218, 182), ((-1, 0, 0, 90), (0, 1, 0, -126), (0, 0, 1, -72), (0, 0, 0, 1))),
    "MNI152_T1_2mm": ((91, 109, 91), ((-2, 0, 0, 90), (0, 2, 0, -126), (0, 0, 2, -72), (0, 0, 0, 1))),
}

_EXTENSION_KEY = "brainzarr"
#: how :func:`from_nifti` reads an image onto other voxels
INTERPOLATIONS = ("continuous", "linear", "nearest", "mean")
NIFTI_SUFFIXES = (".nii", ".nii.gz")


# --------------------------------------------------------------------------- helpers
def _version() -> str:
    return str(__version__)


def _is_mni(space) -> bool:
    return space is None or "mni" in str(space).lower()


def _grid_of_target(obj) -> tuple[np.ndarray, tuple[int, int, int], str | None]:
    """(affine, shape, space) of a Grid, a store Dataset or a voxel-indexed DataArray."""
    if isinstance(obj, Grid):
        return obj.affine, obj.shape, obj.space
    if isinstance(obj, (xr.Dataset, xr.DataArray)):
        info = grid_info(obj)
        return info["affine"], info["grid_shape"], info.get("space")
    raise InputTypeError(
        f"expected a brainzarr Grid, a store Dataset or a DataArray from a store, got {type(obj).__name__}"
    )


def _coord_ijk(obj) -> np.ndarray | None:
    if all(c in obj.coords and obj[c].dims == ("voxel",) for c in "ijk"):
        return np.column_stack([np.asarray(obj[c].values) for c in "ijk"])
    return None


def _check_ijk(ijk: np.ndarray, shape) -> np.ndarray:
    ijk = np.asarray(ijk)
    if ijk.dtype.kind == "f":
        if not np.all(np.isfinite(ijk)) or not np.array_equal(ijk, np.round(ijk)):
            raise InputError("coordinates i, j, k must be whole numbers (grid indices)")
    elif ijk.dtype.kind not in "iu":
        raise InputError(f"coordinates i, j, k must be integers, got dtype {ijk.dtype}")
    ijk = ijk.astype(np.int64)
    if len(ijk) and (ijk.min() < 0 or np.any(ijk.max(axis=0) >= np.asarray(shape))):
        raise InputError(f"voxel indices i, j, k fall outside the grid of shape {tuple(shape)}")
    flat = np.ravel_multi_index(tuple(ijk.T), tuple(shape))
    seen = np.zeros(int(np.prod(shape)), dtype=bool)  # O(voxels); np.unique sorts (1.4 s at 1 mm)
    seen[flat] = True
    if np.count_nonzero(seen) != len(flat):
        raise InputError(
            "some voxels occur more than once (repeated i, j, k); a NIfTI volume holds one value per voxel"
        )
    return ijk


def _same_grid(affine_a, shape_a, affine_b, shape_b) -> bool:
    return tuple(shape_a) == tuple(shape_b) and np.allclose(
        np.asarray(affine_a, float), np.asarray(affine_b, float), rtol=0, atol=1e-4
    )


def _placement(da: xr.DataArray, grid) -> tuple[np.ndarray, np.ndarray, tuple, str | None]:
    """Grid indices of the DataArray's voxels, and the grid's affine, shape and space."""
    try:
        own = grid_info(da)
    except ValueError:
        own = None
    ijk = _coord_ijk(da)
    if grid is None:
        if own is None:
            raise InputError(
                "no grid information: the DataArray carries no affine/grid_shape (coordinate 'i' of a "
                "brainzarr store has them). Select the data from a store, or pass grid=Grid(...) "
                "(e.g. brainzarr.store_grid(ds) or mni152_grid(8))"
            )
        if ijk is None:
            raise InputError(
                "the DataArray has grid information but no voxel coordinates i, j, k; "
                "pass grid= to place its voxels in store order"
            )
        return _check_ijk(ijk, own["grid_shape"]), own["affine"], own["grid_shape"], own.get("space")

    if isinstance(grid, (xr.Dataset, xr.DataArray)):
        from .store import store_grid

        grid = store_grid(grid)
    if not isinstance(grid, Grid):
        raise InputTypeError(f"grid must be a brainzarr Grid or a store Dataset, got {type(grid).__name__}")
    if own is not None and not _same_grid(own["affine"], own["grid_shape"], grid.affine, grid.shape):
        raise InputError(
            "the DataArray comes from another grid than grid= (affine or shape differ); "
            "use from_nifti(to_nifti(da), grid) to resample it"
        )
    if ijk is not None:
        return _check_ijk(ijk, grid.shape), grid.affine, grid.shape, grid.space
    n = da.sizes["voxel"]
    if "voxel" in da.coords and np.asarray(da["voxel"].values).dtype.kind in "iu":
        rows = np.asarray(da["voxel"].values).astype(np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= grid.n_voxels):
            raise InputError(
                f"voxel numbers run from {rows.min()} to {rows.max()}, but the grid has {grid.n_voxels} voxels"
            )
        return _check_ijk(grid.ijk[rows], grid.shape), grid.affine, grid.shape, grid.space
    if n != grid.n_voxels:
        raise InputError(
            f"the DataArray has {n} voxels and no i, j, k or voxel coordinates; the grid has {grid.n_voxels} voxels"
        )
    return grid.ijk.astype(np.int64), grid.affine, grid.shape, grid.space


def _like_grid(like) -> tuple[np.ndarray, tuple[int, int, int]]:
    """(affine, shape) of the grid named by ``like``: a FSL grid name, a Grid, an image or a path."""
    if isinstance(like, str) and like in FSL_GRIDS:
        shape, affine = FSL_GRIDS[like]
        return np.asarray(affine, float), tuple(shape)
    if isinstance(like, Grid):
        return np.asarray(like.affine, float), tuple(like.shape)
    if isinstance(like, str) and not like.endswith(NIFTI_SUFFIXES) and not user_path(like).exists():
        raise InputError(f"like={like!r} is neither a NIfTI file nor one of FSL's grids ({', '.join(FSL_GRIDS)})")
    img, _ = _load(like)
    if len(img.shape) not in (3, 4):
        raise InputError(f"like= must be a 3-D or 4-D image, got shape {tuple(img.shape)}")
    return np.asarray(img.affine, float), tuple(int(n) for n in img.shape[:3])


def _onto(ijk, affine, shape, like, space, stacklevel=2):
    """Nearest-voxel placement of a store's voxels on the grid of ``like`` (refused when the
    store's grid is in MNI space and that one evidently is not).

    Returns (output ijk, rows, output affine, output shape): output voxel ``ijk[n]`` takes the
    value of input voxel ``rows[n]``.
    """
    t_affine, t_shape = _like_grid(like)
    where = f"the output grid {like}" if isinstance(like, (str, os.PathLike)) else "the output grid"
    refuse_if_not_mni(t_affine, t_shape, where, space)
    shape = tuple(int(n) for n in shape)
    at = ijk_to_xyz(ijk_to_xyz(ijk, affine), np.linalg.inv(t_affine))
    outside = int((~np.all((at > -0.5) & (at < np.asarray(t_shape) - 0.5), axis=1)).sum())
    if outside == len(ijk):
        raise InputError(
            f"none of the {len(ijk):,} voxels lies inside the output grid {t_shape} (its field of view "
            f"{_fmt_box(_fov_box(t_affine, t_shape))} mm): is like= an image in the store's space?"
        )
    if outside:
        warnings.warn(
            f"{outside:,} of {len(ijk):,} voxels lie outside the output grid {t_shape} and are not written",
            stacklevel=stacklevel + 1,
        )
    row_of = np.full(int(np.prod(shape)), -1, dtype=np.int64)
    row_of[np.ravel_multi_index(tuple(ijk.T), shape)] = np.arange(len(ijk))
    to_source = np.linalg.inv(np.asarray(affine, float)) @ t_affine
    jk = np.indices(t_shape[1:]).reshape(2, -1).T
    out_ijk, rows = [], []
    for i in range(t_shape[0]):  # a slab at a time: the output grid may hold millions of voxels
        t = np.column_stack([np.full(len(jk), i), jk])
        src = np.floor(t @ to_source[:3, :3].T + to_source[:3, 3] + 0.5).astype(np.int64)  # nearest centre
        inside = np.all((src >= 0) & (src < shape), axis=1)
        row = np.full(len(t), -1, dtype=np.int64)
        row[inside] = row_of[np.ravel_multi_index(tuple(src[inside].T), shape)]
        out_ijk.append(t[row >= 0])
        rows.append(row[row >= 0])
    return np.concatenate(out_ijk), np.concatenate(rows), t_affine, t_shape


def _other_dim(da: xr.DataArray) -> str | None:
    if not isinstance(da, xr.DataArray):
        hint = ""
        if isinstance(da, np.ndarray):  # nilearn's unmask(X, mask_img) takes one; here the grid places them
            hint = (
                "; values in a store's voxel order go on its grid as xr.DataArray(values, dims='voxel')"
                " (or dims=('voxel', 'component')) with grid=ds"
            )
        raise InputTypeError(f"expected an xarray.DataArray, got {type(da).__name__}{hint}")
    if "voxel" not in da.dims:
        raise InputError(
            f"the DataArray has no 'voxel' dimension (dims: {da.dims}); only voxel-indexed "
            "data can be written as an image"
        )
    others = [d for d in da.dims if d != "voxel"]
    if len(others) > 1:
        raise InputError(
            f"the DataArray has dims {da.dims}: at most one dimension besides 'voxel' can "
            f"become the image's 4th axis; select or reduce over the others, e.g. "
            f"da.sel({others[0]}=...)"
        )
    return others[0] if others else None


def _label(value) -> str:
    value = value.item() if hasattr(value, "item") else value
    return value.decode() if isinstance(value, bytes) else str(value)


def _scalar_coords(da: xr.DataArray) -> dict:
    out = {}
    for name, coord in da.coords.items():
        if coord.ndim == 0:
            try:
                out[str(name)] = _label(coord.values)
            except Exception:  # pragma: no cover - exotic coordinate types
                continue
    return out


def _jsonable(values) -> list:
    values = np.asarray(values)
    if values.dtype.kind in "iub":
        return values.tolist()
    if values.dtype.kind == "f":
        return [v if np.isfinite(v) else str(v) for v in values.tolist()]
    return [_label(v) for v in values]


def _out_dtype(da: xr.DataArray, background: float, dtype) -> np.dtype:
    if dtype is None:
        dtype = np.result_type(da.dtype, np.float32) if np.isnan(background) else da.dtype
    dtype = np.dtype(dtype)
    if np.isinf(background):  # a viewer's window and the sidecar's JSON (no Infinity) take finite values
        raise InputError(f"background must be a finite number or NaN, got {background}")
    if np.isnan(background) and dtype.kind != "f":
        raise InputError(f"background NaN needs a floating dtype, got {dtype}")
    if dtype.kind in "iu" and not (
        background == round(background) and np.iinfo(dtype).min <= background <= np.iinfo(dtype).max
    ):  # -1 in uint8 wraps to 255, 0.5 in int16 truncates to 0
        info = np.iinfo(dtype)
        raise InputError(
            f"background {background:g} is not a value of dtype {dtype} (whole numbers {info.min:,} to {info.max:,})"
        )
    return dtype


def _as_dtype(values, dtype, what) -> np.ndarray:
    """``values`` as ``dtype``, which must hold them exactly when it is an integer type: a cast
    truncated 0.37 to 0, wrapped 40,000 to -25,536 in int16 and turned NaN into any number."""
    values = np.asarray(values)
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu" or values.dtype.kind not in "iuf" or values.size == 0:
        return values.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    problem = None
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        problem = "NaN or infinite values"
    elif values.min() < info.min or values.max() > info.max:
        problem = f"values from {values.min():g} to {values.max():g}, beyond {info.min:,} to {info.max:,}"
    elif values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
        fraction = values[values != np.round(values)][0]
        problem = f"values that are not whole numbers (e.g. {fraction:.4g})"
    if problem is not None:
        raise InputError(
            f"{what} holds {problem}, which dtype {dtype} cannot hold: write it as float32 (the default), "
            "or scale it to whole numbers in range first"
        )
    return values.astype(dtype, copy=False)


def is_labels(da: xr.DataArray) -> bool:
    """Whether ``da`` holds labels (strings: ``ds.split``, ``ds.hemisphere``) rather than values."""
    if not isinstance(da, xr.DataArray):  # refused by the caller, naming what it takes
        return False
    if da.dtype.kind in "US":
        return True
    return da.dtype.kind == "O" and da.size > 0 and all(isinstance(v, str) for v in np.asarray(da.values).ravel())


#: the number types a NIfTI-1 image holds that viewers read (float16 and bool stopped in nibabel,
#: text in numpy, and complex values were written with a ComplexWarning)
NIFTI_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64")


def _check_nifti_dtype(dtype) -> None:
    try:
        given = np.dtype(dtype)
    except TypeError:
        raise InputError(f"dtype must be a numpy number type such as np.float32, got {dtype!r}") from None
    if given.name not in NIFTI_DTYPES:
        hint = " (uint8 for a mask of 0 and 1)" if given.kind == "b" else ""
        raise InputError(
            f"dtype {given} is not a type a NIfTI image holds; choose from {', '.join(NIFTI_DTYPES)}{hint}"
        )


def _label_codes(da: xr.DataArray, background: float, dtype) -> tuple[xr.DataArray, dict | None, object]:
    """A DataArray of labels (strings) as integer codes ``1..n`` in sorted order, the
    ``{code: label}`` table and the codes' dtype; any other DataArray as it is (no table)."""
    if not is_labels(da):
        return da, None, dtype
    if not np.isfinite(background) or background != 0:
        raise InputError(f"a label image ({da.name or 'labels'}) has background 0 (no label), got {background}")
    labels = np.asarray(da.values).astype(str)
    names, codes = np.unique(labels, return_inverse=True)
    code_dtype = np.uint8 if len(names) < 256 else np.int16
    if len(names) > np.iinfo(np.int16).max:
        raise InputError(f"{da.name or 'the array'} holds {len(names):,} distinct labels; a label image holds 32,767")
    coded = da.copy(data=(codes.reshape(labels.shape) + 1).astype(code_dtype))
    return coded, {int(n): str(name) for n, name in enumerate(names, 1)}, code_dtype


def _volume(da: xr.DataArray, grid, background, dtype, like=None, stacklevel=1):
    """(volume, affine, space, other_dim): the DataArray's values placed on its grid."""
    other = _other_dim(da)
    ijk, affine, shape, space = _placement(da, grid)
    rows = None
    if like is not None:
        ijk, rows, affine, shape = _onto(ijk, affine, shape, like, space, stacklevel + 1)
    dtype = _out_dtype(da, background, dtype)
    data = da.transpose("voxel", *([other] if other else [])).data
    if not isinstance(data, np.ndarray):  # dask (or another lazy array): compute once
        data = data.compute() if hasattr(data, "compute") else np.asarray(data)
    data = np.asarray(data) if rows is None else np.asarray(data)[rows]
    n_vol = () if other is None else (da.sizes[other],)
    vol = np.full(tuple(shape) + n_vol, background, dtype=dtype)
    vol[ijk[:, 0], ijk[:, 1], ijk[:, 2]] = _as_dtype(data, dtype, da.name or "the array")
    return vol, np.asarray(affine, float), space, other


def _finite_range(values) -> tuple[float, float] | None:
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values.ravel()
    # + 0.0: -0.0 and 0.0 are the same range, whichever a reduction meets first
    return (float(finite.min()) + 0.0, float(finite.max()) + 0.0) if finite.size else None


def _set_header(img: nib.Nifti1Image, affine, space, da: xr.DataArray, other, cal, labels=None) -> None:
    code = "mni" if _is_mni(space) else "aligned"
    img.set_sform(affine, code=code)
    img.set_qform(affine, code=code)
    if not np.allclose(img.header.get_qform(), affine, atol=1e-4):  # shears: not a rigid+zoom
        img.set_qform(affine, code="unknown")
    hdr = img.header
    hdr.set_xyzt_units(xyz="mm", t="unknown")
    scalars = _scalar_coords(da)
    name = str(da.name) if da.name is not None else ""
    label = next(iter(scalars.values()), name) if len(scalars) == 1 else name
    hdr.set_intent("label" if labels else "estimate", name=label.encode("ascii", "replace").decode()[:15])
    if cal is not None:
        hdr["cal_min"], hdr["cal_max"] = cal
    table = [f"{code}={text}" for code, text in (labels or {}).items()]
    descrip = " ".join(["brainzarr", name] + [f"{k}={v}" for k, v in scalars.items()] + table).strip()
    hdr["descrip"] = descrip.encode("ascii", "replace")[:79]
    meta = {
        _EXTENSION_KEY: _version(),
        "name": da.name if isinstance(da.name, str) else name or None,
        "coords": scalars,
        "units": da.attrs.get("units"),
    }
    if labels:
        meta["labels"] = {str(code): text for code, text in labels.items()}
    if other is not None:
        meta["volume_dim"] = str(other)
        meta["volume_labels"] = _jsonable(da[other].values) if other in da.coords else None
    hdr.extensions.append(nib.nifti1.Nifti1Extension("comment", json.dumps(meta).encode()))


def _read_meta(img) -> dict:
    for ext in getattr(img.header, "extensions", []):
        if ext.get_code() == 6:
            try:
                meta = json.loads(ext.get_content())
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(meta, dict) and _EXTENSION_KEY in meta:
                return meta
    return {}


# --------------------------------------------------------------------------- to_nifti
def to_nifti(da: xr.DataArray, grid=None, *, background: float = 0.0, dtype=np.float32, like=None) -> nib.Nifti1Image:
    """Place a voxel-indexed DataArray on its grid as a NIfTI image.

    Parameters
    ----------
    da : xarray.DataArray
        Dims ``(voxel,)`` -> a 3-D image, or ``(voxel, d)`` in either order -> a 4-D image whose
        volumes follow ``d`` in the DataArray's order (``d``'s labels are kept in a header
        extension). Numpy- or dask-backed (computed once).
    grid : Grid or store Dataset, optional
        The grid. By default it comes from the DataArray (affine and grid_shape in the attrs of
        coordinate ``i``; voxels placed at coordinates ``i, j, k``). With ``grid=`` and no
        ``i, j, k`` coordinates, the ``voxel`` coordinate (store row numbers) or, lacking one,
        the store order of the grid's voxels places the values.
    background : float
        Value of voxels outside the brain (or not in ``da``): 0 (default) or NaN.
    dtype : numpy dtype
        Data type of the image (float32 by default; a label image's is its codes'). An integer
        type must hold the values exactly: whole numbers in its range, no NaN.
    like : str, Path, nibabel image, Grid or FSL grid name, optional
        Write on this grid instead of the store's, each voxel taking the nearest store voxel's
        value (see the module docstring), e.g. ``like="MNI152_T1_1mm"`` for FSL's
        182 x 218 x 182 grid.

    Returns
    -------
    nibabel.Nifti1Image
        See the module docstring for the header.

    Raises
    ------
    InputError
        No ``voxel`` dim, more than two dims, no grid information, voxels outside the grid or
        repeated, a grid that contradicts the DataArray's own, an infinite background, a background
        or values that ``dtype`` cannot hold (NaN, or a fraction, in an integer type).
    """
    _check_nifti_dtype(dtype)
    da, labels, dtype = _label_codes(da, float(background), dtype)
    vol, affine, space, other = _volume(da, grid, float(background), dtype, like, stacklevel=2)
    img = nib.Nifti1Image(vol, affine)
    img.header.set_data_dtype(vol.dtype)
    _set_header(img, affine, space, da, other, _finite_range(vol), labels)
    return img


#: volumes held at once by :func:`write_nifti`
WRITE_MEMORY_BYTES = 256 * 2**20


def write_nifti(
    da: xr.DataArray,
    path,
    grid=None,
    *,
    background: float = 0.0,
    dtype=np.float32,
    max_memory: int = WRITE_MEMORY_BYTES,
    like=None,
) -> Path:
    """Write a voxel-indexed DataArray as a NIfTI file, a few volumes at a time.

    The file is the one ``save_nifti(to_nifti(da, grid, ...), path)`` writes, but the image is
    never whole in memory: a 1 mm 128-component embedding is 4.4 GB as a 4-D float32 volume,
    while this holds at most ``max_memory`` bytes of volumes (at least one 3-D volume). A
    dask-backed array is read once, in its row chunks: where the volumes take more than one
    group, it is copied volume by volume to an unnamed scratch file beside ``path`` (as large as
    the array; without room on the disk for it, each group reads the array again).

    Parameters
    ----------
    da, grid, background, dtype, like
        As :func:`to_nifti`.
    path : str or Path
        Ends in ``.nii`` or ``.nii.gz``; its folder must exist. The file appears whole or not at
        all: it is written beside ``path`` under a scratch name and renamed over it when complete,
        so an interrupted write leaves an earlier file at ``path`` as it was.
    max_memory : int
        Bytes of volumes held at once (default 256 MiB).

    Returns
    -------
    Path
    """
    from nibabel.volumeutils import seek_tell

    path = _checked_nifti_path(path)
    background = float(background)
    _check_nifti_dtype(dtype)
    da, labels, dtype = _label_codes(da, background, dtype)
    other = _other_dim(da)
    ijk, affine, shape, space = _placement(da, grid)
    rows = None
    if like is not None:
        ijk, rows, affine, shape = _onto(ijk, affine, shape, like, space, stacklevel=2)
    dtype = _out_dtype(da, background, dtype)
    data = da.transpose("voxel", *([other] if other else []))
    n_vol = da.sizes[other] if other else 1

    def values(start, stop):
        part = data if other is None else data.isel({other: slice(start, stop)})
        out = _as_dtype(part.values, dtype, da.name or "the array")
        return out.reshape(len(out), -1)

    shape = tuple(int(n) for n in shape)
    full_shape = shape + ((n_vol,) if other else ())
    file_bytes = 0  # a .nii.gz is smaller by how well the data compress: unknown before
    if not str(path).endswith(".gz"):
        file_bytes = int(np.prod(full_shape)) * dtype.itemsize
        require_free(path.parent, file_bytes, f"the NIfTI file {path.name}")
    per_volume = int(np.prod(shape)) * dtype.itemsize + da.sizes["voxel"] * max(dtype.itemsize, da.dtype.itemsize)
    group = max(1, min(n_vol, int(max_memory) // per_volume))

    # cal_min/cal_max go in the header, before the data: the range of what is written, from the
    # values themselves when one group holds every volume (one read) or when a lazy array is
    # copied volume by volume to a scratch file (one read), else a streamed reduction
    blocks = [(start, min(n_vol, start + group)) for start in range(0, n_vol, group)]
    used = None
    if rows is not None:
        used = np.zeros(da.sizes["voxel"], dtype=bool)
        used[rows] = True
        used = None if used.all() else np.flatnonzero(used)
    with job(f"export {path.name}", unit="step"):  # one bar: the scratch copy, then the volumes
        preloaded = None
        scratch = None if len(blocks) == 1 else _VolumeScratch.of(data, dtype, path.parent, used, group, file_bytes)
        if len(blocks) == 1:  # as to_nifti: the range of the values as written
            preloaded = values(0, n_vol)
            lo, hi = _finite_range(preloaded if used is None else preloaded[used]) or (np.nan, np.nan)
        elif scratch is not None:
            values = scratch.volumes
            lo, hi = scratch.range or (np.nan, np.nan)
        else:
            written = data if used is None else data.isel(voxel=used)
            finite = written.where(np.isfinite(written)) if written.dtype.kind == "f" else written
            extremes = xr.Dataset({"lo": finite.min(skipna=True), "hi": finite.max(skipna=True)}).compute()
            lo, hi = float(extremes["lo"].astype(dtype)), float(extremes["hi"].astype(dtype))
        lo, hi = (np.inf, -np.inf) if np.isnan(lo) else (lo + 0.0, hi + 0.0)  # + 0.0: -0.0 is 0.0
        if len(ijk) < int(np.prod(shape)) and np.isfinite(background):
            lo, hi = min(lo, background) + 0.0, max(hi, background) + 0.0
        cal = (lo, hi) if lo <= hi else None

        img = nib.Nifti1Image(np.broadcast_to(np.zeros((), dtype), full_shape), affine)  # a view: no memory
        img.header.set_data_dtype(dtype)
        _set_header(img, affine, space, da, other, cal, labels)
        img.update_header()
        hdr = img.header
        hdr.set_slope_inter(1.0, 0.0)  # what nibabel writes for unscaled data
        with (
            contextlib.closing(scratch) if scratch is not None else contextlib.nullcontext(),
            atomic_file(path, suffix=suffix_of(path)) as tmp,  # the file appears whole or not at all
            img.filespec_to_file_map(str(tmp))["image"].get_prepare_fileobj(mode="wb") as fobj,
        ):
            hdr.write_to(fobj)
            seek_tell(fobj, hdr.get_data_offset(), write0=True)
            volume = np.empty(shape, dtype=dtype, order="F")
            with step(n_vol, "writing volumes") as bar:
                for start, stop in blocks:
                    block = preloaded if preloaded is not None else values(start, stop)
                    for j in range(stop - start):
                        volume.fill(background)
                        volume[ijk[:, 0], ijk[:, 1], ijk[:, 2]] = block[:, j] if rows is None else block[rows, j]
                        fobj.write(volume.T.data)  # volume.T is C-contiguous: the file's (Fortran) order
                        bar.update(1)
    return path


class _VolumeScratch:
    """A lazy (voxel, volume) array copied once, volume after volume, to an unnamed scratch file.

    :func:`write_nifti` writes a few volumes at a time, and a store's arrays are chunked by rows
    of voxels with every volume in a chunk: reading a group of volumes decodes all of them. A 1 mm
    128-component embedding is 22 groups at the default memory, so 22 reads of the whole array;
    with the scratch file it is read once (row block by row block, the range of the written values
    taken on the way) and each group is a contiguous read of the file. The file has no name
    (``O_TMPFILE`` where the system has it): nothing is left behind, even by a killed process.
    """

    def __init__(self, file, n_rows: int, n_volumes: int, dtype):
        self.file, self.n_rows, self.n_volumes, self.dtype = file, n_rows, n_volumes, np.dtype(dtype)
        self.range = None

    @classmethod
    def of(cls, data: xr.DataArray, dtype, folder: Path, used=None, group: int = 1, reserve: int = 0):
        """The scratch copy of a dask-backed ``data``; None for an array in memory (slicing it is
        free) or where the disk of ``folder`` lacks room for the copy besides ``reserve`` bytes
        (then each group is read from ``data`` again). ``used``: the rows whose range counts;
        ``group``: volumes read at once (whole chunks of the array, at least one)."""
        import tempfile

        from .exceptions import InsufficientDiskError
        from .streaming import row_spans
        from .streaming.passes import compute_rows

        array = data.data
        if isinstance(array, np.ndarray) or not hasattr(array, "chunks"):
            return None
        n_rows, n_volumes = (int(s) for s in array.shape)
        dtype = np.dtype(dtype)
        try:
            require_free(folder, n_rows * n_volumes * dtype.itemsize + reserve, "a scratch copy of the volumes")
        except InsufficientDiskError:
            return None
        keep = None
        if used is not None:
            keep = np.zeros(n_rows, dtype=bool)
            keep[used] = True
        self = cls(tempfile.TemporaryFile(dir=folder, prefix=".brainzarr-volumes-"), n_rows, n_volumes, dtype)
        try:
            fd = self.file.fileno()
            lo, hi = np.inf, -np.inf
            # whole chunks, up to a group's volumes at a time: memory does not grow with the volumes
            columns = row_spans(n_volumes, array.chunks[1], read_rows=max(group, *array.chunks[1]), group=True)
            parts = {(c0, c1): array if (c0, c1) == (0, n_volumes) else array[:, c0:c1] for c0, c1 in columns}
            spans = row_spans(n_rows, array.chunks[0])
            with step(len(spans) * len(columns), "copying volumes to a scratch file") as bar:
                for (a, b), (c0, c1) in itertools.product(spans, columns):
                    block = _as_dtype(
                        compute_rows(parts[c0, c1], a, b, scheduler=None), dtype, data.name or "the array"
                    )
                    found = _finite_range(block if keep is None else block[keep[a:b]])
                    if found is not None:
                        lo, hi = min(lo, found[0]), max(hi, found[1])
                    for j in range(c0, c1):
                        _pwrite_all(fd, np.ascontiguousarray(block[:, j - c0]), (j * n_rows + a) * dtype.itemsize)
                    bar.update(1)
            self.range = (lo, hi) if lo <= hi else None
        except BaseException:
            self.close()
            raise
        return self

    def volumes(self, start: int, stop: int) -> np.ndarray:
        """Volumes ``start:stop`` as a (voxel, volume) array (a view of a volume-major copy)."""
        out = np.empty((stop - start, self.n_rows), dtype=self.dtype)
        fd = self.file.fileno()
        for j in range(start, stop):
            _pread_all(fd, out[j - start], j * self.n_rows * self.dtype.itemsize)
        return out.T

    def close(self) -> None:
        self.file.close()


def _pwrite_all(fd: int, values: np.ndarray, offset: int) -> None:
    view = memoryview(values).cast("B")
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _pread_all(fd: int, out: np.ndarray, offset: int) -> None:
    view = memoryview(out).cast("B")
    while view:
        n = os.preadv(fd, [view], offset)
        if n == 0:
            raise OSError(f"the scratch file ended {view.nbytes} bytes early")
        view, offset = view[n:], offset + n


def _checked_nifti_path(path) -> Path:
    path = user_path(path)
    if not str(path).endswith(NIFTI_SUFFIXES):
        raise InputError(f"a NIfTI file name must end in .nii or .nii.gz, got {path.name!r}")
    refuse_output_in_a_store(path)
    if not path.parent.exists():
        raise DataNotFoundError(f"folder {path.parent} does not exist")
    return path


def save_nifti(img: nib.Nifti1Image, path) -> Path:
    """Save ``img`` to ``path`` (must end in .nii or .nii.gz), whole or not at all (a scratch file
    beside it, renamed over it when written); return the path."""
    return write_file(_checked_nifti_path(path), lambda tmp: nib.save(img, str(tmp)))


# --------------------------------------------------------------------------- from_nifti
def _target_voxels(target):
    """(ijk, affine, shape, space, coords) of the voxels the result is defined on."""
    if isinstance(target, Grid):
        attrs = {**target.to_attrs()}
        attrs.pop("mask", None)
        attrs["affine"] = target.affine.ravel().tolist()  # netCDF attributes are 1-D
        ijk = target.ijk.astype(np.int64)
        xyz = target.xyz
        coords = {"voxel": ("voxel", np.arange(target.n_voxels))}
        coords.update(
            {c: ("voxel", ijk[:, n].astype(np.int32), attrs if c == "i" else {}) for n, c in enumerate("ijk")}
        )
        coords.update({c: ("voxel", xyz[:, n]) for n, c in enumerate("xyz")})
        return ijk, target.affine, target.shape, target.space, coords
    if isinstance(target, (xr.Dataset, xr.DataArray)):
        info = grid_info(target)
        if "voxel" not in target.dims:
            raise InputError("the target has no 'voxel' dimension")
        ijk = _coord_ijk(target)
        if ijk is None:
            raise InputError("the target has no voxel coordinates i, j, k; pass a Grid or a store Dataset")
        ijk = _check_ijk(ijk, info["grid_shape"])
        coords = {name: c.variable for name, c in target.coords.items() if c.dims == ("voxel",)}
        if "voxel" not in coords:
            coords["voxel"] = xr.Variable("voxel", np.arange(len(ijk)))
        i_attrs = {
            "affine": np.asarray(info["affine"]).ravel().tolist(),  # netCDF attributes are 1-D
            "grid_shape": list(info["grid_shape"]),
            **{k: info[k] for k in ("space", "resolution_mm") if k in info},
        }
        coords["i"] = xr.Variable("voxel", coords["i"].values, {**coords["i"].attrs, **i_attrs})
        xyz = ijk_to_xyz(ijk, info["affine"])
        for n, c in enumerate("xyz"):
            coords.setdefault(c, xr.Variable("voxel", xyz[:, n]))
        return ijk, info["affine"], info["grid_shape"], info.get("space"), coords
    raise InputTypeError(
        f"target must be a brainzarr Grid, a store Dataset or a DataArray from a store, got {type(target).__name__}"
    )


def _fov_box(affine, shape) -> np.ndarray:
    """(3, 2) min/max millimetres of the voxel centres of an image."""
    corners = np.array(np.meshgrid(*[[0, s - 1] for s in shape[:3]], indexing="ij")).reshape(3, -1).T
    xyz = ijk_to_xyz(corners, affine)
    return np.column_stack([xyz.min(axis=0), xyz.max(axis=0)])


def _fmt_box(box) -> str:
    return " x ".join(f"[{lo:.0f}, {hi:.0f}]" for lo, hi in box)


def mni_mismatch(affine, shape) -> str | None:
    """Why an image with this affine and shape is evidently not in MNI space, or None.

    See the module docstring for the heuristic.
    """
    box = _fov_box(affine, shape)
    if np.any(box[:, 1] < MNI_BRAIN_BOX[:, 0]) or np.any(box[:, 0] > MNI_BRAIN_BOX[:, 1]):
        return f"its field of view {_fmt_box(box)} mm does not intersect the MNI brain {_fmt_box(MNI_BRAIN_BOX)} mm"
    centre, half = MNI_BRAIN_BOX.mean(axis=1), np.diff(MNI_BRAIN_BOX, axis=1)[:, 0] / 2
    distance = float(np.linalg.norm((box.mean(axis=1) - centre) / half))
    if distance > MNI_CENTRE_TOLERANCE:
        return (
            f"its field of view {_fmt_box(box)} mm is centred {distance:.1f} brain half-widths away "
            f"from the MNI brain {_fmt_box(MNI_BRAIN_BOX)} mm (more than {MNI_CENTRE_TOLERANCE})"
        )
    return None


def _load(img_or_path):
    if isinstance(img_or_path, (str, os.PathLike)):
        return load_volume(img_or_path), user_path(img_or_path)
    if isinstance(img_or_path, nib.filebasedimages.FileBasedImage):  # named by its file, if loaded from one
        filename = img_or_path.get_filename()
        return checked_volume(img_or_path), (Path(filename) if filename else None)
    raise InputTypeError(f"expected a NIfTI path or a nibabel image, got {type(img_or_path).__name__}")


#: sub-voxel points looked up at once by :func:`sub_voxel_weights` (memory: ~60-80 bytes each)
_POINTS_AT_ONCE = 1 << 21


def sub_voxel_weights(ijk, affine, img_affine, img_shape, *, points: int = _POINTS_AT_ONCE):
    """The share of each target voxel's volume in each image voxel: yield, for consecutive
    chunks of the voxels ``ijk`` (on the grid of ``affine``), ``(start, index, weight)``.

    ``index`` (voxels, points, 3) holds image voxels and ``weight`` (voxels, points) the
    fraction of the target voxel's volume inside each, 0 for an image voxel outside the image
    (or a point that holds none): a voxel's weights sum to the fraction of it inside the image.

    When the two grids' axes are parallel (any voxel sizes, origins, flips and axis orders:
    every MNI template and atlas), the fractions are exact, computed axis by axis from where the
    voxel's edges fall among the image voxels', whether the image is finer or coarser. An
    oblique grid is sampled instead: ``s`` points a side, evenly inside the voxel, ``s`` twice
    the number of image voxels along that side (rounded up), one point (the centre) when the
    image is as coarse or coarser; each point weighs ``1 / s**3``. A chunk holds about
    ``points`` (voxel, image voxel) pairs.
    """
    affine = np.asarray(affine, dtype=float).reshape(4, 4)
    to_image = np.linalg.inv(np.asarray(img_affine, dtype=float)) @ affine
    axes = _parallel_axes(to_image[:3, :3])
    ijk = np.asarray(ijk)
    if axes is None:
        sides = np.linalg.norm(affine[:3, :3], axis=0)
        yield from _sampled_weights(ijk, to_image, sides, img_affine, img_shape, points)
    else:
        yield from _overlap_weights(ijk, to_image, axes, img_shape, points)


def _parallel_axes(linear: np.ndarray) -> list[int] | None:
    """For each target axis, the image axis it runs along, when every one runs along one."""
    axes = []
    for column in np.abs(linear).T:
        along = np.flatnonzero(column > 1e-6 * column.max())
        if len(along) != 1:
            return None
        axes.append(int(along[0]))
    return axes if len(set(axes)) == 3 else None


def _axis_overlaps(centre: np.ndarray, half: float, n: int, width: int):
    """For intervals ``centre +- half`` (in image voxel units along one axis, voxel m spanning
    m +- 1/2): the first ``width`` image voxels each may overlap, and the fraction of the
    interval in each (0 past the image's ``n`` voxels)."""
    first = np.floor(centre - half + 0.5 + 1e-6).astype(np.int64)
    voxel = first[:, None] + np.arange(width)
    share = np.minimum(centre[:, None] + half, voxel + 0.5) - np.maximum(centre[:, None] - half, voxel - 0.5)
    share = np.where((share > 1e-9 * half) & (voxel >= 0) & (voxel < n), share / (2 * half), 0.0)
    return voxel, share


def _overlap_weights(ijk, to_image, axes, img_shape, points):
    scale = to_image[axes, [0, 1, 2]]
    half = np.abs(scale) / 2
    centres = [scale[a] * ijk[:, a] + to_image[axes[a], 3] for a in range(3)]
    # how many image voxels a voxel's side can meet: the most any of them meets
    widths = [
        int(np.max(np.ceil(c + h - 0.5 - 1e-6) - np.floor(c - h + 0.5 + 1e-6), initial=0)) + 1
        for c, h in zip(centres, half, strict=True)
    ]
    per_chunk = max(1, points // int(np.prod(widths)))
    for start in range(0, len(ijk), per_chunk):
        stop = start + per_chunk
        index = np.empty((len(ijk[start:stop]), *widths, 3), dtype=np.int64)
        weight = np.ones(index.shape[:-1])
        for a in range(3):
            voxel, share = _axis_overlaps(centres[a][start:stop], half[a], img_shape[axes[a]], widths[a])
            along = [slice(None)] + [None] * 3
            along[1 + a] = slice(None)
            index[..., axes[a]] = voxel[tuple(along)]
            weight *= share[tuple(along)]
        yield start, index.reshape(len(index), -1, 3), weight.reshape(len(index), -1)


def _sampled_weights(ijk, to_image, voxel_sides, img_affine, img_shape, points):
    side = voxel_sides / np.linalg.norm(np.asarray(img_affine, dtype=float)[:3, :3], axis=0).min()
    steps = np.where(side > 1 + 1e-6, 2 * np.ceil(side - 1e-6), 1).astype(int)
    grids = np.meshgrid(*[(np.arange(n) + 0.5) / n - 0.5 for n in steps], indexing="ij")
    offsets = np.stack(grids, axis=-1).reshape(-1, 3)
    shape = np.asarray(img_shape[:3])
    per_chunk = max(1, points // len(offsets))
    for start in range(0, len(ijk), per_chunk):
        inside = np.asarray(ijk[start : start + per_chunk], dtype=float)[:, None, :] + offsets[None]
        index = np.rint(inside @ to_image[:3, :3].T + to_image[:3, 3]).astype(np.int64)
        seen = np.all((index >= 0) & (index < shape), axis=-1)
        yield start, index, seen / len(offsets)


def _box_mean(data: np.ndarray, img_affine, ijk, affine) -> np.ndarray:
    """The mean of ``data`` (3-D or 4-D) over the volume of each target voxel, each image voxel
    weighted by its share of it (:func:`sub_voxel_weights`); the part outside the image is left
    out (NaN where all is)."""
    from scipy import sparse

    extra = data.shape[3:]
    out = np.full((len(ijk), *extra), np.nan, dtype=np.result_type(data.dtype, np.float32))
    # a chunk's values, float64: about as many as one chunk of points holds, whatever the volumes
    points = max(1, _POINTS_AT_ONCE // int(np.prod(extra, dtype=np.int64)))
    for start, index, weight in sub_voxel_weights(ijk, affine, img_affine, data.shape, points=points):
        seen = weight > 0
        rows = np.nonzero(seen)[0]
        found = data[index[seen, 0], index[seen, 1], index[seen, 2]].reshape(len(rows), -1)
        weights = sparse.csr_matrix((weight[seen], (rows, np.arange(len(rows)))), shape=(len(seen), len(rows)))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (weights @ found.astype(np.float64)) / weight.sum(axis=1, keepdims=True)
        out[start : start + len(seen)] = mean.reshape(len(seen), *extra)
    return out


def refuse_if_not_mni(affine, shape, where: str, target, *, offer_switch: bool = False) -> None:
    """Raise :class:`~brainzarr.exceptions.InputError` when ``target`` (a Grid, a store Dataset
    or DataArray, or its space's name) is in an MNI space and the image ``where`` (its affine and
    shape) is evidently not (see the module docstring).

    ``offer_switch`` names ``check_space=False`` in the error, for callers that take it
    (:func:`from_nifti`); the others (target maps, atlases) read images that must be in MNI space.
    """
    if isinstance(target, Grid):
        space = target.space
    elif isinstance(target, (xr.Dataset, xr.DataArray)):
        space = grid_info(target).get("space")
    else:
        space = target
    if not _is_mni(space):
        return
    why = mni_mismatch(affine, tuple(shape)[:3])
    if why is None:
        return
    message = f"{where} is evidently not in MNI space: {why}; register it to MNI space first"
    if offer_switch:
        raise InputError(message + ", or, if it is in MNI space, skip this check", options={"check_space": False})
    raise InputError(message)


def _check_overlap(
    img, img_shape, where: str, ijk, affine, space, *, check_space: bool = True, outside: str = "they are NaN"
) -> None:
    """Refuse an image evidently not in MNI space (for an MNI target) or one that misses the
    target's voxels; warn when some of them lie outside its field of view."""
    if check_space:
        refuse_if_not_mni(img.affine, img_shape, where, space, offer_switch=True)
    # which target voxel centres lie inside the image's field of view (its voxel centres' hull)
    inv = np.linalg.inv(img.affine)
    src = ijk_to_xyz(ijk_to_xyz(ijk, affine), inv)
    inside = np.all((src > -1e-3) & (src < np.asarray(img_shape[:3]) - 1 + 1e-3), axis=1)
    if not inside.any():
        tbox = np.column_stack([ijk_to_xyz(ijk, affine).min(axis=0), ijk_to_xyz(ijk, affine).max(axis=0)])
        raise InputError(
            f"{where} does not overlap the target's voxels: its field of view "
            f"{_fmt_box(_fov_box(img.affine, img_shape))} mm, the target's voxels "
            f"{_fmt_box(tbox)} mm"
        )
    if not inside.all():
        warnings.warn(
            f"{(~inside).sum()} of {len(inside)} target voxels lie outside the field of view of {where}; {outside}",
            stacklevel=3,
        )


def _resampled_at(data, img_affine, affine, shape, interpolation: str, ijk) -> np.ndarray:
    """``data`` resampled by nilearn onto the grid (``affine``, ``shape``), at the voxels ``ijk``."""
    from nilearn.image import resample_img

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="NaNs or infinite values are present")
        resampled = resample_img(
            nib.Nifti1Image(data, img_affine),
            target_affine=np.asarray(affine, float),
            target_shape=tuple(shape),
            interpolation=interpolation,
            fill_value=np.nan,
            force_resample=True,
            copy_header=True,
        )
    return np.asanyarray(resampled.dataobj)[ijk[:, 0], ijk[:, 1], ijk[:, 2]]


def _intent(img) -> str | None:
    """The NIfTI intent of an image ("label", "estimate", ...; None for other formats)."""
    get_intent = getattr(img.header, "get_intent", None)
    try:
        return get_intent()[0] if get_intent is not None else None
    except (KeyError, TypeError):  # an intent code nibabel does not know
        return None


#: values of a float image looked at first: one that is not whole is not an atlas
_LABEL_SAMPLE = 100_000


def _looks_like_labels(data: np.ndarray, most: int = 5000) -> bool:
    """Whether an image's data (nibabel gives scaled images as floats) are an atlas's codes:
    whole numbers with 3 to ``most`` distinct values (a binary mask, whose interpolation is a
    coverage, is not), in patches (:func:`_in_patches`). Atlases are often stored as floats
    (float32 codes 1.0, 2.0, ...); a map of values shows a fraction among a strided sample, so it
    costs no full look."""
    volume = data
    if data.dtype.kind == "f":
        flat = data.reshape(-1)
        sample = flat[:: max(flat.size // _LABEL_SAMPLE, 1)]
        if not _whole(sample):
            return False
        finite = flat[np.isfinite(flat)]
        if not finite.size or not _whole(finite):
            return False
        data = finite
    elif data.dtype.kind not in "iu":
        return False
    return 3 <= len(np.unique(data)) <= most and _in_patches(volume)


#: the least share of neighbouring voxels (inside the image's regions) that hold the same value
#: along every axis, for whole numbers to be an atlas's codes rather than a map's values
_PATCHY = 0.5


def _in_patches(volume: np.ndarray) -> bool:
    """Whether the non-zero values come in patches, as an atlas's regions do: most neighbours
    along each axis share their value. A map of whole numbers (a gradient in mm, a count)
    changes from voxel to voxel along some axis."""
    if volume.ndim < 3:
        return False
    volume = volume.reshape(volume.shape[:3] + (-1,))[..., 0]
    shares = []
    for axis in range(3):
        moved = np.moveaxis(volume, axis, 0)
        left, right = moved[:-1], moved[1:]
        inside = (left != 0) & (right != 0) & np.isfinite(left) & np.isfinite(right)
        if inside.any():
            shares.append(float(np.mean(left[inside] == right[inside])))
    return bool(shares) and min(shares) >= _PATCHY


def _whole(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    return bool(np.all(finite == np.round(finite)))


def from_nifti(
    img_or_path,
    target,
    *,
    interpolation: str | None = None,
    name: str | None = None,
    check_space: bool = True,
    labels: bool = True,
) -> xr.DataArray:
    """Read an image onto the voxels of a store (or of a Grid).

    Parameters
    ----------
    img_or_path : str, Path or nibabel image
        A 3-D image, or a 4-D image (one volume per entry of a 4th axis).
    target : Grid, store Dataset or DataArray from a store
        Whose voxels the result is defined on. A DataArray target (e.g. the test voxels
        ``ds.expression.where(ds.split == "test", drop=True)``) gives just its voxels.
    interpolation : {"continuous", "linear", "nearest", "mean"}, optional
        Used only when the image is on another grid (nilearn's ``resample_img``: cubic spline,
        trilinear, nearest neighbour). By default "nearest" for a label image (NIfTI intent
        ``label``, as :func:`to_nifti` writes ``ds.split``: interpolated codes are no labels),
        else "continuous". Use "nearest" for atlases without that intent. These sample
        the image at the target voxels' centres: they do not average over the larger voxel when
        going from a fine image to a coarse grid. "mean" does: each voxel takes the mean of the
        image over its volume, each image voxel weighted by the share of the voxel it covers
        (exact on grids whose axes are parallel, as :func:`brainzarr.parcellate` weighs volumes;
        sampled inside the voxel for an oblique image), the box filter that reads a 1 mm PET map
        onto a 4 mm store without aliasing; a voxel inside one image voxel takes its value.
    name : str, optional
        Name of the result; by default the name stored by :func:`to_nifti`, else the file name.
    check_space : bool
        Refuse images evidently not in MNI space (see the module docstring); only when the
        target's space is an MNI space and the image is not on the target's grid.
    labels : bool
        A label image that :func:`to_nifti` wrote (``ds.split``) gives back its labels
        (strings) when read on its own grid or with "nearest"; False: its integer codes.

    Returns
    -------
    xarray.DataArray
        ``(voxel,)`` for a 3-D image, ``(voxel, volume)`` for a 4-D one (the 4th axis gets back
        its name and labels when the image was written by :func:`to_nifti`), with the target's
        voxel coordinates (``voxel, i, j, k, x, y, z`` and any other voxel coordinates of a
        store target, grid attributes on ``i``). Voxels outside the image's field of view are NaN
        (with a warning; with "mean", those with no part inside it). Values are float32 for
        float32/integer images, float64 for float64, and the labels (strings) of a label image
        that :func:`to_nifti` wrote, read on its grid or with "nearest".

    Raises
    ------
    DataNotFoundError
        No file at the path.
    InputError
        Not an image, not 3-D/4-D, an unknown interpolation, an image evidently not in MNI space,
        or an image that does not overlap the target's voxels.
    """
    if interpolation is not None and interpolation not in INTERPOLATIONS:
        raise InputError(
            f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}"
            f"{did_you_mean(interpolation, INTERPOLATIONS)}"
        )
    ijk, affine, shape, space, coords = _target_voxels(target)
    img, path = _load(img_or_path)
    asked = interpolation
    if interpolation is None:
        interpolation = "nearest" if _intent(img) == "label" else "continuous"
    img_shape = tuple(int(s) for s in img.shape)
    if len(img_shape) not in (3, 4):
        raise InputError(f"expected a 3-D or 4-D image, got shape {img_shape}")
    meta = _read_meta(img)
    where = f"{path}" if path is not None else "the image"

    if _same_grid(img.affine, img_shape[:3], affine, shape):
        data = np.asanyarray(img.dataobj)
        values = data[ijk[:, 0], ijk[:, 1], ijk[:, 2]]
        method = "none (same grid)"
    else:
        outside = "the parts inside it are averaged" if interpolation == "mean" else "they are NaN"
        _check_overlap(img, img_shape, where, ijk, affine, space, check_space=check_space, outside=outside)
        data = np.asanyarray(img.dataobj)
        if asked is None and interpolation != "nearest" and _looks_like_labels(data):
            warnings.warn(
                f"{where} looks like a label image (an atlas: whole numbers in {data.dtype}, few distinct "
                f"values): its codes are interpolated ({interpolation}); pass interpolation='nearest' to read "
                "its labels",
                UserWarning,
                stacklevel=2,
            )
        fdtype = np.result_type(data.dtype, np.float32) if data.dtype.kind == "f" else np.float32
        method = interpolation
        if interpolation == "mean":
            values = _box_mean(data.astype(fdtype, copy=False), img.affine, ijk, affine)
        else:
            values = _resampled_at(data.astype(fdtype, copy=False), img.affine, affine, shape, interpolation, ijk)
    out_dtype = np.result_type(values.dtype, np.float32) if values.dtype.kind == "f" else np.float32
    table = meta.get("labels") if labels and method in ("none (same grid)", "nearest") and values.ndim == 1 else None
    if table:  # a label image that brainzarr wrote: its labels back, "" where it has none
        names = np.array([""] + [table.get(str(code), "") for code in range(1, max(map(int, table)) + 1)])
        codes = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0).astype(np.int64)
        values = names[np.where((codes >= 0) & (codes < len(names)), codes, 0)]
    else:
        values = values.astype(out_dtype, copy=False)
    if name is None:
        name = meta.get("name") or (
            Path(str(path)).name.removesuffix(".gz").removesuffix(".nii") if path is not None else None
        )
    attrs = {"source": str(path) if path is not None else "image", "interpolation": method}
    if meta.get("units"):
        attrs["units"] = meta["units"]
    if values.ndim == 1:
        return xr.DataArray(values, dims=("voxel",), coords=coords, name=name, attrs=attrs)
    n = values.shape[1]
    dim, labels = "volume", np.arange(n)
    if meta.get("volume_dim") and meta["volume_dim"] not in coords:
        dim = meta["volume_dim"]
        if meta.get("volume_labels") is not None and len(meta["volume_labels"]) == n:
            labels = np.asarray(meta["volume_labels"])
    return xr.DataArray(values, dims=("voxel", dim), coords={**coords, dim: labels}, name=name, attrs=attrs)


def to_volume(da: xr.DataArray, grid=None, *, background: float = 0.0, dtype=None) -> np.ndarray:
    """The values on the full 3-D (or 4-D) grid as a numpy array; ``background`` elsewhere.

    ``dtype`` defaults to the DataArray's (promoted to float for a NaN background). Labels
    (``ds.split``) give an array of strings, ``""`` outside the brain.
    """
    coded, labels, code_dtype = _label_codes(da, float(background), dtype)
    if labels is None:
        return _volume(da, grid, float(background), dtype)[0]
    names = np.array([""] + [labels[code] for code in sorted(labels)])
    return names[_volume(coded, grid, 0.0, code_dtype)[0]]


def voxel_grid(da: xr.DataArray) -> Grid:
    """The grid of a DataArray's voxels (mask = the voxels present, in the store's affine)."""
    _other_dim(da)
    ijk, affine, shape, space = _placement(da, None)
    mask = np.zeros(tuple(shape), dtype=bool)
    mask[tuple(ijk.T)] = True
    info = grid_info(da)
    return Grid(mask, affine, space=space or MNI152_SPACE, name=str(info.get("mask", "store")))
