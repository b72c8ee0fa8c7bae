"""A region x gene table plus its atlas: what ``abagen.get_expression_data`` returns.

The table is a CSV (or a tab-separated ``.tsv``, as BIDS writes tables) whose first column is
the atlas label (abagen writes it as ``label``) and whose other columns are genes (a
``region_name`` column, which ``brainzarr parcellate --lut`` writes, is left out); the atlas is
a NIfTI of integer labels in MNI space.
Every voxel of the build's mask that lies in a labelled region takes its region's row.

Nothing is dropped or renamed silently: a label twice in the table, a gene column twice, an
atlas that is evidently not in MNI space, and atlas regions without values (no table row, or
abagen's all-NaN row for a region no sample reached) each stop the load with one line naming
them. ``missing_regions="drop"`` leaves such regions' voxels out of the store instead; the
choice is recorded with the source's options in the store's provenance.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .._atomic import sidecar_path
from .._location import user_path
from .._text import read_user_text
from .._validation import did_you_mean
from .._volumes import checked_volume, load_volume
from ..exceptions import DataNotFoundError, InputError
from .table import make_sample_table, resolve_genes

__all__ = ["load_parcellated", "atlas_on_grid", "table_delimiter", "MISSING_REGIONS"]

#: what to do with atlas regions that have no values in the table
MISSING_REGIONS = ("error", "drop")
#: a column of region names in the table, not a gene (``brainzarr parcellate --lut`` writes it)
REGION_NAME = "region_name"


def _shown(values, n: int = 8) -> str:
    values = list(values)
    return ", ".join(map(str, values[:n])) + (f" ... ({len(values)} in all)" if len(values) > n else "")


def table_delimiter(path) -> str:
    """A region table's delimiter by its name: a tab for ``.tsv`` (BIDS), else a comma."""
    return "\t" if Path(path).suffix.lower() == ".tsv" else ","


def _read_table(path) -> pd.DataFrame:
    """The CSV (or TSV), refusing duplicated gene columns (pandas would rename the second APOE
    to APOE.1). A CSV separated by semicolons, with decimal commas or not, is read as Excel
    writes one in locales whose decimal mark is a comma."""
    sep = table_delimiter(path)
    text = read_user_text(path, "a region table")
    first = text.split("\n", 1)[0]
    if sep not in first and ";" in first:  # a CSV as Excel writes it where the decimal mark is a comma
        sep = ";"
    decimal = "," if sep == ";" and re.search(r"\d,\d", text) else "."
    header = next(csv.reader(io.StringIO(text, newline=""), delimiter=sep), [])[1:]
    seen, dupes = set(), []
    for name in (h.strip() for h in header):
        if name in seen:
            dupes.append(name)
        seen.add(name)
    if dupes:
        raise InputError(f"the region table {path} has gene columns more than once: {_shown(sorted(set(dupes)))}")
    try:
        return pd.read_csv(io.StringIO(text), index_col=0, sep=sep, decimal=decimal)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        kind = {",": "comma", ";": "semicolon", "\t": "tab"}[sep]
        raise InputError(f"the region table {path} is not a {kind}-separated table: {exc}") from None


def _not_labels(frame: pd.DataFrame) -> str:
    """Why a table's first column is not a column of atlas labels (and whether the table looks
    transposed: genes down its first column, labels across its header)."""
    why = "the region table's first column must hold the atlas's integer labels"
    header = pd.to_numeric(pd.Index(frame.columns).astype(str), errors="coerce")
    if len(header) and np.all(np.isfinite(header)) and np.allclose(header, np.rint(header)):
        return f"{why}; its header holds integers instead: is it genes x regions? transpose it (DataFrame.T)"
    return why


def _strategy_of(table) -> str | None:
    """The statistic a region table holds, where ``brainzarr parcellate``'s sidecar says it."""
    try:
        record = json.loads(sidecar_path(table).read_text())
    except (OSError, ValueError):  # no sidecar, or one that is not JSON: nothing is said
        return None
    return record.get("strategy") if isinstance(record, dict) else None


def _refuse_other_statistics(strategy, name) -> None:
    if strategy not in (None, "mean"):
        raise InputError(
            f"the region table {name} holds each region's {str(strategy).replace('_', ' ')}, not its mean; "
            "a parcellated store is built from region means"
        )


def _load_atlas(atlas):
    if isinstance(atlas, (str, Path)):
        if not user_path(atlas).exists():
            raise DataNotFoundError(f"atlas file not found: {atlas}")
        return load_volume(atlas)
    return checked_volume(atlas, "the atlas")


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


def load_parcellated(table, atlas, *, genes=None, missing_regions: str = "error") -> xr.Dataset:
    """Read a region x gene table and its atlas as a sample table of regions.

    Parameters
    ----------
    table : str, Path or pandas.DataFrame
        Regions in rows (index or first column: the atlas label), genes in columns: a DataFrame,
        or a file of comma-separated values (tab-separated if its name ends in ``.tsv``).
    atlas : str, Path or Nifti1Image
        Integer-labelled atlas in MNI space.
    genes : None, int, str or list of str
    missing_regions : {'error', 'drop'}
        Atlas regions with no values in the table (no row, or an all-NaN row): stop naming them
        (default), or leave their voxels out of the store.

    Raises
    ------
    InputError
        A table of another statistic than the mean (as the JSON sidecar that
        ``brainzarr parcellate`` writes beside its CSV says), a duplicated label or gene column,
        regions without values (unless dropped), an atlas that is not in MNI space, or table
        labels absent from the atlas.

    Returns
    -------
    xarray.Dataset
        A sample table whose samples are regions (coordinate ``label``; x, y, z = the
        region's centroid), with ``attrs['atlas']`` and ``attrs['region_labels']``.
    """
    if isinstance(table, (str, Path)):
        if not user_path(table).exists():
            raise DataNotFoundError(f"region table not found: {table}")
        _refuse_other_statistics(_strategy_of(table), table)
        frame = _read_table(table)
        table_name = str(table)
    else:
        frame = table
        table_name = "DataFrame"
        _refuse_other_statistics(frame.attrs.get("strategy"), table_name)
    frame = frame.drop(columns=[REGION_NAME], errors="ignore")
    try:
        labels = np.asarray(frame.index, dtype=float)
    except (TypeError, ValueError):
        raise InputError(_not_labels(frame)) from None
    if not np.all(np.isfinite(labels)) or not np.allclose(labels, np.rint(labels)):
        raise InputError(_not_labels(frame))
    if missing_regions not in MISSING_REGIONS:
        raise InputError(
            f"missing_regions must be one of {', '.join(MISSING_REGIONS)}, got {missing_regions!r}"
            f"{did_you_mean(missing_regions, MISSING_REGIONS)}"
        )
    labels = np.rint(labels).astype(np.int64)
    values, counts = np.unique(labels, return_counts=True)
    if (counts > 1).any():
        raise InputError(f"the region table has labels more than once: {_shown(values[counts > 1])}")
    if frame.columns.duplicated().any():
        dupes = frame.columns[frame.columns.duplicated()]
        raise InputError(f"the region table has gene columns more than once: {_shown(dupes)}")
    frame = frame.apply(pd.to_numeric, errors="coerce")
    img = _load_atlas(atlas)
    from ..grid import MNI152_SPACE
    from ..nifti import refuse_if_not_mni

    refuse_if_not_mni(img.affine, img.shape, f"the atlas {atlas}", MNI152_SPACE)
    data = np.rint(np.nan_to_num(np.asarray(img.dataobj))).astype(np.int64)
    if data.ndim == 4:
        data = data[..., 0]
    atlas_labels = np.setdiff1d(np.unique(data), [0])
    empty = frame.isna().all(axis=1).to_numpy()
    without = np.union1d(np.setdiff1d(atlas_labels, labels), np.intersect1d(labels[empty], atlas_labels))
    if len(without) and missing_regions == "error":
        raise InputError(
            f"{len(without)} atlas region(s) have no values in the table: {_shown(without)}",
            options={"missing_regions": "drop"},
        )
    if empty.any():
        frame, labels = frame[~empty], labels[~empty]
    if frame.isna().to_numpy().any():
        bad = frame.columns[frame.isna().any()].tolist()
        raise InputError(f"the region table has missing values in {len(bad)} gene(s), e.g. {bad[:3]}")
    gene_names = resolve_genes(genes, [str(c) for c in frame.columns])
    centroids = np.full((len(labels), 3), np.nan)
    for row, lab in enumerate(labels):
        ijk = np.argwhere(data == lab)
        if len(ijk):
            centroids[row] = (ijk.mean(axis=0) @ img.affine[:3, :3].T) + img.affine[:3, 3]
    missing = np.isnan(centroids[:, 0])
    if missing.any():
        raise InputError(
            f"{int(missing.sum())} label(s) of the table do not occur in the atlas: {_shown(labels[missing])}"
        )
    out = make_sample_table(
        frame[gene_names].to_numpy(dtype=np.float32),
        gene_names,
        centroids,
        donor=np.full(len(labels), "all"),
        structure=np.full(len(labels), "region"),
        sample_id=labels,
        source="parcellated",
        options={"table": table_name, "atlas": str(atlas), "missing_regions": missing_regions},
    )
    out = out.assign_coords(label=("sample", labels))
    out.attrs["atlas"] = str(atlas) if isinstance(atlas, (str, Path)) else atlas
    out.attrs["region_labels"] = True
    return out
