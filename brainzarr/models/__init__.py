"""Representations of the voxel x gene matrix, one estimator each (see :mod:`.base`).

``from brainzarr.models import PCA, NMF, KernelPCA, TSNE, UMAP, AutoEncoder`` — imported
lazily, so using PCA does not import torch.
"""

from __future__ import annotations

import importlib

from ..exceptions import InputError
from .base import Representation, rmse

#: method name (as in store paths and ``--methods``) -> (module, class)
METHODS = {
    "pca": ("pca", "PCA"),
    "kpca": ("kpca", "KernelPCA"),
    "nmf": ("nmf", "NMF"),
    "tsne": ("tsne", "TSNE"),
    "umap": ("umap_", "UMAP"),
    "ae": ("autoencoder", "AutoEncoder"),
}
_CLASSES = {cls: mod for mod, cls in METHODS.values()}
#: method name -> the optional packages (import names) its fit needs, imported only then
REQUIRES = {"tsne": ("openTSNE",), "umap": ("umap",), "ae": ("torch",)}
#: estimator parameters that a job sets for every method it fits (its dims and its seed), never
#: per method
JOB_PARAMS = ("n_components", "random_state")

__all__ = [
    "JOB_PARAMS",
    "METHODS",
    "REQUIRES",
    "check_method_names",
    "get_model_class",
    "Representation",
    "rmse",
    *_CLASSES,
]


def check_method_names(methods) -> None:
    """Raise ``ValueError`` naming every one of ``methods`` that is not in :data:`METHODS`, and
    the choices."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        meant = {m: str(m).lower() for m in unknown if str(m).lower() in METHODS}  # 'PCA', as sklearn spells it
        hint = f" (method names are lower case: {', '.join(meant.values())})" if meant else ""
        raise InputError(f"unknown method(s) {', '.join(map(str, unknown))}{hint}; choose from {', '.join(METHODS)}")


def get_model_class(method: str) -> type[Representation]:
    """The estimator class of a method name ('pca', 'kpca', 'nmf', 'tsne', 'umap', 'ae')."""
    check_method_names([method])
    module, name = METHODS[method]
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __getattr__(name):
    if name in _CLASSES:
        return getattr(importlib.import_module(f"{__name__}.{_CLASSES[name]}"), name)
    raise AttributeError(name)
