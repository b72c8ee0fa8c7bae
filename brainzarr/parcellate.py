"""Region tables from voxel arrays: the mean (or sum, variance, standard deviation, minimum,
maximum) of a store's expression, or of a result's embedding, reconstruction or error map, over
each region of an atlas.

abagen's ``get_expression_data`` makes a region x gene table from the samples in each region;
:func:`parcellate` makes one from a store's voxels, in one streamed pass (memory: the table,
plus a few row blocks). Its CSV (``brainzarr parcellate``) is the table that
``brainzarr build --source parcellated`` reads.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ._location import user_path
from ._progress import job
from ._text import read_user_text
from ._validation import did_you_mean, whole_number
from .exceptions import DataNotFoundError, InputError, InputTypeError
from .nifti import _load, _read_meta, from_nifti, is_labels, refuse_if_not_mni
from .streaming import block_reduce, block_spans, reusing_buffers

__all__ = ["parcellate", "read_lut", "region_map"]

#: the name of a region that its atlas's look-up table does not name (as nilearn names it)
UNKNOWN = "unknown"


WEIGHTINGS = ("centre", "volume")
#: what each region's value is, named as nilearn's ``NiftiLabelsMasker(strategy=...)`` names them
STRATEGIES = ("mean", "sum", "variance", "standard_deviation", "minimum", "maximum")


def parcellate(
    data: xr.DataArray,
    atlas,
    *,
    background: int = 0,
    weighting: str = "centre",
    lut=None,
    strategy: str = "mean",
    _stacklevel: int = 2,
) -> xr.DataArray:
    """The mean (or another ``strategy``) of ``data`` over the voxels of each region of ``atlas``.

    Parameters
    ----------
    data : xarray.DataArray
        ``(voxel,)`` or ``(voxel, d)`` from a store: ``ds.expression`` (or a selection of its
        genes or voxels), a result's ``embedding``, ``reconstruction`` or ``voxel_rmse``.
        NumPy- or dask-backed; a dask array is streamed block by block.
    atlas : str, Path, nibabel image or nilearn atlas
        Integer labels in MNI space, on any grid. ``background`` marks voxels in no region. What
        nilearn's atlas fetchers return (``maps`` and ``lut``) gives both the image and its
        look-up table.
    background : int
        The label of no region (default 0).
    weighting : {'centre', 'volume'}
        How a voxel counts towards a region. ``'centre'`` (default): a voxel belongs to the
        region at its centre (the nearest atlas voxel), as nilearn's ``NiftiLabelsMasker``
        resamples an atlas to the data. ``'volume'``: a voxel counts in each region by the
        fraction of its volume the region covers (exact when the atlas's axes are parallel to
        the store's, whatever its voxel size and origin; sampled inside the voxel for an
        oblique atlas), so a region smaller than a voxel of a coarse store still gets a value,
        and a voxel on a border counts in both regions; the mean is the volume-weighted one, as
        averaging the atlas's own voxels with the store's value at each. With an atlas on the
        store's grid the two agree.
    lut : str, Path, pandas.DataFrame or mapping, optional
        The atlas's look-up table, naming its regions (coordinate ``region_name``): a table
        with columns ``index`` and ``name`` (BIDS ``dseg.tsv``, as nilearn's ``lut``), a
        FreeSurfer-style text file of ``index name ...`` rows (``FreeSurferColorLUT.txt``,
        Schaefer's ``*_order.txt``), or ``{label: name}``. See :func:`read_lut`. A region
        it does not name is ``"unknown"``, with a warning; names of labels the atlas lacks
        are left out. Default: the table of a label image that brainzarr wrote
        (``ds.hemisphere.brain.to_nifti(...)``), else no names.
    strategy : {'mean', 'sum', 'variance', 'standard_deviation', 'minimum', 'maximum'}
        Each region's value, as nilearn's ``NiftiLabelsMasker`` names them: the mean
        (default), the sum, the variance or standard deviation (population: divided by the
        number of voxels) of its voxels' values, or the smallest or largest of them. With
        ``weighting='volume'`` each voxel counts by its fraction in the region (the sum adds
        each value times it; the variance is the weighted one), and the minimum and maximum
        are over the voxels with any volume in the region. The variance adds values and their
        squares in float64: for values in [0, 1] it errs by ~1e-14 (a constant region's standard
        deviation reads ~1e-7, not 0). A median would need all of a region's values at once:
        the pass streams them.

    Returns
    -------
    xarray.DataArray
        ``(region,)`` or ``(region, d)`` float64, with ``d``'s coordinate (genes, components)
        and ``n_voxels`` (per region: its voxels; with ``weighting='volume'``, the sum of their
        fractions), and ``region_name`` with a ``lut``. Every label of the atlas is a region;
        one that holds no voxel of ``data`` is NaN, with a warning, as abagen leaves regions
        without samples.

    Raises
    ------
    InputError
        ``data`` has no voxel dimension or more than two dimensions, the atlas holds
        non-integer values or no region, an unknown ``weighting`` or ``strategy``, a
        ``lut`` that is not a look-up table, or an atlas evidently not in MNI space when
        ``data``'s grid is (:class:`~brainzarr.exceptions.InputError`; see
        :mod:`brainzarr.nifti`).
    """
    if not isinstance(data, xr.DataArray) or "voxel" not in data.dims:
        raise InputError("parcellate needs a DataArray with a 'voxel' dimension (e.g. ds.expression)")
    if data.ndim > 2:
        raise InputError(f"parcellate takes (voxel,) or (voxel, d) arrays, got dims {data.dims}")
    if is_labels(data):
        raise InputError(f"{data.name or 'the array'} holds labels, not values to average over regions")
    if weighting not in WEIGHTINGS:
        raise InputError(
            f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}{did_you_mean(weighting, WEIGHTINGS)}"
        )
    if strategy not in STRATEGIES:
        why = " (a median needs all of a region's values at once; parcellate streams them)" * (strategy == "median")
        raise InputError(
            f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}"
            f"{why or did_you_mean(strategy, STRATEGIES)}"
        )
    # 0.5 matched no label (the outside of the brain became a region), True was 1, None stopped in int()
    background = whole_number(background, "background", hint=" (the atlas's label of no region)")
    if isinstance(atlas, Mapping) and "maps" in atlas:  # a nilearn atlas (a Bunch: maps, lut, ...)
        lut = atlas.get("lut") if lut is None else lut
        atlas = atlas["maps"]
    img, path = _load(atlas)
    if lut is None:  # a label image that brainzarr wrote (ds.hemisphere, ...) names its regions itself
        lut = {int(code): name for code, name in _read_meta(img).get("labels", {}).items()} or None
    where = path if path is not None else "the atlas"
    refuse_if_not_mni(img.affine, img.shape, where, data)
    volume = _atlas_volume(img, where)
    regions = _atlas_labels(volume, where, background)
    names = None if lut is None else _region_names(read_lut(lut), regions, where, _stacklevel + 1)
    if weighting == "centre":
        weights = _centre_weights(img, data, regions, background, where)
    else:
        weights = _volume_weights(img, volume, data, regions, background, where)

    other = next((d for d in data.dims if d != "voxel"), None)
    X = data.transpose("voxel", ...).data
    if other is None:
        X = X.reshape(-1, 1)
    statistic = _RegionStatistic(strategy, len(regions), X.shape[1])
    # each block's task carries its own columns of the weights (on a cluster: not all of them)
    parts = [weights[:, a:b] for a, b in block_spans(X)]
    with job("parcellate", unit="block"), reusing_buffers():
        state = block_reduce(X, statistic.of_block, desc="voxel blocks", combine=statistic.combine, per_block=parts)
    # scipy's sum(dtype=float64) of float32 weights adds in float32: 10 voxels too many over 1.9M at 1 mm;
    # in csc form (both weightings' own: no copy) the row indices are the regions
    csc = weights.tocsc()
    counts = np.bincount(csc.indices, weights=csc.data.astype(np.float64), minlength=len(regions))
    if weighting == "centre":
        counts = np.rint(counts).astype(np.int64)
    empty = counts == 0
    if empty.any():
        shown = ", ".join(map(str, regions[empty][:10])) + (" ..." if empty.sum() > 10 else "")
        hint = ""
        if weighting == "centre" and _finer(img.affine, data):
            hint = (
                " (the atlas is finer than the array's grid: with weighting 'volume', a region that covers"
                " part of a voxel gets a value)"
            )
        warnings.warn(
            f"{empty.sum()} of {len(regions)} regions of {where} hold no voxel of the array: {shown}{hint}",
            stacklevel=_stacklevel,
        )
    values = statistic.result(state, counts)
    _warn_of_nan_voxels(values, empty, regions, where, _stacklevel + 1)
    coords = {"region": regions, "n_voxels": ("region", counts)}
    if names is not None:
        coords["region_name"] = ("region", names)
    attrs = _attrs(where, background, weighting, strategy)
    if other is None:
        return xr.DataArray(values[:, 0], dims="region", coords=coords, name=data.name, attrs=attrs)
    if other in data.coords:
        coords[other] = data[other].values
    return xr.DataArray(values, dims=("region", other), coords=coords, name=data.name, attrs=attrs)


def _finer(atlas_affine, data: xr.DataArray) -> bool:
    """Whether an atlas's voxels are smaller than those of the grid ``data`` lies on."""
    from .store import grid_info

    try:
        affine = grid_info(data)["affine"]
    except ValueError:
        return False
    return abs(np.linalg.det(atlas_affine[:3, :3])) < abs(np.linalg.det(affine[:3, :3])) * (1 - 1e-6)


def _attrs(where, background, weighting, strategy) -> dict:
    weighted = strategy not in ("minimum", "maximum") and weighting == "volume"
    statistic = f"{strategy.replace('_', ' ')} over each region's voxels" + (
        ", weighted by the volume in it" if weighted else ""
    )
    return {
        "statistic": statistic,
        "strategy": strategy,
        "atlas": str(where),
        "background": int(background),
        "weighting": weighting,
    }


def region_map(table: xr.DataArray, atlas=None) -> xr.DataArray:
    """A region table back on its atlas's voxels: each voxel of a region takes the region's
    value (what nilearn's ``NiftiLabelsMasker.inverse_transform`` does), to look at as an image.

    ``table.brain.to_nifti(path)`` and ``table.brain.plot()`` of a region table go through it.

    Parameters
    ----------
    table : xarray.DataArray
        ``(region,)`` or ``(region, d)``, as :func:`parcellate` gives it (any selection of its
        regions and columns, e.g. ``table.sel(gene="APOE")``).
    atlas : str, Path or nibabel image, optional
        The atlas; by default the one the table was made with (its ``atlas`` attribute), and
        the same background label.

    Returns
    -------
    xarray.DataArray
        ``(voxel,)`` or ``(voxel, d)`` over the atlas's voxels in the table's regions, on the
        atlas's grid (coordinates ``i, j, k`` with the grid's affine, ``x, y, z``, and ``region``,
        each voxel's label), lazily: a column is computed when it is read, so that a many-column
        table is written as NIfTI a few volumes at a time. A region whose value is NaN (it held
        no voxel) is NaN.

    Raises
    ------
    InputError
        No ``region`` dimension, more than two dimensions, or no atlas to place the regions in.
    """
    import dask.array as dsa

    from .grid import MNI152_SPACE, Grid
    from .nifti import _target_voxels, mni_mismatch

    if not isinstance(table, xr.DataArray) or "region" not in table.dims or table.ndim > 2:
        raise InputError("region_map takes a (region,) or (region, d) table, as parcellate gives it")
    if atlas is None:
        atlas = table.attrs.get("atlas")
        if atlas is None or not user_path(atlas).is_file():
            raise InputError(
                f"the table's atlas ({atlas!r}) is not a file here: pass atlas= (the image the table was made with)"
            )
    img, path = _load(atlas)
    where = path if path is not None else "the atlas"
    labels = _atlas_volume(img, where)
    labels = np.where(np.isfinite(labels), np.rint(labels), table.attrs.get("background", 0)).astype(np.int64)
    regions = np.asarray(table["region"].values, dtype=np.int64)
    order = np.argsort(regions, kind="stable")
    index, inside = _region_index(labels, regions[order], int(table.attrs.get("background", 0)))
    if not inside.any():
        raise InputError(f"none of the table's regions is a label of {where}")
    space = MNI152_SPACE if mni_mismatch(img.affine, labels.shape) is None else "aligned"
    grid = Grid(inside, img.affine, space=space, name=str(where))
    _, _, _, _, coords = _target_voxels(grid)
    rows = order[index[tuple(grid.ijk.T)]]  # each voxel's row of the table
    coords["region"] = ("voxel", regions[rows])
    coords.update({name: c.values for name, c in table.coords.items() if c.ndim == 0})  # e.g. gene="APOE"
    kept = ("statistic", "strategy", "weighting")
    attrs = {k: table.attrs[k] for k in kept if k in table.attrs} | {"atlas": str(where)}
    other = next((d for d in table.dims if d != "region"), None)
    values = np.asarray(table.transpose("region", ...).values)
    if other is None:
        return xr.DataArray(values[rows], dims="voxel", coords=coords, name=table.name, attrs=attrs)
    if other in table.coords:
        coords[other] = table[other].values
    # columns computed a group at a time (64 MiB of voxels); dask's own fancy indexing would
    # cut the voxels into thousands of pieces, the rows being out of order
    columns = max(1, 2**26 // (len(rows) * values.itemsize))
    source = dsa.from_array(values, chunks=(-1, columns))
    lazy = source.map_blocks(lambda block: block[rows], chunks=((len(rows),), source.chunks[1]), dtype=values.dtype)
    return xr.DataArray(lazy, dims=("voxel", other), coords=coords, name=table.name, attrs=attrs)


def read_lut(lut) -> dict[int, str]:
    """An atlas's look-up table as ``{label: name}``.

    Parameters
    ----------
    lut : str, Path, pandas.DataFrame or mapping
        A table with columns ``index`` and ``name`` (a BIDS ``dseg.tsv``, tab-separated, or a
        ``.csv``; the format nilearn's ``NiftiLabelsMasker(lut=...)`` reads), a text file of
        whitespace-separated ``index name ...`` rows without a header, ``#`` starting a comment line
        (FreeSurfer's ``FreeSurferColorLUT.txt``, Schaefer's ``*_order.txt``), or of FSLeyes'
        ``value r g b name`` rows (its ``.lut`` files, which ``brainzarr export`` writes beside a
        label image), an FSL atlas
        description (``$FSLDIR/data/atlases/HarvardOxford-Cortical.xml``: for a probabilistic
        atlas, the names of its summary ``maxprob`` image, whose values are one more than the
        file's indices), or a mapping.

    Raises
    ------
    DataNotFoundError
        No file at the path.
    InputError
        Neither format, a label that is not an integer, or a label named twice.
    """
    if isinstance(lut, Mapping):
        pairs = list(lut.items())
    elif isinstance(lut, pd.DataFrame):
        if not {"index", "name"} <= set(lut.columns):
            raise InputError(f"a look-up table needs columns 'index' and 'name'; this one has {list(lut.columns)}")
        pairs = list(zip(lut["index"], lut["name"], strict=True))
    elif isinstance(lut, (str, Path)):
        pairs = _lut_file(user_path(lut))
    else:
        raise InputTypeError(f"lut must be a file, a DataFrame or a mapping, got {type(lut).__name__}")
    table: dict[int, str] = {}
    for label, name in pairs:
        try:
            number = float(label)
        except (TypeError, ValueError):
            number = np.nan
        if not np.isfinite(number) or number != np.rint(number):
            raise InputError(f"look-up table label {label!r} is not an integer")
        if int(number) in table:
            raise InputError(f"the look-up table names label {int(number)} twice")
        table[int(number)] = name.decode() if isinstance(name, bytes) else str(name)
    return table


def _lut_file(path: Path) -> list:
    """(label, name) rows of a look-up table file: a table with ``index`` and ``name`` columns,
    else FreeSurfer-style ``index name ...`` rows."""
    if not path.is_file():
        raise DataNotFoundError(f"no look-up table at {path}")
    if path.suffix.lower() == ".xml":
        return _fsl_atlas_labels(path)
    text = read_user_text(path, "a look-up table")
    try:
        frame = pd.read_csv(io.StringIO(text), sep="," if path.suffix.lower() == ".csv" else "\t", dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError):
        frame = pd.DataFrame()  # ragged rows: not a table with a header
    if {"index", "name"} <= set(frame.columns):
        return list(zip(frame["index"], frame["name"], strict=True))
    rows = []
    for line in text.splitlines():
        # a comment is a line of its own: a '#' inside a row is part of a name ("Area #1")
        fields = [] if line.lstrip().startswith("#") else line.split()
        if fields:
            if len(fields) < 2 or not fields[0].lstrip("-").isdigit():
                raise InputError(
                    f"{path} is not a look-up table: give columns 'index' and 'name' (a BIDS dseg.tsv), "
                    f"or rows 'index name ...' (FreeSurfer's); it has {line.strip()!r}"
                )
            rows.append((fields[0], " ".join(fields[4:]) if _fsleyes_row(fields) else fields[1]))
    if not rows:
        raise InputError(f"{path} is empty: a look-up table names the atlas's labels")
    return rows


def _fsleyes_row(fields: list[str]) -> bool:
    """Whether a row is FSLeyes' ``value r g b name`` (colours in [0, 1]; the name may hold
    spaces) rather than FreeSurfer's ``index name r g b a``, whose names are never numbers."""
    try:
        return len(fields) >= 5 and all(0 <= float(c) <= 1 for c in fields[1:4])
    except ValueError:
        return False


def _fsl_atlas_labels(path: Path) -> list:
    """(label, name) rows of an FSL atlas description (``$FSLDIR/data/atlases/*.xml``). Its
    ``<label index=...>`` is the voxel value in a "Label" atlas's image, and one less than it in
    the summary (max-probability) image of a "Probabilistic" atlas, as fslpy reads them; a
    ``value`` attribute, where a file gives one, is the voxel value itself."""
    import xml.etree.ElementTree as ElementTree

    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as exc:
        raise InputError(f"{path} is not an FSL atlas description: {exc}") from None
    kind = (root.findtext("header/type") or "").strip().lower()
    labels = root.findall("data/label")
    if root.tag != "atlas" or not labels or kind not in ("label", "probabilistic", "probabalistic"):
        raise InputError(
            f"{path} is not an FSL atlas description (<atlas> with a header type Label or Probabilistic "
            "and <data><label index=...>name</label>)"
        )
    shift = 0 if kind == "label" else 1  # "probabalistic": a spelling some of FSL's own files have
    rows = []
    for label in labels:
        given = label.get("value")
        index = label.get("index") if given is None else given
        if index is None:
            raise InputError(f"{path}: a <label> without an index: {ElementTree.tostring(label, 'unicode').strip()}")
        try:
            value = int(index) + (shift if given is None else 0)
        except ValueError:
            value = index  # read_lut names it: not an integer
        rows.append((value, (label.text or "").strip()))
    return rows


def _region_names(table: dict[int, str], regions: np.ndarray, where, stacklevel: int) -> np.ndarray:
    """Each region's name from the look-up table (``"unknown"``, with a warning, where it has none)."""
    unnamed = [int(r) for r in regions if int(r) not in table]
    if unnamed:
        shown = ", ".join(map(str, unnamed[:10])) + (" ..." if len(unnamed) > 10 else "")
        warnings.warn(
            f"{len(unnamed)} of {len(regions)} regions of {where} have no name in the look-up table "
            f"(named {UNKNOWN!r}): {shown}",
            stacklevel=stacklevel,
        )
    return np.array([table.get(int(r), UNKNOWN) for r in regions], dtype=str)


def _atlas_volume(img, where) -> np.ndarray:
    """The atlas's one 3-D volume, read once."""
    values = np.asanyarray(img.dataobj)
    if values.ndim == 4:
        if values.shape[3] != 1:
            raise InputError(
                f"{where} has {values.shape[3]} volumes; an atlas is one volume of integer labels (of a "
                "probabilistic atlas, its max-probability image: FSL's *-maxprob-thr25-2mm, say)"
            )
        values = values[..., 0]
    return values


def _atlas_labels(values: np.ndarray, where, background) -> np.ndarray:
    """The region labels (sorted) of an atlas volume, refusing one that is not a label image."""
    labels = np.unique(values[np.isfinite(values)])
    if not np.array_equal(labels, np.rint(labels)):
        raise InputError(f"{where} holds non-integer values; an atlas is an image of integer region labels")
    labels = labels.astype(np.int64)
    labels = labels[labels != background]
    if not len(labels):
        raise InputError(f"{where} has no region: every voxel is the background label {background}")
    return labels


def _region_index(labels: np.ndarray, regions: np.ndarray, background: int) -> tuple[np.ndarray, np.ndarray]:
    """(index into ``regions``, whether in a region) of integer ``labels``."""
    index = np.searchsorted(regions, labels)
    inside = (labels != background) & (index < len(regions))
    inside[inside] = regions[index[inside]] == labels[inside]
    return index, inside


#: what becomes of the store's voxels outside the atlas's field of view
_OUTSIDE = "their centres count in no region"


def _centre_weights(img, data, regions, background, where):
    """(regions x voxels) sparse: 1 where the label at a voxel's centre is the region's."""
    from scipy import sparse

    from .nifti import _check_overlap, _target_voxels

    ijk, affine, _, space, _ = _target_voxels(data)
    _check_overlap(img, img.shape, str(where), ijk, affine, space, check_space=False, outside=_OUTSIDE)
    with warnings.catch_warnings():  # warned of above, by the atlas's name
        warnings.filterwarnings("ignore", message=".*outside the field of view.*")
        labels = from_nifti(img, data, interpolation="nearest", name="region", check_space=False, labels=False).values
    labels = np.where(np.isnan(labels), background, np.rint(labels)).astype(np.int64)  # outside its view: none
    index, inside = _region_index(labels, regions, background)
    voxels = np.flatnonzero(inside)
    return sparse.csc_matrix(
        (np.ones(len(voxels), dtype=np.float32), (index[voxels], voxels)), shape=(len(regions), len(labels))
    )


def _volume_weights(img, values, data, regions, background, where):
    """(regions x voxels) sparse: the fraction of each voxel's volume in each region
    (:func:`brainzarr.nifti.sub_voxel_weights`)."""
    from scipy import sparse

    from .nifti import _check_overlap, _target_voxels, sub_voxel_weights

    ijk, affine, _, space, _ = _target_voxels(data)
    _check_overlap(img, values.shape, str(where), ijk, affine, space, check_space=False, outside=_OUTSIDE)
    n = len(ijk)
    rows, cols, vals = [], [], []
    for start, index, weight in sub_voxel_weights(ijk, affine, img.affine, values.shape):
        seen = weight > 0
        labels = np.full(seen.shape, background, dtype=np.int64)
        found = values[index[seen, 0], index[seen, 1], index[seen, 2]]
        labels[seen] = np.where(np.isfinite(found), np.rint(found), background) if found.dtype.kind == "f" else found
        region, inside = _region_index(labels, regions, background)
        voxel = np.broadcast_to(np.arange(start, start + len(seen))[:, None], seen.shape)
        pairs, pair_of = np.unique(region[inside] * n + voxel[inside], return_inverse=True)
        rows.append(pairs // n)
        cols.append(pairs % n)
        vals.append(np.bincount(pair_of, weights=weight[inside], minlength=len(pairs)).astype(np.float32))
    return sparse.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(regions), n)
    )


def _warn_of_nan_voxels(values: np.ndarray, empty: np.ndarray, regions: np.ndarray, where: str, stacklevel: int):
    """A NaN among a region's voxels makes its value NaN, as numpy's mean does: say so, or the
    NaN reads as a region of no voxel (NaN values come from a map read beyond its field of
    view, or an array masked with ``.where`` without ``drop=True``)."""
    lost = ~empty & np.isnan(values).any(axis=1)
    if lost.any():
        shown = ", ".join(map(str, regions[lost][:10])) + (" ..." if lost.sum() > 10 else "")
        warnings.warn(
            f"{lost.sum()} of {len(regions)} regions of {where} hold voxels whose values are NaN, so their "
            f"values are NaN: {shown}; to summarise the other voxels, leave the NaN ones out first "
            "(data.dropna('voxel'))",
            stacklevel=stacklevel,
        )


class _RegionStatistic:
    """Each region's ``strategy`` of the rows of a voxel array: the state of one row block
    (:meth:`of_block`), two states made one (:meth:`combine`), the table (:meth:`result`).

    A state holds only the regions its rows touch, ``(regions, *arrays)``: the regions sorted,
    each array a row per region. A row block of a compact atlas touches few of its regions.
    """

    def __init__(self, strategy: str, n_regions: int, n_columns: int):
        self.strategy, self.shape = strategy, (n_regions, n_columns)

    @property
    def _extreme(self):
        return {"minimum": np.minimum, "maximum": np.maximum}.get(self.strategy)

    def of_block(self, block: np.ndarray, weights) -> tuple:
        """The state of one block of rows; ``weights``: the sparse (regions x rows of the block)
        part of the region weights."""
        present, weights = _present(weights)
        if self._extreme is not None:
            return present, _region_extremes(block, weights, self._extreme)
        if self.strategy in ("mean", "sum"):
            return present, _region_sums(block, weights)
        return (present, *_region_moments(block, weights))

    def combine(self, a: tuple, b: tuple) -> tuple:
        """Two blocks' states as one."""
        regions = np.union1d(a[0], b[0])
        into_a, into_b = np.searchsorted(regions, a[0]), np.searchsorted(regions, b[0])
        empty = {"minimum": np.inf, "maximum": -np.inf}.get(self.strategy, 0)  # what a region of no rows holds
        merged = []
        for x, y in zip(a[1:], b[1:], strict=True):
            out = np.full((len(regions), *x.shape[1:]), empty, dtype=np.result_type(x, y))
            out[into_a] = x
            merged.append(out)
        if self._extreme is not None:
            merged[0][into_b] = self._extreme(merged[0][into_b], b[1])
        elif self.strategy in ("mean", "sum"):
            merged[0][into_b] += b[1]
        else:  # a region only in b has a weight of 0 in a: the update gives b's own part
            for out, part in zip(merged, _merge_moments(tuple(m[into_b] for m in merged), b[1:]), strict=True):
                out[into_b] = part
        return (regions, *merged)

    def result(self, state: tuple, counts: np.ndarray) -> np.ndarray:
        """(regions, columns) float64 from the whole pass's state; NaN for a region of no voxel
        (``counts`` 0)."""
        index, arrays = state[0], state[1:]
        values = np.full(self.shape, np.nan)
        if self._extreme is not None or self.strategy == "sum":
            values[index] = arrays[0]
        elif self.strategy == "mean":
            values[index] = arrays[0] / counts[index, None]
        else:
            total, _, squares = arrays
            values[index] = squares / total[:, None]
            if self.strategy == "standard_deviation":
                values = np.sqrt(values)
        return values


#: the values of a block that a statistic gathers (and makes float64) at a time (64 MiB)
_WORK_VALUES = 2**23


def _present(weights):
    """The regions (rows of the sparse regions x rows-of-a-block ``weights``) with some weight
    in the block, and their rows of the weights (csr)."""
    weights = weights.tocsr(copy=True)
    weights.eliminate_zeros()  # a share that rounded to 0 in float32 is no part of the region
    present = np.flatnonzero(np.diff(weights.indptr))
    return present, weights[present]


def _region_sums(block: np.ndarray, weights) -> np.ndarray:
    """(regions, d) float64: the weighted rows of ``block`` added up region by region;
    ``weights``: csr (regions x rows of the block), each region with some weight.

    No copy of the block: float32 products over a block's rows, added up in float64 from block
    to block. A float32 sum of many rows errs: a region's mean by up to ~3e-5 relative over
    131,072 rows in one block (test), about the stored values' own step (1/65,535). Products in
    float64 cost 60 % more time (4 mm, all genes).
    """
    return np.asarray(weights @ np.asarray(block, dtype=np.float32), dtype=np.float64)


def _region_moments(block: np.ndarray, weights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each region's total weight (regions,), weighted mean and weighted sum of squared
    deviations from that mean (regions, d), in float64, a few columns at a time; ``weights`` as
    for :func:`_region_sums`.

    The values are taken relative to the region's first row in the block: a region whose values
    are all alike has a variance of exactly 0, and large values' squares do not swamp a small
    variance (``E[x^2] - E[x]^2`` gave a constant region a standard deviation of ~1e-7).
    """
    from scipy import sparse

    starts, runs = weights.indptr[:-1], np.diff(weights.indptr)
    total = np.add.reduceat(weights.data.astype(np.float64), starts)
    # the weights over their own entries (regions x entries): its products add each region's run
    # of gathered rows, as a reduceat would, several times faster
    runs_of = sparse.csr_matrix(
        (weights.data.astype(np.float64), np.arange(weights.nnz), weights.indptr), shape=(len(starts), weights.nnz)
    )
    rows = weights.indices
    means = np.empty((len(starts), block.shape[1]))
    squares = np.empty_like(means)
    step = max(1, _WORK_VALUES // max(1, 2 * weights.nnz))
    for a in range(0, block.shape[1], step):
        cols = slice(a, a + step)
        shift = block[rows[starts], cols]
        # (entries, columns), region by region; the differences in float64
        deviations = np.subtract(block[rows, cols], np.repeat(shift, runs, axis=0), dtype=np.float64)
        sums = runs_of @ deviations
        deviations *= deviations
        means[:, cols] = sums / total[:, None]
        squares[:, cols] = np.maximum(runs_of @ deviations - sums * means[:, cols], 0.0)
        means[:, cols] += shift  # float32 values: exact in float64
    return total, means, squares


def _merge_moments(a: tuple, b: tuple) -> tuple:
    """Two parts' (weight, mean, squared deviations) of the same regions as one (Chan, Golub and
    LeVeque's pairwise update): exact where both parts' means are equal, as a constant region's are."""
    total = a[0] + b[0]
    delta = b[1] - a[1]
    share = (b[0] / total)[:, None]
    return total, a[1] + delta * share, a[2] + b[2] + delta * delta * (a[0][:, None] * share)


def _region_extremes(block: np.ndarray, weights, reduce) -> np.ndarray:
    """(regions, d): ``reduce`` (``np.minimum``, ``np.maximum``) of the rows of ``block`` that
    have some weight in each region, a few columns at a time; ``weights`` as for :func:`_region_sums`."""
    starts = weights.indptr[:-1]  # each region's run of rows
    out = np.empty((len(starts), block.shape[1]), dtype=block.dtype)
    step = max(1, _WORK_VALUES // max(1, weights.nnz))
    for a in range(0, block.shape[1], step):
        gathered = block[weights.indices, a : a + step]  # (weights, columns): each region's rows, region by region
        out[:, a : a + step] = reduce.reduceat(gathered, starts, axis=0)
    return out
