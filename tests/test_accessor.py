"""ds.brain carries the validated store: fit, read, results, the grid; a job checks the schema once."""

import numpy as np
import pytest

import brainzarr
from brainzarr import store as store_module
from brainzarr.cli import main


@pytest.fixture
def fresh_store(tmp_path):
    return brainzarr.build_store(tmp_path / "s8.zarr", resolution=8, genes=30, random_state=3)


def test_dataset_accessor_fits_reads_and_lists(fresh_store):
    ds = brainzarr.open_store(fresh_store)
    assert ds.brain.store.path == fresh_store and ds.brain.grid.n_voxels == ds.sizes["voxel"]
    result = ds.brain.fit("pca", 3)
    assert ds.brain.results() == ["representations/random/pca/k3"]
    np.testing.assert_array_equal(ds.brain.read("pca", 3)["embedding"].values, result["embedding"].values)
    model = ds.brain.model("pca", 3)
    R = model.inverse_transform(model.transform(ds["expression"]))
    assert list(R["gene"].values) == list(ds["gene"].values)
    table = ds.brain.rmse_table()
    assert list(table["method"]) == ["pca"] and table["test_rmse"].iloc[0] > 0


def test_accessor_needs_a_store():
    import xarray as xr

    with pytest.raises(ValueError, match="not opened with brainzarr.open_store"):
        _ = xr.Dataset().brain.store


def test_a_fit_checks_the_schema_once(fresh_store, monkeypatch, capsys):
    calls = []
    real = store_module._root_attrs
    monkeypatch.setattr(store_module, "_root_attrs", lambda path: calls.append(path) or real(path))
    assert main(["fit", str(fresh_store), "--methods", "pca,nmf", "--dims", "2,3", "--max-epochs", "2"]) == 0
    assert len(calls) == 1, calls  # was ~7 per fit: every hop re-validated the path


def test_a_store_handle_goes_where_a_path_goes(fresh_store):
    handle = brainzarr.Store(fresh_store)
    assert brainzarr.open_store(handle) is handle.dataset  # opened once, kept
    assert brainzarr.store_grid(handle).n_voxels == handle.dataset.sizes["voxel"]
    assert str(handle) != "" and __import__("os").fspath(handle) == str(fresh_store)
