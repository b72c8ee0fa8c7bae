"""brainzarr: out-of-core whole-brain voxel x gene expression in xarray/Zarr."""

import logging as _logging

from . import brain_array as _brain_array  # noqa: F401  (registers DataArray.brain)
from . import brain_dataset as _brain_dataset  # noqa: F401  (registers Dataset.brain)
from ._version import __version__
from .build import build_store
from .exceptions import (
    BrainzarrError,
    ChunkError,
    ResultExistsError,
    ResultNotFoundError,
    StoreError,
    StoreExistsError,
    StoreLockedError,
)
from .grid import Grid, grid_from_mask, mni152_grid
from .nifti import from_nifti, to_nifti
from .options import get_options, set_options
from .parcellate import parcellate
from .sources import load_source
from .store import Store, list_groups, open_store, read_group, store_grid, write_group

_logging.getLogger(__name__).addHandler(_logging.NullHandler())

_LAZY = {"fit_store", "load_model", "rmse_table"}  # the models (scikit-learn) load on first use


def __getattr__(name):
    if name in _LAZY:
        from .models import store_fitting

        return getattr(store_fitting, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "__version__",
    "build_store",
    "open_store",
    "Store",
    "store_grid",
    "read_group",
    "write_group",
    "list_groups",
    "fit_store",
    "load_model",
    "rmse_table",
    "load_source",
    "Grid",
    "mni152_grid",
    "grid_from_mask",
    "to_nifti",
    "from_nifti",
    "parcellate",
    "set_options",
    "get_options",
    "BrainzarrError",
    "StoreError",
    "StoreExistsError",
    "ResultExistsError",
    "ResultNotFoundError",
    "StoreLockedError",
    "ChunkError",
]
