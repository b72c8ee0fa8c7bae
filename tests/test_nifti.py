"""brainzarr.nifti (DataArray <-> NIfTI, the .brain accessor) and brainzarr.plots.plot_map."""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from brainzarr.exceptions import InputError  # noqa: E402
from brainzarr.grid import Grid, ijk_to_xyz, mni152_grid  # noqa: E402
from brainzarr.nifti import (  # noqa: E402
    FSL_GRIDS,
    MNI_BRAIN_BOX,
    from_nifti,
    mni_mismatch,
    save_nifti,
    to_nifti,
    to_volume,
    write_nifti,
)

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# FSL's MNI152_T1_2mm grid (x axis flipped: radiological storage order)
FSL_2MM_AFFINE = np.array([[-2.0, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]])
FSL_2MM_SHAPE = (91, 109, 91)


# ------------------------------------------------------------------------------ fixtures
def voxel_coords(grid: Grid) -> dict:
    attrs = grid.to_attrs()
    xyz = grid.xyz
    coords = {"voxel": ("voxel", np.arange(grid.n_voxels))}
    coords.update({c: ("voxel", grid.ijk[:, n], attrs if c == "i" else {}) for n, c in enumerate("ijk")})
    coords.update({c: ("voxel", xyz[:, n]) for n, c in enumerate("xyz")})
    return coords


def fake_da(grid: Grid, values=None, name="expression") -> xr.DataArray:
    """A voxel-indexed DataArray as selected from a store (grid attrs on coordinate i)."""
    if values is None:
        values = np.arange(grid.n_voxels, dtype=np.float32)
    dims = ("voxel",) if np.ndim(values) == 1 else ("voxel", "component")
    return xr.DataArray(values, dims=dims, coords=voxel_coords(grid), name=name)


def fake_store(grid: Grid, n_genes=3) -> xr.Dataset:
    rng = np.random.default_rng(0)
    ds = xr.Dataset(
        {"expression": (("voxel", "gene"), rng.random((grid.n_voxels, n_genes), dtype=np.float32))},
        coords={
            **voxel_coords(grid),
            "gene": [f"G{g}" for g in range(n_genes)],
            "hemisphere": ("voxel", grid.hemisphere),
            "split": ("voxel", np.where(np.arange(grid.n_voxels) % 5 == 0, "test", "train")),
        },
        attrs=grid.to_attrs(),
    )
    return ds


@pytest.fixture(scope="module")
def g8() -> Grid:
    return mni152_grid(8)


def smooth(xyz) -> np.ndarray:
    xyz = np.asarray(xyz, float)
    return np.sin(xyz[..., 0] / 30) + np.cos(xyz[..., 1] / 40) + xyz[..., 2] / 50


def function_image(affine, shape) -> nib.Nifti1Image:
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    return nib.Nifti1Image(smooth(ijk_to_xyz(ijk, affine)).reshape(shape).astype(np.float32), affine)


# ------------------------------------------------------------------------------ strategies
@st.composite
def grids(draw, max_side=6):
    shape = draw(st.tuples(*[st.integers(1, max_side)] * 3))
    mask = draw(hnp.arrays(bool, shape))
    mask[tuple(draw(st.integers(0, s - 1)) for s in shape)] = True
    zooms = draw(st.lists(st.sampled_from([1.0, 1.5, 2.0, 3.0, 4.0, 8.0]) | st.floats(1, 8), min_size=3, max_size=3))
    perm = draw(st.permutations([0, 1, 2]))
    signs = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=3, max_size=3))
    affine = np.eye(4)
    affine[:3, :3] = 0
    for axis in range(3):
        affine[perm[axis], axis] = signs[axis] * zooms[axis]
    affine[:3, 3] = draw(st.lists(st.floats(-150, 150), min_size=3, max_size=3))
    return Grid(mask, affine)


float32s = st.floats(width=32, allow_nan=True, allow_infinity=True)


@st.composite
def grid_and_values(draw, n_components=None):
    grid = draw(grids())
    shape = (grid.n_voxels,) if n_components is None else (grid.n_voxels, n_components)
    return grid, draw(hnp.arrays(np.float32, shape, elements=float32s))


backgrounds = st.sampled_from([0.0, np.nan])


# ------------------------------------------------------------------------------ round trips
@FAST
@given(grid_and_values(), backgrounds)
def test_round_trip_3d(gv, background):
    grid, values = gv
    da = fake_da(grid, values)
    img = to_nifti(da, background=background)
    vol = np.asarray(img.dataobj)
    assert vol.shape == grid.shape and vol.dtype == np.float32
    np.testing.assert_allclose(img.affine, grid.affine, atol=1e-4)  # NIfTI stores float32
    np.testing.assert_array_equal(vol[~grid.mask], np.float32(background))
    np.testing.assert_array_equal(vol[tuple(grid.ijk.T)], values)
    for target in (grid, da, fake_store(grid)):
        back = from_nifti(img, target)
        assert back.dims == ("voxel",) and back.dtype == np.float32 and back.name == "expression"
        np.testing.assert_array_equal(back.values, values)
        np.testing.assert_array_equal(np.column_stack([back[c].values for c in "ijk"]), grid.ijk)
        np.testing.assert_allclose(np.column_stack([back[c].values for c in "xyz"]), grid.xyz)
        np.testing.assert_array_equal(np.reshape(back["i"].attrs["affine"], (4, 4)), grid.affine)
        assert tuple(back["i"].attrs["grid_shape"]) == grid.shape
    # the result is itself exportable: a second trip is the identity
    np.testing.assert_array_equal(np.asarray(to_nifti(back, background=background).dataobj), vol)


@FAST
@given(grid_and_values(n_components=3), backgrounds, st.permutations([7, 2, 5]), st.booleans())
def test_round_trip_4d(gv, background, labels, transpose):
    grid, values = gv
    da = fake_da(grid, values).assign_coords(component=labels)
    img = to_nifti(da.T if transpose else da, background=background)
    vol = np.asarray(img.dataobj)
    assert vol.shape == grid.shape + (3,)
    np.testing.assert_array_equal(vol[tuple(grid.ijk.T)], values)  # volumes in the dim's order
    np.testing.assert_array_equal(vol[~grid.mask], np.float32(background))
    back = from_nifti(img, grid)
    assert back.dims == ("voxel", "component")
    assert back["component"].values.tolist() == list(labels)
    np.testing.assert_array_equal(back.values, values)


@FAST
@given(grids(), st.data(), st.sampled_from([".nii", ".nii.gz"]))
def test_labels_round_trip_as_a_label_image(grid, data, suffix):
    """Strings (``ds.split``) become a label image: 0 outside the brain, 1..n in sorted order,
    intent label, the table in the header; from_nifti gives the strings back, and write_nifti
    writes to_nifti's bytes."""
    alphabet = data.draw(st.lists(st.text("abcXYZ _-", min_size=1, max_size=6), min_size=1, max_size=4, unique=True))
    values = np.asarray(data.draw(st.lists(st.sampled_from(alphabet), min_size=grid.n_voxels, max_size=grid.n_voxels)))
    da = fake_da(grid, values, name="split")
    img = to_nifti(da)
    vol = np.asarray(img.dataobj)
    names = sorted(set(values.tolist()))
    assert vol.dtype == np.uint8 and img.header.get_intent()[0] == "label"
    np.testing.assert_array_equal(vol[~grid.mask], 0)
    np.testing.assert_array_equal(vol[tuple(grid.ijk.T)], [names.index(v) + 1 for v in values])
    assert img.header["descrip"].tobytes().startswith(b"brainzarr split 1=")
    back = from_nifti(img, grid)
    assert back.dims == ("voxel",) and back.values.tolist() == values.tolist()
    as_objects = to_nifti(da.astype(object))  # strings in an object array are labels too, numbers are not
    np.testing.assert_array_equal(np.asarray(as_objects.dataobj), vol)
    numbers = to_nifti(fake_da(grid, np.arange(grid.n_voxels).astype(object)), dtype=np.float32)
    assert numbers.header.get_intent()[0] == "estimate"
    strings = to_volume(da)  # the labels themselves on the grid, "" outside the brain
    assert (strings[~grid.mask] == "").all() and strings[tuple(grid.ijk.T)].tolist() == values.tolist()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_nifti(da, Path(tmp) / f"split{suffix}")
        np.testing.assert_array_equal(np.asarray(nib.load(path).dataobj), vol)
        assert from_nifti(path, grid).values.tolist() == values.tolist()
    with pytest.raises(InputError, match="background 0"):
        to_nifti(da, background=np.nan)


def test_an_atlas_without_the_label_intent_read_by_interpolation_is_warned_of(g8, tmp_path):
    """Codes 1..6 in int16 (an FSL or FreeSurfer atlas) or as floats on a 3 mm grid, read onto
    8 mm: the default cubic spline blends them, which a researcher meant as labels; nearest does not, and
    a float map or a binary mask (whose interpolation is a coverage) is not warned of."""
    import warnings

    fine = mni152_grid(3)
    codes = (1 + (fine.xyz[:, 2] > 0) + 2 * (fine.xyz[:, 1] > 0) + (fine.xyz[:, 0] > 20)).astype(np.int16)
    atlas = to_nifti(fake_da(fine, codes), background=0, dtype=np.int16)
    atlas = nib.Nifti1Image(np.asarray(atlas.dataobj), atlas.affine)  # no intent: as other tools write atlases
    with pytest.warns(UserWarning, match="looks like a label image .*pass interpolation='nearest'"):
        blended = from_nifti(atlas, g8)
    assert not np.allclose(blended.values[np.isfinite(blended.values)] % 1, 0)  # codes between codes
    as_floats = nib.Nifti1Image(np.asarray(atlas.dataobj, dtype=np.float32), atlas.affine)  # codes 1.0, 2.0, ...
    with pytest.warns(UserWarning, match="whole numbers in float32, few distinct values"):
        from_nifti(as_floats, g8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert set(np.unique(from_nifti(atlas, g8, interpolation="nearest").values)) <= set(range(7))
        from_nifti(nib.Nifti1Image(np.asarray(atlas.dataobj, dtype=np.float32) * 0.37, atlas.affine), g8)
        from_nifti(nib.Nifti1Image((np.asarray(atlas.dataobj) > 0).astype(np.uint8), atlas.affine), g8)
        ramp = to_nifti(fake_da(fine, (fine.xyz[:, 0] + 200).astype(np.float32)))  # whole mm: not in patches
        from_nifti(nib.Nifti1Image(np.asarray(ramp.dataobj), ramp.affine), g8)
    assert not [w for w in caught if "looks like a label image" in str(w.message)]


def test_a_stores_split_exports_as_a_label_image_with_its_table_in_the_sidecar(tmp_path, capsys):
    from matplotlib.colors import to_rgb

    from brainzarr import build_store, open_store
    from brainzarr.cli import main
    from brainzarr.parcellate import read_lut
    from brainzarr.plots import LABEL_COLOURS

    store = build_store(tmp_path / "s8.zarr", resolution=8, genes=4, split="blocked")
    out = tmp_path / "split.nii.gz"
    assert main(["export", str(store), "split", "-o", str(out)]) == 0
    assert json.loads(out.with_name("split.json").read_text())["Labels"] == {"1": "buffer", "2": "test", "3": "train"}
    ds = open_store(store)
    back = from_nifti(out, ds)
    assert back.values.tolist() == ds["split"].values.tolist() and set(back.values) == {"buffer", "test", "train"}
    err = [main(["export", str(store), "split", "-o", str(tmp_path / "n.nii.gz"), "--background", "nan"])]
    assert err == [1] and "background 0 (no label)" in capsys.readouterr().err

    fsl = tmp_path / "split-fsl2mm.nii.gz"  # on another grid: read back by nearest neighbour, as labels
    assert main(["export", str(store), "split", "-o", str(fsl), "--like", "MNI152_T1_2mm"]) == 0
    again = from_nifti(fsl, ds)
    assert again.attrs["interpolation"] == "nearest" and again.values.tolist() == ds["split"].values.tolist()
    assert from_nifti(fsl, ds, interpolation="linear").dtype == np.float32  # asked for: codes, interpolated

    # FSLeyes' lookup table: value, colour in [0, 1] and name per line, ascending, named in the sidecar
    lut = out.with_name("split.lut")
    rows = [line.split() for line in lut.read_text().splitlines()]
    assert [(int(r[0]), r[4]) for r in rows] == [(1, "buffer"), (2, "test"), (3, "train")]
    rgb = {r[4]: tuple(float(c) for c in r[1:4]) for r in rows}
    np.testing.assert_allclose(rgb["test"], to_rgb(LABEL_COLOURS["test"]), atol=1e-5)
    np.testing.assert_allclose(rgb["train"], to_rgb(LABEL_COLOURS["train"]), atol=1e-5)
    assert json.loads(out.with_name("split.json").read_text())["LookupTable"] == "split.lut"
    shown = f"fsleyes {out} -ot label -l {lut})"  # FSLeyes' command line takes a lookup table file
    assert main(["export", str(store), "split", "-o", str(out), "--overwrite"]) == 0
    assert capsys.readouterr().out.strip().endswith(shown)
    assert read_lut(lut) == {1: "buffer", 2: "test", 3: "train"}  # parcellate reads it back
    spaced = tmp_path / "ho.lut"  # FSLeyes' names may hold spaces
    spaced.write_text("1  0.00000 0.93333 0.00000 Frontal Pole\n2  0.62745 0.32157 0.17647 Insular Cortex\n")
    assert read_lut(spaced) == {1: "Frontal Pole", 2: "Insular Cortex"}
    spaced.write_text("  # a comment line\n1 0 0.9 0 Area #1\n2 0 0.9 0 Area #2\n")  # '#' in a name is the name's
    assert read_lut(spaced) == {1: "Area #1", 2: "Area #2"}
    assert main(["export", str(store), "split", "-o", str(out), "--overwrite"]) == 0  # its own: replaced
    mine = tmp_path / "hemi.lut"
    mine.write_text("1 1 0 0 left\n")
    assert main(["export", str(store), "hemisphere", "-o", str(tmp_path / "hemi.nii.gz"), "--overwrite"]) == 1
    assert "hemi.lut exists and brainzarr did not write it" in capsys.readouterr().err
    assert mine.read_text() == "1 1 0 0 left\n" and not (tmp_path / "hemi.nii.gz").exists()
    gene = str(ds["gene"].values[0])
    assert main(["export", str(store), "expression", "--gene", gene, "-o", str(tmp_path / "g.nii.gz")]) == 0
    assert not (tmp_path / "g.lut").exists()  # values have no lookup table
    # values written over a label image: its lookup table goes with it, another's stays
    assert main(["export", str(store), "expression", "--gene", gene, "-o", str(out), "--overwrite"]) == 0
    assert "removed " in capsys.readouterr().out and not lut.exists()
    assert "LookupTable" not in json.loads(out.with_name("split.json").read_text())
    hemi_values = tmp_path / "hemi.nii.gz"
    assert main(["export", str(store), "expression", "--gene", gene, "-o", str(hemi_values)]) == 0
    assert mine.read_text() == "1 1 0 0 left\n"  # not brainzarr's: left as it was


_LABEL_NAMES = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"])).filter(lambda t: bool(t.split()))


@FAST
@given(st.lists(_LABEL_NAMES, min_size=1, max_size=12, unique_by=lambda t: " ".join(t.split())))
def test_a_lookup_table_reads_back_its_labels(names):
    """The FSLeyes lookup table written beside a label image gives back its labels (runs of
    whitespace as one space: a row is one line of space-separated fields)."""
    import tempfile

    from brainzarr.commands._sidecar import write_lookup_table
    from brainzarr.parcellate import read_lut

    labels = {str(code): name for code, name in enumerate(names, 1)}
    with tempfile.TemporaryDirectory() as tmp:
        lut = write_lookup_table(Path(tmp) / "labels.nii.gz", labels)
        assert lut.name == "labels.lut"
        assert read_lut(lut) == {code: " ".join(name.split()) for code, name in enumerate(names, 1)}


@FAST
@given(grids(), st.data())
def test_subset_of_voxels(grid, data):
    """Voxels not in the DataArray (e.g. a test split) get the background; the target's voxels come back."""
    keep = data.draw(st.lists(st.integers(0, grid.n_voxels - 1), min_size=1, unique=True))
    da = fake_da(grid).isel(voxel=sorted(keep))
    vol = da.brain.to_volume(np.nan)
    assert np.isfinite(vol).sum() == len(keep)
    np.testing.assert_array_equal(vol[tuple(grid.ijk[sorted(keep)].T)], sorted(keep))
    back = from_nifti(to_nifti(da), da)
    assert back["voxel"].values.tolist() == sorted(keep)
    np.testing.assert_array_equal(back.values, da.values)
    sub = da.brain.grid
    assert sub.n_voxels == len(keep) and np.array_equal(sub.affine, grid.affine)


def test_placement_by_voxel_number_with_grid(g8):
    """Without i, j, k a DataArray is placed through grid= by its voxel numbers, or in store order."""
    da = fake_da(g8)
    plain = xr.DataArray(da.values, dims="voxel")
    np.testing.assert_array_equal(to_nifti(plain, g8).dataobj, to_nifti(da).dataobj)
    rows = np.arange(0, g8.n_voxels, 7)
    subset = xr.DataArray(da.values[rows], dims="voxel", coords={"voxel": rows})
    vol = np.asarray(to_nifti(subset, fake_store(g8)).dataobj)
    np.testing.assert_array_equal(vol[tuple(g8.ijk[rows].T)], rows)
    assert np.count_nonzero(vol) == len(rows) - 1  # row 0 has value 0


@settings(max_examples=8, deadline=None)
@given(grids(), st.sampled_from([".nii", ".nii.gz"]), backgrounds)
def test_saved_file_keeps_affine_and_shape(grid, suffix, background):
    da = fake_da(grid).assign_coords(gene="APOE")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"apoe{suffix}"
        da.brain.to_nifti(path, background=background)
        img = nib.load(path)
        assert img.shape == grid.shape
        sform, scode = img.header.get_sform(coded=True)
        qform, qcode = img.header.get_qform(coded=True)
        assert scode == qcode == 4
        np.testing.assert_allclose(sform, grid.affine, atol=1e-4)
        np.testing.assert_allclose(qform, grid.affine, atol=1e-4)
        np.testing.assert_array_equal(np.asarray(img.dataobj)[tuple(grid.ijk.T)], da.values)
        back = from_nifti(path, grid)
        assert back.name == "expression" and back.attrs["source"] == str(path)
        np.testing.assert_array_equal(back.values, da.values)


def test_header(g8):
    da = fake_da(g8, np.linspace(-1, 2, g8.n_voxels, dtype=np.float32)).assign_coords(gene="APOE")
    hdr = to_nifti(da, background=np.nan).header
    assert hdr["sform_code"] == hdr["qform_code"] == 4
    assert hdr.get_xyzt_units() == ("mm", "unknown")
    assert hdr.get_intent()[0] == "estimate" and hdr.get_intent()[2] == "APOE"
    assert (float(hdr["cal_min"]), float(hdr["cal_max"])) == (-1.0, 2.0)
    assert hdr["descrip"].item() == b"brainzarr expression gene=APOE"
    meta = json.loads(hdr.extensions[0].get_content())
    assert meta["name"] == "expression" and meta["coords"] == {"gene": "APOE"}
    # a grid outside MNI space is written as "aligned"; shears keep the sform only
    other = Grid(g8.mask, g8.affine, space="native")
    assert to_nifti(fake_da(other)).header["sform_code"] == 2
    sheared = g8.affine.copy()
    sheared[0, 1] = 1.0
    hdr = to_nifti(fake_da(Grid(g8.mask, sheared))).header
    assert hdr["sform_code"] == 4 and hdr["qform_code"] == 0
    np.testing.assert_allclose(hdr.get_sform(), sheared)
    # integer dtype
    img = to_nifti(fake_da(g8), dtype=np.int16)
    assert img.get_data_dtype() == np.int16 and np.asarray(img.dataobj).max() == g8.n_voxels - 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    grid_and_values(n_components=5),
    st.sampled_from([".nii", ".nii.gz"]),
    backgrounds,
    st.integers(1, 6),
    st.booleans(),
    st.sampled_from([None, 1, 7, 64]),
)
def test_write_nifti_writes_to_niftis_bytes(gv, suffix, background, volumes_held, one_map, lazy_rows):
    """The streamed writer's file is byte for byte the in-memory image's, however many volumes
    it holds at once, 3-D or 4-D, from values in memory or lazy (dask, rows in chunks of
    ``lazy_rows``: copied to the scratch file when the volumes take several groups)."""
    grid, values = gv
    values = values[:, 0] if one_map else values
    da = fake_da(grid, values)
    per_volume = int(np.prod(grid.shape)) * 4 + grid.n_voxels * 4
    with tempfile.TemporaryDirectory() as tmp:
        whole, streamed = Path(tmp) / f"a{suffix}", Path(tmp) / f"b{suffix}"
        save_nifti(to_nifti(da, background=background), whole)
        if lazy_rows is not None:
            import dask.array

            da = da.copy(data=dask.array.from_array(values, chunks=(lazy_rows,) + values.shape[1:]))
        write_nifti(da, streamed, background=background, max_memory=volumes_held * per_volume)
        assert streamed.read_bytes() == whole.read_bytes()
        assert sorted(p.name for p in Path(tmp).iterdir()) == sorted([whole.name, streamed.name])


def _counted_lazy(values, chunks, fail_at=None):
    """``values`` as a dask array whose computed blocks are recorded (and block ``fail_at`` fails)."""
    import dask.array

    calls = []

    def count(block):
        if block.size:  # dask calls it once on an empty block to learn the output's meta
            calls.append(block.shape)
            if fail_at is not None and len(calls) == fail_at:
                raise RuntimeError("a chunk could not be read")
        return block

    return dask.array.from_array(values, chunks=chunks).map_blocks(count, dtype=values.dtype), calls


@pytest.mark.parametrize("room", [True, False])
def test_write_nifti_reads_a_lazy_array_once(g8, tmp_path, monkeypatch, room):
    """Six volumes written two at a time from a lazy array chunked by rows and volumes: with room
    on the disk for the scratch copy every block is computed once (the range included) and
    nothing is left beside the file; without room each group reads the array again. The same
    bytes either way."""
    import shutil

    values = np.random.default_rng(2).normal(size=(g8.n_voxels, 6)).astype(np.float32)
    values[::97, 1] = np.nan
    lazy, calls = _counted_lazy(values, chunks=(1000, 3))
    per_volume = int(np.prod(g8.shape)) * 4 + g8.n_voxels * 4
    whole = save_nifti(to_nifti(fake_da(g8, values), background=np.nan), tmp_path / "whole.nii.gz")
    if not room:
        usage = shutil.disk_usage(tmp_path)
        monkeypatch.setattr(shutil, "disk_usage", lambda _: usage._replace(free=10_000))
    path = write_nifti(fake_da(g8, lazy), tmp_path / "s.nii.gz", background=np.nan, max_memory=2 * per_volume)
    assert path.read_bytes() == whole.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.nii.gz", "whole.nii.gz"]
    if room:
        assert len(calls) == lazy.npartitions
    else:  # the range, then each group's column chunks again
        assert len(calls) == 3 * lazy.npartitions


@pytest.mark.parametrize("path", ["in memory", "one group", "scratch copy", "read again"])
def test_an_integer_dtype_is_refused_for_values_it_cannot_hold(g8, tmp_path, monkeypatch, path):
    """``dtype=np.int16`` truncated a [0, 1] map to 0 and 1, wrapped 40,000 to -25,536 and turned
    NaN into a number, without a word; whole numbers in range are written exactly."""
    import shutil

    import dask.array

    per_volume = int(np.prod(g8.shape)) * 4 + g8.n_voxels * 4
    held = {"in memory": None, "one group": 64 * per_volume}.get(path, 2 * per_volume)
    if path == "read again":  # no room for the scratch copy: each group is read from the array
        usage = shutil.disk_usage(tmp_path)
        monkeypatch.setattr(shutil, "disk_usage", lambda _: usage._replace(free=10_000))

    def write(values, dtype):
        da = fake_da(g8, dask.array.from_array(values, chunks=(1000, 3)))
        if held is None:
            return to_nifti(da, dtype=dtype)
        return nib.load(write_nifti(da, tmp_path / "s.nii.gz", dtype=dtype, max_memory=held))

    codes = np.random.default_rng(0).integers(0, 300, size=(g8.n_voxels, 6)).astype(np.float32)
    img = write(codes, np.int16)
    assert img.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asarray(img.dataobj)[tuple(g8.ijk.T)], codes)
    first = (tmp_path / "s.nii.gz").read_bytes() if held else None
    for values, dtype, problem in (
        (codes / 7, np.int16, r"values that are not whole numbers \(e\.g\. [\d.]+\)"),
        (codes * 200, np.int16, r"values from 0 to \d+, beyond -32,768 to 32,767"),
        (codes, np.uint8, r"values from 0 to 299, beyond 0 to 255"),
        (np.where(codes > 250, np.nan, codes), np.int16, "NaN or infinite values"),
    ):
        with pytest.raises(InputError, match=rf"holds {problem}, which dtype {np.dtype(dtype)} cannot hold: write"):
            write(values, dtype)
        assert [p.name for p in tmp_path.iterdir()] == (["s.nii.gz"] if held else [])
        assert not held or (tmp_path / "s.nii.gz").read_bytes() == first  # the first file, as it was


@pytest.mark.parametrize("write", ["to_nifti", "write_nifti", "to_volume"])
def test_a_background_the_image_cannot_hold_is_refused(g8, tmp_path, write):
    """``background=-1`` with ``dtype=np.uint8`` wrapped to 255 and ``0.5`` with ``np.int16``
    truncated to 0 outside the brain; an infinite background made the sidecar invalid JSON."""
    da = fake_da(g8, np.ones(g8.n_voxels, np.float32))

    def image(background, dtype):
        if write == "to_volume":
            return to_volume(da, background=background, dtype=dtype)
        if write == "to_nifti":
            return np.asarray(to_nifti(da, background=background, dtype=dtype).dataobj)
        return np.asarray(nib.load(write_nifti(da, tmp_path / "s.nii.gz", background=background, dtype=dtype)).dataobj)

    outside = np.ones(g8.shape, bool)
    outside[tuple(g8.ijk.T)] = False
    for background, dtype, problem in (
        (-1, np.uint8, r"background -1 is not a value of dtype uint8 \(whole numbers 0 to 255\)"),
        (0.5, np.int16, r"background 0.5 is not a value of dtype int16 \(whole numbers -32,768 to 32,767\)"),
        (70000, np.int16, "background 70000 is not a value of dtype int16"),
        (np.inf, np.float32, "background must be a finite number or NaN, got inf"),
        (-np.inf, np.float32, "got -inf"),
    ):
        with pytest.raises(InputError, match=problem):
            image(background, dtype)
    assert not (tmp_path / "s.nii.gz").exists()
    for background, dtype in ((-1, np.int16), (255, np.uint8), (-1.0, np.float32)):
        vol = image(background, dtype)
        assert vol.dtype == dtype and (vol[outside] == background).all() and (vol[~outside] == 1).all()


@pytest.mark.parametrize("write", ["to_nifti", "write_nifti"])
def test_a_dtype_a_nifti_image_does_not_hold_is_refused(g8, tmp_path, write):
    """float16 and bool stopped in nibabel (``HeaderDataError``), text in numpy, and a complex
    dtype was written with a ComplexWarning."""
    da = fake_da(g8, np.ones(g8.n_voxels, np.float32))
    out = tmp_path / "s.nii.gz"

    def image(dtype):
        if write == "to_nifti":
            return to_nifti(da, dtype=dtype)
        return nib.load(write_nifti(da, out, dtype=dtype))

    mask = r" \(uint8 for a mask of 0 and 1\)"
    for dtype, name, tail in (
        (np.float16, "float16", ""),
        (bool, "bool", mask),
        (np.complex64, "complex64", ""),
        ("U3", "<U3", ""),
    ):
        holds = rf"^dtype {name} is not a type a NIfTI image holds; choose from uint8, .*, float64{tail}$"
        with pytest.raises(InputError, match=holds):
            image(dtype)
    with pytest.raises(InputError, match="dtype must be a numpy number type such as np.float32, got 'banana'"):
        image("banana")
    assert not out.exists()
    for dtype in (np.uint8, np.int16, np.float64, "f4"):
        assert image(dtype).get_data_dtype() == np.dtype(dtype)


def test_export_reads_its_background_as_a_number_or_nan(tmp_path, capsys):
    """``--background abc`` stopped with Python's ``could not convert string to float``, and
    ``--background inf`` wrote ``"background": Infinity`` into the sidecar, which is not JSON."""
    from brainzarr import build_store
    from brainzarr.cli import main

    store = build_store(tmp_path / "s8.zarr", resolution=8, genes=4)
    out = tmp_path / "g.nii.gz"
    for bad in ("abc", "inf", "Infinity"):
        with pytest.raises(SystemExit):
            main(["export", str(store), "expression", "--gene", "1", "-o", str(out), "--background", bad])
        assert f"--background: expected a number or nan, got '{bad}'" in capsys.readouterr().err
        assert not out.exists()
    for text, recorded in (("NaN", "NaN"), ("-1", -1.0), ("0", 0.0)):
        args = ["export", str(store), "expression", "--gene", "1", "-o", str(out), "--overwrite"]
        assert main([*args, "--background", text]) == 0
        assert json.loads(out.with_name("g.json").read_text())["background"] == recorded


def test_write_nifti_shows_one_bar_on_a_terminal(g8, tmp_path, monkeypatch):
    """A many-volume lazy export counts the scratch copy's blocks and the volumes on one bar."""
    import io
    import sys

    import dask.array

    stream = io.StringIO()
    stream.isatty = lambda: True
    monkeypatch.setattr(sys, "stderr", stream)
    values = np.ones((g8.n_voxels, 6), np.float32)
    per_volume = int(np.prod(g8.shape)) * 4 + g8.n_voxels * 4
    lazy = fake_da(g8, dask.array.from_array(values, chunks=(1000, 6)))  # 4 row blocks
    write_nifti(lazy, tmp_path / "s.nii", max_memory=2 * per_volume)
    text = stream.getvalue()
    assert "export s.nii" in text and "10/10" in text  # 4 row blocks copied + 6 volumes written
    assert "writing volumes:" not in text  # the steps count on the export's bar, not bars of their own


def test_write_nifti_leaves_nothing_when_a_read_fails(g8, tmp_path):
    values = np.ones((g8.n_voxels, 6), np.float32)
    lazy, _ = _counted_lazy(values, chunks=(1000, 6), fail_at=3)
    per_volume = int(np.prod(g8.shape)) * 4 + g8.n_voxels * 4
    with pytest.raises(RuntimeError, match="could not be read"):
        write_nifti(fake_da(g8, lazy), tmp_path / "s.nii", max_memory=2 * per_volume)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_an_interrupted_write_leaves_the_earlier_file_as_it_was(g8, tmp_path, monkeypatch, suffix):
    """Killed while writing its volumes (here: an error after the header and the first volume),
    write_nifti leaves the file it was replacing whole, and no scratch file; save_nifti too."""
    import contextlib

    import brainzarr.nifti as nifti

    path = tmp_path / f"map{suffix}"
    earlier = fake_da(g8, np.full((g8.n_voxels, 3), 7.0, np.float32))
    write_nifti(earlier, path)
    before = path.read_bytes()

    @contextlib.contextmanager
    def failing_after_one_volume(total, desc=None, **kwargs):
        class Bar:
            def update(self, n=1):
                raise KeyboardInterrupt  # as Ctrl-C mid-write

        yield Bar()

    monkeypatch.setattr(nifti, "step", failing_after_one_volume)
    with pytest.raises(KeyboardInterrupt):
        write_nifti(fake_da(g8, np.zeros((g8.n_voxels, 3), np.float32)), path)
    assert path.read_bytes() == before and sorted(tmp_path.iterdir()) == [path]
    monkeypatch.undo()

    monkeypatch.setattr(nib, "save", lambda img, name: (open(name, "wb").write(b"half a header"), 1 / 0))
    with pytest.raises(ZeroDivisionError):
        save_nifti(to_nifti(fake_da(g8, np.zeros(g8.n_voxels, np.float32))), path)
    assert path.read_bytes() == before and sorted(tmp_path.iterdir()) == [path]
    np.testing.assert_array_equal(np.asarray(nib.load(path).dataobj)[tuple(g8.ijk[0])], [7.0, 7.0, 7.0])


# ------------------------------------------------------------------------------ like=: another grid
def nilearn_nearest(img, affine, shape, background):
    """nilearn's own nearest-neighbour resampling: the reference for ``like=``."""
    from nilearn.image import resample_img

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="NaNs or infinite values are present")
        resampled = resample_img(
            img,
            target_affine=affine,
            target_shape=shape,
            interpolation="nearest",
            fill_value=background,
            force_resample=True,
            copy_header=True,
        )
    return np.asarray(resampled.dataobj)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grid_and_values(), backgrounds, st.data())
def test_like_a_shifted_and_flipped_grid_is_an_exact_reindexing(gv, background, data):
    """On a grid of the same voxel size whose origin differs by whole voxels and whose axes may
    run the other way (FSL's MNI152 grid against nilearn's), every voxel keeps its value at its
    own millimetre position and nothing else is written."""
    grid, values = gv
    grid = Grid(grid.mask, grid.affine, space="aligned")  # anywhere: no MNI-space check of like=
    flips = data.draw(st.lists(st.booleans(), min_size=3, max_size=3))
    shift = data.draw(st.lists(st.integers(-3, 3), min_size=3, max_size=3))
    shape = tuple(data.draw(st.integers(1, 8)) for _ in range(3))
    start = np.array(shift) + np.where(flips, np.array(shape) - 1, 0)  # the source index of output voxel 0
    like = grid.affine @ np.vstack([np.column_stack([np.diag(np.where(flips, -1.0, 1.0)), start]), [0, 0, 0, 1]])
    da = fake_da(grid, values)
    inside = np.all((grid.ijk >= start - np.where(flips, np.array(shape) - 1, 0)), axis=1) & np.all(
        grid.ijk <= start + np.where(flips, 0, np.array(shape) - 1), axis=1
    )
    like_img = nib.Nifti1Image(np.zeros(shape, np.uint8), like)
    if not inside.any():
        with pytest.raises(ValueError, match="none of the .* voxels lies inside the output grid"):
            to_nifti(da, like=like_img)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = to_nifti(da, background=background, like=like_img)
    assert (len(caught) == 1) == (not inside.all())
    assert img.shape == shape
    np.testing.assert_allclose(img.affine, like, atol=1e-4)
    out_ijk = np.rint(ijk_to_xyz(grid.xyz[inside], np.linalg.inv(like))).astype(int)
    vol = np.asarray(img.dataobj)
    np.testing.assert_array_equal(vol[tuple(out_ijk.T)], values[inside])
    elsewhere = np.ones(shape, bool)
    elsewhere[tuple(out_ijk.T)] = False
    np.testing.assert_array_equal(vol[elsewhere], background)  # nothing else written
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_nifti(img, Path(tmp) / "whole.nii")
        for held in (1, 2**30):  # a volume at a time (streamed range) and all at once (one read)
            write_nifti(da, Path(tmp) / "s.nii", background=background, like=like_img, max_memory=held)
            assert (Path(tmp) / "s.nii").read_bytes() == (Path(tmp) / "whole.nii").read_bytes()


def test_like_a_coarser_grid_takes_the_nearest_voxel(g8):
    """3 mm voxels, origin off by 0.7 mm (no voxel centre half-way between two 8 mm ones):
    the values of nilearn's nearest-neighbour resampling."""
    like = np.diag([3.0, 3.0, 3.0, 1.0])
    like[:3, 3] = [-79.3, -113.3, -51.3]
    da = fake_da(g8, smooth(g8.xyz).astype(np.float32))
    with pytest.warns(UserWarning, match="64 of 3,666 voxels lie outside the output grid") as caught:
        img = to_nifti(da, background=np.nan, like=nib.Nifti1Image(np.zeros((55, 65, 55), np.int8), like))
    assert caught[0].filename == __file__  # the warning points at the caller's line
    expected = nilearn_nearest(to_nifti(da, background=np.nan), like, (55, 65, 55), np.nan)
    np.testing.assert_array_equal(np.asarray(img.dataobj), expected)
    assert np.isfinite(np.asarray(img.dataobj)).sum() > 4 * g8.n_voxels  # finer: each 8 mm voxel several times


def test_like_fsl_grid_by_name_on_the_stores_2mm_grid(tmp_path):
    """nilearn's 2 mm MNI152 grid (99 x 117 x 95) written on FSL's (91 x 109 x 91, x flipped):
    every voxel inside FSL's box lands at its own millimetre position, streamed or not."""
    g2 = mni152_grid(2)
    values = np.stack([smooth(g2.xyz), -smooth(g2.xyz)], axis=1).astype(np.float32)
    da = fake_da(g2, values)
    shape, affine = FSL_GRIDS["MNI152_T1_2mm"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = write_nifti(da, tmp_path / "fsl.nii", like="MNI152_T1_2mm", max_memory=1)
    img = nib.load(path)
    assert img.shape == shape + (2,)
    np.testing.assert_allclose(img.affine, affine)
    assert img.header.get_sform(coded=True)[1] == 4  # MNI
    at = ijk_to_xyz(g2.xyz, np.linalg.inv(np.asarray(affine, float)))
    np.testing.assert_allclose(at, np.rint(at), atol=1e-9)  # whole voxels: an exact re-indexing
    assert np.all((at >= 0) & (at <= np.asarray(shape) - 1)) and not caught  # the brain fits FSL's box
    vol = np.asarray(img.dataobj)
    np.testing.assert_array_equal(vol[tuple(np.rint(at).astype(int).T)], values)
    assert np.count_nonzero(vol[..., 0]) == np.count_nonzero(values[:, 0])  # nothing else written
    whole = save_nifti(to_nifti(da, like="MNI152_T1_2mm"), tmp_path / "whole.nii")
    assert path.read_bytes() == whole.read_bytes()
    expected = nilearn_nearest(to_nifti(da.isel(component=0)), np.asarray(affine, float), shape, 0.0)
    np.testing.assert_array_equal(vol[..., 0], expected)


def test_like_errors(g8, tmp_path):
    da = fake_da(g8)
    with pytest.raises(ValueError, match="neither a NIfTI file nor one of FSL's grids"):
        to_nifti(da, like="MNI152_T1_3mm")
    with pytest.raises(FileNotFoundError, match="no image file"):
        write_nifti(da, tmp_path / "a.nii", like=tmp_path / "missing.nii.gz")
    with pytest.raises(ValueError, match="3-D or 4-D"):
        to_nifti(da, like=nib.Nifti1Image(np.zeros((2, 2), np.int8), np.eye(4)))
    # a native scan (voxel indices as millimetres) that overlaps some of the store's voxels: the
    # image would be written, 3,275 of 3,666 voxels missing and the rest misplaced
    native = tmp_path / "native.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((256, 256, 176), np.int8), np.eye(4)), native)
    for like in (native, nib.load(native)):
        with pytest.raises(InputError, match="the output grid .*evidently not in MNI space: .*; register it"):
            write_nifti(da, tmp_path / "a.nii", like=like)
    assert [p.name for p in tmp_path.iterdir()] == ["native.nii.gz"]


def test_write_nifti_memory_does_not_grow_with_the_volumes(g8, tmp_path):
    """Two volumes held at a time: writing 256 volumes peaks far below the 4-D image (20 MB),
    and each volume more adds under an eighth of a volume to the peak (dask's per-task
    bookkeeping), where holding the image would add a whole one."""
    import tracemalloc

    dask_array = pytest.importorskip("dask.array")
    per_volume = int(np.prod(g8.shape)) * 4 + g8.n_voxels * 4

    def lazy(n):
        return fake_da(g8, dask_array.random.default_rng(0).random((g8.n_voxels, n), chunks=(1024, 8)).astype("f4"))

    def peak(write, *args, **kwargs):
        tracemalloc.start()
        try:
            write(*args, **kwargs)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    write_nifti(lazy(8), tmp_path / "warm.nii", max_memory=2 * per_volume)  # imports, dask's caches
    peaks = {n: peak(write_nifti, lazy(n), tmp_path / f"e{n}.nii", max_memory=2 * per_volume) for n in (8, 256)}
    volume = int(np.prod(g8.shape)) * 4
    assert peaks[256] < 256 * volume / 4, peaks
    assert (peaks[256] - peaks[8]) / (256 - 8) < volume / 8, peaks
    img = nib.load(tmp_path / "e256.nii")
    assert img.shape == g8.shape + (256,)
    np.testing.assert_array_equal(np.asarray(img.dataobj)[tuple(g8.ijk.T)], lazy(256).values)


def test_write_nifti_refuses_a_file_the_disk_cannot_hold(g8, tmp_path, monkeypatch):
    import shutil

    from brainzarr.exceptions import InsufficientDiskError

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage._replace(free=10_000))
    with pytest.raises(InsufficientDiskError, match="the NIfTI file m.nii needs about"):
        write_nifti(fake_da(g8), tmp_path / "m.nii")
    assert not list(tmp_path.iterdir())


def test_dask_input_is_computed_once(g8):
    dask_array = pytest.importorskip("dask.array")
    calls = []

    def count(block):
        if block.size:  # dask calls it once on an empty block to learn the output's meta
            calls.append(block.shape)
        return block

    values = np.random.default_rng(1).random((g8.n_voxels, 2), dtype=np.float32)
    lazy = dask_array.from_array(values, chunks=(1000, 1)).map_blocks(count, dtype=np.float32)
    da = fake_da(g8, lazy)
    img = to_nifti(da)
    assert len(calls) == lazy.npartitions  # every block once
    np.testing.assert_array_equal(np.asarray(img.dataobj)[tuple(g8.ijk.T)], values)


def test_accessor(g8, tmp_path):
    da = fake_da(g8)
    assert da.brain.to_volume().shape == g8.shape
    assert da.brain.to_volume().dtype == np.float32
    assert da.brain.to_volume(np.nan)[0, 0, 0] != da.brain.to_volume(np.nan)[0, 0, 0]  # NaN
    grid = da.brain.grid
    assert np.array_equal(grid.mask, g8.mask) and np.array_equal(grid.affine, g8.affine)
    img = da.brain.to_nifti()
    assert isinstance(img, nib.Nifti1Image) and not list(tmp_path.iterdir())
    da.brain.to_nifti(tmp_path / "m.nii")
    assert (tmp_path / "m.nii").exists()
    with pytest.raises(ValueError, match=r"\.nii or \.nii\.gz"):
        da.brain.to_nifti(tmp_path / "m.png")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_nifti(img, tmp_path / "missing" / "m.nii")
    emb = fake_da(g8, np.ones((g8.n_voxels, 4), np.float32))
    assert emb.brain.to_volume().shape == g8.shape + (4,)


# ------------------------------------------------------------------------------ resampling
def test_resample_finer_image_onto_8mm(g8):
    """A 3 mm image (voxel centres off the 8 mm ones) of a smooth function: values at the 8 mm centres."""
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = [-100.5, -140.0, -95.0]  # the 8 mm voxels lie > 3 voxels inside: no spline edge effects
    img = function_image(affine, (70, 82, 78))
    expected = smooth(g8.xyz)
    for interpolation, atol in (("continuous", 2e-4), ("linear", 3e-3)):
        back = from_nifti(img, g8, interpolation=interpolation)
        assert back.attrs["interpolation"] == interpolation and back.dtype == np.float32
        np.testing.assert_allclose(back.values, expected, atol=atol)
        np.testing.assert_array_equal(back["i"].values, g8.ijk[:, 0])


def test_resample_flipped_fsl_grid_nearest(g8):
    """FSL's 2 mm MNI grid (flipped x): the 8 mm centres are 2 mm centres, nearest gives exact values."""
    img = function_image(FSL_2MM_AFFINE, FSL_2MM_SHAPE)
    back = from_nifti(img, fake_store(g8), interpolation="nearest")
    np.testing.assert_allclose(back.values, smooth(g8.xyz), atol=1e-5)
    assert "split" in back.coords and "hemisphere" in back.coords  # the store's voxel coords
    # an integer label image keeps its labels with nearest
    labels = nib.Nifti1Image((np.asarray(img.dataobj) > 1).astype(np.int16), FSL_2MM_AFFINE)
    back = from_nifti(labels, g8, interpolation="nearest")
    np.testing.assert_array_equal(back.values, (smooth(g8.xyz) > 1).astype(np.float32))


def _nested_half_voxel_image(grid: Grid, data: np.ndarray, flipped: bool) -> nib.Nifti1Image:
    """``data`` (2x the grid's shape, and volumes) on half the grid's voxel size, each grid voxel
    holding 2 x 2 x 2 image voxels; with ``flipped``, stored left-right flipped as FSL's are."""
    affine = grid.affine.copy()
    affine[:3, :3] /= 2
    affine[:3, 3] -= np.diag(grid.affine)[:3] / 4
    if flipped:
        affine[:3, 3] += affine[:3, 0] * (data.shape[0] - 1)
        affine[:3, 0] *= -1
        data = data[::-1]
    return nib.Nifti1Image(np.ascontiguousarray(data), affine)


def _children(grid: Grid, data: np.ndarray) -> np.ndarray:
    """(voxels, 8, ...) the values of the image voxels nested in each grid voxel."""
    i, j, k = (2 * grid.ijk).T
    return np.stack([data[i + a, j + b, k + c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], axis=1)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**16), volumes=st.sampled_from([0, 3]), flipped=st.booleans())
def test_mean_interpolation_averages_the_image_voxels_inside_each_voxel(seed, volumes, flipped):
    g8 = mni152_grid(8)
    rng = np.random.default_rng(seed)
    shape = tuple(2 * n for n in g8.shape) + ((volumes,) if volumes else ())
    data = rng.random(shape, dtype=np.float32)
    back = from_nifti(_nested_half_voxel_image(g8, data, flipped), g8, interpolation="mean")
    assert back.attrs["interpolation"] == "mean" and back.dtype == np.float32
    assert back.dims == (("voxel", "volume") if volumes else ("voxel",))
    np.testing.assert_allclose(back.values, _children(g8, data).mean(axis=1), rtol=1e-6)
    nearest = from_nifti(_nested_half_voxel_image(g8, data, flipped), g8, interpolation="nearest")
    assert not np.allclose(nearest.values, back.values)  # a centre's sample is one child, not their mean


def test_mean_interpolation_on_grids_that_share_voxel_centres_weighs_border_voxels_by_half(g8):
    """nilearn's 4 and 8 mm MNI grids share voxel centres: an 8 mm voxel holds one 4 mm voxel
    whole and halves of its neighbours along each axis (weights 1/4, 1/2, 1/4). Sampling at the
    image's own resolution put every point on a border (two points in one voxel, none in the
    next); the mean must be the exact partial-volume one."""
    g4 = mni152_grid(4)
    data = np.random.default_rng(3).random(g4.shape, dtype=np.float32)
    back = from_nifti(nib.Nifti1Image(data, g4.affine), g8, interpolation="mean")
    centre = 2 * g8.ijk  # the 4 mm voxel at each 8 mm centre
    weights = {-1: 0.25, 0: 0.5, 1: 0.25}
    expected = sum(
        weights[a] * weights[b] * weights[c] * data[centre[:, 0] + a, centre[:, 1] + b, centre[:, 2] + c]
        for a in weights
        for b in weights
        for c in weights
    )
    # a voxel at the grid's edge averages only its part inside the image
    inside = np.all((centre >= 1) & (centre + 1 < g4.shape), axis=1)
    assert (~inside).sum() < 10
    np.testing.assert_allclose(back.values[inside], expected[inside], rtol=1e-5)


def test_mean_interpolation_on_a_shifted_grid_of_the_same_voxel_size_mixes_the_voxels_it_straddles(g8):
    """Shifted by (3, -2, 1) mm, each 8 mm voxel lies 5/8 and 3/8 across two image voxels along
    x, 3/4 and 1/4 along y, 1/8 and 7/8 along z: its mean weighs the eight by their shares
    (it was the nearest voxel's value)."""
    affine = g8.affine.copy()
    affine[:3, 3] += [3.0, -2.0, 1.0]
    data = np.random.default_rng(0).random(g8.shape, dtype=np.float32)
    img = nib.Nifti1Image(data, affine)
    with pytest.warns(UserWarning, match="1 of 3666 target voxels lie outside .* the parts inside it are averaged"):
        mean = from_nifti(img, g8, interpolation="mean")
    i, j, k = g8.ijk.T
    shares = ({-1: 3 / 8, 0: 5 / 8}, {0: 3 / 4, 1: 1 / 4}, {-1: 1 / 8, 0: 7 / 8})
    inside = np.all((g8.ijk > 0) & (g8.ijk + 1 < g8.shape), axis=1)
    expected = sum(
        wa * wb * wc * data[(i + a)[inside], (j + b)[inside], (k + c)[inside]]
        for a, wa in shares[0].items()
        for b, wb in shares[1].items()
        for c, wc in shares[2].items()
    )
    np.testing.assert_allclose(mean.values[inside], expected, rtol=1e-5)
    assert np.isfinite(mean.values).all()  # the edge voxel whose centre lies past the image's: its part inside


def _overlap_fractions(centres, side, image_centres, image_side) -> np.ndarray:
    """(target voxels, image voxels) along one world axis: the fraction of each target voxel's
    extent (mm) that lies in each image voxel's."""
    lo = np.maximum(centres[:, None] - side / 2, image_centres[None] - image_side / 2)
    hi = np.minimum(centres[:, None] + side / 2, image_centres[None] + image_side / 2)
    return np.clip(hi - lo, 0, None) / side


def _stored(data: np.ndarray, affine: np.ndarray, flips, order) -> nib.Nifti1Image:
    """``data`` on ``affine`` (axes along x, y, z) stored with some axes flipped and the axes
    in another order, as images on disk may be: the same image in world space."""
    affine = affine.copy()
    for axis, flip in enumerate(flips):
        if flip:
            data = np.flip(data, axis)
            affine[:3, 3] += affine[:3, axis] * (data.shape[axis] - 1)
            affine[:3, axis] *= -1
    affine[:, :3] = affine[:, list(order)]
    return nib.Nifti1Image(np.ascontiguousarray(data.transpose(*order, *range(3, data.ndim))), affine)


@settings(max_examples=40, deadline=None)
@given(
    sides=st.tuples(*[st.sampled_from([1.0, 1.5, 2.0, 3.0, 4.0])] * 3),
    image_sides=st.tuples(*[st.floats(0.45, 6.0)] * 3),
    shifts=st.tuples(*[st.floats(-0.5, 0.5)] * 3),
    flips=st.tuples(*[st.booleans()] * 3),
    order=st.permutations([0, 1, 2]),
    volumes=st.sampled_from([0, 2]),
    seed=st.integers(0, 2**16),
)
def test_mean_interpolation_is_the_volume_weighted_mean_on_any_parallel_grids(
    sides, image_sides, shifts, flips, order, volumes, seed
):
    """Any voxel sizes (image finer, as fine or coarser, per axis), origins, flips and axis
    orders: each voxel's mean weighs the image voxels by the share of its volume in each,
    computed here in millimetres from the two grids' voxel boxes."""
    shape = (5, 4, 6)
    affine = np.diag([*sides, 1.0])
    grid = Grid.from_ijk(np.indices(shape).reshape(3, -1).T, shape, affine, space="scanner", name="box")
    # the image covers the grid's voxels and a margin of at least one of its own voxels
    image_shape = tuple(int(np.ceil(n * s / w)) + 3 for n, s, w in zip(shape, sides, image_sides, strict=True))
    image_affine = np.diag([*image_sides, 1.0])
    image_affine[:3, 3] = [-s / 2 - w + f * w for s, w, f in zip(sides, image_sides, shifts, strict=True)]
    rng = np.random.default_rng(seed)
    data = rng.random(image_shape + ((volumes,) if volumes else ()), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a grid voxel's centre may lie past the image's last
        back = from_nifti(_stored(data, image_affine, flips, order), grid, interpolation="mean", check_space=False)

    fractions = [
        _overlap_fractions(
            affine[a, a] * np.arange(shape[a]),
            sides[a],
            image_affine[a, 3] + image_sides[a] * np.arange(image_shape[a]),
            image_sides[a],
        )
        for a in range(3)
    ]
    expected = np.einsum("im,jn,ko,mno...->ijk...", *fractions, data.astype(np.float64))
    inside = np.einsum("i,j,k->ijk", *(f.sum(axis=1) for f in fractions))
    expected = expected / inside.reshape(*shape, *([1] * (data.ndim - 3)))
    np.testing.assert_allclose(back.values, expected[tuple(grid.ijk.T)], rtol=1e-5, atol=1e-6)


def test_mean_interpolation_of_a_4d_image_in_small_chunks_is_each_volume_read_alone(g8, monkeypatch):
    """A 4-D image is read in chunks of fewer voxels (a chunk's values stay bounded, however many
    volumes): each volume comes out as it does alone, whatever the chunks."""
    import brainzarr.nifti as nifti

    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = g8.affine[:3, 3] - 6.5
    data = np.random.default_rng(2).random((75, 85, 72, 4), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        alone = [from_nifti(nib.Nifti1Image(data[..., v], affine), g8, interpolation="mean").values for v in range(4)]
        monkeypatch.setattr(nifti, "_POINTS_AT_ONCE", 4096)  # 4096 / 4 volumes / 27 image voxels: 37 voxels a chunk
        together = from_nifti(nib.Nifti1Image(data, affine), g8, interpolation="mean").values
    np.testing.assert_allclose(together, np.stack(alone, axis=1), rtol=1e-6)


def test_mean_interpolation_of_an_oblique_image_samples_each_voxel(g8):
    """An image rotated against the grid has no per-axis overlaps: each voxel is sampled at
    points inside it. A linear map's mean over a voxel is its value at the centre."""
    angle = np.deg2rad(10)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation * 2.0
    affine[:3, 3] = [-120.0, -140.0, -80.0]
    shape = (130, 150, 95)
    ijk = np.indices(shape).reshape(3, -1).T
    x = ijk_to_xyz(ijk, affine)[:, 0].reshape(shape).astype(np.float32)  # the image's values: x (mm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        back = from_nifti(nib.Nifti1Image(x, affine), g8, interpolation="mean", check_space=False)
    held = np.isfinite(back.values)
    assert held.mean() > 0.95
    # a 2 mm image's voxels are up to 1.4 mm from the points that fall in them: their mean errs less
    np.testing.assert_allclose(back.values[held], g8.xyz[held, 0], atol=0.5)


def test_a_mean_read_target_averages_only_the_maps_own_voxels(g8):
    from brainzarr.evaluate.targets import read_map

    rng = np.random.default_rng(1)
    data = rng.uniform(1, 2, tuple(2 * n for n in g8.shape)).astype(np.float32)
    data[: data.shape[0] // 2, :, ::2] = 0  # a background that covers half of some voxels
    values, covered = read_map(_nested_half_voxel_image(g8, data, False), fake_store(g8), interpolation="mean")
    children = _children(g8, data)
    valid = (children != 0).sum(axis=1)
    np.testing.assert_array_equal(covered, valid >= 4)
    expected = children.sum(axis=1)[covered] / valid[covered]  # the mean of the non-zero children
    np.testing.assert_allclose(values[covered], expected, rtol=1e-5)


def test_partial_field_of_view_warns_and_gives_nan(g8):
    affine = FSL_2MM_AFFINE.copy()
    affine[0] = [2.0, 0, 0, -90]  # left hemisphere only: x in [-90, -2]
    img = function_image(affine, (45,) + FSL_2MM_SHAPE[1:])
    with pytest.warns(UserWarning, match="outside the field of view"):
        back = from_nifti(img, g8)
    left = g8.xyz[:, 0] <= -2
    assert np.isnan(back.values[~left]).all()
    np.testing.assert_allclose(back.values[left], smooth(g8.xyz[left]), atol=1e-3)


# ------------------------------------------------------------------------------ plotting
def test_saved_file_opens_in_nilearn_and_plot_map(g8, tmp_path):
    from nilearn import plotting

    from brainzarr.plots import plot_map

    da = fake_da(g8, smooth(g8.xyz).astype(np.float32)).assign_coords(gene="APOE")
    path = tmp_path / "apoe.nii.gz"
    da.brain.to_nifti(path)
    display = plotting.plot_stat_map(str(path))
    display.close()
    out = plot_map(da, tmp_path / "apoe.png", display_mode="z", cut_coords=3)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "apoe.png").stat().st_size > 5000
    with pytest.raises(ValueError, match="select one entry"):
        plot_map(fake_da(g8, np.ones((g8.n_voxels, 2), np.float32)))


def test_plot_surface_puts_each_side_of_the_map_on_its_hemisphere(g8, tmp_path):
    """A map of x (negative on the left): on fsaverage5, the left hemisphere's faces are drawn
    blue and the right's red (the diverging map of a signed map), in every view."""
    from brainzarr.plots import plot_surface

    figure = fake_da(g8, g8.xyz[:, 0].astype(np.float32)).brain.plot_surface()
    surfaces = [ax for ax in figure.axes if ax.name == "3d"]
    assert len(surfaces) == 4  # lateral and medial, left and right
    redness = [float(np.mean(ax.collections[0].get_facecolors()[:, 0] - ax.collections[0].get_facecolors()[:, 2]))
               for ax in surfaces]  # fmt: skip
    assert redness[0] < -0.1 and redness[2] < -0.1  # left: blue
    assert redness[1] > 0.1 and redness[3] > 0.1  # right: red
    import matplotlib.pyplot as plt

    plt.close(figure)
    out = plot_surface(fake_da(g8, smooth(g8.xyz).astype(np.float32)), tmp_path / "s.png", views=("lateral",))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and list(tmp_path.iterdir()) == [out]
    with pytest.raises(ValueError, match="select one entry"):
        plot_surface(fake_da(g8, np.ones((g8.n_voxels, 2), np.float32)))


def test_labels_are_drawn_as_coloured_regions_named_in_a_legend(g8, tmp_path):
    """``ds.hemisphere.brain.plot()``: each label its own colour, the left of the brain the
    first's and the right the second's, named in the legend; the surface plot, which draws
    values, says to use plot_map."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba

    from brainzarr.plots import LABEL_COLOURS, label_colours, plot_map, plot_surface

    hemisphere = fake_da(g8, np.where(g8.xyz[:, 0] < 0, "L", "R"), name="hemisphere")
    display = plot_map(hemisphere, display_mode="z", cut_coords=[10])
    figure = display.frame_axes.figure
    legend = figure.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["L", "R"]
    colours = [tuple(h.get_facecolor()) for h in legend.legend_handles]
    assert colours[0] != colours[1]
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3].astype(float) / 255
    box = next(iter(display.axes.values())).ax.get_window_extent()  # the slice, in pixels
    height = pixels.shape[0]
    brain = pixels[int(height - box.y1) : int(height - box.y0), int(box.x0) : int(box.x1)]
    half = brain.shape[1] // 2
    for n, colour in enumerate(colours):  # blended with the template: near, not equal
        near = np.abs(brain - np.asarray(colour[:3])).sum(axis=2) < 0.35
        own, other = (near[:, :half], near[:, half:]) if n == 0 else (near[:, half:], near[:, :half])
        assert own.sum() > 5000 and other.sum() < own.sum() / 10, (n, own.sum(), other.sum())
    plt.close(figure)
    out = plot_map(hemisphere, tmp_path / "hemisphere.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    split = plot_map(hemisphere.copy(data=np.where(g8.xyz[:, 0] < 0, "test", "train")), display_mode="z")
    handles = split.frame_axes.figure.legends[0].legend_handles  # the splits' own colours, as in the report
    assert [tuple(h.get_facecolor()) for h in handles] == [to_rgba(LABEL_COLOURS[s]) for s in ("test", "train")]
    plt.close(split.frame_axes.figure)
    assert label_colours(["test", "x"], cmap="Set1")[0] == plt.get_cmap("Set1")(0)  # a named palette for all
    mixed = label_colours(["A", "train", "B"])  # the others skip the colour train has
    assert mixed[1] == to_rgba(LABEL_COLOURS["train"]) and len(set(mixed)) == 3
    atlas = np.array(label_colours([f"region {i}" for i in range(400)]))[:, :3]  # beyond tab20's 20 colours
    assert len({tuple(c) for c in atlas}) == 400 and (atlas[:20] == plt.get_cmap("tab20")(range(20))[:, :3]).all()
    assert np.linalg.norm(np.diff(atlas, axis=0), axis=1).min() > 0.2  # neighbouring labels far apart
    parcels = plot_map(hemisphere.copy(data=[f"p{v % 40}" for v in range(g8.n_voxels)]), display_mode="z")
    figure = parcels.frame_axes.figure  # 40 labels: counted, not named over the slices
    assert not figure.legends and "40 labels (too many to name here)" in [t.get_text() for t in figure.texts]
    plt.close(figure)
    spread = label_colours(["a", "b", "c"], cmap="viridis")  # a continuous colormap: its ends and middle
    assert spread[0] == plt.get_cmap("viridis")(0.0) and spread[2] == plt.get_cmap("viridis")(1.0)
    chosen = plot_map(hemisphere, cmap={"R": "red"}).frame_axes.figure  # a colour per label; others the palette's
    assert [tuple(h.get_facecolor()) for h in chosen.legends[0].legend_handles] == [colours[0], (1.0, 0.0, 0.0, 1.0)]
    plt.close(chosen)
    with pytest.raises(InputError, match="draw them with plot_map"):
        plot_surface(hemisphere)


# ------------------------------------------------------------------------------ the MNI heuristic
def test_mni_heuristic_accepts_mni_images_and_crops(g8):
    assert mni_mismatch(FSL_2MM_AFFINE, FSL_2MM_SHAPE) is None
    assert mni_mismatch(g8.affine, g8.shape) is None
    box = MNI_BRAIN_BOX
    for crop in (
        [[-90, 0], box[1], box[2]],  # left hemisphere
        [[-50, 50], [-100, -30], [-72, -10]],  # cerebellum
        [[-30, 30], [-126, -90], [-20, 40]],  # occipital pole
        [[-40, 40], [50, 91], [-30, 50]],
    ):  # frontal pole
        lo = np.array(crop, float)[:, 0]
        shape = tuple(int(s) for s in np.diff(np.array(crop, float), axis=1)[:, 0] + 1)
        assert (
            mni_mismatch(np.array([[1, 0, 0, lo[0]], [0, 1, 0, lo[1]], [0, 0, 1, lo[2]], [0, 0, 0, 1]]), shape) is None
        ), crop


_BRAIN_4MM = mni152_grid(4)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, _BRAIN_4MM.n_voxels - 1),
    st.tuples(*[st.integers(0, 12)] * 3),
    st.sampled_from([1.0, 2.0, 3.0]),
    st.booleans(),
)
def test_mni_heuristic_accepts_any_region_of_the_brain(voxel, half_widths, zoom, flip_x):
    """A region's image (a build's ROI mask, a cropped map) around any brain voxel, from one
    voxel to 25 voxels a side, in any voxel size, with x either way, is taken as MNI."""
    centre = _BRAIN_4MM.xyz[voxel]
    half = np.array(half_widths)
    affine = np.diag([-zoom if flip_x else zoom, zoom, zoom, 1.0])
    corner = centre - np.array([-1 if flip_x else 1, 1, 1]) * half * zoom
    affine[:3, 3] = corner
    assert mni_mismatch(affine, tuple(int(n) for n in 2 * half + 1)) is None


def test_mni_heuristic_rejects_native_scans():
    corner = np.diag([1.0, 1.0, 1.0, 1.0])  # voxel indices as millimetres
    assert "half-widths" in mni_mismatch(corner, (256, 256, 176))
    far = np.diag([1.0, 1.0, 1.0, 1.0])
    far[:3, 3] = [500, 500, 500]
    assert "does not intersect" in mni_mismatch(far, (100, 100, 100))


# ------------------------------------------------------------------------------ errors
def test_to_nifti_errors(g8):
    da = fake_da(g8)
    with pytest.raises(ValueError, match="no 'voxel' dimension"):
        to_nifti(da.rename(voxel="row"))
    with pytest.raises(ValueError, match="at most one dimension besides 'voxel'"):
        to_nifti(da.expand_dims(a=2, b=3))
    with pytest.raises(ValueError, match="no grid information"):
        to_nifti(xr.DataArray(np.zeros(10), dims="voxel"))
    no_ijk = xr.DataArray(np.zeros(10), dims="voxel", attrs=g8.to_attrs())
    with pytest.raises(ValueError, match="no voxel coordinates i, j, k"):
        to_nifti(no_ijk)
    with pytest.raises(ValueError, match="needs a floating dtype"):
        to_nifti(da, background=np.nan, dtype=np.int16)
    with pytest.raises(ValueError, match="outside the grid"):
        to_nifti(da.assign_coords(i=da["i"] + 100))
    with pytest.raises(ValueError, match="more than once"):
        to_nifti(da.isel(voxel=[0, 0, 1]))
    with pytest.raises(ValueError, match="another grid"):
        to_nifti(da, mni152_grid_like(g8, shift=4.0))
    with pytest.raises(ValueError, match="10 voxels"):
        to_nifti(xr.DataArray(np.zeros(10), dims="voxel"), g8)
    with pytest.raises(TypeError, match="DataArray, got ndarray; values in a store's voxel order go on its grid as"):
        to_nifti(np.zeros(10))
    with pytest.raises(TypeError, match=r"DataArray, got list$"):
        to_nifti([0.0] * 10)
    with pytest.raises(TypeError, match="Grid"):
        to_nifti(xr.DataArray(np.zeros(10), dims="voxel"), "8mm")


def mni152_grid_like(grid: Grid, shift: float) -> Grid:
    affine = grid.affine.copy()
    affine[:3, 3] += shift
    return Grid(grid.mask, affine)


def test_from_nifti_errors(g8, tmp_path):
    img = to_nifti(fake_da(g8))
    with pytest.raises(FileNotFoundError, match="no image file"):
        from_nifti(tmp_path / "nope.nii.gz", g8)
    (tmp_path / "junk.nii").write_text("not an image")
    with pytest.raises(ValueError, match="could not be read"):
        from_nifti(tmp_path / "junk.nii", g8)
    with pytest.raises(ValueError, match="interpolation"):
        from_nifti(img, g8, interpolation="cubic")
    with pytest.raises(ValueError, match="3-D or 4-D"):
        from_nifti(nib.Nifti1Image(np.zeros((4, 4, 4, 2, 2), np.float32), g8.affine), g8)
    with pytest.raises(TypeError, match="target"):
        from_nifti(img, "mni8")
    with pytest.raises(ValueError, match="no grid information"):
        from_nifti(img, xr.DataArray(np.zeros(3), dims="voxel"))
    with pytest.raises(TypeError, match="nibabel image"):
        from_nifti(np.zeros((3, 3, 3)), g8)
    # evidently not MNI: a native scan with voxel indices as millimetres
    native = nib.Nifti1Image(np.ones((64, 64, 44), np.float32), np.diag([4.0, 4.0, 4.0, 1.0]))
    with pytest.raises(ValueError, match="evidently not in MNI space"):
        from_nifti(native, g8)
    far = g8.affine.copy()
    far[:3, 3] += 1000
    with pytest.raises(ValueError, match="does not intersect the MNI brain"):
        from_nifti(nib.Nifti1Image(np.ones(g8.shape, np.float32), far), g8)
    with pytest.raises(ValueError, match="does not overlap"):
        from_nifti(nib.Nifti1Image(np.ones(g8.shape, np.float32), far), g8, check_space=False)
    # an MNI image of the right hemisphere cannot fill a target in the left one
    right = np.diag([2.0, 2.0, 2.0, 1.0])
    right[:3, 3] = [10, -126, -72]
    left_grid = Grid(g8.mask & (np.arange(g8.shape[0]) < 8)[:, None, None], g8.affine)
    with pytest.raises(ValueError, match="does not overlap the target's voxels"):
        from_nifti(nib.Nifti1Image(np.ones((40, 109, 91), np.float32), right), left_grid)
