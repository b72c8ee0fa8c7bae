import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brainzarr import ResultExistsError, StoreError, build_store, list_groups, open_store, read_group, write_group
from brainzarr.exceptions import InputTypeError
from brainzarr.store import group_writer
from brainzarr.streaming import expression_rows


def test_open_store_is_dask_backed_and_labelled(small_store):
    ds = open_store(small_store)
    assert ds["expression"].dims == ("voxel", "gene")
    assert hasattr(ds["expression"].data, "dask")
    assert ds["expression"].dtype == np.float32
    assert ds.attrs["brainzarr_schema_version"] == 1
    apoe = ds["expression"].isel(gene=3)
    assert apoe.dims == ("voxel",)


def test_not_a_store(tmp_path):
    with pytest.raises(StoreError, match="no store"):
        open_store(tmp_path / "missing.zarr")
    (tmp_path / "dir").mkdir()
    with pytest.raises(StoreError, match=r"dir is a folder, not a Zarr store \(it has no zarr.json\)"):
        open_store(tmp_path / "dir")
    zarr.open_group(str(tmp_path / "v2.zarr"), mode="w", zarr_format=2)  # zarr-python 2's default
    with pytest.raises(StoreError, match="v2.zarr is a Zarr v2 group; a brainzarr store is a Zarr v3 group: build"):
        open_store(tmp_path / "v2.zarr")
    zarr.create_array(str(tmp_path / "array.zarr"), shape=(3,), dtype="f4")
    with pytest.raises(StoreError, match=r"array.zarr is not a Zarr v3 group \(ContainsArrayError\)"):
        open_store(tmp_path / "array.zarr")
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w", zarr_format=3)
    with pytest.raises(StoreError, match="not a brainzarr store"):
        open_store(tmp_path / "plain.zarr")


def test_a_path_near_a_store_is_pointed_to_it(tmp_path, monkeypatch):
    # a file, an array or a group inside a store, and the folder of a store: each said only
    # "not a Zarr v3 group (ContainsArrayError)" or "not a brainzarr store"
    store = build_store(tmp_path / "stores" / "s8.zarr", resolution=8, genes=5, random_state=0)
    (tmp_path / "map.nii.gz").write_bytes(b"")
    with pytest.raises(StoreError, match=r"map.nii.gz is a file; a store is a folder"):
        open_store(tmp_path / "map.nii.gz")
    write_group(store, "representations/mine", xr.Dataset({"w": ("voxel", np.zeros(3))}))
    for inside in ("expression", "split_random", "representations", "representations/mine"):
        with pytest.raises(StoreError, match=f"{inside} is inside the store {re.escape(str(store))}, not a store"):
            open_store(store / inside)
    with pytest.raises(StoreError, match=f"is a folder of stores: give one of them \\({re.escape(str(store))}\\)$"):
        open_store(tmp_path / "stores")
    monkeypatch.chdir(store)
    with pytest.raises(StoreError, match=f"give {re.escape(str(store.resolve()))}$"):
        open_store("expression")


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_other_schema_version_and_broken_schema(small_store, tmp_path):
    other = _copy(small_store, tmp_path / "v2.zarr")
    meta = json.loads((other / "zarr.json").read_text())
    meta["attributes"]["brainzarr_schema_version"] = 99
    (other / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="schema version 99"):
        open_store(other)
    broken = _copy(small_store, tmp_path / "broken.zarr")
    import shutil

    shutil.rmtree(broken / "hemisphere")
    with pytest.raises(StoreError, match="missing hemisphere"):
        open_store(broken)


def test_write_and_read_a_labelled_result(small_store):
    ds = open_store(small_store)
    mean_map = ds["expression"].mean("gene").rename("mean_expression")
    write_group(small_store, "representations/test/k1", mean_map, attrs={"note": "mean"})
    back = read_group(small_store, "representations/test/k1")
    np.testing.assert_allclose(back["mean_expression"].values, mean_map.values, rtol=1e-6)
    assert back.attrs["note"] == "mean"
    assert back["i"].attrs["grid_shape"] == ds.attrs["grid_shape"]  # grid travels with results
    plain = xr.open_zarr(str(small_store), group="representations/test/k1", consolidated=False)
    assert "mean_expression" in plain
    assert "representations/test/k1" in list_groups(small_store)
    with pytest.raises(
        ValueError,
        match=r"expression is an array of the store, not a result group: open_store\(store\)\['expression'\]",
    ):
        read_group(small_store, "expression")
    with pytest.raises(StoreError, match="no store at"):  # a mistyped path lists no groups otherwise
        list_groups(small_store.parent / "typo.zarr")
    with pytest.raises(TypeError, match="an xarray Dataset or DataArray, got ndarray"):
        write_group(small_store, "representations/test/k2", mean_map.values)
    with pytest.raises(ResultExistsError, match="overwrite"):
        write_group(small_store, "representations/test/k1", mean_map)
    write_group(small_store, "representations/test/k1", (mean_map * 2).rename("mean_expression"), overwrite=True)
    np.testing.assert_allclose(
        read_group(small_store, "representations/test/k1")["mean_expression"].values, 2 * mean_map.values, rtol=1e-6
    )
    with pytest.raises(KeyError, match="no group"):
        read_group(small_store, "representations/none/k2")
    assert open_store(small_store).sizes["voxel"] == 3666  # the store is still readable


def test_a_rechunked_map_with_nan_row_blocks_is_written_and_reads_back(small_store, tmp_path):
    """``write_group`` of ``.chunk({"voxel": 500})`` stopped in xarray (the store's chunks, kept in
    the coordinates' encoding, overlapped the new ones: "split_blocked ... would overlap multiple
    Dask chunks"); and a chunk of NaN alone (a map of one hemisphere) is not written by zarr,
    which brainzarr's reads take for damage."""
    import shutil

    store = tmp_path / "s8.zarr"
    shutil.copytree(small_store, store)
    ds = open_store(store)
    left = ds["expression"].mean("gene").where(ds["x"] < -20).rename("left_mean").chunk({"voxel": 500})
    assert np.isnan(left.values[-500:]).all()  # at least one whole block of NaN
    write_group(store, "analyses/left", left)
    back = read_group(store, "analyses/left")["left_mean"]
    np.testing.assert_array_equal(back.values, left.values)
    assert back.chunks == ((500,) * 7 + (166,),)
    img = back.brain.to_nifti()
    assert np.isnan(np.asarray(img.dataobj)).sum() == np.isnan(left.values).sum()


def test_attributes_json_cannot_hold_are_written_as_text_or_named(small_store, tmp_path):
    """A date, a path or a set among a result's attributes (its ``attrs`` or ``attrs=``) stopped
    in xarray with ``Invalid attribute in Dataset.attrs``, naming neither the attribute nor its
    type. They are written as zarr's JSON holds them; anything else is refused, named."""
    import datetime
    import shutil

    store = tmp_path / "s8.zarr"
    shutil.copytree(small_store, store)
    mean = open_store(store)["expression"].mean("gene").rename("mean").compute()
    given = mean.assign_attrs(
        made=datetime.datetime(2026, 12, 8, 3, 4, 5),
        atlas=Path("atlases/dk.nii.gz"),
        labels={"b", "a"},
        meta={"day": datetime.date(2026, 1, 2), "n": np.int64(3)},
        weights=np.arange(3.0),
        note="as it is",
    )
    write_group(store, "analyses/dated", given, attrs={"run": datetime.date(2026, 12, 8)})
    back = read_group(store, "analyses/dated")
    assert {k: back["mean"].attrs[k] for k in ("made", "atlas", "labels", "meta", "weights", "note")} == {
        "made": "2026-12-08T03:04:05",
        "atlas": "atlases/dk.nii.gz",
        "labels": ["a", "b"],
        "meta": {"day": "2026-01-02", "n": 3},
        "weights": [0.0, 1.0, 2.0],
        "note": "as it is",
    }
    assert back.attrs["run"] == "2026-12-08"
    assert isinstance(given.attrs["made"], datetime.datetime)  # the caller's array is as it was
    with pytest.raises(
        InputTypeError, match=r"attribute 'fn' of mean is a 'builtin_function_or_method', which a store's"
    ):
        write_group(store, "analyses/fn", mean.assign_attrs(fn=len))
    assert "analyses/fn" not in list_groups(store, prefix="analyses")


def test_a_result_computed_with_numpy_is_written_as_a_map_of_the_store(tmp_path, capsys):
    """Values on ``voxel`` without the store's coordinates (computed with numpy) get them, all of
    them or those of the rows a ``voxel`` coordinate names, so the group exports as an image."""
    from brainzarr.cli import main

    store = build_store(tmp_path / "s8.zarr", resolution=8, genes=4, random_state=0)
    ds = open_store(store)
    n = ds.sizes["voxel"]
    write_group(store, "analyses/gradient", xr.Dataset({"score": ("voxel", np.arange(n, dtype="float32"))}))
    score = read_group(store, "analyses/gradient")["score"]
    vol = score.brain.to_nifti().get_fdata()
    i, j, k = (ds[c].values for c in "ijk")
    np.testing.assert_array_equal(vol[i, j, k], np.arange(n))  # each value at its own voxel
    assert main(["export", str(store), "analyses", "-o", str(tmp_path / "g.nii.gz")]) == 1
    assert "e.g. analyses/gradient/score" in capsys.readouterr().err  # an array it holds
    assert main(["export", str(store), "analyses/gradient/score", "-o", str(tmp_path / "g.nii.gz")]) == 0

    rows = np.flatnonzero(ds["split"].values == "test")  # rows named by their voxel numbers
    write_group(store, "analyses/test", xr.DataArray(rows * 1.0, dims="voxel", coords={"voxel": rows}, name="row"))
    back = read_group(store, "analyses/test")
    np.testing.assert_array_equal(back["i"].values, ds["i"].values[rows])
    assert set(back["split"].values.tolist()) == {"test"}
    vol = back["row"].brain.to_nifti().get_fdata()
    np.testing.assert_array_equal(vol[i[rows], j[rows], k[rows]], rows)

    write_group(store, "analyses/other", xr.DataArray(np.ones(5), dims="voxel", name="ones"))  # rows it cannot place
    assert "i" not in read_group(store, "analyses/other").coords
    assert ds.brain.results() == [] and ds.brain.results(prefix=None) == [
        "analyses/gradient",
        "analyses/other",
        "analyses/test",
    ]


def test_a_result_is_never_written_over_the_stores_own_arrays_or_a_folder_of_results(tmp_path):
    """``write_group(store, "expression", ..., overwrite=True)`` replaced the store's data with
    the result (the store no longer opened); ``"representations"`` would have removed every fit."""
    from brainzarr import fit_store
    from brainzarr.exceptions import InputError

    store = build_store(tmp_path / "s.zarr", resolution=8, genes=4, random_state=0)
    fit_store(store, "pca", 2)
    before = open_store(store)["expression"].values
    data = xr.Dataset({"a": ("voxel", np.zeros(before.shape[0], "float32"))})
    refused = {
        "expression": "expression is an array of the store",
        "split": "split is an array of the store",
        "expression/sub": "expression is an array of the store",
        ".checkpoints/x": "no part starting with '.'",
        "representations": r"holds results \(representations/random/pca/k2\)",
        "representations/random": "holds results",
    }
    for group, why in refused.items():
        with pytest.raises(InputError, match=why):
            write_group(store, group, data, overwrite=True)
    np.testing.assert_array_equal(open_store(store)["expression"].values, before)
    assert list_groups(store, prefix=None) == ["representations/random/pca/k2"]
    write_group(store, "representations/random/pca/k2", data, overwrite=True)  # a result: replaced when asked
    assert list(read_group(store, "representations/random/pca/k2").data_vars) == ["a"]


def test_interrupted_result_write_keeps_the_previous_result(small_store):
    ds = open_store(small_store)
    # float32: a packed copy written by hand would warn that it has no _FillValue (none is needed)
    first = ds["expression"].isel(gene=0).rename("first").drop_encoding().to_dataset()
    write_group(small_store, "representations/test/k2", first)
    with pytest.raises(RuntimeError, match="boom"):
        with group_writer(small_store, "representations/test/k2", overwrite=True) as scratch:
            first.to_zarr(str(scratch), mode="w", zarr_format=3, consolidated=False)
            raise RuntimeError("boom")
    back = read_group(small_store, "representations/test/k2")
    np.testing.assert_array_equal(back["first"].values, first["first"].values)
    assert not [p for p in (small_store / "representations/test").iterdir() if p.name.startswith(".")]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.sampled_from([None, 100, 777, 4096]),
    seed=st.integers(0, 2**16),
    fraction=st.sampled_from([0.0, 0.3, 0.9, 1.0]),
)
def test_expression_rows_reads_the_selected_rows(small_store, rows, seed, fraction):
    ds = open_store(small_store)
    expected = ds["expression"].values
    mask = np.random.default_rng(seed).random(len(expected)) < fraction
    X = expression_rows(small_store, rows=rows, mask=mask)
    assert X.shape == (int(mask.sum()), expected.shape[1])
    step = rows or ds["expression"].chunks[0][0]
    # one output block per store block that has selected rows: a pass reads each block once
    per_block = [int(mask[a : a + step].sum()) for a in range(0, len(mask), step)]
    assert X.chunks[0] == tuple(c for c in per_block if c) or (not mask.any() and X.shape[0] == 0)
    np.testing.assert_array_equal(X.compute(), expected[mask])
    np.testing.assert_array_equal(expression_rows(small_store, rows=rows).compute(), expected)


def test_expression_rows_tasks_pickle_and_check_the_mask(small_store):
    mask = open_store(small_store)["split"].values == "train"
    X = expression_rows(small_store, mask=mask)
    again = pickle.loads(pickle.dumps(X))  # what dask.distributed does with the tasks
    np.testing.assert_array_equal(again.compute(), X.compute())
    with pytest.raises(ValueError, match="row mask has shape"):
        expression_rows(small_store, mask=mask[:-1])


def test_what_a_store_gives_saves_to_netcdf_and_exports_after_the_round_trip(tmp_path):
    """Every variable taken from a store carries coordinate ``i`` and the grid in its attributes;
    netCDF holds only one-dimensional attributes, so the affine must be one (it was 4 x 4, and
    ``to_netcdf`` refused every selection). Back from the file, the grid still exports."""
    from brainzarr import build_store, fit_store, from_nifti, store_grid

    store = build_store(tmp_path / "s.zarr", resolution=8, genes=6, random_state=3)
    fit_store(store, "pca", 2, write_reconstruction=False)
    ds = open_store(store)
    selections = {
        "gene": ds["expression"].isel(gene=4),
        "embedding": read_group(store, "representations/random/pca/k2")["embedding"],
        "image on the store's grid": from_nifti(ds["expression"].isel(gene=2).brain.to_nifti(), store_grid(ds)),
    }
    for name, da in selections.items():
        path = tmp_path / f"{name.replace(' ', '-')}.nc"
        # scipy's netCDF3 has no uint16: the expression's packing encoding is dropped (float32)
        da.drop_encoding().to_netcdf(path, engine="scipy")
        with xr.open_dataarray(path, engine="scipy") as back:
            np.testing.assert_array_equal(back.values, da.values)
            again, direct = back.brain.to_nifti(), da.brain.to_nifti()
            np.testing.assert_array_equal(again.affine, direct.affine)
            np.testing.assert_array_equal(np.asarray(again.dataobj), np.asarray(direct.dataobj))


def test_python_writers_refuse_files_inside_a_store(small_store, tmp_path):
    """The NIfTI, netCDF and figure writers refuse a path in a store, as the commands do: the
    store would hold a file brainzarr did not put there (and an overwrite would not remove)."""
    import shutil

    from brainzarr.exceptions import InputError

    store = shutil.copytree(small_store, tmp_path / "s.zarr")
    ds = open_store(store)
    gene = ds.expression.isel(gene=0)
    before = sorted(store.rglob("*"))
    for write, path in (
        (lambda p: gene.brain.to_nifti(p), store / "gene.nii.gz"),
        (lambda p: ds.expression.isel(gene=[0, 1]).brain.to_nifti(p), store / "expression" / "two.nii"),
        (lambda p: gene.brain.to_netcdf(p), store / "gene.nc"),
        (lambda p: ds.brain.to_netcdf(p), store),
        (lambda p: gene.brain.plot(p), store / "gene.png"),
    ):
        with pytest.raises(InputError, match="which holds only what brainzarr writes there: write elsewhere"):
            write(path)
    assert sorted(store.rglob("*")) == before
    assert gene.brain.to_nifti(tmp_path / "gene.nii.gz").shape == (26, 30, 25)  # beside it: written


def test_a_store_opens_with_its_variables_in_one_order_in_every_process(tmp_path):
    """Zarr lists a group's arrays in no fixed order and xarray keeps it (and a set's, which
    follows the process's hash seed): the columns of ``to_dataframe()`` changed from run to run."""
    import subprocess
    import sys

    from brainzarr import fit_store

    store = build_store(tmp_path / "s8.zarr", resolution=8, genes=6, random_state=0)
    fit_store(store, "pca", 2, progress=False)
    script = (
        "import json, sys, brainzarr\n"
        "ds = brainzarr.open_store(sys.argv[1])\n"
        "result = ds.brain.read('pca', 2)\n"
        "print(json.dumps([list(ds.variables), list(result.variables),\n"
        "    list(result.embedding.to_dataframe().columns), list(ds.expression.to_dataframe().columns)]))\n"
    )
    seen = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", script, str(store)],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "PYTHONHASHSEED": str(seed)},
            ).stdout
        )
        for seed in (1, 2, 3)
    ]
    assert seen[0] == seen[1] == seen[2]
    store_vars, result_vars, embedding_columns, expression_columns = seen[0]
    assert store_vars[:3] == ["expression", "clamp_high", "clamp_low"]
    assert store_vars[3:11] == ["voxel", "gene", "i", "j", "k", "x", "y", "z"]
    assert result_vars[:4] == ["embedding", "reconstruction", "voxel_rmse", "rmse"]
    assert embedding_columns[:6] == ["i", "j", "k", "x", "y", "z"] and embedding_columns[-1] == "embedding"
    assert expression_columns[:6] == ["i", "j", "k", "x", "y", "z"]


def test_a_tilde_in_a_path_is_the_home_folder(small_store, tmp_path, monkeypatch):
    """``~/s.zarr`` is read and written in the home folder, as nibabel, xarray and pandas take it;
    unexpanded, ``build_store("~/b.zarr")`` made a folder named ``~`` in the working directory."""
    import shutil

    from brainzarr import fit_store

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    shutil.copytree(small_store, home / "s.zarr")
    build_store("~/b.zarr", resolution=8, genes=3)
    fit_store("~/s.zarr", "pca", 2, overwrite=True)  # the session's store may hold one already
    gene = open_store("~/s.zarr").expression.isel(gene=0)
    gene.brain.to_nifti("~/g.nii.gz")
    gene.brain.to_netcdf("~/g.nc")
    gene.brain.plot("~/g.png")
    assert sorted(p.name for p in home.iterdir() if not p.name.startswith(".")) == [
        "b.zarr",
        "g.nc",
        "g.nii.gz",
        "g.png",
        "s.zarr",
    ]
    assert not (tmp_path / "~").exists()
    assert "representations/random/pca/k2" in list_groups("~/s.zarr")


def test_storage_options_with_a_local_path_are_refused(small_store, tmp_path, capsys):
    """A URL's scheme left out (``store/s8.zarr`` for ``s3://store/s8.zarr``) built the store on the
    local disk and left the storage options unused, without a word."""
    from brainzarr import Store
    from brainzarr.cli import main

    out = tmp_path / "s8.zarr"
    for where in (out, str(out)):
        with pytest.raises(ValueError, match=r"s8.zarr is a local path, and storage options \(anon\) are for a store"):
            build_store(where, resolution=8, genes=3, storage_options={"anon": True})
    assert not out.exists()
    with pytest.raises(ValueError, match="storage options"):
        Store(small_store, storage_options={"endpoint_url": "http://127.0.0.1:9"})
    assert main(["info", str(small_store), "--storage-option", "endpoint_url=http://127.0.0.1:9"]) == 1
    assert "is a local path, and storage options (endpoint_url) are for a store at a URL" in capsys.readouterr().err
    assert Store(small_store, storage_options={}).path == Store(small_store).path  # none given: as before
