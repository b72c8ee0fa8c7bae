"""Real (scikit-learn) representations written into a store the way the models pipeline does,
so the evaluation can be tested before/independently of brainzarr's own models."""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr
from sklearn.exceptions import ConvergenceWarning

from brainzarr.store import open_store, voxel_coords, write_group


def _sklearn_model(method: str, dim: int, seed: int):
    from sklearn.decomposition import NMF, PCA, FastICA

    if method == "pca":
        return PCA(dim, random_state=seed)
    if method == "nmf":
        return NMF(dim, init="nndsvda", max_iter=300, random_state=seed)
    if method == "ica":  # stands in for a method without a reconstruction (like t-SNE)
        return FastICA(dim, random_state=seed, max_iter=400)
    raise ValueError(method)


def write_representations(
    store,
    methods=("pca", "nmf"),
    dims=(2, 4),
    *,
    scheme="random",
    seed=0,
    scheme_attr="split_scheme",
    reconstruct=("pca", "nmf"),
    with_rmse=True,
):
    """Fit each method on the training voxels of ``scheme``, write embedding (all voxels),
    reconstruction and train/test RMSE under representations/<method>/k<dim>."""
    ds = open_store(store)
    X = ds["expression"].values.astype(np.float64)
    train = ds[f"split_{scheme}"].values == "train"
    # the voxel coordinate 'split' would clash with the dimension split (train/test) of rmse
    coords = {k: v for k, v in voxel_coords(ds).items() if k != "split"}
    for method in methods:
        for dim in dims:
            with warnings.catch_warnings():  # a stand-in for a fit: how well it converged is not tested
                warnings.simplefilter("ignore", ConvergenceWarning)
                model = _sklearn_model(method, dim, seed).fit(X[train])
            Z = model.transform(X).astype(np.float32)
            out = xr.Dataset(coords={**coords, "component": np.arange(1, dim + 1)})
            out["embedding"] = (("voxel", "component"), Z)
            if method in reconstruct:
                R = model.inverse_transform(Z).astype(np.float32)
                out = out.assign_coords(gene=ds["gene"].values)
                out["reconstruction"] = (("voxel", "gene"), R)
                if with_rmse:
                    err = (R - X) ** 2
                    out["rmse"] = xr.DataArray(
                        [np.sqrt(err[train].mean()), np.sqrt(err[~train].mean())],
                        dims="split",
                        coords={"split": ["train", "test"]},
                    )
            out["param_components"] = (("component", "gene_"), model.components_.astype(np.float32))
            attrs = {"method": method, "dim": dim, "params": {"n_components": dim}, "seed": seed, scheme_attr: scheme}
            write_group(store, f"representations/{method}/k{dim}", out, attrs=attrs, overwrite=True)
    return store
