"""ds.brain carries the validated store: fit, read, results, the grid; a job checks the schema once."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_a_fit_on_a_selection_of_the_store_is_refused_not_made_on_the_whole_store(fresh_store):
    """ds.isel(gene=...).brain.fit fitted every gene and voxel of the store, as if the selection
    were not there; it is refused, naming the selection and the estimator that fits it."""
    ds = brainzarr.open_store(fresh_store)
    for part, shown in (
        (ds.isel(gene=slice(0, 10)), f"{ds.sizes['voxel']:,} of {ds.sizes['voxel']:,} voxels, 10 of 30 genes"),
        (ds.sel(voxel=ds.hemisphere == "L"), "voxels, 30 of 30 genes"),
        (ds.isel(gene=slice(None, None, -1)), "its voxels or genes in another order"),
    ):
        offer = "brainzarr.models.PCA\\(n_components=3\\)"
        with pytest.raises(ValueError, match=f"a selection of the store \\(.*{shown}\\).*{offer}"):
            part.brain.fit("pca", 3)
    assert ds.brain.results() == []  # nothing was fitted or written
    model = brainzarr.models.PCA(n_components=3).fit(ds.isel(gene=slice(0, 10)).brain.expression("train"))
    assert list(model.genes_) == list(ds["gene"].values[:10])  # what the message offers fits the selection


def test_the_dataset_from_open_store_goes_where_a_store_goes(fresh_store):
    """fit_store(ds, ...), write_group(ds, ...): the Dataset's text was taken for a file name
    ('File name too long'); it stands for its store, and a selection is refused by the fit."""
    import xarray as xr

    ds = brainzarr.open_store(fresh_store)
    result = brainzarr.fit_store(ds, "pca", 2)
    assert brainzarr.list_groups(ds) == ["representations/random/pca/k2"]
    model = brainzarr.load_model(ds, "pca", 2)
    np.testing.assert_allclose(model.transform(ds["expression"]).values, result["embedding"].values, atol=1e-5)
    brainzarr.write_group(ds, "analyses/mean", ds["expression"].mean("gene").to_dataset(name="mean"))
    assert "mean" in brainzarr.read_group(ds, "analyses/mean")
    with pytest.raises(ValueError, match=r"a selection of the store \(.*10 of 30 genes\)"):
        brainzarr.fit_store(ds.isel(gene=slice(0, 10)), "pca", 3)
    with pytest.raises(TypeError, match="a store is a path .*this Dataset has none"):
        brainzarr.fit_store(xr.Dataset(), "pca", 3)


def test_accessor_needs_a_store(small_store):
    import xarray as xr

    with pytest.raises(ValueError, match="not opened with brainzarr.open_store"):
        _ = xr.Dataset().brain.store
    ds = brainzarr.open_store(small_store)
    with pytest.raises(ValueError, match=r"or an xarray operation that keeps no encoding \(.where"):
        _ = ds.where(ds.hemisphere == "L", drop=True).brain.store  # xarray drops the encoding
    assert ds.sel(voxel=ds.hemisphere == "L").brain.store.path == ds.brain.store.path  # as the message says


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


@pytest.mark.parametrize("split, scheme", [("train", None), ("test", "random"), ("buffer", "blocked"), (None, None)])
def test_a_splits_expression_is_read_in_the_stores_row_blocks(chunked_store, split, scheme):
    from brainzarr.models import PCA
    from brainzarr.streaming.direct import direct_reads

    ds = brainzarr.open_store(chunked_store)
    X = ds.brain.expression(split, scheme=scheme)
    labels = ds["split" if scheme is None else f"split_{scheme}"]
    idiom = ds["expression"] if split is None else ds["expression"].where(labels == split, drop=True)
    assert direct_reads(X.data) is not None  # a pass calls the store's reader, one call a row block
    assert X.dims == idiom.dims and sorted(X.coords) == sorted(idiom.coords)
    for name in X.coords:
        np.testing.assert_array_equal(X[name].values, idiom[name].values)
    np.testing.assert_array_equal(X.values, idiom.values)
    assert X.attrs == idiom.attrs
    if split == "train":  # an estimator takes it as it takes the idiom
        Z = PCA(n_components=2, random_state=0).fit(X).transform(X)
        assert Z.dims == ("voxel", "component") and Z.sizes["voxel"] == idiom.sizes["voxel"]


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    density=st.sampled_from([0.0, 0.003, 0.3, 0.97, 1.0]),
    split=st.sampled_from([None, "train", "test"]),
)
def test_the_voxels_of_a_mask_are_read_in_the_stores_row_blocks(chunked_store, seed, density, split):
    from brainzarr.streaming import stream_blocks
    from brainzarr.streaming.direct import direct_reads

    ds = brainzarr.open_store(chunked_store)
    rng = np.random.default_rng(seed)
    chosen = ds["hemisphere"].copy(data=rng.random(ds.sizes["voxel"]) < density)  # over voxel, with its labels
    idiom = ds["expression"].where(chosen if split is None else chosen & (ds.split == split), drop=True)
    X = ds.brain.expression(split, where=chosen)
    assert direct_reads(X.data) is not None or X.sizes["voxel"] == 0  # no voxel, nothing to read
    assert X.shape == idiom.shape
    np.testing.assert_array_equal(X["voxel"].values, idiom["voxel"].values)
    np.testing.assert_array_equal(X.values, idiom.values)
    streamed = [b for b in stream_blocks(X.data)]
    np.testing.assert_array_equal(np.concatenate(streamed) if streamed else X.values[:0], idiom.values)


def test_a_mask_must_be_a_condition_on_the_datasets_voxels(small_store):
    ds = brainzarr.open_store(small_store)
    left = ds.hemisphere == "L"
    reordered = ds.brain.expression(where=left.isel(voxel=slice(None, None, -1)))  # aligned on voxel
    np.testing.assert_array_equal(reordered.values, ds.expression.where(left, drop=True).values)
    with pytest.raises(TypeError, match="where= must be boolean"):
        ds.brain.expression(where=ds.x)
    with pytest.raises(ValueError, match="where= covers 10 voxels, not the Dataset's"):
        ds.brain.expression(where=left.isel(voxel=slice(0, 10)))
    with pytest.raises(ValueError, match="where= has shape"):
        ds.brain.expression(where=np.ones(5, dtype=bool))
    with pytest.raises(ValueError, match="along voxel alone"):
        ds.brain.expression(where=ds.expression > 0.5)


def test_a_selection_of_the_store_gives_the_same_selection(small_store):
    ds = brainzarr.open_store(small_store)
    part = ds.isel(gene=slice(0, 7))
    X = part.brain.expression("test")
    np.testing.assert_array_equal(X.values, part["expression"].where(part.split == "test", drop=True).values)
    with pytest.raises(ValueError, match="split has no 'buffer' voxels; its labels: test, train"):
        ds.brain.expression("buffer")
    with pytest.raises(ValueError, match="unknown split scheme 'spatial'"):
        ds.brain.expression("train", scheme="spatial")
