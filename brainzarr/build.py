"""Samples -> voxels -> store: the out-of-core, resumable build.

The build is two dask passes over blocks of voxel rows (one store chunk of rows each):

1. **statistics**: every block computes its raw voxel values (``W @ samples``, see
   :mod:`brainzarr.assign`) and returns the tails of each gene; a tree of merges turns them
   into exact clamp percentiles (:class:`~brainzarr.preprocess.TailAccumulator`).
2. **write**: every block recomputes its raw values, clamps and scales them to [0, 1] and
   writes its whole row of chunks, then marks itself done in ``build_chunk_done``.

The per-block computation is a *block source*: ``prepare(block)`` gets a dict with the block's
voxel ``xyz``, ``hemisphere`` and atlas ``labels`` and returns a state (for
:class:`~brainzarr.assign.Assignment`, the sparse weights); ``compute(state, values,
gene_slice)`` returns the block's raw values for a slice of genes, where ``values`` is the
sample table's (samples, genes) matrix. Other block sources (an INR) plug in the same way.

Each task owns whole chunks (no two writers share one; misaligned writes lose data:
zarr-python #3682, xarray #8371), chunk files are written atomically by zarr's local store,
and a block is marked done only after all its chunks are written. Running the same build
again skips finished blocks, so an interrupted build resumes and ends with the same bytes.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import inspect
import json
import logging
import warnings
from importlib import metadata
from pathlib import Path
from typing import Protocol, runtime_checkable

import dask
import numpy as np
import xarray as xr

from ._atomic import atomic_directory
from ._deprecation import renamed_kwargs
from ._disk import require_free
from ._location import is_remote, location, open_group, task_path, zarr_store
from ._progress import job
from ._validation import SEED, SPLIT_SYNONYMS, Bound, checked, did_you_mean, whole_number
from ._zarr import every_chunk, quiet_zarr
from .assign import Assignment, check_assignment
from .exceptions import InputError, StoreError, StoreExistsError
from .grid import Grid, grid_from_mask, mni152_grid
from .layout import Layout
from .nifti import refuse_if_not_mni
from .options import set_options
from .preprocess import (
    SPLIT_SCHEMES,
    TailAccumulator,
    check_fraction,
    check_percentiles,
    clamp_scale,
    default_block_mm,
    default_buffer_mm,
    make_split,
    merge_tails,
)
from .sources import SOURCES, check_options, load_source
from .sources.table import gene_request, resolve_genes, validate_sample_table, warn_of_samples_outside_the_brain
from .store import (
    SCHEMA_VERSION,
    _exists,
    atomic_prefix,
    check_schema,
    consolidate,
    list_groups,
    removable_store,
    remove_tree,
    store_lock,
)
from .streaming import compute_tasks

__all__ = ["build_store", "BlockSource", "StoreExistsError", "DEFAULT_CHUNKS"]

log = logging.getLogger(__name__)

#: (voxels, genes) per chunk: 4096 x 128 float32 = 2 MB. A row batch of 4096 voxels reads one
#: row of chunks; a gene's whole-brain map reads one column (n_voxels / 4096 chunks).
DEFAULT_CHUNKS = (4096, 128)
_MERGE_FANIN = 8
#: bytes of one block's per-gene tails in the percentile pass (bounds its memory)
_TAIL_BYTES = 4 * 2**20


@runtime_checkable
class BlockSource(Protocol):
    """How a build computes the raw values of a block of voxels (see the module docstring).

    :class:`~brainzarr.assign.Assignment` is one; a fitted INR
    (:class:`~brainzarr.inr.render.INRBlockSource`) is another.
    """

    def prepare(self, block: dict):
        """State for one block: ``block`` holds the voxels' ``xyz``, ``hemisphere`` and atlas ``labels``."""

    def compute(self, state, values: np.ndarray, gene_slice: slice) -> np.ndarray:
        """The block's raw (voxels, genes) float32 values for a slice of genes."""

    def provenance(self) -> dict:
        """What the build records about this source (JSON)."""


def _versions() -> dict:
    out = {}
    for pkg in ("brainzarr", "numpy", "scipy", "xarray", "zarr", "dask", "abagen", "nilearn", "nibabel", "pandas"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


#: build_store's own parameters: a source option close to one is a misspelling of it
_BUILD_PARAMETERS = (
    "source", "resolution", "mask", "genes", "assignment", "n_neighbors", "same_hemisphere", "split",
    "test_fraction", "block_mm", "buffer_mm", "random_state", "clamp_percentiles", "chunks", "layout",
    "storage_options", "client", "overwrite", "discard_results", "progress",
)  # fmt: skip


def _own_table(table: xr.Dataset, genes, source_options: dict) -> xr.Dataset:
    """A sample table given as the source, with the genes asked for: ``genes=`` and a source's
    options were ignored for it (a store of all the table's genes, ``data_dir=`` unused)."""
    if source_options:
        names = sorted(source_options)
        raise InputError(
            f"a sample table given as source takes no source options ({', '.join(names)}); they are for "
            f"the sources named {', '.join(SOURCES)}{did_you_mean(names[0], _BUILD_PARAMETERS)}"
        )
    validate_sample_table(table)
    return table if genes is None else table.sel(gene=resolve_genes(genes, table["gene"].values))


@renamed_kwargs(k="n_neighbors", seed="random_state")
def build_store(
    out,
    *,
    source: str | xr.Dataset = "synthetic",
    resolution: int = 8,
    mask=None,
    genes=None,
    assignment: str = "nearest",
    n_neighbors: int = 10,
    same_hemisphere: bool = False,
    split: str = "random",
    test_fraction: float = 0.2,
    block_mm: float | None = None,
    buffer_mm: float | None = None,
    random_state: int = 0,
    clamp_percentiles=(0.01, 99.9),
    chunks=DEFAULT_CHUNKS,
    layout=None,
    storage_options: dict | None = None,
    client=None,
    overwrite: bool = False,
    discard_results: bool = False,
    progress: bool | None = None,
    **source_options,
) -> Path:
    """Build (or resume building) a voxel x gene store.

    Parameters
    ----------
    out : str or Path
        The store to write (a directory, e.g. ``store/s8.zarr``).
    source : {'synthetic', 'abagen', 'parcellated'} or xarray.Dataset
        Where sample-level expression comes from, or a sample table (see
        :mod:`brainzarr.sources.table`).
    resolution : int
        Grid spacing in mm of nilearn's MNI152 brain mask (ignored when ``mask`` is given).
    mask : str, Path or Nifti1Image, optional
        A mask NIfTI in MNI space defining the voxels instead.
    genes : None, int, str, list of str or path
        All genes, n evenly spaced genes, or these symbols (comma-separated string, list, or a
        :class:`~pathlib.Path` to a text file of symbols; the store records the symbols).
    assignment : {'nearest', 'idw'} or block source
        How voxels take sample values ('atlas' is used for parcellated sources), or an object
        with ``prepare(block) -> state``, ``compute(state, values, gene_slice) -> (n, g)
        float32`` and ``provenance() -> dict`` (see the module docstring).
    n_neighbors : int
        Neighbours of 'idw'.
    same_hemisphere : bool
        Voxels take values only from samples of their own hemisphere.
    split : {'random', 'blocked'}
        Which split the ``split`` coordinate holds (both are stored as ``split_random`` and
        ``split_blocked``).
    test_fraction : float
        Size of the test set.
    block_mm, buffer_mm : float, optional
        The blocked split: edge of its cubes, and the buffer around test cubes whose voxels are in
        neither set (default 48 and 16 mm, at least 6 and 1 voxels: measured, see
        ``docs/design.md``).
    random_state : int
        Seeds the synthetic source and the splits; recorded in provenance (``seed``).
    clamp_percentiles : (float, float)
        Per-gene clamp before scaling to [0, 1].
    chunks : (int, int)
        Chunk shape (voxels, genes) of ``expression``.
    storage_options : dict, optional
        For a store at a URL (``s3://bucket/x.zarr``): fsspec options such as ``endpoint_url``,
        ``key``, ``secret`` (credentials otherwise come from the environment).
    layout : Layout, dict or {'uint16', 'float32'}, optional
        How ``expression`` is stored (:class:`brainzarr.layout.Layout`; default: packed
        ``uint16`` + zstd + crc32c, shards of 2,048 genes per row block).
    client : distributed.Client, optional
        Run the passes on this cluster (as :func:`brainzarr.set_options`; default: the current
        client, if any).
    overwrite : bool
        Replace an existing store built with other settings. Only a brainzarr store holding
        nothing but what brainzarr writes is ever removed (never another folder, the current
        directory or a parent of it). With the same settings nothing is rebuilt.
    discard_results : bool
        With ``overwrite``: also when the store holds fitted results (they are removed with it).
    progress : bool, optional
        Progress bars for this call (as :func:`brainzarr.set_options`).
    **source_options
        Passed to the source (e.g. ``data_dir``, ``donors`` for 'abagen'; ``table``,
        ``atlas`` for 'parcellated').

    Returns
    -------
    Path
        The store, ready for :func:`brainzarr.open_store`.

    Raises
    ------
    StoreExistsError
        The output exists and may not be replaced (see ``overwrite``, ``discard_results``).
    StoreLockedError
        Another process is building (or fitting) the store.

    Notes
    -----
    ``k=`` and ``seed=`` (now ``n_neighbors`` and ``random_state``) still work for this release,
    with a FutureWarning.
    """
    seed = whole_number(random_state, "random_state", hint=SEED)
    chunks = _check_settings(split, assignment, n_neighbors, test_fraction, chunks)
    clamp_percentiles = check_percentiles(clamp_percentiles)
    # float() took "48" and True as millimetres
    checked(block_mm, "block_mm", Bound(0, low_open=True, none=True))
    checked(buffer_mm, "buffer_mm", Bound(0, none=True))
    layout = Layout.from_spec(layout)
    if isinstance(source, str) and source in SOURCES:  # a misspelt parameter of build_store: named as such
        check_options(source, source_options, also=_BUILD_PARAMETERS)
    genes = gene_request(genes)
    out = location(out, storage_options)
    grid = grid_from_mask(mask) if mask is not None else mni152_grid(resolution)
    if mask is not None:  # the samples' coordinates are MNI millimetres
        refuse_if_not_mni(grid.affine, grid.shape, f"the mask {grid.name}", grid)
    if isinstance(source, xr.Dataset):
        samples = _own_table(source, genes, source_options)
    else:
        samples = load_source(source, genes=genes, random_state=seed, **source_options)
    voxel_labels = None
    if "region_labels" in samples.attrs:  # a region table: every voxel takes its region's row
        _refuse_what_a_region_table_ignores(assignment, n_neighbors, same_hemisphere)
        grid, voxel_labels = _restrict_to_atlas(grid, samples)
        assign = Assignment("atlas", region_labels=samples["label"].values)
    elif not isinstance(assignment, str):
        assign = assignment  # a block source of its own (e.g. a fitted INR), see the module docstring
    else:
        if assignment == "atlas":
            raise InputError("assignment 'atlas' is for region tables (source='parcellated')")
        warn_of_samples_outside_the_brain(samples, stacklevel=3)  # past renamed_kwargs
        assign = Assignment(
            assignment,
            np.column_stack([samples[c].values for c in "xyz"]),
            samples["hemisphere"].values,
            n_neighbors=n_neighbors,
            same_hemisphere=same_hemisphere,
            affine=grid.affine,
        )
    chunks = (min(chunks[0], grid.n_voxels), min(chunks[1], samples.sizes["gene"]))
    block_mm = default_block_mm(grid.resolution_mm) if block_mm is None else float(block_mm)
    buffer_mm = default_buffer_mm(grid.resolution_mm) if buffer_mm is None else float(buffer_mm)
    config = {
        "schema": SCHEMA_VERSION,
        "source": {
            "name": samples.attrs.get("source", "table"),
            "options": json.loads(samples.attrs.get("options", "{}")),
            "n_samples": int(samples.sizes["sample"]),
            "donors": sorted(set(samples["donor"].values.tolist())),
        },
        "grid": grid.to_attrs() | {"n_voxels": grid.n_voxels},
        "genes": {
            "n": int(samples.sizes["gene"]),
            "sha1": hashlib.sha1("\n".join(samples["gene"].values.tolist()).encode()).hexdigest(),
        },
        "assignment": assign.provenance(),
        "preprocessing": {"clamp_percentiles": [float(p) for p in clamp_percentiles], "scale": [0.0, 1.0]},
        "split": {
            "scheme": split,
            "test_fraction": float(test_fraction),
            "seed": seed,
            "block_mm": float(block_mm),
            "buffer_mm": float(buffer_mm),
        },
        "seed": seed,
        "chunks": list(chunks),
        "layout": layout.to_attrs(),
    }
    build_args = None
    if isinstance(source, str):  # how to run this build again from the command line
        build_args = {
            "source": source,
            "resolution": None if mask is not None else int(resolution),
            "mask": None if mask is None else str(mask),
            "genes": ",".join(genes) if isinstance(genes, (list, tuple)) else genes,
            "assignment": assignment if isinstance(assignment, str) else None,
            "n_neighbors": int(n_neighbors),
            "same_hemisphere": bool(same_hemisphere),
            "split": split,
            "test_fraction": float(test_fraction),
            "block_mm": float(block_mm),
            "buffer_mm": float(buffer_mm),
            "seed": seed,
            "chunks": list(chunks),
            "dtype": layout.dtype,
            **{
                k.replace("_", "-"): (",".join(v) if isinstance(v, (list, tuple)) else v)
                for k, v in source_options.items()
                if isinstance(v, (str, int, float, bool, list, tuple))
            },
        }
    options = {name: v for name, v in (("progress", progress), ("client", client)) if v is not None}
    with set_options(**options), store_lock(out, exclusive=True, what="built"), job(f"build {out.name}", unit="task"):
        config_hash = hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()
        resume = _prepare_output(out, config_hash, overwrite, discard_results)
        if resume == "complete":
            return out
        _check_disk(out, grid, samples, assign, voxel_labels, chunks, clamp_percentiles, layout, resume)
        if resume is None:
            splits = {
                s: make_split(
                    s, grid.xyz, test_fraction=test_fraction, random_state=seed, block_mm=block_mm, buffer_mm=buffer_mm
                )
                for s in ("random", "blocked")
            }
            provenance = config | {
                "build_config_hash": config_hash,
                "build_args": build_args,
                "versions": _versions(),
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            }
            _create_template(out, grid, samples, splits, split, chunks, provenance, layout)
        _run_build(out, grid, samples, assign, voxel_labels, chunks, clamp_percentiles, layout)
    return out


def _refuse_what_a_region_table_ignores(assignment, n_neighbors, same_hemisphere) -> None:
    """A region table's voxels take their region's row: an interpolation's settings were ignored."""
    given = [] if assignment in ("nearest", "atlas") else [f"assignment={assignment!r}"]
    if not isinstance(assignment, str):
        given = ["an assignment of its own (a block source)"]
    defaults = inspect.signature(build_store).parameters
    for name, value in (("n_neighbors", n_neighbors), ("same_hemisphere", same_hemisphere)):
        if value != defaults[name].default:
            given.append(f"{name}={value!r}")
    if given:
        raise InputError(
            f"a region table gives every voxel its region's row (assignment 'atlas'); "
            f"{', '.join(given)} would be ignored: leave {'it' if len(given) == 1 else 'them'} out"
        )


def _check_settings(split, assignment, n_neighbors, test_fraction, chunks) -> tuple[int, int]:
    """Refuse what can be refused before a source is read (an AHBA source reads for minutes) or
    anything is written; return ``chunks`` as two ints."""
    if split not in SPLIT_SCHEMES:
        raise InputError(
            f"split must be one of {', '.join(SPLIT_SCHEMES)}, got {split!r}"
            f"{did_you_mean(split, SPLIT_SCHEMES, SPLIT_SYNONYMS)}"
        )
    check_assignment(assignment if isinstance(assignment, str) else None, n_neighbors)  # None: a block source
    check_fraction(test_fraction)
    if isinstance(chunks, (str, bytes)) or np.ndim(chunks) != 1 or len(chunks) != 2:
        raise InputError(f"chunks must be (voxels, genes), two whole numbers, got {chunks!r}")
    chunks = tuple(whole_number(c, "each of chunks") for c in chunks)
    if min(chunks) < 1:
        raise InputError(f"chunks must be (voxels, genes), two whole numbers, got {chunks!r}")
    return chunks


def _check_disk(out: Path, grid: Grid, samples, assign, voxel_labels, chunks, clamp_percentiles, layout, resume):
    """Refuse before writing when the disk lacks room: the stored size of one row block's first
    write (computed, packed and compressed in memory) times the blocks still to write."""
    import zarr.storage

    values = np.ascontiguousarray(samples["expression"].values, dtype=np.float32)
    n_vox, n_genes = grid.n_voxels, values.shape[1]
    n_blocks = -(-n_vox // chunks[0])
    todo = n_blocks
    if resume == "resume":
        todo = int((np.asarray(open_group(out)["build_chunk_done"][:]) == 0).sum())
    a = (n_blocks // 2) * chunks[0]  # a block from the middle of the brain
    b = min(a + chunks[0], n_vox)
    step = layout.write_step(chunks, n_genes)
    genes = slice(0, min(step, n_genes))
    labels = None if voxel_labels is None else voxel_labels[a:b]
    state = assign.prepare({"xyz": grid.xyz[a:b], "hemisphere": grid.hemisphere[a:b], "labels": labels})
    raw = assign.compute(state, values, genes)
    low, high = np.percentile(raw, clamp_percentiles, axis=0)
    sample = layout.pack(clamp_scale(raw, low.astype(np.float32), high.astype(np.float32)))
    memory = zarr.storage.MemoryStore()
    z = zarr.create_array(
        memory, shape=sample.shape, chunks=(sample.shape[0], chunks[1]), dtype=sample.dtype,
        compressors=layout.compressors(), zarr_format=3, fill_value=0,
    )  # fmt: skip
    z[:] = sample
    stored = sum(len(v) for k, v in memory._store_dict.items() if "/c/" in f"/{k}" or k.startswith("c/"))
    per_value = stored / sample.size
    estimate = int(per_value * (b - a) * n_genes * todo * 1.05) + (0 if resume else 16 * n_vox)
    if not is_remote(out):  # object storage has no disk to fill
        require_free(out.parent, estimate, f"building {out.name} ({n_vox:,} voxels x {n_genes:,} genes)")


def _run_build(out: Path, grid: Grid, samples, assign, voxel_labels, chunks, clamp_percentiles, layout) -> None:
    """The two passes (clamp percentiles, write) of a created or interrupted build."""
    from .options import current_client

    client = current_client()
    values = np.ascontiguousarray(samples["expression"].values, dtype=np.float32)
    if not np.isfinite(values).all():
        raise InputError("the sample table has missing (NaN) or infinite values")
    n_vox, n_genes = grid.n_voxels, values.shape[1]
    blocks = [(a, min(a + chunks[0], n_vox)) for a in range(0, n_vox, chunks[0])]
    xyz, hemi = grid.xyz, grid.hemisphere
    block_args = [
        dict(xyz=xyz[a:b], hemisphere=hemi[a:b], labels=None if voxel_labels is None else voxel_labels[a:b])
        for a, b in blocks
    ]
    values_ref = client.scatter(values, broadcast=True) if client is not None else dask.delayed(values)
    assign_ref = dask.delayed(assign, traverse=False)  # one copy per worker (an INR's weights), not per task

    root = open_group(out, mode="r+")
    if not root.attrs.get("clamp_done", False):
        # the tails are 0.1 % of the voxels per gene: take genes in groups small enough that
        # a block's tails stay under _TAIL_BYTES, so memory does not grow with the voxels
        sizes = TailAccumulator(n_vox, clamp_percentiles)
        tails_per_gene = 4 * (sizes.n_low + sizes.n_high)  # bytes (float32)
        group = max(chunks[1], _TAIL_BYTES // tails_per_gene // chunks[1] * chunks[1])
        for g0 in range(0, n_genes, group):
            genes = slice(g0, min(g0 + group, n_genes))
            acc = TailAccumulator(n_vox, clamp_percentiles)
            leaves = [
                dask.delayed(_block_tails)(assign_ref, values_ref, args, acc, genes, chunks[1]) for args in block_args
            ]
            desc = "clamp percentiles" + (f" (genes {g0 + 1}-{genes.stop})" if group < n_genes else "")
            low, high, _ = compute_tasks([_merge_tree(leaves, acc)], client=client, track=leaves, desc=desc)[0]
            acc.merge(low, high, n_rows=n_vox)
            lo, hi = acc.result()
            root["clamp_low"][genes] = lo.astype(np.float32)
            root["clamp_high"][genes] = hi.astype(np.float32)
        root.attrs.update({"clamp_done": True})

    lo, hi = root["clamp_low"][:], root["clamp_high"][:]
    done = root["build_chunk_done"][:]
    todo = [c for c in range(len(blocks)) if not done[c]]
    step = layout.write_step(chunks, n_genes)  # whole shards per write: no two writers share one
    writes = [
        dask.delayed(_write_block)(
            task_path(out), c, blocks[c], assign_ref, values_ref, block_args[c], lo, hi, step, layout
        )
        for c in todo
    ]
    compute_tasks(writes, client=client, desc=f"writing {out.name}")
    if not root["build_chunk_done"][:].all():
        raise RuntimeError("some blocks were not written; run the build again to finish them")
    root.attrs.update({"build_complete": True})
    consolidate(out)


def _prepare_output(out: Path, config_hash: str, overwrite: bool, discard_results: bool):
    """None: create anew; 'resume': finish an interrupted build; 'complete': nothing to do."""
    if is_remote(out):
        if not _exists(out):
            return None
    else:
        if not out.exists():
            return None
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
            return None
    try:
        attrs = check_schema(out)
    except StoreError as exc:
        raise StoreExistsError(
            f"{out} exists and is not a brainzarr store ({exc}); choose another path (nothing was removed)"
        ) from None
    if attrs.get("provenance", {}).get("build_config_hash") == config_hash:
        if overwrite and attrs.get("build_complete"):
            log.info("%s was built with the same settings: kept as it is, with its results", out)
        return "complete" if attrs.get("build_complete") else "resume"
    if not overwrite:
        raise StoreExistsError(f"{out} exists and was built with other settings", options={"overwrite": True})
    removable_store(out)
    results = list_groups(out, prefix=None)  # fitted, evaluated, or written by the user's own code
    if results and not discard_results:
        shown = ", ".join(results[:6]) + (f" and {len(results) - 6} more" if len(results) > 6 else "")
        raise StoreExistsError(
            f"rebuilding {out} with other settings removes the {len(results)} result(s) it holds ({shown})",
            options={"overwrite": True, "discard_results": True},
        )
    remove_tree(out)
    return None


def _create_template(
    out: Path, grid: Grid, samples: xr.Dataset, splits: dict, split: str, chunks, provenance: dict, layout
) -> None:
    n_vox, n_genes = grid.n_voxels, samples.sizes["gene"]
    ijk, xyz = grid.ijk, grid.xyz
    grid_attrs = grid.to_attrs()
    n_blocks = -(-n_vox // chunks[0])
    gene_coords = {
        name: ("gene", samples[name].values)
        for name, var in samples.coords.items()
        if var.dims == ("gene",) and name != "gene"
    }
    ds = xr.Dataset(
        {
            "expression": (
                ("voxel", "gene"),
                # a placeholder (never computed) chunked as the writes will be: whole shards
                dask.array.full(
                    (n_vox, n_genes), np.nan, dtype=np.float32, chunks=layout.shards(chunks, n_genes) or chunks
                ),
            ),
            "clamp_low": ("gene", np.full(n_genes, np.nan, dtype=np.float32)),
            "clamp_high": ("gene", np.full(n_genes, np.nan, dtype=np.float32)),
            "build_chunk_done": ("voxel_chunk", np.zeros(n_blocks, dtype=np.uint8)),
        },
        coords={
            "voxel": np.arange(n_vox, dtype=np.int64),
            "gene": samples["gene"].values.astype(str),
            **gene_coords,
            "i": ("voxel", ijk[:, 0]),
            "j": ("voxel", ijk[:, 1]),
            "k": ("voxel", ijk[:, 2]),
            "x": ("voxel", xyz[:, 0]),
            "y": ("voxel", xyz[:, 1]),
            "z": ("voxel", xyz[:, 2]),
            "hemisphere": ("voxel", grid.hemisphere.astype("<U1")),
            "split": ("voxel", splits[split]),
            "split_random": ("voxel", splits["random"]),
            "split_blocked": ("voxel", splits["blocked"]),
        },
        attrs={
            "brainzarr_schema_version": SCHEMA_VERSION,
            **grid_attrs,
            "provenance": provenance,
            "build_complete": False,
            "clamp_done": False,
        },
    )
    ds["i"].attrs.update(
        {
            "affine": grid_attrs["affine"],
            "grid_shape": grid_attrs["grid_shape"],
            "space": grid_attrs["space"],
            "resolution_mm": grid_attrs["resolution_mm"],
        }
    )
    ds["expression"].attrs.update({"long_name": "gene expression", "units": "scaled to [0, 1]"})
    for c, unit in zip("xyz", ("mm", "mm", "mm")):
        ds[c].attrs.update({"units": unit, "long_name": f"MNI {c}"})
    encoding = {"expression": layout.encoding(chunks, n_genes), "build_chunk_done": {"chunks": (1,)}}
    atomic = atomic_prefix(out) if is_remote(out) else atomic_directory(out, replace=False)
    with atomic as tmp, quiet_zarr(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*without any _FillValue")  # every chunk is written
        ds.to_zarr(
            zarr_store(tmp, read_only=False, strict=False),
            mode="w",
            compute=False,
            consolidated=False,
            zarr_format=3,
            encoding=encoding,
        )


def _restrict_to_atlas(grid: Grid, table: xr.Dataset):
    """Keep the grid's voxels that fall in a region of the table; return (grid, labels)."""
    from .sources.parcellated import atlas_on_grid

    labels_vol = atlas_on_grid(table.attrs["atlas"], grid)
    keep = grid.mask & np.isin(labels_vol, table["label"].values)
    if keep.sum() < max(1, 0.01 * grid.mask.sum()):
        raise InputError(
            f"only {int(keep.sum())} of the mask's {int(grid.mask.sum()):,} voxels lie in a region of the table "
            f"({table.attrs['atlas']}); is the atlas in MNI space and on the right grid?"
        )
    new = Grid(keep, grid.affine, space=grid.space, name=f"{grid.name} within {table.attrs['atlas']}")
    return new, labels_vol[tuple(new.ijk.T)]


def _gene_slices(n_genes, step, start=0):
    return [slice(g, min(g + step, n_genes)) for g in range(start, n_genes, step)]


def _block_tails(assign, values, args, acc: TailAccumulator, genes: slice, gene_step):
    lows, highs = [], []
    state = assign.prepare(args)
    for gs in _gene_slices(genes.stop, gene_step * 8, start=genes.start):
        low, high = acc.tails(assign.compute(state, values, gs))
        lows.append(low)
        highs.append(high)
    return np.concatenate(lows, axis=1), np.concatenate(highs, axis=1), len(args["xyz"])


def _merge_tree(leaves, acc: TailAccumulator):
    """Merge tail results in a tree of fan-in 8 so few results are held at once."""
    level = leaves
    while True:
        level = [
            dask.delayed(_merge_group)(acc.n_low, acc.n_high, *level[i : i + _MERGE_FANIN])
            for i in range(0, len(level), _MERGE_FANIN)
        ]
        if len(level) == 1:
            return level[0]


def _merge_group(n_low, n_high, *parts):
    low, high = merge_tails([p[0] for p in parts], [p[1] for p in parts], n_low, n_high)
    return low, high, sum(p[2] for p in parts)


def _write_block(path: str, chunk_index: int, rows, assign, values, args, low, high, gene_step, layout) -> int:
    a, b = rows
    with quiet_zarr():
        group = open_group(path, mode="r+")
        expression = every_chunk(group["expression"])
        state = assign.prepare(args)
        for gs in _gene_slices(len(low), gene_step):
            expression[a:b, gs] = layout.pack(clamp_scale(assign.compute(state, values, gs), low[gs], high[gs]))
        group["build_chunk_done"][chunk_index] = 1
    return chunk_index
