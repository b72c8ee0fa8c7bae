"""The fitted representations a store holds, read as the evaluation needs them.

A result group ``representations/<split>/<method>/k<dim>`` (written by the models pipeline) holds
``embedding (voxel, component)``, usually ``reconstruction (voxel, gene)`` and ``rmse (split)``
with ``split`` = train/test, and attributes ``method``, ``dim``, ``params``, ``seed`` and the
split scheme the model was fitted under. This module finds them and reads them onto the store's
voxels; it tolerates a missing attribute by falling back on the group's path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from .._location import location
from ..exceptions import InputError
from ..models import check_method_names
from ..models.store_fitting import selected_dims, selected_methods
from ..preprocess import SPLIT_SCHEMES
from ..store import list_groups, read_group

__all__ = ["RepresentationGroup", "find_representations", "check_fitted", "split_labels", "read_embedding"]


@dataclass(frozen=True)
class RepresentationGroup:
    """One fitted representation in a store."""

    group: str
    method: str
    dim: int
    split_scheme: str | None
    variables: tuple[str, ...]
    attrs: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def name(self) -> str:
        """Label in result tables: ``<method>-k<dim>``."""
        return f"{self.method}-k{self.dim}"


def _scheme_of(attrs: dict) -> str | None:
    for key in ("split_scheme", "split", "scheme"):
        value = attrs.get(key)
        if isinstance(value, dict):
            value = value.get("scheme")
        if isinstance(value, str) and value in SPLIT_SCHEMES:
            return value
    return None


def _dim_of(attrs: dict, group: str) -> int | None:
    for key in ("dim", "n_components"):
        if isinstance(attrs.get(key), (int, np.integer)):
            return int(attrs[key])
    for part in reversed(group.split("/")):
        if part.startswith("k") and part[1:].isdigit():
            return int(part[1:])
    return None


def find_representations(store, *, methods=None, dims=None, require="embedding") -> list[RepresentationGroup]:
    """The representation groups of a store, filtered by method and dim.

    Parameters
    ----------
    store : str or Path
    methods, dims : iterables, optional
        Keep only these methods / dims (default: all).
    require : str or None
        Keep only groups holding this variable (``"embedding"``, ``"reconstruction"``, ``"rmse"``).
    """
    path = location(store)
    methods, dims = selected_methods(methods), selected_dims(dims)
    found = []
    for group in list_groups(path):
        ds = read_group(path, group)
        parts = group.split("/")
        method = str(ds.attrs.get("method") or (parts[1] if len(parts) > 1 else parts[0]))
        dim = _dim_of(ds.attrs, group)
        if dim is None or (require and require not in ds.variables):
            continue
        if methods is not None and method not in methods:
            continue
        if dims is not None and dim not in dims:
            continue
        found.append(
            RepresentationGroup(group, method, dim, _scheme_of(ds.attrs), tuple(map(str, ds.data_vars)), dict(ds.attrs))
        )
    return sorted(found, key=lambda g: (g.method, g.dim, g.group))


def check_fitted(store, methods, found, dims=None) -> None:
    """Refuse a selection of ``methods`` that names a method ``found`` (what
    :func:`find_representations` gave for it) lacks: a typo or a fit not made would otherwise
    only leave rows out of the results.

    Raises
    ------
    InputError
        A name that is neither a brainzarr method nor the method of a result in the store.
    InputError
        A method the store holds no fitted representation of (at ``dims``, when given).
    """
    if methods is None:
        return
    missing = [m for m in dict.fromkeys(methods) if m not in {r.method for r in found}]
    if not missing:
        return
    held = find_representations(store, require=None)
    check_method_names([m for m in missing if m not in {r.method for r in held}])
    at = "" if dims is None else f" at dim {', '.join(map(str, dims))}"
    raise InputError(
        f"{location(store).name} holds no fitted {', '.join(missing)}{at} (it holds "
        f"{', '.join(sorted({r.name for r in held})) or 'no representation'}): fit it first (`brainzarr fit`) "
        "or leave it out of the methods"
    )


def split_labels(ds: xr.Dataset, scheme: str) -> np.ndarray:
    """'train'/'test' labels of every voxel under ``scheme`` ('random' or 'blocked')."""
    if scheme not in SPLIT_SCHEMES:
        raise InputError(f"unknown split {scheme!r}; choose from {', '.join(SPLIT_SCHEMES)}")
    return np.asarray(ds[f"split_{scheme}"].values).astype(str)


def read_embedding(store, group: str, ds: xr.Dataset) -> xr.DataArray:
    """``embedding (voxel, component)`` of a group, in memory, on all the store's voxels (NaN
    for voxels the group lacks), with the store's voxel coordinates."""
    emb = read_group(store, group)["embedding"]
    if emb.dims[0] != "voxel":
        emb = emb.transpose("voxel", ...)
    values = np.asarray(emb.values, dtype=np.float32)
    rows = np.asarray(emb["voxel"].values) if "voxel" in emb.coords else np.arange(emb.sizes["voxel"])
    full = np.full((ds.sizes["voxel"], values.shape[1]), np.nan, dtype=np.float32)
    full[rows] = values
    other = emb.dims[1]
    labels = emb[other].values if other in emb.coords else np.arange(1, values.shape[1] + 1)
    coords = {c: ds[c] for c in ("voxel", "i", "j", "k", "x", "y", "z") if c in ds.coords}
    return xr.DataArray(full, dims=("voxel", "component"), coords={**coords, "component": labels}, name=group)
