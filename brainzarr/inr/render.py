"""Rendering a fitted INR into a store: the model as a block source of :func:`brainzarr.build_store`.

A block of voxels costs one forward pass of the coordinate network (``prepare``: the block's
features, ``n_voxels x n_features``); each slice of genes is then a matrix product with the
read-out (``compute``). The build streams blocks, so peak memory does not grow with the number
of voxels, and the result is a store with the schema of any build (clamped at each gene's
0.01 / 99.9 percentiles over voxels and scaled to [0, 1]; raw-scale values come from
:meth:`GeneINR.predict`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from .._deprecation import renamed_kwargs
from .._location import user_path
from ..build import DEFAULT_CHUNKS, build_store
from ..exceptions import InputError
from ..options import set_options
from ..sources import load_source, make_sample_table
from .model import GeneINR

__all__ = ["INRBlockSource", "render_store", "build_inr_store", "table_from_model", "table_from_store"]


class INRBlockSource:
    """A fitted :class:`GeneINR` as a block source (``prepare`` / ``compute`` / ``provenance``).

    Parameters
    ----------
    model : GeneINR
    genes : sequence of str, optional
        The store's genes, in its order (default: all of the model's).
    model_path : str or Path, optional
        Where the model was loaded from (recorded in provenance).
    """

    def __init__(self, model: GeneINR, genes=None, model_path=None):
        self.model = model
        idx = model.gene_index(None if genes is None else list(genes))
        self.genes = model.genes_[idx]
        self.embeddings, self.bias = model.readout(idx)
        self.model_path = None if model_path is None else str(model_path)

    def prepare(self, block: dict) -> np.ndarray:
        return self.model.features(block["xyz"])

    def compute(self, features: np.ndarray, values, gene_slice: slice) -> np.ndarray:
        return features @ self.embeddings[:, gene_slice] + self.bias[gene_slice]

    def provenance(self) -> dict:
        m = self.model
        return {
            "method": "inr",
            "model": self.model_path,
            "weights_sha1": m.weights_sha1(),
            "params": m.model_params(),
            "solver": m.solver_,
            "trained_on": m.source_,
            "n_training_samples": int(m.n_samples_),
            "map": "population (no donor offsets)",
        }


def table_from_model(model: GeneINR, genes=None) -> xr.Dataset:
    """A sample table at the model's training sites holding its population predictions there.

    It carries the training source's name and options into the store's provenance; the
    values themselves are not used by the render.
    """
    idx = model.gene_index(genes)
    sites = model.sites_
    return make_sample_table(
        model.predict(sites["xyz"], idx),
        model.genes_[idx],
        sites["xyz"],
        donor=sites["donor"],
        structure=sites["structure"],
        hemisphere=sites["hemisphere"],
        sample_id=sites["sample"],
        source=model.source_["name"],
        options=model.source_["options"],
    )


@renamed_kwargs(seed="random_state")
def render_store(
    model,
    out,
    *,
    resolution: int = 8,
    mask=None,
    genes=None,
    chunks=DEFAULT_CHUNKS,
    random_state: int = 0,
    overwrite: bool = False,
    progress: bool | None = None,
    client=None,
    device: str = "auto",
    **build_options,
) -> Path:
    """Render a fitted INR (or the folder of a saved one) into a voxel x gene store.

    Parameters
    ----------
    model : GeneINR or str or Path
    out : str or Path
        The store to write (resumable, like any build).
    resolution : int
        Grid spacing in mm of nilearn's MNI152 brain mask (ignored when ``mask`` is given).
    mask : str, Path or Nifti1Image, optional
        A mask NIfTI in MNI space defining the voxels instead.
    genes : None, int or list of str
        All of the model's genes, ``n`` evenly spaced ones, or these symbols.
    chunks : (int, int)
        Voxels x genes per chunk of the store (see :func:`brainzarr.build_store`).
    random_state : int
        Seeds the store's train/test splits (recorded in its provenance).
    overwrite : bool
        Replace an existing brainzarr store at ``out`` (see :func:`brainzarr.build_store`).
    progress : bool, optional
        Progress bars (default: :func:`brainzarr.set_options`'s, on a terminal).
    client : dask.distributed.Client, optional
        Render the blocks on this cluster.
    device : str
        Where a saved model is loaded: 'auto' (CUDA when available), 'cpu' or 'cuda'.
    **build_options
        Other :func:`brainzarr.build_store` options (``split``, ``test_fraction``, ``block_mm``).
    """
    path = None
    if not isinstance(model, GeneINR):
        path = user_path(model)
        model = GeneINR.load(path, device=device)
    table = table_from_model(model, genes)
    source = INRBlockSource(model, table["gene"].values, model_path=path)
    return build_store(
        out,
        source=table,
        resolution=resolution,
        mask=mask,
        assignment=source,
        random_state=random_state,
        chunks=chunks,
        overwrite=overwrite,
        progress=progress,
        client=client,
        **build_options,
    )


@renamed_kwargs(seed="random_state")
def build_inr_store(
    out,
    *,
    source="synthetic",
    genes=None,
    model=None,
    inr_params: dict | None = None,
    random_state: int = 0,
    source_options: dict | None = None,
    progress: bool | None = None,
    **build_options,
) -> Path:
    """Samples -> INR -> store in one step (``brainzarr build --assignment inr``).

    The source's samples are loaded; ``model`` (a fitted GeneINR or a saved one's folder)
    renders them, or a new GeneINR (``inr_params``, ``seed``) is fitted on them first. The
    store has the ``genes`` of the source (default: with a model, the model's genes; without,
    all of the source's); the model must know all of them.
    """
    path = None
    if model is not None and not isinstance(model, GeneINR):
        path = user_path(model)
        model = GeneINR.load(path)
    if genes is None and model is not None and not isinstance(source, xr.Dataset):
        genes = [str(g) for g in model.genes_]  # it can render no other
    table = (
        source
        if isinstance(source, xr.Dataset)
        else load_source(source, genes=genes, random_state=random_state, **(source_options or {}))
    )
    if model is None:
        with set_options(**({} if progress is None else {"progress": progress})):
            model = GeneINR(**({"random_state": random_state} | (inr_params or {}))).fit(table)
    genes_needed = table["gene"].values.astype(str)
    missing = np.setdiff1d(genes_needed, model.genes_)
    if len(missing):
        raise InputError(
            f"the INR model does not know {len(missing)} of the source's genes (e.g. {missing[0]}); "
            "fit it on these genes or choose genes it has"
        )
    block_source = INRBlockSource(model, genes_needed, model_path=path)
    return build_store(
        out, source=table, assignment=block_source, random_state=random_state, progress=progress, **build_options
    )


@renamed_kwargs(seed="random_state")
def table_from_store(path, *, n_samples: int = 5000, genes=None, random_state: int = 0) -> xr.Dataset:
    """A sample table of ``n_samples`` voxels of a store (a seeded random subset, read in store order).

    Lets an INR be fitted to a built store (e.g. to learn a continuous version of it). Every
    voxel counts as one sample of a single pseudo-donor ``'store'``. ``genes``: all of the
    store's, ``n`` evenly spaced ones, or these symbols (as :func:`brainzarr.build_store`).
    """
    from ..sources.table import resolve_genes
    from ..store import open_store

    ds = open_store(path)
    if genes is not None:
        ds = ds.sel(gene=resolve_genes(genes, ds["gene"].values))
    n_vox = ds.sizes["voxel"]
    if n_samples < 1:
        raise InputError("n_samples must be positive")
    rows = (
        np.arange(n_vox)
        if n_samples >= n_vox
        else np.sort(np.random.default_rng(random_state).choice(n_vox, int(n_samples), replace=False))
    )
    values = ds["expression"].isel(voxel=rows).values
    xyz = np.column_stack([ds[c].values[rows] for c in "xyz"])
    return make_sample_table(
        values,
        ds["gene"].values,
        xyz,
        donor=np.full(len(rows), "store"),
        hemisphere=ds["hemisphere"].values[rows],
        sample_id=rows,
        source="store",
        options={"path": str(path), "n_samples": int(len(rows)), "seed": int(random_state)},
    )
