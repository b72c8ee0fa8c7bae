"""Target maps (PET, MRI, ...) and external embeddings, read onto a store's voxels.

Targets are NIfTI images in MNI space on any grid (PET maps come at 1, 2 or 3 mm). Each is
resampled onto the store's grid with :func:`brainzarr.nifti.from_nifti` (nilearn), then min-max
scaled to [0, 1] over its valid voxels, so RMSEs are comparable across targets.

Resampling samples the image at the store's voxel centres (it does not average a fine image
over a coarse voxel; ``interpolation="mean"`` does, or smooth it first). The default is linear
interpolation: it never overshoots (a cubic spline rings at the brain's edge and around sharp
features), and an image exported from the store, or on a grid it was upsampled to, comes back
unchanged.

Background. A map's zeros and NaNs outside its brain are not data. The map's *support* (finite,
non-zero voxels) is resampled alongside the values; a store voxel is valid for a target when
the support covers at least half of it (its interpolation weights) and the value is finite. With
linear (or mean) interpolation the value is the weighted mean of the valid source voxels only
(normalised convolution), so the background does not pull values at the brain's edge towards 0.
The other voxels are excluded for that target, and counted (``n_excluded``). On the store's own
grid this is exactly "finite and non-zero".
"""

from __future__ import annotations

import os
import warnings

import nibabel as nib
import numpy as np
import xarray as xr

from .._location import user_path
from .._volumes import load_volume
from ..exceptions import DataNotFoundError, InputError, InputTypeError
from ..nifti import _intent, _looks_like_labels, from_nifti, is_labels, refuse_if_not_mni
from ..nifti import _load as load_image

__all__ = ["nifti_files", "load_targets", "load_embedding", "read_map", "MIN_VALID_VOXELS"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: a target needs at least this many valid voxels on the store's grid
MIN_VALID_VOXELS = 20


def _stem(item, n: int) -> str:
    """A map's name: its file's, or ``image_<n>`` for an image given in memory."""
    if _in_memory(item):
        return f"image_{n}"
    return item.name.removesuffix(".gz").removesuffix(".nii")


def _in_memory(item) -> bool:
    return isinstance(item, nib.spatialimages.SpatialImage)


def _source(item) -> str:
    return "image" if _in_memory(item) else str(item)


def nifti_files(spec) -> list:
    """NIfTI files named by ``spec``: a directory (its ``*.nii``/``*.nii.gz``, sorted), a file,
    a comma-separated string of files, a nibabel image (kept as it is), or a list of these."""
    if _in_memory(spec):
        return [spec]
    if isinstance(spec, (list, tuple)):
        return [f for item in spec for f in nifti_files(item)]
    if not isinstance(spec, (str, os.PathLike)):
        raise InputTypeError(
            f"expected NIfTI files (a folder, a file, a list of files or nibabel images) or a DataArray "
            f"on the store's voxels, got {type(spec).__name__}"
        )
    if isinstance(spec, str) and "," in spec:
        return nifti_files([s for s in spec.split(",") if s.strip()])
    path = user_path(str(spec).strip())
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.name.endswith(NIFTI_SUFFIXES) and not p.name.startswith("."))
        if not files:
            surfaces = [p for p in path.iterdir() if p.name.endswith(".gii")]
            held = (
                f" (it holds {len(surfaces)} GIFTI surface map(s), e.g. {surfaces[0].name}: brainzarr reads maps "
                "in MNI volume space; project them into the volume first)"
                if surfaces
                else ""
            )
            raise DataNotFoundError(f"no .nii or .nii.gz files in {path}{held}")
        return files
    if not path.exists():
        raise DataNotFoundError(f"no such file or directory: {path}")
    if not path.name.endswith(NIFTI_SUFFIXES):
        if path.name.endswith(".gii"):
            load_volume(path)  # says what a surface map is, and what to do with it
        raise InputError(f"{path} is not a NIfTI file (.nii or .nii.gz)")
    return [path]


def _load(img_or_path):
    """(image, its name in messages)."""
    img, path = load_image(img_or_path)
    return img, "image" if path is None else str(path)


def _resample(data: np.ndarray, affine, support: np.ndarray, ds: xr.Dataset, interpolation: str):
    """Values and coverage on the store's voxels of ``data`` (3-D or 4-D) whose valid voxels are
    ``support`` (the same shape, or 3-D: one brain shared by every volume); see :func:`read_map`."""
    if not support.any():
        raise InputError("the image holds no finite non-zero value")
    keep = support if support.ndim == data.ndim else support[..., None]
    with warnings.catch_warnings():
        # voxels outside the image's field of view come back NaN: they are excluded and counted
        warnings.filterwarnings("ignore", message=".*outside the field of view.*")
        # the support is binary on purpose: its linear resampling is the fraction covered
        warnings.filterwarnings("ignore", message=".*Resampling binary images.*")
        values = from_nifti(
            nib.Nifti1Image(np.where(keep, data, 0.0).astype(np.float32), affine),
            ds,
            interpolation=interpolation,
            check_space=False,  # the callers check it, naming the file
            labels=False,
        ).values
        inside = from_nifti(
            nib.Nifti1Image(support.astype(np.float32), affine),
            ds,
            interpolation=interpolation if interpolation in ("nearest", "mean") else "linear",
            check_space=False,
            labels=False,
        ).values
    inside = np.nan_to_num(inside, nan=0.0)
    if inside.ndim < values.ndim:
        inside = inside[:, None]
    covered = np.isfinite(values) & (inside >= 0.5)
    if interpolation in ("linear", "mean"):  # normalised convolution: divide out the background's zero weight
        values = np.divide(values, inside, out=np.full_like(values, np.nan), where=covered)
    return values.astype(np.float32), covered


def on_store_voxels(da, ds: xr.Dataset, what: str) -> tuple[np.ndarray, list | None]:
    """A ``(voxel,)`` or ``(voxel, d)`` DataArray's values in the store's voxel order.

    Values are placed by the ``voxel`` coordinate (the store's row numbers) when ``da`` has one,
    as xarray aligns: reordered or a subset of the voxels is fine, and voxels ``da`` lacks are
    NaN. Without one, ``da`` must hold every voxel in the store's order. Where ``da`` carries
    ``i, j, k`` they must be the store's at those voxels: an array from another grid is refused
    rather than misplaced.

    Returns
    -------
    values : (n_voxels, n_columns) float32
    labels : the second dim's coordinate values as str, or None (no coordinate, or 1-D)
    """
    if not isinstance(da, xr.DataArray):
        raise InputTypeError(f"{what}: expected an xarray.DataArray, got {type(da).__name__}")
    if "voxel" not in da.dims or da.ndim > 2:
        raise InputError(f"{what} must have dims (voxel,) or (voxel, d) on the store's voxels; it has {da.dims}")
    if is_labels(da):
        raise InputError(f"{what} holds labels ({da.name or 'strings'}), not values")
    n = ds.sizes["voxel"]
    other = [d for d in da.dims if d != "voxel"]
    da = da.transpose("voxel", *other)
    if "voxel" in da.indexes:
        rows = np.asarray(da["voxel"].values)
        if not np.issubdtype(rows.dtype, np.integer) or len(rows) and (rows.min() < 0 or rows.max() >= n):
            raise InputError(
                f"{what}: its voxel coordinate is not the store's rows 0..{n - 1}; is it from another store?"
            )
        if len(np.unique(rows)) != len(rows):
            raise InputError(f"{what}: its voxel coordinate repeats voxels")
        for c in ("i", "j", "k"):
            if c in da.coords and c in ds.coords and not np.array_equal(da[c].values, ds[c].values[rows]):
                raise InputError(
                    f"{what}: its {c} coordinates differ from the store's at the same voxels; it is on another grid"
                )
        values = np.full((n,) + da.shape[1:], np.nan, dtype=np.float32)
        values[rows] = np.asarray(da.values, dtype=np.float32)
    elif da.sizes["voxel"] == n:
        values = np.asarray(da.values, dtype=np.float32)
    else:
        raise InputError(
            f"{what} has {da.sizes['voxel']} voxels and no voxel coordinate to place them; the store has {n}"
        )
    if values.ndim == 1:
        return values[:, None], None
    labels = [str(v) for v in da[other[0]].values] if other[0] in da.coords else None
    return values, labels


def _refuse_label_image(img, where: str, what: str) -> None:
    """Stop when an image given as values is a label image (NIfTI intent label: an exported split,
    an atlas), whose codes would be scaled and predicted as if they were a map."""
    if _intent(img) == "label":
        raise InputError(
            f"{where} is a label image (NIfTI intent label: region codes, not values), not {what}; "
            "parcellate takes it as an atlas, to average a store's arrays over its regions"
        )


def read_map(img_or_path, ds: xr.Dataset, *, interpolation: str = "linear") -> tuple[np.ndarray, np.ndarray]:
    """An image on the store's voxels: its resampled values and where its support covers them.

    Returns
    -------
    values : (n_voxels,) or (n_voxels, n_volumes) float32
        NaN outside the image's field of view. With linear interpolation, the weighted mean of
        the valid (finite, non-zero) source voxels around each store voxel: the background does
        not dilute values at the edge of the image's brain.
    in_support : bool array of the same shape
        Where the image's support covers the store voxel (at least half, after resampling the
        support with the same weights; nearest neighbour for "nearest") and the value is finite.
    """
    img, where = _load(img_or_path)
    _refuse_label_image(img, where, "a target map")
    refuse_if_not_mni(img.affine, img.shape, where, ds)
    integers = np.dtype(img.get_data_dtype()).kind in "iu"  # only then look at the raw values: no float64 copy
    data = np.asanyarray(img.dataobj) if integers else np.asarray(img.dataobj, dtype=np.float32)
    if _looks_like_labels(data):
        warnings.warn(
            f"{where} looks like an atlas (whole numbers in {data.dtype}, few distinct values): as a target map "
            "its codes are scaled and predicted as values; parcellate takes an atlas",
            UserWarning,
            stacklevel=3,
        )
    data = data.astype(np.float32, copy=False)
    if data.ndim not in (3, 4):
        raise InputError(f"{where}: expected a 3-D or 4-D image, got shape {data.shape}")
    try:
        return _resample(data, img.affine, np.isfinite(data) & (data != 0), ds, interpolation)
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from None


def load_targets(
    targets, store_ds: xr.Dataset, *, interpolation: str = "linear", min_valid: int = MIN_VALID_VOXELS
) -> xr.DataArray:
    """Target maps on the store's voxels, min-max scaled to [0, 1].

    Parameters
    ----------
    targets : directory, files (a list or comma-separated), images, DataArray, Dataset, or dict name -> these
        A 4-D file gives one target per volume (``<file>_<n>``). A ``(voxel,)`` or
        ``(voxel, d)`` DataArray holds maps already on the store's voxels (placed by its
        ``voxel`` coordinate; voxels it lacks or holds NaN at are excluded); a 2-D one gives a
        target per column, named by its second dim's coordinate; a Dataset, one per variable.
    store_ds : xarray.Dataset
        The opened store (:func:`brainzarr.open_store`).
    interpolation : {"linear", "nearest", "continuous", "mean"}
        How values are resampled (nilearn; "mean": the mean of the image's voxels inside each
        store voxel, for a map finer than the store); see the module docstring.
    min_valid : int
        Fewest valid voxels a target may have.

    Returns
    -------
    xarray.DataArray
        ``(voxel, target)`` float32, NaN where a target is excluded, with the store's voxel
        coordinates and, on ``target``, ``n_valid``, ``n_excluded``, ``source`` and the original
        ``raw_min``/``raw_max`` of the scaling.

    Raises
    ------
    DataNotFoundError
        Missing files.
    InputError
        Unreadable or empty images, repeated names, constant maps, too few valid voxels, images
        not in MNI space, a DataArray not on the store's voxels.
    InputTypeError
        ``targets`` of a type not listed above.

    Warns
    -----
    UserWarning
        Two targets that are one map up to scale and offset (``|r| >= 0.9999``): each would
        count as a target in the mean R² and the ANOVA.
    """
    if isinstance(targets, xr.DataArray):
        items = [(None, targets)]
    elif isinstance(targets, xr.Dataset):  # one target per variable, named by it
        items = [(str(name), var) for name, var in targets.data_vars.items()]
    elif isinstance(targets, dict):
        items = list(targets.items())
    else:
        items = [(_stem(p, n), p) for n, p in enumerate(nifti_files(targets), 1)]
    names, columns, origins = [], [], []
    for name, item in items:
        if isinstance(item, xr.DataArray):
            values, labels = _array_targets(item, store_ds, name)
            origin = _array_origins(item, values.shape[1])
        else:
            values, valid = read_map(item, store_ds, interpolation=interpolation)
            values = np.where(valid, values, np.nan)
            if values.ndim == 1:
                values = values[:, None]
                labels = [str(name)]
            else:
                labels = [f"{name}_{n}" for n in range(values.shape[1])]
            origin = [(_source(item), 0.0, 1.0)] * values.shape[1]
        names += labels
        columns += list(values.T)
        origins += origin
    if not names:
        raise InputError("no target maps given")
    _refuse_repeated_names(names, [o[0] for o in origins])
    raw = np.column_stack(columns)
    valid = np.isfinite(raw)
    n_valid = valid.sum(axis=0)
    for name, n in zip(names, n_valid):
        if n < min_valid:
            raise InputError(
                f"target {name} has {n} valid voxels on the store's grid (needs {min_valid}); "
                "is it in MNI space and does it cover the brain?"
            )
    lo, hi = np.nanmin(raw, axis=0), np.nanmax(raw, axis=0)
    constant = [n for n, a, b in zip(names, lo, hi) if not b > a]
    if constant:
        raise InputError(f"target(s) {', '.join(constant)} are constant on the store's voxels")
    scaled = ((raw - lo) / (hi - lo)).astype(np.float32)
    _warn_of_copies(scaled, names)
    sources, o_lo, o_hi = (np.asarray(column) for column in zip(*origins))
    lo, hi = o_lo + lo * (o_hi - o_lo), o_lo + hi * (o_hi - o_lo)  # in the units of the maps as first read
    coords = {c: store_ds[c] for c in ("voxel", "i", "j", "k", "x", "y", "z", "hemisphere") if c in store_ds.coords}
    coords.update(
        target=np.asarray(names),
        n_valid=("target", n_valid.astype(np.int64)),
        n_excluded=("target", (len(raw) - n_valid).astype(np.int64)),
        source=("target", np.asarray(sources)),
        raw_min=("target", lo.astype(np.float64)),
        raw_max=("target", hi.astype(np.float64)),
    )
    return xr.DataArray(
        scaled,
        dims=("voxel", "target"),
        coords=coords,
        name="target",
        attrs={
            "scaling": "min-max over valid voxels",
            "interpolation": interpolation,
            "background": "support (finite, non-zero) resampled linearly < 0.5",
        },
    )


def _refuse_repeated_names(names: list[str], sources: list[str]) -> None:
    """Targets are told apart by name: a file given twice, or two files of one name in two
    folders, would be one target counted twice or two targets under one name."""
    dupes = sorted({n for n in names if names.count(n) > 1})
    if not dupes:
        return
    twice = sorted({s for n, s in zip(names, sources) if n in dupes and s != "image" and sources.count(s) > 1})
    if twice:
        raise InputError(f"a target map is given twice: {', '.join(twice)}")
    places = [s for n, s in zip(names, sources) if n == dupes[0]]
    raise InputError(
        f"target names must be unique; repeated: {', '.join(dupes)} ({' and '.join(places[:2])}): rename the files"
        if len(places) > 1 and "image" not in places
        else f"target names must be unique; repeated: {', '.join(dupes)} (rename the files)"
    )


#: two targets whose values correlate at least this much are one map counted twice
SAME_MAP_CORRELATION = 0.9999
#: rows of the targets made float64 at a time for their correlations
_CORRELATION_ROWS = 65_536


def _warn_of_copies(scaled: np.ndarray, names: list[str]) -> None:
    """Warn of targets that are one map up to scale and offset (a copy under another name, one
    tracer's map in two units): each counts as a target in the mean R² and in the ANOVA across
    representations, whose test then counts one observation as two. Judged on the voxels valid
    in every target; without enough of them there is nothing to judge on."""
    if len(names) < 2:
        return
    rows = np.flatnonzero(np.isfinite(scaled).all(axis=1))
    if len(rows) < MIN_VALID_VOXELS:
        return
    # the correlations from sums over row blocks: no float64 copy of a 1 mm table of maps
    n = len(names)
    total, products = np.zeros(n), np.zeros((n, n))
    for a in range(0, len(rows), _CORRELATION_ROWS):
        block = scaled[rows[a : a + _CORRELATION_ROWS]].astype(np.float64)
        total += block.sum(axis=0)
        products += block.T @ block
    mean = total / len(rows)
    covariance = products / len(rows) - np.outer(mean, mean)
    spread = np.sqrt(np.clip(np.diag(covariance), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = covariance / np.outer(spread, spread)
    same = np.abs(r) >= SAME_MAP_CORRELATION
    seen = set()
    for i in range(len(names)):
        copies = [j for j in range(i + 1, len(names)) if same[i, j] and j not in seen]
        if i in seen or not copies:
            continue
        seen.update(copies)
        group = [names[n] for n in (i, *copies)]
        listed = ", ".join(group[:-1]) + f" and {group[-1]}"
        least = min(abs(r[i, j]) for j in copies)
        warnings.warn(
            f"targets {listed} are one map up to scale and offset on the store's voxels (|r| >= {least:.4f}): "
            f"each counts as a target in the mean R² and the ANOVA; keep one of them",
            UserWarning,
            stacklevel=3,
        )


def _array_targets(da: xr.DataArray, ds: xr.Dataset, name) -> tuple[np.ndarray, list[str]]:
    """Target maps given as a DataArray on the store's voxels, and their names: ``name`` (the
    dict's key, else the array's name, else "target") for a 1-D array; for a 2-D one its second
    dim's labels (prefixed ``name_`` under a dict key), else ``<name>_<n>``. A map selected from
    :func:`load_targets`' result (``t.sel(target="PET")``: a scalar coordinate named as the array)
    keeps its name."""
    values, labels = on_store_voxels(da, ds, "the targets" if name is None else f"target {name}")
    own = da.coords.get(da.name) if da.name is not None else None
    if name is None and own is not None and own.ndim == 0:  # a map selected from load_targets' result
        name = own.values
    base = str(name if name is not None else da.name or "target")
    if da.ndim == 1:
        return values, [base]
    if labels is None:
        return values, [f"{base}_{n}" for n in range(values.shape[1])]
    return values, labels if name is None else [f"{name}_{label}" for label in labels]


def _array_origins(da: xr.DataArray, n_columns: int) -> list[tuple[str, float, float]]:
    """Per column of a DataArray of targets: its source, and the raw values that its 0 and 1
    stand for. Maps that :func:`load_targets` returned keep their files and raw range (so that
    they can be given again, reordered or as a subset of voxels); other values are raw."""
    if da.ndim == 1 and all(c in da.coords and da[c].ndim == 0 for c in ("source", "raw_min", "raw_max")):
        return [(str(da["source"].values), float(da["raw_min"]), float(da["raw_max"]))]  # one map, selected
    if da.ndim == 2 and all(c in da.coords and da[c].ndim == 1 for c in ("source", "raw_min", "raw_max")):
        d = [dim for dim in da.dims if dim != "voxel"][0]
        if all(da[c].dims == (d,) for c in ("source", "raw_min", "raw_max")):
            return list(zip(map(str, da["source"].values), da["raw_min"].values, da["raw_max"].values))
    return [("DataArray", 0.0, 1.0)] * n_columns


def load_embedding(
    files, store_ds: xr.Dataset, *, name: str = "external", interpolation: str = "linear"
) -> xr.DataArray:
    """An embedding made elsewhere, from NIfTI (one file per component, or one 4-D file) or a
    DataArray on the store's voxels.

    Returns ``(voxel, component)`` float32 on the store's voxels; a voxel outside the
    embedding's brain (every component zero/NaN there) or outside its field of view is NaN.
    A ``(voxel,)`` or ``(voxel, d)`` DataArray is placed by its ``voxel`` coordinate, as xarray
    aligns (see :func:`on_store_voxels`): voxels it lacks, or a row with a NaN, are NaN.

    Interpolation is linear by default (see the module docstring): an embedding exported from a
    store (or on a grid it was upsampled to) comes back unchanged. This matters more than it
    seems: XGBoost on a 2-D embedding exploits voxels that share exactly
    the same embedding (voxels filled from the same tissue sample), and a cubic spline's small
    perturbations change its test R² noticeably.
    """
    if isinstance(files, xr.DataArray):
        values, _ = on_store_voxels(files, store_ds, f"embedding {name}")
        values[~np.isfinite(values).all(axis=1)] = np.nan
        return _embedding(values, store_ds, name, {"source": "DataArray"})
    paths = nifti_files(files)
    volumes, affine, shape = [], None, None
    for item in paths:
        img, where = _load(item)
        _refuse_label_image(img, where, "an embedding")
        refuse_if_not_mni(img.affine, img.shape, where, store_ds)
        data = np.asarray(img.dataobj, dtype=np.float32)
        if data.ndim not in (3, 4):
            raise InputError(f"{where}: expected a 3-D or 4-D image, got shape {data.shape}")
        if affine is None:
            affine, shape = img.affine, data.shape[:3]
        elif data.shape[:3] != shape or not np.allclose(img.affine, affine, atol=1e-4):
            raise InputError(
                f"the components of embedding {name} must share one grid; {where} differs from {_source(paths[0])}"
            )
        volumes.append(data if data.ndim == 4 else data[..., None])
    data = np.concatenate(volumes, axis=3)
    # one brain for all components: a component may be exactly 0 inside it (NMF often is)
    finite = np.isfinite(data).all(axis=3)
    support = finite & (data != 0).any(axis=3)
    try:
        values, covered = _resample(data, affine, support, store_ds, interpolation)
    except ValueError as exc:
        raise InputError(f"embedding {name}: {exc}") from None
    keep = covered.all(axis=1) & np.isfinite(values).all(axis=1)
    out = np.where(keep[:, None], values, np.nan).astype(np.float32)
    return _embedding(out, store_ds, name, {"source": ",".join(map(_source, paths)), "interpolation": interpolation})


def _embedding(values: np.ndarray, ds: xr.Dataset, name: str, attrs: dict) -> xr.DataArray:
    """``(voxel, component)`` on the store's voxels, NaN rows where it has no value; refused when
    it covers too few voxels to predict from."""
    covered = int(np.isfinite(values).all(axis=1).sum())
    if covered < MIN_VALID_VOXELS:
        raise InputError(f"embedding {name} covers {covered} of the store's voxels; is it in MNI space?")
    coords = {c: ds[c] for c in ("voxel", "i", "j", "k", "x", "y", "z") if c in ds.coords}
    coords["component"] = np.arange(1, values.shape[1] + 1)
    return xr.DataArray(values, dims=("voxel", "component"), coords=coords, name=name, attrs=attrs)
