"""Reconstruction error of the fitted representations: tidy tables and streamed statistics.

The table is an ``xarray.DataArray`` ``rmse (method, dim, resolution_mm, split, set)``:
``split`` is the split scheme a model was fitted under ('random' or 'blocked'), ``set`` is
'train' or 'test'. Missing combinations are NaN (a method or dim not fitted; t-SNE and UMAP
are reconstructed through their learned decoder). RMSE comes from each group's ``rmse (split)``
when present, else it is computed by streaming ``reconstruction`` against ``expression`` (chunk
by chunk).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .._atomic import write_file, write_text
from .._location import user_path
from ..models.base import row_sse
from ..store import as_store, open_store, read_group, resolve_group, write_group
from ..streaming import RowBlockReader, compute_tasks, expression_rows, iter_row_blocks, reusing_buffers
from .results import find_representations, split_labels

__all__ = [
    "reconstruction_table",
    "reconstruction_frame",
    "to_markdown",
    "streamed_rmse",
    "reconstruction_histogram",
    "save_reconstruction_table",
]

SETS = ("train", "test")
#: how the two readings of a t-SNE or UMAP error are labelled in tables and figures
READING_LABELS = {"knn": "kNN: neighbourhood", "mlp": "MLP: compression"}


def _pairs(store, group: str, ds: xr.Dataset):
    """Yield (rows, expression block, reconstruction block) over the voxels, streamed.

    Both arrays are read in whole-row blocks of the store's row chunks, so each chunk is
    decoded once (blocks smaller than a chunk decoded every chunk several times).
    """
    rec = read_group(store, group)["reconstruction"]
    rec = rec.transpose("voxel", "gene")
    expr = ds["expression"]
    if "gene" in rec.coords and not np.array_equal(rec["gene"].values, expr["gene"].values):
        expr = expr.sel(gene=rec["gene"].values)
    rows = np.asarray(rec["voxel"].values) if "voxel" in rec.coords else np.arange(rec.sizes["voxel"])
    if not np.array_equal(rows, np.arange(len(rows))) or len(rows) != ds.sizes["voxel"]:
        expr = expr.isel(voxel=rows)
    same_layout = expr.shape == rec.shape and expr.data.chunks[0] == rec.data.chunks[0]
    if same_layout and expr.name == "expression" and np.array_equal(expr["gene"].values, ds["gene"].values):
        X, R = expression_rows(store), expression_rows(store, variable=f"{group.strip('/')}/reconstruction")
    else:  # a subset of voxels or genes: through dask, in the expression's row chunks
        X, R = expr.data, rec.data.rechunk({0: expr.data.chunks[0]})
    start = 0
    for x, r in zip(iter_row_blocks(X), iter_row_blocks(R), strict=True):
        yield rows[start : start + len(x)], x, r
        start += len(x)


def streamed_rmse(store, group: str, labels, ds: xr.Dataset | None = None) -> dict:
    """RMSE of a group's reconstruction per label ('train', 'test', ...), in one streamed pass.

    When the reconstruction covers the store's voxels and genes, the pass is one task per row
    block (both arrays' readers and the block's labels: coordinates, never data), run on the
    current dask.distributed client when there is one, else on local threads.
    """
    ds = open_store(store) if ds is None else ds
    group = resolve_group(as_store(store), group)
    labels = np.asarray(labels).astype(str)
    names = sorted(set(labels))
    tasks = _sse_tasks(store, group, ds, labels, names)
    if tasks is not None:
        parts = compute_tasks(tasks, desc=f"reconstruction RMSE of {group}")
        sse = {n: sum(p[0][n] for p in parts) for n in names}
        count = {n: sum(p[1][n] for p in parts) for n in names}
        return {n: float(np.sqrt(sse[n] / count[n])) if count[n] else np.nan for n in names}
    sse = dict.fromkeys(names, 0.0)
    count = dict.fromkeys(names, 0)
    for rows, x, r in _pairs(store, group, ds):
        err = row_sse(r, x)
        for name in names:
            sel = labels[rows] == name
            sse[name] += float(err[sel].sum())
            count[name] += int(sel.sum()) * x.shape[1]
    return {n: float(np.sqrt(sse[n] / count[n])) if count[n] else np.nan for n in names}


def _sse_tasks(store, group: str, ds: xr.Dataset, labels, names):
    """One task per row block when the reconstruction has the expression's voxels and genes."""
    import dask

    rec = read_group(store, group)["reconstruction"]
    if rec.dims != ("voxel", "gene") or rec.shape != ds["expression"].shape:
        return None
    if "gene" in rec.coords and not np.array_equal(rec["gene"].values, ds["gene"].values):
        return None
    path = as_store(store).path
    expr = RowBlockReader(path / "expression")
    recon = RowBlockReader(path / group.strip("/") / "reconstruction")
    n, rows = expr.shape[0], int(expr.array.chunks[0])
    task = dask.delayed(_block_sse, pure=True)
    return [task(expr, recon, a, min(a + rows, n), labels[a : min(a + rows, n)], names) for a in range(0, n, rows)]


def _block_sse(expr, recon, a: int, b: int, labels, names):
    err = row_sse(recon(a, b), expr(a, b))
    width = expr.shape[1]
    return (
        {name: float(err[labels == name].sum()) for name in names},
        {name: int((labels == name).sum()) * width for name in names},
    )


def reconstruction_histogram(
    store,
    group: str,
    *,
    subset=None,
    bins: int = 100,
    value_range=(0.0, 1.0),
    ds: xr.Dataset | None = None,
    return_voxel_rmse: bool = False,
):
    """2-D histogram of (original, reconstructed) values, streamed; ``subset``: bool per voxel.

    Returns ``(counts, edges)``, and with ``return_voxel_rmse`` also each voxel's RMSE over the
    genes (every voxel, whatever ``subset``), as a ``(voxel,)`` DataArray with the store's voxel
    coordinates, from the same pass (NaN where the reconstruction has no row).
    """
    ds = open_store(store) if ds is None else ds
    counts = np.zeros((bins, bins), dtype=np.int64)
    edges = np.linspace(value_range[0], value_range[1], bins + 1)
    voxel_rmse = np.full(ds.sizes["voxel"], np.nan, dtype=np.float32) if return_voxel_rmse else None
    for rows, x, r in _pairs(store, group, ds):
        if voxel_rmse is not None:
            voxel_rmse[rows] = np.sqrt(row_sse(r, x) / x.shape[1])
        if subset is not None:
            keep = np.asarray(subset)[rows]
            x, r = x[keep], r[keep]
        h, _, _ = np.histogram2d(x.ravel(), r.ravel(), bins=(edges, edges))
        counts += h.astype(np.int64)
    if voxel_rmse is None:
        return counts, edges
    coords = {c: ds[c] for c in ("voxel", "i", "j", "k", "x", "y", "z") if c in ds.coords}
    return counts, edges, xr.DataArray(voxel_rmse, dims=("voxel",), coords=coords, name="voxel_rmse")


def _table_one(store, methods=None, dims=None) -> xr.DataArray:
    ds = open_store(store)
    resolution = float(ds.attrs["resolution_mm"])
    records = {}
    for rep in find_representations(store, methods=methods, dims=dims, require=None):
        if "rmse_by_decoder" in rep.variables:  # t-SNE / UMAP: both readings, labelled
            scheme = rep.split_scheme or "unknown"
            r = read_group(store, rep.group)["rmse_by_decoder"].load()
            for decoder in r["decoder"].values.astype(str):
                values = {s: float(r.sel(decoder=decoder, split=s)) for s in SETS if s in r["split"].values}
                records[(f"{rep.method} ({READING_LABELS.get(decoder, decoder)})", rep.dim, scheme)] = values
            continue
        if "rmse" in rep.variables:
            r = read_group(store, rep.group)["rmse"].load()
            values = {s: float(r.sel(split=s)) for s in SETS if s in r["split"].values}
        elif "reconstruction" in rep.variables and rep.split_scheme is not None:
            values = streamed_rmse(store, rep.group, split_labels(ds, rep.split_scheme), ds)
        else:
            continue
        scheme = rep.split_scheme or "unknown"
        records[(rep.method, rep.dim, scheme)] = values
    methods_ = sorted({k[0] for k in records})
    dims_ = sorted({k[1] for k in records})
    schemes = sorted({k[2] for k in records})
    data = np.full((len(methods_), len(dims_), 1, len(schemes), len(SETS)), np.nan)
    for (m, d, s), values in records.items():
        for n, name in enumerate(SETS):
            data[methods_.index(m), dims_.index(d), 0, schemes.index(s), n] = values.get(name, np.nan)
    return xr.DataArray(
        data,
        dims=("method", "dim", "resolution_mm", "split", "set"),
        coords={
            "method": methods_,
            "dim": np.asarray(dims_, dtype=np.int64),
            "resolution_mm": [resolution],
            "split": schemes,
            "set": list(SETS),
        },
        name="rmse",
        attrs={"store": str(store)},
    )


def reconstruction_table(stores, *, methods=None, dims=None) -> xr.DataArray:
    """RMSE of every fitted representation in one or several stores (e.g. 8 mm and 4 mm).

    Returns ``rmse (method, dim, resolution_mm, split, set)``; empty (size 0) when no store holds
    a representation with a reconstruction.
    """
    single = isinstance(stores, (str, Path)) or hasattr(stores, "fs") or type(stores).__name__ == "Store"
    stores = [stores] if single else list(stores)
    with reusing_buffers():  # one pass per representation: the reader's blocks serve them all
        tables = [_table_one(s, methods, dims) for s in stores]
    if len(tables) == 1:
        return tables[0]
    out = xr.concat(tables, dim="resolution_mm", join="outer")
    out.attrs = {"stores": ", ".join(map(str, stores))}
    return out


def reconstruction_frame(table: xr.DataArray) -> pd.DataFrame:
    """The table as tidy rows: ``method, dim, resolution_mm, split, train_rmse, test_rmse``."""
    if table.size == 0:
        return pd.DataFrame(columns=["method", "dim", "resolution_mm", "split", "train_rmse", "test_rmse"])
    frame = table.to_series().unstack("set")
    frame = frame.rename(columns={s: f"{s}_rmse" for s in SETS}).dropna(how="all").reset_index()
    frame.columns.name = None
    return frame[["method", "dim", "resolution_mm", "split", "train_rmse", "test_rmse"]]


def to_markdown(frame: pd.DataFrame, floatfmt: str = ".4f") -> str:
    """A GitHub-style Markdown table of a DataFrame (no extra dependency)."""

    def cell(v):
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else format(v, floatfmt)
        return str(v)

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    align = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(frame[c]) else "---" for c in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, align, *rows])


def save_reconstruction_table(store, table: xr.DataArray, out_dir=None) -> dict:
    """Write the table into the store (``evaluation/reconstruction``; not when ``store`` is None) and,
    with ``out_dir``, as ``reconstruction.csv`` and ``reconstruction.md``. Returns the paths written."""
    written = {}
    if table.size and store is not None:
        write_group(store, "evaluation/reconstruction", table.to_dataset(name="rmse"), overwrite=True)
        written["store"] = f"{store}/evaluation/reconstruction"
    if out_dir is not None and table.size:
        out_dir = user_path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        frame = reconstruction_frame(table)
        write_file(out_dir / "reconstruction.csv", lambda tmp: frame.to_csv(tmp, index=False))
        write_text(out_dir / "reconstruction.md", to_markdown(frame) + "\n")
        written.update(csv=out_dir / "reconstruction.csv", markdown=out_dir / "reconstruction.md")
    return written
