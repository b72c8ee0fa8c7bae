"""Region means of a store's voxel arrays over an atlas (``parcellate``, ``brainzarr parcellate``)."""

import json
import re
import shutil
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brainzarr import build_store, fit_store, from_nifti, open_store, parcellate
from brainzarr.cli import main
from brainzarr.grid import mni152_grid
from brainzarr.parcellate import read_lut
from brainzarr.store import store_grid


def _atlas_4mm(path):
    """Six regions (hemisphere x three z bands) on a 4 mm grid, and label 99 in a corner that
    no brain voxel reaches."""
    grid = mni152_grid(4)
    vol = np.zeros(grid.shape, np.int16)
    vol[tuple(grid.ijk.T)] = 1 + (grid.xyz[:, 0] > 0) + 10 * np.digitize(grid.xyz[:, 2], [-20, 20])
    vol[0, 0, 0] = 99
    nib.save(nib.Nifti1Image(vol, grid.affine), path)
    return path


def _numpy_means(values, labels, region):
    return values[labels == region].mean(axis=0)


def test_region_means_of_expression_and_results(chunked_store, tmp_path):
    atlas = _atlas_4mm(tmp_path / "atlas.nii.gz")
    store = shutil.copytree(chunked_store, tmp_path / "c8.zarr")  # the fit below writes into it
    ds = open_store(store)
    assert len(ds.expression.data.chunks[0]) > 1  # the pass streams several row blocks
    labels = from_nifti(atlas, ds, interpolation="nearest").values
    with pytest.warns(UserWarning, match="1 of 7 regions of .*atlas.nii.gz hold no voxel of the array: 99"):
        table = ds.expression.brain.parcellate(atlas)

    assert table.dims == ("region", "gene") and list(table["gene"].values) == list(ds["gene"].values)
    assert list(table["region"].values) == [1, 2, 11, 12, 21, 22, 99]
    counts = table["n_voxels"].values
    assert counts[-1] == 0 and counts.sum() == ds.sizes["voxel"]  # every brain voxel in one region
    assert np.isnan(table.sel(region=99)).all()
    X = ds.expression.values
    for region, n in zip(table["region"].values[:-1], counts[:-1]):
        assert n == (labels == region).sum()
        np.testing.assert_allclose(table.sel(region=region), _numpy_means(X, labels, region), rtol=1e-5, atol=1e-7)

    # a result's (voxel, component) embedding and (voxel,) error map
    fit_store(store, "pca", 3)
    result = ds.brain.read("pca", 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        emb = parcellate(result["embedding"], atlas)
        err = parcellate(result["voxel_rmse"], atlas)
    assert emb.dims == ("region", "component") and err.dims == ("region",)
    Z, E = result["embedding"].values, result["voxel_rmse"].values
    np.testing.assert_allclose(emb.sel(region=12), _numpy_means(Z, labels, 12), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(err.sel(region=21), _numpy_means(E, labels, 21), rtol=1e-5)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n_regions=st.integers(1, 12),
    seed=st.integers(0, 2**16),
    voxel_fraction=st.sampled_from([0.05, 0.5, 1.0]),
)
def test_region_means_equal_a_group_by(small_store, n_regions, seed, voxel_fraction):
    """Any atlas on the store's grid, any subset of voxels and genes: pandas' group-by means."""
    rng = np.random.default_rng(seed)
    ds = open_store(small_store)
    grid = store_grid(small_store)
    vol = np.zeros(grid.shape, np.int32)
    vol[tuple(grid.ijk.T)] = rng.integers(0, n_regions + 1, grid.n_voxels) * 7  # 0: no region
    vol[0, 0, 0] = 7 * (n_regions + 1)  # a label outside the brain: always empty
    atlas = nib.Nifti1Image(vol, grid.affine)
    voxels = np.sort(rng.choice(ds.sizes["voxel"], max(1, int(voxel_fraction * ds.sizes["voxel"])), replace=False))
    genes = np.sort(rng.choice(ds.sizes["gene"], 5, replace=False))
    data = ds.expression.isel(voxel=voxels, gene=genes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = parcellate(data, atlas)

    labels = vol[tuple(grid.ijk[voxels].T)]
    expected = pd.DataFrame(data.values).groupby(labels).mean().drop(index=0, errors="ignore")
    present = np.unique(vol[vol > 0])
    assert list(table["region"].values) == list(present)
    held = table["n_voxels"].values > 0
    assert list(table["region"].values[held]) == list(expected.index)
    np.testing.assert_allclose(table.values[held], expected.values, rtol=1e-5, atol=1e-7)
    assert np.isnan(table.values[~held]).all()


def _half_voxel_atlas(grid, labels_of_children):
    """An atlas on the grid of half the store's voxel size whose voxels nest in the store's: each
    store voxel holds 2 x 2 x 2 of them (centres at +-1/4 of a store voxel)."""
    affine = grid.affine.copy()
    affine[:3, :3] /= 2
    affine[:3, 3] -= np.diag(grid.affine)[:3] / 4
    return nib.Nifti1Image(labels_of_children, affine)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_regions=st.integers(1, 9), seed=st.integers(0, 2**16), voxel_fraction=st.sampled_from([0.1, 1.0]))
def test_volume_weighting_averages_the_atlas_voxels_with_their_store_voxels_values(
    small_store, n_regions, seed, voxel_fraction
):
    """A fine atlas nested in the store's grid: each region's mean is the mean, over its atlas
    voxels, of the value of the store voxel that holds each; n_voxels counts eighths."""
    rng = np.random.default_rng(seed)
    ds = open_store(small_store)
    grid = store_grid(small_store)
    fine = rng.integers(0, n_regions + 1, tuple(2 * n for n in grid.shape)).astype(np.int16) * 3  # 0: none
    atlas = _half_voxel_atlas(grid, fine)
    voxels = np.sort(rng.choice(ds.sizes["voxel"], max(1, int(voxel_fraction * ds.sizes["voxel"])), replace=False))
    data = ds.expression.isel(voxel=voxels, gene=[0, 7, 42])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = parcellate(data, atlas, weighting="volume")

    ijk = grid.ijk[voxels]
    children = np.stack(
        [fine[2 * ijk[:, 0] + a, 2 * ijk[:, 1] + b, 2 * ijk[:, 2] + c] for a in (0, 1) for b in (0, 1) for c in (0, 1)],
        axis=1,
    )  # (voxels, 8) labels
    values = np.repeat(data.values, 8, axis=0)  # each store voxel's value for each of its atlas voxels
    expected = pd.DataFrame(values).groupby(children.ravel()).mean().drop(index=0, errors="ignore")
    counts = pd.Series(children.ravel()).value_counts().drop(index=0, errors="ignore") / 8
    assert list(table["region"].values) == list(np.unique(fine[fine > 0]))
    held = table["n_voxels"].values > 0
    assert list(table["region"].values[held]) == list(expected.index)
    np.testing.assert_allclose(table.values[held], expected.values, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(table["n_voxels"].values[held], counts.reindex(expected.index).values, rtol=1e-6)
    assert table.attrs["weighting"] == "volume"


def test_volume_weighting_gives_a_region_smaller_than_a_voxel_its_value(small_store):
    ds = open_store(small_store)
    grid = store_grid(small_store)
    fine = np.zeros(tuple(2 * n for n in grid.shape), np.int16)
    v = 1000
    i, j, k = grid.ijk[v]
    fine[2 * i : 2 * i + 2, 2 * j : 2 * j + 2, 2 * k : 2 * k + 2] = 1  # the voxel is region 1 ...
    fine[2 * i + 1, 2 * j + 1, 2 * k + 1] = 5  # ... but for an eighth of it
    data = ds.expression.isel(gene=3)
    table = parcellate(data, _half_voxel_atlas(grid, fine), weighting="volume")
    np.testing.assert_allclose(table["n_voxels"].values, [7 / 8, 1 / 8])
    np.testing.assert_allclose(table.values, [data.values[v], data.values[v]], rtol=1e-6)
    flipped = _half_voxel_atlas(grid, fine)  # the same atlas stored left-right flipped, as FSL's are
    affine = flipped.affine.copy()
    affine[:3, 3] += affine[:3, 0] * (fine.shape[0] - 1)
    affine[:3, 0] *= -1
    las = parcellate(data, nib.Nifti1Image(fine[::-1], affine), weighting="volume")
    np.testing.assert_array_equal(las.values, table.values)
    np.testing.assert_array_equal(las["n_voxels"].values, table["n_voxels"].values)
    with pytest.warns(
        UserWarning, match=r"1 of 2 regions .* hold no voxel of the array: [15] \(the atlas is finer .* 'volume'"
    ):
        centre = parcellate(data, _half_voxel_atlas(grid, fine))  # the voxel goes to one of them
    assert sorted(centre["n_voxels"].values.tolist()) == [0, 1]


def _share_along(centres, side, atlas_centres, atlas_side) -> np.ndarray:
    """(store voxels, atlas voxels) along one world axis: the fraction of each store voxel's
    extent (mm) inside each atlas voxel's."""
    lo = np.maximum(centres[:, None] - side / 2, atlas_centres[None] - atlas_side / 2)
    hi = np.minimum(centres[:, None] + side / 2, atlas_centres[None] + atlas_side / 2)
    return np.clip(hi - lo, 0, None) / side


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    atlas_sides=st.tuples(*[st.floats(2.5, 12.0)] * 3),
    shifts=st.tuples(*[st.floats(0.0, 1.0)] * 3),
    n_regions=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_volume_weighting_counts_each_voxel_by_the_share_of_its_volume_in_each_region(
    small_store, atlas_sides, shifts, n_regions, seed
):
    """An atlas on any grid parallel to the store's, finer or coarser, its voxels anywhere:
    each store voxel counts in each region by the share of its volume there, computed here in
    millimetres from the two grids' voxel boxes (a coarse atlas's border splits the voxels it
    crosses; the centre's label took them whole)."""
    ds = open_store(small_store)
    grid = store_grid(small_store)
    sides = np.diag(grid.affine)[:3]
    starts = grid.affine[:3, 3] - sides / 2  # the store grid's corner (mm)
    atlas_shape = tuple(int(np.ceil(n * s / w)) + 2 for n, s, w in zip(grid.shape, sides, atlas_sides, strict=True))
    atlas_affine = np.diag([*atlas_sides, 1.0])
    atlas_affine[:3, 3] = starts - np.asarray(atlas_sides) * (np.asarray(shifts) - 0.5)
    labels = np.random.default_rng(seed).integers(0, n_regions + 1, atlas_shape).astype(np.int16)
    data = ds.expression.isel(gene=[0, 9])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = parcellate(data, nib.Nifti1Image(labels, atlas_affine), weighting="volume")

    share = [
        _share_along(
            grid.affine[a, 3] + sides[a] * np.arange(grid.shape[a]),
            sides[a],
            atlas_affine[a, 3] + atlas_sides[a] * np.arange(atlas_shape[a]),
            atlas_sides[a],
        )
        for a in range(3)
    ]
    regions = np.unique(labels[labels > 0])
    in_region = (labels[..., None] == regions).astype(float)  # (atlas voxels..., regions)
    for a in range(3):  # contract each atlas axis with the store's along it
        in_region = np.moveaxis(np.tensordot(share[a], in_region, axes=([1], [a])), 0, a)
    fractions = in_region[tuple(grid.ijk.T)]  # (store voxels, regions)
    n_voxels = fractions.sum(axis=0)
    assert list(table["region"].values) == list(regions)
    np.testing.assert_allclose(table["n_voxels"].values, n_voxels, rtol=1e-5, atol=1e-6)
    held = n_voxels > 1e-6
    means = (fractions.T @ data.values.astype(np.float64))[held] / n_voxels[held, None]
    np.testing.assert_allclose(table.values[held], means, rtol=1e-4, atol=1e-6)


def test_on_the_stores_grid_volume_and_centre_weighting_agree(small_store):
    ds = open_store(small_store)
    atlas = _atlas_4mm_on(store_grid(small_store))
    a = parcellate(ds.expression.isel(gene=slice(0, 6)), atlas)
    b = ds.expression.isel(gene=slice(0, 6)).brain.parcellate(atlas, weighting="volume")
    np.testing.assert_allclose(b.values, a.values, rtol=1e-6)
    np.testing.assert_array_equal(b["n_voxels"].values, a["n_voxels"].values)
    with pytest.raises(ValueError, match="weighting must be one of centre, volume"):
        parcellate(ds.expression.isel(gene=0), atlas, weighting="majority")
    corner = np.asarray(atlas.dataobj).copy()
    corner[0, 0, 0] = 99  # outside the brain: no voxel, and no hint (the atlas is not finer)
    with pytest.warns(UserWarning) as caught:
        parcellate(ds.expression.isel(gene=0), nib.Nifti1Image(corner, atlas.affine))
    assert [str(w.message) for w in caught] == ["1 of 7 regions of the atlas hold no voxel of the array: 99"]


def _atlas_4mm_on(grid):
    vol = np.zeros(grid.shape, np.int16)
    vol[tuple(grid.ijk.T)] = 1 + (grid.xyz[:, 0] > 0) + 10 * np.digitize(grid.xyz[:, 2], [-20, 20])
    return nib.Nifti1Image(vol, grid.affine)


def test_an_atlas_with_nan_outside_its_regions_counts_them_as_background(small_store):
    ds = open_store(small_store)
    grid = store_grid(small_store)
    fine = np.ones(tuple(2 * n for n in grid.shape), np.float32)
    fine[: fine.shape[0] // 2] = np.nan  # the left half: no region
    data = ds.expression.isel(gene=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no cast of NaN to an integer
        table = parcellate(data, _half_voxel_atlas(grid, fine), weighting="volume")
    right = grid.ijk[:, 0] >= grid.shape[0] // 2
    assert table["n_voxels"].values.tolist() == [right.sum()]
    np.testing.assert_allclose(table.values, [data.values[right].mean()], rtol=1e-6)


@pytest.mark.parametrize("strategy", ["mean", "maximum", "variance"])
def test_regions_whose_voxels_hold_nan_are_named(small_store, strategy):
    """A map read beyond its field of view (or masked with .where) holds NaN: a region with such
    a voxel is NaN, as numpy's statistics are, which read as a region of no voxel. The warning
    names those regions and only those; without the NaN voxels each region is its other voxels'."""
    ds = open_store(small_store)
    grid = store_grid(small_store)
    atlas = _atlas_4mm_on(grid)
    data = ds.expression.isel(gene=[2, 3]).compute()
    right = ds["x"] > 0
    masked = data.where(right | (ds["z"] > 20))  # NaN in the lower left
    with pytest.warns(UserWarning, match="hold voxels whose values are NaN") as said:
        table = parcellate(masked, atlas, strategy=strategy)
    named = str(next(w.message for w in said if "NaN" in str(w.message)))
    labels = np.asarray(atlas.dataobj)[tuple(grid.ijk.T)]
    with_nan = np.unique(labels[np.isnan(masked.values).any(axis=1)])
    assert named.startswith(f"{len(with_nan)} of {table.sizes['region']} regions ")
    assert named.split(": ")[1].split(";")[0] == ", ".join(map(str, with_nan))
    assert np.isnan(table.sel(region=with_nan).values).all()
    with pytest.warns(UserWarning, match="hold no voxel of the array"):  # the regions of NaN voxels only
        kept = parcellate(masked.dropna("voxel"), atlas, strategy=strategy)
    frame = pd.DataFrame(masked.values).groupby(labels)  # pandas skips NaN
    expected = {"mean": frame.mean(), "maximum": frame.max(), "variance": frame.var(ddof=0)}[strategy]
    np.testing.assert_allclose(kept.values, expected.loc[kept["region"].values].values, rtol=1e-5, atol=1e-9)


def test_bad_atlases_and_arrays_are_refused(small_store):
    ds = open_store(small_store)
    grid = store_grid(small_store)
    data = ds.expression.isel(gene=0)
    with pytest.raises(ValueError, match="non-integer values"):
        parcellate(data, nib.Nifti1Image(np.full(grid.shape, 0.5, np.float32), grid.affine))
    with pytest.raises(ValueError, match="no region"):
        parcellate(data, nib.Nifti1Image(np.zeros(grid.shape, np.int16), grid.affine))
    with pytest.raises(
        ValueError,
        match="2 volumes; an atlas is one volume of integer labels .of a probabilistic atlas, its max-probability",
    ):
        parcellate(data, nib.Nifti1Image(np.ones((*grid.shape, 2), np.int16), grid.affine))
    with pytest.raises(ValueError, match="'voxel' dimension"):
        parcellate(ds["gene"], nib.Nifti1Image(np.ones(grid.shape, np.int16), grid.affine))
    # background=0.5 matched no label, so the outside of the brain became a region; True was 1
    halves = nib.Nifti1Image(np.where(grid.mask, 1 + (np.indices(grid.shape)[0] > 12), 0).astype(np.int16), grid.affine)
    for bad in (0.5, True, "0", None):
        with pytest.raises(ValueError, match=rf"^background must be a whole number, got {re.escape(repr(bad))} \(the"):
            parcellate(data, halves, background=bad)
    with pytest.warns(UserWarning, match="1 of 2 regions of the atlas hold no voxel of the array: 0"):
        assert list(parcellate(data, halves, background=2.0)["region"].values) == [0, 1]  # 0: outside the brain


def test_a_label_image_brainzarr_wrote_is_an_atlas_that_names_its_regions(small_store, tmp_path):
    """``ds.hemisphere`` exported (a label image with its table) parcellates by hemisphere, the
    regions named L and R without a look-up table; the labels themselves are not averaged."""
    ds = open_store(small_store)
    atlas = ds.hemisphere.brain.to_nifti(tmp_path / "hemi.nii.gz")
    means = parcellate(ds.expression, atlas)
    assert means["region"].values.tolist() == [1, 2] and means["region_name"].values.tolist() == ["L", "R"]
    expected = ds.expression.groupby(ds.hemisphere).mean().sel(hemisphere=["L", "R"])
    np.testing.assert_allclose(means.values, expected.values, rtol=1e-5)
    with pytest.raises(ValueError, match="holds labels, not values"):
        parcellate(ds.split, atlas)


def test_a_result_named_without_its_split_is_recorded_as_read(tmp_path, capsys):
    store = build_store(tmp_path / "s8.zarr", resolution=8, genes=6, random_state=0)
    fit_store(store, "pca", 2, progress=False)
    atlas = _atlas_4mm(tmp_path / "atlas.nii.gz")
    argv = ["parcellate", str(store), "representations/pca/k2/embedding", "--atlas", str(atlas)]
    assert main([*argv, "-o", str(tmp_path / "pca.csv"), "--nifti", str(tmp_path / "pca.nii.gz")]) == 0, (
        capsys.readouterr()
    )
    record = json.loads((tmp_path / "pca.json").read_text())  # the table's and the image's (one stem)
    assert record["variable"] == "representations/random/pca/k2/embedding"
    assert "of representations/random/pca/k2/embedding of the store" in record["Description"]


def test_cli_writes_the_table_that_a_parcellated_build_reads(small_store, tmp_path, capsys):
    atlas = _atlas_4mm(tmp_path / "atlas.nii.gz")
    out = tmp_path / "regions.csv"
    code = main(["parcellate", str(small_store), "expression", "--atlas", str(atlas), "--gene", "3", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.strip().splitlines() == [
        f"wrote {out}  6 regions x 3 genes",
        f"wrote {tmp_path / 'regions.json'}  (how the table was made)",
    ]
    sidecar = json.loads((tmp_path / "regions.json").read_text())  # BIDS: a tabular file's JSON sidecar
    assert sidecar["strategy"] == "mean" and sidecar["weighting"] == "centre" and sidecar["background"] == 0
    assert sidecar["Sources"] == [str(small_store), str(atlas)] and sidecar["variable"] == "expression"
    assert sidecar["GeneratedBy"][0]["Name"] == "brainzarr"
    assert sidecar["Description"].startswith("mean over each region's voxels of expression")
    # the warning is one line, as errors are
    assert captured.err.strip().splitlines() == [
        f"brainzarr parcellate: warning: 1 of 7 regions of {atlas} hold no voxel of the array: 99 (the atlas is "
        "finer than the array's grid: with weighting 'volume', a region that covers part of a voxel gets a value)"
    ]
    frame = pd.read_csv(out, index_col=0)
    assert frame.index.name == "label" and list(frame.index) == [1, 2, 11, 12, 21, 22]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = open_store(small_store).expression.sel(gene=list(frame.columns)).brain.parcellate(atlas)
    np.testing.assert_allclose(frame.values, table.values[:6], rtol=1e-12)

    # the table builds a parcellated store whose regions keep their order gene by gene (region 99,
    # left out of the table, is dropped by name)
    store = build_store(
        tmp_path / "dk.zarr", source="parcellated", table=out, atlas=atlas, resolution=8, missing_regions="drop"
    )
    with pytest.warns(UserWarning, match="hold no voxel"):
        back = open_store(store).expression.brain.parcellate(atlas)
    for gene in frame.columns:
        assert np.argsort(back.sel(gene=gene).values[:6]).tolist() == np.argsort(frame[gene].values).tolist()

    tsv = tmp_path / "regions.tsv"  # tab-separated, as BIDS writes tables
    assert main(["parcellate", str(small_store), "expression", "--atlas", str(atlas), "--gene", "3", "-o", str(tsv),
                 "--overwrite"]) == 0  # fmt: skip
    pd.testing.assert_frame_equal(pd.read_csv(tsv, sep="\t", index_col=0), frame)
    capsys.readouterr()
    assert (
        main(["parcellate", str(small_store), "expression", "--atlas", str(atlas), "-o", str(tmp_path / "r.txt")]) == 1
    )
    assert "give a file name ending in .csv (or .tsv" in capsys.readouterr().err
    assert main(["parcellate", str(small_store), "expression", "--atlas", str(atlas), "-o", str(out)]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    other = tmp_path / "other.csv"
    (tmp_path / "other.json").write_text("{}")  # a sidecar's place taken: refused before anything is written
    assert main(["parcellate", str(small_store), "expression", "--atlas", str(atlas), "-o", str(other)]) == 1
    assert f"{tmp_path / 'other.json'} exists; pass --overwrite" in capsys.readouterr().err
    assert not other.exists() and (tmp_path / "other.json").read_text() == "{}"

    fine = tmp_path / "fine.nii.gz"  # the atlas at half the store's voxel size: --weighting volume
    grid = store_grid(small_store)
    labels = np.asarray(_atlas_4mm_on(grid).dataobj)
    nib.save(_half_voxel_atlas(grid, labels.repeat(2, 0).repeat(2, 1).repeat(2, 2)), fine)
    argv = ["parcellate", str(small_store), "expression", "--atlas", str(fine), "--gene", "3", "-o", str(out)]
    assert main([*argv, "--overwrite", "--weighting", "volume"]) == 0
    by_volume = pd.read_csv(out, index_col=0)
    assert json.loads((tmp_path / "regions.json").read_text())["weighting"] == "volume"
    coarse = _atlas_4mm_on(grid)  # the same regions on the store's grid
    expected = open_store(small_store).expression.sel(gene=list(by_volume.columns)).brain.parcellate(coarse)
    np.testing.assert_allclose(by_volume.values, expected.values, rtol=1e-6)
    with pytest.raises(SystemExit, match="2"):
        main([*argv, "--overwrite", "--weighting", "majority"])
    assert "invalid choice: 'majority'" in capsys.readouterr().err


_NAMES = {1: "L-inferior", 2: "R-inferior", 11: "L-middle", 12: "R-middle", 21: "L-superior", 22: "R-superior"}


def _lut_files(folder) -> dict:
    """The same look-up table in each format it may come in, naming every region of
    :func:`_atlas_4mm` but 99, and one label the atlas lacks."""
    named = {**_NAMES, 7: "not-in-the-atlas"}
    dseg = folder / "atlas_dseg.tsv"  # BIDS: index, name (and more columns)
    pd.DataFrame({"index": list(named), "name": list(named.values()), "abbreviation": "x"}).to_csv(
        dseg, sep="\t", index=False
    )
    csv = folder / "atlas_lut.csv"
    pd.DataFrame({"name": list(named.values()), "index": list(named)}).to_csv(csv, index=False)
    freesurfer = folder / "atlas_LUT.txt"  # FreeSurferColorLUT.txt: comments, blank lines, colours
    rows = [f"{label:<5d} {name:<20s} 120  18 134   0" for label, name in named.items()]
    freesurfer.write_text("#$Id: FreeSurferColorLUT.txt\n\n#No. Label Name:  R G B A\n" + "\n".join(rows) + "\n")
    fsleyes = folder / "atlas.lut"  # FSLeyes' (and brainzarr export's): value r g b name
    fsleyes.write_text("".join(f"{label} 0.12157 0.46667 1.00000 {name}\n" for label, name in named.items()))
    order = folder / "Schaefer_order.txt"  # Schaefer's: tab-separated, no header
    order.write_text("".join(f"{label}\t{name}\t120\t18\t134\t0\n" for label, name in named.items()))
    # FSL's atlas descriptions: a label atlas's index is the voxel value; a probabilistic one's is
    # its volume, and its summary (maxprob) image holds index + 1 (as FSL's own misspelling)
    fsl = {}
    for kind, shift in (("Label", 0), ("Probabalistic", 1)):
        fsl[kind] = folder / f"atlas_{kind}.xml"
        labels = "".join(
            f'<label index="{label - shift}" x="0" y="0" z="0">{name}</label>' for label, name in named.items()
        )
        fsl[kind].write_text(
            f'<?xml version="1.0" encoding="ISO-8859-1"?>\n<atlas version="1.0"><header><name>test</name>'
            f"<type>{kind}</type><images><imagefile>/a</imagefile><summaryimagefile>/a</summaryimagefile>"
            f"</images></header><data>{labels}</data></atlas>\n"
        )
    return {
        "dseg": dseg, "csv": csv, "freesurfer": freesurfer, "fsleyes": fsleyes, "order": order, "mapping": named,
        "fsl_label": fsl["Label"], "fsl_probabilistic": fsl["Probabalistic"],
    }  # fmt: skip


def test_a_look_up_table_names_the_regions_in_any_of_its_formats(small_store, tmp_path):
    atlas = _atlas_4mm(tmp_path / "atlas.nii.gz")
    data = open_store(small_store).expression.isel(gene=[2, 5])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        plain = parcellate(data, atlas)
    for kind, lut in _lut_files(tmp_path).items():
        with pytest.warns(UserWarning) as caught:
            table = data.brain.parcellate(atlas, lut=lut)
        messages = [str(w.message) for w in caught]
        assert f"1 of 7 regions of {atlas} have no name in the look-up table (named 'unknown'): 99" in messages, kind
        assert list(table["region_name"].values) == [*_NAMES.values(), "unknown"], kind
        np.testing.assert_array_equal(table.values, plain.values)
        assert table.sel(region=12)["region_name"].item() == "R-middle"
    assert read_lut(pd.DataFrame({"index": [3.0], "name": ["x"]})) == {3: "x"}
    # nilearn's atlas fetchers give a DataFrame (index, name, color), names at times as bytes
    from sklearn.utils import Bunch

    with pytest.warns(UserWarning) as caught:  # region 99: no voxel, and no name
        bunch = parcellate(data, Bunch(maps=str(atlas), lut=pd.read_csv(_lut_files(tmp_path)["dseg"], sep="\t")))
    assert any("have no name in the look-up table" in str(w.message) for w in caught)
    assert list(bunch["region_name"].values) == [*_NAMES.values(), "unknown"]  # as nilearn's fetchers give it
    fetched = pd.DataFrame({"index": [0, 1], "name": ["Background", b"7Networks_LH_Vis_1"], "color": "#f00"})
    assert read_lut(fetched) == {0: "Background", 1: "7Networks_LH_Vis_1"}
    spaced = tmp_path / "HarvardOxford-like.xml"  # names with spaces; an explicit value is the voxel value
    spaced.write_text(
        "<atlas><header><type>Probabilistic</type></header><data>"
        '<label index="0" x="1" y="2" z="3">Frontal Pole</label><label index="1" value="7">Insular Cortex</label>'
        "</data></atlas>"
    )
    assert read_lut(spaced) == {1: "Frontal Pole", 7: "Insular Cortex"}


def test_tables_that_are_not_look_up_tables_are_refused(small_store, tmp_path):
    atlas = _atlas_4mm(tmp_path / "atlas.nii.gz")
    data = open_store(small_store).expression.isel(gene=0)
    notes = tmp_path / "notes.txt"
    notes.write_text("regions of the atlas\n")
    twice = tmp_path / "twice_dseg.tsv"
    twice.write_text("index\tname\n1\ta\n1\tb\n")
    fractional = tmp_path / "fractional_dseg.tsv"
    fractional.write_text("index\tname\n1.5\ta\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing but a comment\n")
    not_fsl = tmp_path / "other.xml"
    not_fsl.write_text("<svg><g/></svg>")
    broken = tmp_path / "broken.xml"
    broken.write_text("<atlas><header>")
    cases = [
        (notes, "notes.txt is not a look-up table: give columns 'index' and 'name'"),
        (not_fsl, "other.xml is not an FSL atlas description"),
        (broken, "broken.xml is not an FSL atlas description: "),
        (twice, "names label 1 twice"),
        (fractional, "label '1.5' is not an integer"),
        (empty, "empty.txt is empty"),
        (pd.DataFrame({"id": [1], "label": ["a"]}), "needs columns 'index' and 'name'; this one has"),
    ]
    for lut, message in cases:
        with pytest.raises(ValueError, match=message):
            parcellate(data, atlas, lut=lut)
    with pytest.raises(FileNotFoundError, match="no look-up table at"):
        parcellate(data, atlas, lut=tmp_path / "missing.tsv")
    with pytest.raises(ValueError, match="atlas.nii.gz is not a look-up table: it is not text"):
        parcellate(data, atlas, lut=atlas)  # the atlas itself, by mistake
    with pytest.raises(TypeError, match="lut must be a file, a DataFrame or a mapping"):
        parcellate(data, atlas, lut=["a", "b"])


def test_look_up_tables_in_other_encodings_are_read(tmp_path):
    from brainzarr.parcellate import read_lut

    latin = tmp_path / "latin.txt"  # an older tool's file: accented names in Latin-1
    latin.write_bytes("1 Région-gauche 120 18 134 0\n".encode("latin-1"))
    assert read_lut(latin) == {1: "Région-gauche"}
    bom = tmp_path / "excel_dseg.tsv"  # saved by a spreadsheet: UTF-8 with a byte-order mark
    bom.write_text("index\tname\n1\tRégion\n", encoding="utf-8-sig")
    assert read_lut(bom) == {1: "Région"}


def test_cli_names_the_regions_and_the_build_reads_the_named_table(small_store, tmp_path, capsys):
    atlas = _atlas_4mm(tmp_path / "atlas.nii.gz")
    lut = _lut_files(tmp_path)["dseg"]
    out = tmp_path / "named.csv"
    argv = ["parcellate", str(small_store), "expression", "--atlas", str(atlas), "--gene", "3", "-o", str(out)]
    assert main([*argv, "--lut", str(lut)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == f"wrote {out}  6 regions x 3 genes"  # the names are not a gene
    described = json.loads(out.with_suffix(".json").read_text())
    assert described["Sources"][-1] == str(lut) and str(lut) in described["region_name"]["Description"]
    err = captured.err
    assert "1 of 7 regions of" in err and "have no name in the look-up table (named 'unknown'): 99" in err
    frame = pd.read_csv(out, index_col=0)
    assert list(frame.columns[:1]) == ["region_name"] and list(frame["region_name"]) == list(_NAMES.values())
    genes = list(frame.columns[1:])
    assert len(genes) == 3
    # the build leaves the names out: the same store as from the table without them
    unnamed = tmp_path / "unnamed.csv"
    frame.drop(columns="region_name").to_csv(unnamed)
    stores = [
        build_store(
            tmp_path / f"{table.stem}.zarr",
            source="parcellated",
            table=table,
            atlas=atlas,
            resolution=8,
            missing_regions="drop",
        )
        for table in (out, unnamed)
    ]
    named_ds, unnamed_ds = (open_store(s) for s in stores)
    assert list(named_ds["gene"].values) == list(unnamed_ds["gene"].values) == sorted(genes)
    np.testing.assert_array_equal(named_ds.expression.values, unnamed_ds.expression.values)
    assert main([*argv, "--overwrite", "--lut", str(tmp_path / "missing.tsv")]) == 1
    assert "no look-up table at" in capsys.readouterr().err
    image = tmp_path / "named.nii.gz"  # the means on the atlas's grid, to look at
    assert main([*argv, "--overwrite", "--lut", str(lut), "--nifti", str(image)]) == 0
    assert f"wrote {image}  50 x 59 x 48 x 3 (the atlas's grid)" in capsys.readouterr().out
    volumes, labels = np.asarray(nib.load(image).dataobj), np.asarray(nib.load(atlas).dataobj)
    np.testing.assert_array_equal(volumes[labels == 12][0], frame.loc[12, genes].to_numpy(np.float32))
    assert main([*argv, "--overwrite", "--nifti", str(image)[: -len(".nii.gz")] + ".png"]) == 1
    assert "must end in .nii or .nii.gz" in capsys.readouterr().err
    assert main([*argv[:-1], str(tmp_path / "again.csv"), "--nifti", str(image)]) == 1
    assert f"{image} exists; pass --overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):
        main([*argv, "--overwrite", "--labels", str(lut)])  # nilearn's other name for it
    assert "unrecognized arguments: --labels" in (err := capsys.readouterr().err) and "did you mean --lut?" in err


def test_a_region_table_goes_back_on_its_atlas_as_an_image(small_store, tmp_path):
    """Each atlas voxel of a region takes the region's value, on the atlas's grid (nilearn's
    inverse_transform); a many-gene table is written a few volumes at a time and reads back with
    its gene labels."""
    from brainzarr.parcellate import region_map

    atlas = _atlas_4mm(tmp_path / "atlas.nii.gz")
    labels = np.asarray(nib.load(atlas).dataobj)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # region 99 holds no voxel
        table = open_store(small_store).expression.isel(gene=[1, 4, 8]).brain.parcellate(atlas, lut=_NAMES)
    one = table.sel(gene=table["gene"].values[1])
    img = one.brain.to_nifti()
    vol = np.asarray(img.dataobj)
    assert vol.shape == labels.shape and np.allclose(img.affine, nib.load(atlas).affine)
    assert img.header.get_sform(coded=True)[1] == 4  # MNI, as the atlas
    for region in (1, 12, 22):
        np.testing.assert_array_equal(vol[labels == region], np.float32(one.sel(region=region).item()))
    assert np.isnan(vol[labels == 99]).all() and (vol[labels == 0] == 0).all()  # no value; no region
    assert f"gene={table['gene'].values[1]}" in img.header["descrip"].item().decode()

    path = table.brain.to_nifti(tmp_path / "regions.nii.gz").get_filename()
    four = np.asarray(nib.load(path).dataobj)
    for g, gene in enumerate(table["gene"].values):
        np.testing.assert_array_equal(four[labels == 21, g], np.float32(table.sel(region=21, gene=gene).item()))
    back = from_nifti(path, region_map(table))
    assert back.dims == ("voxel", "gene") and list(back["gene"].values) == list(table["gene"].values)

    some = region_map(table.sel(region=[11, 2]))  # any selection of regions, in any order
    assert sorted(set(some["region"].values)) == [2, 11]
    np.testing.assert_array_equal(
        some.sel(gene=table["gene"].values[0]).values[some["region"].values == 11], table.sel(region=11).values[0]
    )
    assert len(some["voxel"]) == ((labels == 2) | (labels == 11)).sum()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # nilearn: no cut coordinates found on 8 mm
        figure = one.brain.plot(tmp_path / "regions.png")
    assert (tmp_path / "regions.png").stat().st_size > 10_000 and figure is not None


def test_a_region_table_without_its_atlas_file_asks_for_it(small_store, tmp_path):
    from brainzarr.parcellate import region_map

    loaded = nib.load(_atlas_4mm(tmp_path / "atlas.nii.gz"))
    atlas = nib.Nifti1Image(np.asarray(loaded.dataobj), loaded.affine)  # an image made in memory, not a file
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = parcellate(open_store(small_store).expression.isel(gene=0), atlas)
        from_file = parcellate(open_store(small_store).expression.isel(gene=0), loaded)
    with pytest.raises(ValueError, match="the table's atlas .* is not a file here: pass atlas="):
        table.brain.to_nifti()
    # an image loaded from a file is named by it: the table finds its atlas again
    assert from_file.attrs["atlas"] == str(tmp_path / "atlas.nii.gz")
    assert from_file.brain.to_nifti().shape == loaded.shape
    np.testing.assert_array_equal(
        region_map(table, atlas)["region"].values, np.asarray(atlas.dataobj)[np.asarray(atlas.dataobj) > 0]
    )
    with pytest.raises(ValueError, match="takes a \\(region,\\) or \\(region, d\\) table"):
        region_map(open_store(small_store).expression.isel(gene=0), atlas)
    with pytest.raises(ValueError, match="none of the table's regions is a label of"):
        region_map(table.assign_coords(region=table["region"].values + 1000), atlas)


def test_volume_weighted_voxel_counts_add_up_over_many_voxels():
    """A 64^3 grid under a 1.5x coarser atlas of slabs one atlas voxel thick, alternately region
    1 and 2, whose borders cut the grid's voxels into thirds (fractions float32 cannot hold):
    the fractions add up to the voxels, in float64 (scipy's float32 sum gave n_voxels off by ~10
    over 1.9M voxels at 1 mm)."""
    from brainzarr.grid import Grid

    shape = (64, 64, 64)
    grid = Grid(np.ones(shape, bool), np.diag([1.0, 1.0, 1.0, 1.0]), space="scanner", name="box")
    data = from_nifti(nib.Nifti1Image(np.full(shape, 0.5, np.float32), grid.affine), grid)
    atlas_affine = np.diag([1.5, 1.5, 1.5, 1.0])
    atlas_affine[:3, 3] = -1.0 + 1 / 3  # atlas borders at 1/3 and 2/3 of the grid's voxels
    slabs = np.broadcast_to((1 + np.arange(46) % 2)[:, None, None], (46, 46, 46)).astype(np.int16)
    table = parcellate(data, nib.Nifti1Image(np.ascontiguousarray(slabs), atlas_affine), weighting="volume")
    assert abs(table["n_voxels"].values.sum() - 64**3) < 1e-3
    # the sums are float32 products over the block's rows (here all 262,144 in one block)
    np.testing.assert_allclose(table.values, 0.5, rtol=1e-4)


def test_an_oblique_atlas_is_sampled_inside_each_voxel(small_store):
    """An atlas rotated against the store's grid (no per-axis overlaps): each voxel is sampled at
    points inside it. Two half-spaces split at x = 0 give each voxel its share on each side; a
    voxel whose centre lies on the split plane at 10 degrees counts on both."""
    ds = open_store(small_store)
    angle = np.deg2rad(10)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]) * 2
    shape = (160, 160, 100)  # 320 x 320 x 200 mm about (0, -20, 10): the whole brain and more
    affine[:3, 3] = np.array([0.0, -20.0, 10.0]) - affine[:3, :3] @ (np.array(shape) / 2)
    ijk = np.indices(shape).reshape(3, -1).T
    x = (ijk @ affine[:3, :3].T + affine[:3, 3])[:, 0].reshape(shape)
    labels = np.where(x < 0, 1, 2).astype(np.int16)
    data = ds.expression.isel(gene=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = parcellate(data, nib.Nifti1Image(labels, affine), weighting="volume")
    assert abs(table["n_voxels"].values.sum() - ds.sizes["voxel"]) < 1e-3  # the atlas covers every voxel
    # each 8 mm voxel's share left of x = 0 (the atlas's staircase border, 2 mm voxels at 10
    # degrees, is within 1.4 mm of the plane: its deviations average out over the voxels it crosses)
    left = np.clip((4 - ds["x"].values) / 8, 0, 1)
    crossed = ((left > 0) & (left < 1)).sum()
    np.testing.assert_allclose(table["n_voxels"].values, [left.sum(), (1 - left).sum()], atol=0.02 * crossed)


_PANDAS = {
    "mean": "mean",
    "sum": "sum",
    "variance": lambda g: g.var(ddof=0),
    "standard_deviation": lambda g: g.std(ddof=0),
    "minimum": "min",
    "maximum": "max",
}


def _aggregate(groups, strategy):
    how = _PANDAS[strategy]
    return groups.agg(how) if isinstance(how, str) else how(groups)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    strategy=st.sampled_from(list(_PANDAS)),
    n_regions=st.integers(1, 8),
    seed=st.integers(0, 2**16),
    block_rows=st.sampled_from([37, 500, 100_000]),
    work_values=st.sampled_from([2**23, 50]),
)
def test_each_strategy_equals_the_group_by_of_its_name(small_store, strategy, n_regions, seed, block_rows, work_values):
    """Any atlas on the store's grid, the voxels streamed in blocks of any size (a few columns at
    a time too): each strategy is pandas' group-by of the same name (population variance, as
    nilearn's ``np.var``); a region of no voxel is NaN."""
    import importlib
    from unittest import mock

    module = importlib.import_module("brainzarr.parcellate")  # the package's name is the function
    rng = np.random.default_rng(seed)
    ds = open_store(small_store)
    grid = store_grid(small_store)
    vol = np.zeros(grid.shape, np.int32)
    vol[tuple(grid.ijk.T)] = rng.integers(0, n_regions + 1, grid.n_voxels) * 5
    vol[0, 0, 0] = 5 * (n_regions + 1)  # outside the brain: no voxel
    data = ds.expression.isel(gene=np.sort(rng.choice(ds.sizes["gene"], 4, replace=False))).chunk(voxel=block_rows)
    with warnings.catch_warnings(), mock.patch.object(module, "_WORK_VALUES", work_values):
        warnings.simplefilter("ignore", UserWarning)
        table = parcellate(data, nib.Nifti1Image(vol, grid.affine), strategy=strategy)

    labels = vol[tuple(grid.ijk.T)]
    values = data.values.astype(np.float64)
    expected = _aggregate(pd.DataFrame(values).groupby(labels), strategy).drop(index=0, errors="ignore")
    held = table["n_voxels"].values > 0
    assert list(table["region"].values[held]) == list(expected.index)
    exact = strategy in ("minimum", "maximum")  # values picked, not computed
    tolerance = {"rtol": 0, "atol": 0} if exact else {"rtol": 1e-5, "atol": 1e-9}
    np.testing.assert_allclose(table.values[held], expected.values, **tolerance)
    assert np.isnan(table.values[~held]).all() and table.attrs["strategy"] == strategy


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(strategy=st.sampled_from(list(_PANDAS)), n_regions=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_with_volume_weighting_each_strategy_weighs_a_voxel_by_its_share(small_store, strategy, n_regions, seed):
    """A fine atlas nested in the store's grid: weighted by the share of its volume in a
    region, a voxel counts as often as the atlas voxels it holds there. Each strategy equals the
    same statistic over the atlas's voxels, each taking its store voxel's value (a sum counts in
    store voxels: an eighth each); the minimum and maximum are over the voxels touching the region."""
    rng = np.random.default_rng(seed)
    ds = open_store(small_store)
    grid = store_grid(small_store)
    fine = rng.integers(0, n_regions + 1, tuple(2 * n for n in grid.shape)).astype(np.int16) * 3
    data = ds.expression.isel(gene=[0, 7, 42]).chunk(voxel=700)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = parcellate(data, _half_voxel_atlas(grid, fine), weighting="volume", strategy=strategy)

    ijk = grid.ijk
    children = np.stack(
        [fine[2 * ijk[:, 0] + a, 2 * ijk[:, 1] + b, 2 * ijk[:, 2] + c] for a in (0, 1) for b in (0, 1) for c in (0, 1)],
        axis=1,
    )
    values = np.repeat(data.values.astype(np.float64), 8, axis=0)
    expected = _aggregate(pd.DataFrame(values).groupby(children.ravel()), strategy).drop(index=0, errors="ignore")
    if strategy == "sum":
        expected /= 8
    held = table["n_voxels"].values > 0
    assert list(table["region"].values[held]) == list(expected.index)
    np.testing.assert_allclose(table.values[held], expected.values, rtol=1e-5, atol=1e-9)
    weighted = strategy not in ("minimum", "maximum")
    assert table.attrs["statistic"].endswith("weighted by the volume in it") == weighted


@pytest.mark.parametrize("block_rows", [100, 100_000])
def test_a_small_variance_of_large_values_is_not_lost_to_rounding(small_store, block_rows):
    """Values 0.5 +- 1e-3 in one region, in one row block or many: the variance (1e-6 of E[x^2]
    = 0.25) is as numpy's two-pass one to 1e-12 (a difference of sums of squares keeps ~1e-6 of it
    in float64, nothing in float32)."""
    ds = open_store(small_store)
    grid = store_grid(small_store)
    rng = np.random.default_rng(0)
    noise = rng.uniform(-1e-3, 1e-3, ds.sizes["voxel"])
    data = ds.expression.isel(gene=0).copy(data=(0.5 + noise).astype(np.float32)).chunk(voxel=block_rows)
    vol = np.zeros(grid.shape, np.int16)
    vol[tuple(grid.ijk.T)] = 1
    atlas = nib.Nifti1Image(vol, grid.affine)
    values = data.values.astype(np.float64)
    variance = parcellate(data, atlas, strategy="variance")
    np.testing.assert_allclose(variance.values, [values.var()], rtol=1e-12)
    std = parcellate(data, atlas, strategy="standard_deviation")
    np.testing.assert_allclose(std.values, [values.std()], rtol=1e-12)


@pytest.mark.parametrize("weighting", ["centre", "volume"])
def test_a_region_of_one_value_varies_by_exactly_nothing(small_store, weighting):
    """A region whose voxels all hold one value has a variance and standard deviation of 0, not
    of rounding (E[x^2] - E[x]^2 gave ~1e-7): as a parcellated store's regions are, over row
    blocks that cut through them."""
    ds = open_store(small_store)
    grid = store_grid(small_store)
    coarse = np.asarray(_atlas_4mm_on(grid).dataobj)
    labels = coarse[tuple(grid.ijk.T)]
    level = np.float32(0.1) * labels.astype(np.float32) + np.float32(0.3)  # 1/10 has no exact binary form
    data = ds.expression.isel(gene=[0, 1]).copy(data=np.repeat(level[:, None], 2, axis=1)).chunk(voxel=37)
    if weighting == "centre":
        atlas = _atlas_4mm_on(grid)
    else:  # a finer atlas nested in the regions: every voxel it touches holds the region's value
        atlas = _half_voxel_atlas(grid, coarse.repeat(2, 0).repeat(2, 1).repeat(2, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for strategy in ("variance", "standard_deviation"):
            table = parcellate(data, atlas, weighting=weighting, strategy=strategy)
            held = table["n_voxels"].values > 0
            assert held.sum() >= 5 and (table.values[held] == 0).all()
        means = parcellate(data, atlas, weighting=weighting)
    held = means["n_voxels"].values > 0
    np.testing.assert_allclose(means.values[held, 0], 0.1 * means["region"].values[held] + 0.3, rtol=1e-6)


def test_strategies_nilearn_names_but_a_stream_cannot_compute_are_refused_with_why(small_store):
    ds = open_store(small_store)
    atlas = _atlas_4mm_on(store_grid(small_store))
    with pytest.raises(ValueError, match="strategy must be one of mean, sum, .* got 'median' \\(a median needs all"):
        parcellate(ds.expression.isel(gene=0), atlas, strategy="median")
    with pytest.raises(ValueError, match="got 'std'$"):
        ds.expression.isel(gene=0).brain.parcellate(atlas, strategy="std")


def test_cli_writes_any_strategy_and_its_image(small_store, tmp_path, capsys):
    atlas = _atlas_4mm(tmp_path / "atlas.nii.gz")
    out, image = tmp_path / "spread.csv", tmp_path / "spread.nii.gz"
    argv = ["parcellate", str(small_store), "expression", "--atlas", str(atlas), "--gene", "2", "-o", str(out)]
    assert main([*argv, "--strategy", "standard_deviation", "--nifti", str(image)]) == 0
    capsys.readouterr()
    frame = pd.read_csv(out, index_col=0)
    ds = open_store(small_store)
    labels = from_nifti(atlas, ds, interpolation="nearest").values
    X = ds.expression.sel(gene=list(frame.columns)).values.astype(np.float64)
    for region in frame.index:
        np.testing.assert_allclose(frame.loc[region].values, X[labels == region].std(axis=0), rtol=1e-6)
    vol = np.asarray(nib.load(image).dataobj)
    region_of = np.asarray(nib.load(atlas).dataobj)
    np.testing.assert_allclose(vol[region_of == 12, 1], frame.loc[12].values[1], rtol=1e-6)
    with pytest.raises(SystemExit, match="2"):
        main([*argv, "--overwrite", "--strategy", "median"])
    assert "invalid choice: 'median'" in capsys.readouterr().err


def test_cli_describes_the_region_image_in_a_sidecar_of_its_own_or_the_tables(small_store, tmp_path, capsys):
    """``--nifti`` writes a sidecar as ``brainzarr export`` does: what each volume is; when the
    image and the table share a name (dk.csv, dk.nii.gz) their one sidecar describes both."""
    atlas = _atlas_4mm(tmp_path / "atlas.nii.gz")
    genes = list(open_store(small_store).gene.values[:3])
    argv = ["parcellate", str(small_store), "expression", "--atlas", str(atlas), "--gene", ",".join(genes)]
    assert (
        main([*argv, "--strategy", "maximum", "-o", str(tmp_path / "dk.csv"), "--nifti", str(tmp_path / "map.nii.gz")])
        == 0
    )
    assert f"wrote {tmp_path / 'map.json'}  (what the image holds)" in capsys.readouterr().out
    image = json.loads((tmp_path / "map.json").read_text())
    assert image["VolumeDimension"] == "gene" and image["VolumeLabels"] == genes
    assert image["strategy"] == "maximum" and image["Grid"] == str(atlas) and image["VoxelSizeMM"] == [4.0] * 3
    assert image["background"] == 0.0 and image["Space"] == "MNI152NLin2009cAsym"
    assert image["GeneratedBy"][0]["Name"] == "brainzarr"
    table = json.loads((tmp_path / "dk.json").read_text())
    assert "VolumeLabels" not in table and table["strategy"] == "maximum"

    (tmp_path / "own.json").write_text("{}")  # the image's sidecar's place taken: refused before anything is written
    assert main([*argv, "-o", str(tmp_path / "x.csv"), "--nifti", str(tmp_path / "own.nii.gz")]) == 1
    assert f"{tmp_path / 'own.json'} exists; pass --overwrite" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists() and (tmp_path / "own.json").read_text() == "{}"
    # an atlas's own sidecar (dk3.json beside dk3.nii.gz): not replaced by the table's, even with --overwrite
    (tmp_path / "dk3.json").write_text('{"Name": "an atlas"}')
    for out, image in (("dk3.csv", None), ("other.csv", "dk3.nii.gz")):
        nifti = [] if image is None else ["--nifti", str(tmp_path / image)]
        assert main([*argv, "-o", str(tmp_path / out), *nifti, "--overwrite"]) == 1
        assert "dk3.json exists and brainzarr did not write it" in capsys.readouterr().err
        assert not (tmp_path / out).exists() and json.loads((tmp_path / "dk3.json").read_text()) == {"Name": "an atlas"}
    assert main([*argv, "--strategy", "maximum", "-o", str(tmp_path / "dk.csv"), "--overwrite"]) == 0  # brainzarr's own

    assert (
        main([*argv, "--background", "99", "-o", str(tmp_path / "dk2.tsv"), "--nifti", str(tmp_path / "dk2.nii.gz")])
        == 0
    )
    assert f"wrote {tmp_path / 'dk2.json'}  (how the table and the image were made)" in capsys.readouterr().out
    both = json.loads((tmp_path / "dk2.json").read_text())
    assert both["VolumeLabels"] == genes and both["Grid"] == str(atlas) and both["strategy"] == "mean"
    assert both["background"] == 99 and "label" in both  # the table's keys stand
    assert "dk2.nii.gz: the same on the atlas's grid" in both["Description"]
    assert nib.load(tmp_path / "dk2.nii.gz").shape[-1] == 3


def test_cli_never_writes_over_the_atlas_or_look_up_table_it_reads(small_store, tmp_path, capsys):
    atlas = _atlas_4mm(tmp_path / "atlas.nii.gz")
    lut = tmp_path / "atlas.tsv"
    lut.write_text("index\tname\n1\tone\n")
    before = atlas.read_bytes()
    argv = ["parcellate", str(small_store), "expression", "--atlas", str(atlas), "--lut", str(lut), "--gene", "2"]
    for outputs in (["-o", str(tmp_path / "t.csv"), "--nifti", str(atlas)], ["-o", str(lut)]):
        assert main([*argv, *outputs, "--overwrite"]) == 1
        assert "which this command reads: name the output otherwise" in capsys.readouterr().err
    assert atlas.read_bytes() == before and lut.read_text() == "index\tname\n1\tone\n"
    assert not (tmp_path / "t.csv").exists()


def test_cli_names_the_column_of_one_gene_by_the_gene(small_store, tmp_path, capsys):
    """``--gene HPCA`` gives a column HPCA (not the array's name), which a parcellated build reads
    as that gene; the image of one gene is 3-D."""
    atlas = _atlas_4mm(tmp_path / "atlas.nii.gz")
    gene = str(open_store(small_store).gene.values[7])
    out, image = tmp_path / "one.csv", tmp_path / "one-map.nii.gz"
    argv = ["parcellate", str(small_store), "expression", "--atlas", str(atlas), "--gene", gene]
    assert main([*argv, "-o", str(out), "--nifti", str(image)]) == 0
    assert "6 regions x 1 gene\n" in capsys.readouterr().out
    assert pd.read_csv(out, index_col=0).columns.tolist() == [gene]
    assert nib.load(image).ndim == 3 and json.loads((tmp_path / "one-map.json").read_text())["gene"] == gene
    rebuilt = build_store(
        tmp_path / "r.zarr", source="parcellated", table=out, atlas=atlas, resolution=8, missing_regions="drop"
    )
    assert open_store(rebuilt).gene.values.tolist() == [gene]


def test_images_evidently_not_in_mni_space_are_refused_by_name_with_the_fix_each_caller_takes(
    small_store, tmp_path, capsys
):
    """An atlas, a target map or an embedding written in native scanner space (voxel indices as
    millimetres) is named in the refusal, which offers ``check_space=False`` only where the
    caller takes it (``from_nifti``)."""
    from brainzarr.evaluate import load_embedding, load_targets
    from brainzarr.exceptions import InputError

    ds = open_store(small_store)
    rng = np.random.default_rng(0)
    native = tmp_path / "native_atlas.nii.gz"
    nib.save(nib.Nifti1Image(rng.integers(1, 5, (128, 128, 88)).astype(np.int16), np.diag([2.0, 2, 2, 1])), native)
    scan = tmp_path / "native_map.nii.gz"
    nib.save(nib.Nifti1Image(rng.random((128, 128, 88)).astype(np.float32), np.diag([2.0, 2, 2, 1])), scan)

    refusals = []
    for weighting in ("centre", "volume"):
        with pytest.raises(InputError) as info:
            parcellate(ds.expression.isel(gene=0), native, weighting=weighting)
        refusals.append(info.value)
    for read in (load_targets, lambda path, ds: load_embedding(path, ds, name="native")):
        with pytest.raises(InputError) as info:
            read(scan, ds)
        refusals.append(info.value)
    for exc, name in zip(refusals, ["native_atlas", "native_atlas", "native_map", "native_map"]):
        text = str(exc)
        assert f"{name}.nii.gz is evidently not in MNI space" in text
        assert text.endswith("register it to MNI space first") and not exc.options

    with pytest.raises(InputError, match="native_map.nii.gz is evidently not in MNI space") as info:
        from_nifti(scan, ds)
    assert info.value.options == {"check_space": False}
    assert str(info.value).endswith("pass check_space=False")
    with pytest.warns(UserWarning, match="outside the field of view"):  # the switch reads it as it is
        assert from_nifti(scan, ds, check_space=False).notnull().any()

    assert main(["parcellate", str(small_store), "expression", "--atlas", str(native), "-o", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert "native_atlas.nii.gz is evidently not in MNI space" in err and "check-space" not in err
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("weighting", ["centre", "volume"])
def test_an_atlas_that_covers_part_of_the_brain_is_warned_of_by_name(small_store, tmp_path, weighting):
    """Store voxels outside a cropped atlas count in no region, and the warning says so, naming
    the atlas, under either weighting (``centre`` said 'the image; they are NaN')."""
    ds = open_store(small_store)
    atlas = nib.load(_atlas_4mm(tmp_path / "atlas.nii.gz"))
    affine = atlas.affine.copy()
    affine[:3, 3] += atlas.affine[:3, :3] @ [0, 0, 25]  # its slices from the 25th up, where they were
    top = nib.Nifti1Image(np.asanyarray(atlas.dataobj)[:, :, 25:], affine)
    nib.save(top, tmp_path / "top.nii.gz")
    below = int((ds["z"].values < top.affine[2, 3] - 2).sum())  # centres below the atlas's lowest voxel
    with pytest.warns(UserWarning) as caught:
        table = parcellate(ds.expression.isel(gene=0), tmp_path / "top.nii.gz", weighting=weighting)
    (warning,) = [w for w in caught if "field of view" in str(w.message)]
    text = str(warning.message)
    assert "outside the field of view of " in text and text.endswith("top.nii.gz; their centres count in no region")
    outside = int(text.split(" of ")[0])
    assert 0 < below <= outside < ds.sizes["voxel"]
    assert 0 < table["n_voxels"].sum() < ds.sizes["voxel"]
