"""netCDF files of a store's Datasets, results and arrays (``ds.brain.to_netcdf``)."""

import json
import math
import warnings

import numpy as np
import pytest
import xarray as xr
from hypothesis import example, given, settings
from hypothesis import strategies as st

from brainzarr import build_store, fit_store, open_store, store_grid
from brainzarr.exceptions import InputError, InsufficientDiskError
from brainzarr.netcdf import netcdf_engine


def test_a_selection_of_a_store_saves_with_its_provenance_and_exports_after_the_round_trip(small_store, tmp_path):
    """xarray refuses the store's Dataset (its provenance is a dict, its affine 4 x 4); the
    accessor writes it, the provenance as JSON, and the file's voxels export to the same NIfTI."""
    ds = open_store(small_store)
    two = ds.sel(gene=ds["gene"].values[[3, 40]])
    with pytest.raises(TypeError, match="Invalid value for attr"):
        two.to_netcdf(tmp_path / "plain.nc")
    path = two.brain.to_netcdf(tmp_path / "two.nc")

    with xr.open_dataset(path) as back:
        np.testing.assert_array_equal(back["expression"].values, two["expression"].values)  # as it reads
        assert list(back["gene"].values) == list(two["gene"].values)
        assert json.loads(back.attrs["provenance"]) == ds.attrs["provenance"]
        np.testing.assert_array_equal(np.reshape(back.attrs["affine"], (4, 4)), ds.attrs["affine"])
        assert back.attrs["build_complete"] == 1
        np.testing.assert_array_equal(store_grid(back).mask, store_grid(ds).mask)
        gene = two["gene"].values[1]
        again = back["expression"].sel(gene=gene).brain.to_nifti()
        direct = two["expression"].sel(gene=gene).brain.to_nifti()
        np.testing.assert_array_equal(again.affine, direct.affine)
        np.testing.assert_array_equal(np.asarray(again.dataobj), np.asarray(direct.dataobj))
    assert isinstance(ds.attrs["provenance"], dict) and np.shape(ds.attrs["affine"]) == (4, 4)  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["two.nc"]  # no scratch file left


def test_a_result_and_an_array_with_its_packing_save(tmp_path):
    store = build_store(tmp_path / "s.zarr", resolution=8, genes=6, random_state=3)
    fit_store(store, "pca", 2, write_reconstruction=False)
    ds = open_store(store)
    result = ds.brain.read("pca", 2)
    with xr.open_dataset(result.brain.to_netcdf(tmp_path / "pca.nc")) as back:
        assert json.loads(back.attrs["params"]) == result.attrs["params"]
        np.testing.assert_array_equal(back["embedding"].values, result["embedding"].values)
    gene = ds["expression"].isel(gene=2)  # packed as uint16, which netCDF3 lacks: written as read
    with xr.open_dataarray(gene.brain.to_netcdf(tmp_path / "gene.nc")) as back:
        np.testing.assert_array_equal(back.values, gene.values)
        assert back.dtype == np.float32 and back.attrs["units"] == gene.attrs["units"]


def test_a_disk_without_room_is_refused_before_anything_is_written(small_store, tmp_path, monkeypatch):
    from brainzarr import _disk

    full = _disk.shutil.disk_usage(tmp_path)._replace(free=10 << 20)
    monkeypatch.setattr(_disk.shutil, "disk_usage", lambda path: full)
    with pytest.raises(InsufficientDiskError, match="writing all.nc needs about .* free"):
        open_store(small_store).brain.to_netcdf(tmp_path / "all.nc")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_is_refused_before_anything_is_written(small_store, tmp_path):
    with pytest.raises(InputError, match=f"{tmp_path} is a folder; give a file name, e.g. .*data.nc"):
        open_store(small_store).brain.to_netcdf(tmp_path)
    assert list(tmp_path.iterdir()) == []


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


def _same(read, written) -> bool:
    """What the file gives back equals what was written, in the form the module promises."""
    if written is None:
        return read is None
    if isinstance(written, bool):
        return read == int(written)
    if isinstance(written, (int, float)):
        return math.isclose(float(read), float(written), rel_tol=1e-15)
    if isinstance(written, str):
        return read == written if "\x00" not in written else json.loads(read) == written
    if (
        isinstance(written, list)
        and written
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in written)
    ):
        return np.allclose(np.atleast_1d(np.asarray(read, dtype=float)), np.asarray(written, dtype=float), rtol=1e-15)
    return json.loads(read) == written


_ENGINES = ["scipy"] + ["h5netcdf"] * (netcdf_engine() == "h5netcdf")


@settings(max_examples=60, deadline=None)
@example(attrs={"a": "\x00", "b": "x\x00y", "c": ["\x00"]})  # found by hypothesis: a NUL cut or refused
@example(attrs={"fp": [], "close": 1, "fp_": 2})  # found by hypothesis: scipy took "fp" for its file
@given(attrs=st.dictionaries(st.from_regex(r"[a-z][a-z_]{0,7}", fullmatch=True), _json, max_size=6))
def test_any_json_like_attributes_write_to_netcdf_and_read_back(attrs, tmp_path_factory):
    """Whatever JSON-like attributes a store or result holds: xarray's netCDF3 (scipy) and
    netCDF4 (h5netcdf) writers take the converted ones, and each reads back as itself (a dict
    or a list not of numbers alone as its JSON text, True as 1, a large integer as a float, a
    string with a NUL as its JSON text); None is left out. scipy keeps attributes as Python
    attributes of its file object: a name it uses itself (``fp``, its file) is written with a
    ``_`` after it, with a warning."""
    from brainzarr.netcdf import _scipy_names, to_netcdf

    folder = tmp_path_factory.mktemp("nc")
    reserved = _scipy_names()[0]
    for engine in _ENGINES:
        path = folder / f"{engine}.nc"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            to_netcdf(xr.Dataset({"v": ("x", np.arange(2.0))}, attrs=attrs), path, engine=engine)
        with xr.open_dataset(path, engine=engine) as back:
            read = dict(back.attrs)
        names = {k: _free(k, attrs, reserved) if engine == "scipy" else k for k, v in attrs.items() if v is not None}
        assert set(read) == set(names.values()), (engine, read, names)
        for key, name in names.items():
            assert _same(read[name], attrs[key]), (engine, key, read[name], attrs[key])
        renamed = engine == "scipy" and any(k in reserved for k in names)
        assert renamed == any("scipy's netCDF3 writer uses these attribute names" in str(w.message) for w in caught)


def _free(key, taken, reserved):
    """``key``, or, where scipy uses it, with as many ``_`` after it as make it a free name."""
    if key not in reserved:
        return key
    name = key + "_"
    while name in taken or name in reserved:
        name += "_"
    return name


def test_a_variables_attribute_scipy_uses_itself_is_renamed(tmp_path):
    """A variable's attributes too: scipy's variable object holds ``data`` and ``dimensions``."""
    from brainzarr.netcdf import to_netcdf

    data = xr.Dataset({"v": ("x", np.arange(2.0), {"data": "raw", "dimensions": 3, "units": "mm"})})
    with pytest.warns(UserWarning, match="written data as data_, dimensions as dimensions_"):
        to_netcdf(data, tmp_path / "v.nc", engine="scipy")
    with xr.open_dataset(tmp_path / "v.nc", engine="scipy") as back:
        assert dict(back["v"].attrs) == {"data_": "raw", "dimensions_": 3, "units": "mm"}
        np.testing.assert_array_equal(back["v"].values, [0.0, 1.0])


@pytest.mark.parametrize("engine", _ENGINES)
def test_the_in_memory_netcdf3_writer_warns_before_a_large_file(small_store, tmp_path, monkeypatch, engine):
    """scipy holds a whole netCDF3 file in memory until it closes (a 4 mm selection of 4,000
    genes: 1.2 GB peak against h5netcdf's 0.3 GB): past a size it says so, and how to stream."""
    import importlib

    module = importlib.import_module("brainzarr.netcdf")
    monkeypatch.setattr(module, "_IN_MEMORY_WARNING_BYTES", 1000)
    gene = open_store(small_store)["expression"].isel(gene=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gene.brain.to_netcdf(tmp_path / "gene.nc", engine=engine)
    said = [str(w.message) for w in caught if "holds all of it in memory" in str(w.message)]
    if engine == "scipy":
        assert len(said) == 1 and "pip install 'brainzarr[netcdf]'" in said[0]
    else:
        assert said == []
    with xr.open_dataarray(tmp_path / "gene.nc", engine=engine) as back:
        np.testing.assert_array_equal(back.values, gene.values)


def test_without_h5py_the_file_is_written_by_scipy(small_store, tmp_path, monkeypatch):
    """h5netcdf 1.8 installs without h5py (its [h5py] extra), and xarray still lists it as an
    engine that then cannot write: the writer falls back to scipy's netCDF3."""
    import importlib

    module = importlib.import_module("brainzarr.netcdf")
    monkeypatch.setattr(module, "_h5py_installed", lambda: False)
    assert netcdf_engine() == "scipy"
    gene = open_store(small_store)["expression"].isel(gene=0)
    path = gene.brain.to_netcdf(tmp_path / "gene.nc")
    assert path.read_bytes()[:3] == b"CDF"  # netCDF3's magic number (netCDF4 files are HDF5)
    with xr.open_dataarray(path) as back:
        np.testing.assert_array_equal(back.values, gene.values)
