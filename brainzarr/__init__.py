"""brainzarr: out-of-core whole-brain voxel x gene expression in xarray/Zarr."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("brainzarr")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

from .build import build_store
from .grid import Grid, grid_from_mask, mni152_grid
from .nifti import from_nifti, to_nifti  # also registers the DataArray.brain accessor
from .sources import load_source
from .store import ResultExistsError, StoreError, list_groups, open_store, read_group, store_grid, write_group

__all__ = [
    "__version__",
    "build_store",
    "open_store",
    "store_grid",
    "read_group",
    "write_group",
    "list_groups",
    "load_source",
    "Grid",
    "mni152_grid",
    "grid_from_mask",
    "StoreError",
    "ResultExistsError",
    "to_nifti",
    "from_nifti",
]
