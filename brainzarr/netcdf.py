"""netCDF files of what a store gives: ``ds.brain.to_netcdf(path)``, ``da.brain.to_netcdf(path)``.

xarray's own ``to_netcdf`` refuses a store's Dataset, and anything selected from it
(``ds.sel(gene=["APOE", "SST"])``), or a result read with ``ds.brain.read``: their attributes
hold the build's ``provenance`` (a dict), the 4 x 4 ``affine`` and a model's ``params``, and
netCDF attributes are strings, numbers and 1-D lists only. This writes the same data with each
such attribute in a form netCDF holds:

- a dict, or a list that is not of numbers alone (nested, of strings, mixed): its JSON text
  (``json.loads`` gives it back); so is a string holding a NUL character, which netCDF strings
  cannot (netCDF3 cuts it off there, netCDF4 refuses it);
- the ``affine``: its 16 numbers, row by row (the form every brainzarr function reads);
- ``True``/``False``: 1/0; an integer beyond int32: a float; ``None``: left out.

The values are written as they read (float32 for the packed expression: its uint16 steps fill
[0, 1], leaving no integer to mark NaN). With h5netcdf installed (the ``netcdf`` extra) xarray
writes netCDF4 chunk by chunk, in memory independent of the file's size; without it scipy
writes netCDF3 and holds the whole file in memory until it closes (a warning above 512 MiB).
The file reopens with ``xarray.open_dataset`` and its voxel arrays export to NIfTI, the grid
coming along.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import warnings
from collections.abc import Mapping
from numbers import Real
from pathlib import Path

import numpy as np
import xarray as xr

from ._atomic import write_file
from ._disk import human, require_free
from ._location import user_path
from .exceptions import InputError
from .store import refuse_output_in_a_store

__all__ = ["to_netcdf", "netcdf_attrs", "netcdf_engine"]

#: above this, writing with scipy (netCDF3, the whole file in memory) warns
_IN_MEMORY_WARNING_BYTES = 512 << 20


def to_netcdf(obj: xr.Dataset | xr.DataArray, path, **kwargs) -> Path:
    """Write a Dataset or DataArray taken from a store as a netCDF file, whole or not at all.

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataArray
        A store's Dataset (``open_store``) or any selection of it, a result (``ds.brain.read``),
        a voxel array (an embedding, a gene's map), a region table.
    path : str or Path
        The file to write (``.nc``); an existing file is replaced.
    **kwargs
        Passed to xarray's ``to_netcdf`` (``engine``, ``format``, ``encoding``...).

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    InsufficientDiskError
        The disk lacks room for the values (checked before anything is written).
    InputError
        ``path`` is a folder.
    """
    path = user_path(path)
    refuse_output_in_a_store(path)  # first: a store is a folder, and a file name in it is no answer
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a file name, e.g. {path / 'data.nc'}")
    kwargs["engine"] = engine = kwargs.get("engine") or netcdf_engine()
    # new variables (obj's attributes stay as they are), written as they read: the store's uint16
    # packing spends every step of [0, 1] on values, leaving none for a _FillValue to mark NaN
    out = obj.copy(deep=False).drop_encoding()
    out.attrs = netcdf_attrs(obj.attrs)
    if isinstance(out, xr.Dataset):
        variables = list(out.variables.values())
    else:
        variables = [out.variable, *(c.variable for c in out.coords.values())]
    for variable in variables:
        variable.attrs = netcdf_attrs(variable.attrs)
    if engine == "scipy":
        _clear_of_scipy_names(out, variables)
    path.parent.mkdir(parents=True, exist_ok=True)
    require_free(path.parent, int(out.nbytes), f"writing {path.name}")
    if engine == "scipy" and out.nbytes > _IN_MEMORY_WARNING_BYTES:
        warnings.warn(
            f"xarray writes this netCDF3 file with scipy, which holds all of it in memory "
            f"({human(out.nbytes)}) until it closes; with h5netcdf installed (the 'netcdf' extra: "
            f"pip install 'brainzarr[netcdf]') it is written chunk by chunk",
            stacklevel=3,
        )
    write_file(path, lambda tmp: out.to_netcdf(tmp, **kwargs))
    return path


def _clear_of_scipy_names(out, variables) -> None:
    """Rename attributes that scipy's netCDF3 writer would take for its own (it keeps a file's
    and a variable's attributes as Python attributes of its objects: ``fp`` replaced its file,
    ``close`` its method), with a warning naming them: ``fp`` is written as ``fp_``."""
    file_names, variable_names = _scipy_names()
    renamed = []
    for holder, reserved in ((out, file_names), *((v, variable_names) for v in variables)):
        for key in [k for k in holder.attrs if k in reserved]:
            new = key + "_"
            while new in holder.attrs or new in reserved:
                new += "_"
            holder.attrs[new] = holder.attrs.pop(key)
            renamed.append(f"{key} as {new}")
    if renamed:
        warnings.warn(
            f"scipy's netCDF3 writer uses these attribute names itself; written {', '.join(renamed)} "
            "(with h5netcdf installed, the 'netcdf' extra, they are written as they are)",
            stacklevel=4,
        )


@functools.cache
def _scipy_names() -> tuple[frozenset, frozenset]:
    """The names scipy's netCDF3 file and variable objects hold themselves (attributes, methods)."""
    import io

    from scipy.io import netcdf_file

    file = netcdf_file(io.BytesIO(), "w")
    file.createDimension("x", 1)
    variable = file.createVariable("v", "d", ("x",))
    return frozenset(vars(file)) | frozenset(dir(type(file))), frozenset(vars(variable)) | frozenset(
        dir(type(variable))
    )


def netcdf_engine() -> str:
    """The netCDF writer that works here: netCDF4, else h5netcdf (with h5py), else scipy
    (netCDF3), in xarray's order. xarray lists h5netcdf as an engine even without h5py, which
    it cannot write without."""
    engines = xr.backends.list_engines()
    if "netcdf4" in engines:
        return "netcdf4"
    if "h5netcdf" in engines and _h5py_installed():
        return "h5netcdf"
    return "scipy"


def _h5py_installed() -> bool:
    return importlib.util.find_spec("h5py") is not None


def netcdf_attrs(attrs: Mapping) -> dict:
    """``attrs`` with every value in a form a netCDF attribute holds (see the module's text)."""
    out = {}
    for key, value in attrs.items():
        if value is None:
            continue
        if key == "affine" and np.shape(value) == (4, 4):
            out[key] = np.asarray(value, dtype=float).ravel().tolist()
        else:
            out[key] = _attribute(value)
    return out


def _attribute(value):
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, str) and "\x00" in value:
        return json.dumps(value)  # escaped as \u0000
    if isinstance(value, (str, bytes)):
        return value
    if isinstance(value, (Real, np.number)):
        return _number(value)
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iuf":
        value = value.tolist()
    if isinstance(value, (list, tuple)) and value and all(_is_number(v) for v in value):
        array = np.asarray(value)
        if array.dtype.kind in "iu" and -(2**31) <= array.min() and array.max() < 2**31:
            return [int(v) for v in value]
        return [float(v) for v in value]
    return json.dumps(value, default=_plain)


def _is_number(value) -> bool:
    return isinstance(value, (Real, np.number)) and not isinstance(value, (bool, np.bool_))


def _number(value):
    """A number netCDF3 holds: integers beyond int32 as float (exact up to 2**53)."""
    if isinstance(value, (int, np.integer)) and not -(2**31) <= int(value) < 2**31:
        return float(value)
    return value


def _plain(value):
    """What JSON cannot write itself: numpy scalars and arrays, paths, anything else as text."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
