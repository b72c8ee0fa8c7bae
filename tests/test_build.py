import hashlib
import os
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest
import zarr

from brainzarr import build_store, open_store, store_grid
from brainzarr.assign import Assignment
from brainzarr.build import StoreExistsError
from brainzarr.grid import mni152_grid
from brainzarr.preprocess import blocked_split, random_split
from brainzarr.sources.synthetic import load_synthetic


def checksum(path) -> str:
    ds = open_store(path)
    return hashlib.sha256(np.ascontiguousarray(ds["expression"].values).tobytes()).hexdigest()


def expected_expression(table, grid, assignment, **kw):
    """The build's result computed in memory, with numpy's percentiles."""
    a = Assignment(
        assignment,
        np.column_stack([table[c].values for c in "xyz"]),
        table["hemisphere"].values,
        affine=grid.affine,
        **kw,
    )
    raw = np.asarray(a.weights(grid.xyz, grid.hemisphere) @ table["expression"].values, dtype=np.float32)
    lo = np.percentile(raw, 0.01, axis=0).astype(np.float32)
    hi = np.percentile(raw, 99.9, axis=0).astype(np.float32)
    return (np.clip(raw, lo, hi) - lo) / (hi - lo)


@pytest.mark.parametrize(
    "assignment, kw",
    [("nearest", {}), ("idw", {"n_neighbors": 10}), ("idw", {"n_neighbors": 4, "same_hemisphere": True})],
)
def test_build_equals_in_memory_computation(tmp_path, assignment, kw):
    table = load_synthetic(40, random_state=2)
    common = dict(resolution=8, genes=40, random_state=2, assignment=assignment, chunks=(1000, 16), **kw)
    out = build_store(tmp_path / "s.zarr", layout="float32", **common)
    ds = open_store(out)
    grid = mni152_grid(8)
    assert ds.sizes == {"voxel": 3666, "gene": 40}
    assert ds["expression"].chunks == ((1000, 1000, 1000, 666), (16, 16, 8))
    expected = expected_expression(table, grid, assignment, **kw)
    np.testing.assert_allclose(ds["expression"].values, expected, atol=2e-6)
    # the default layout packs the same values as uint16: within half a step (1/131070)
    packed = open_store(build_store(tmp_path / "p.zarr", **common))["expression"]
    assert packed.dtype == np.float32 and packed.encoding["dtype"] == np.uint16
    np.testing.assert_allclose(packed.values, expected, atol=0.5 / 65535 + 2e-6)
    assert ds["expression"].min() == 0 and ds["expression"].max() == 1
    prov = ds.attrs["provenance"]
    assert prov["assignment"]["method"] == assignment
    assert prov["source"]["options"]["random_state"] == 2 and prov["seed"] == 2
    assert "zarr" in prov["versions"] and prov["preprocessing"]["clamp_percentiles"] == [0.01, 99.9]


def test_store_coordinates_and_splits(small_store):
    ds = open_store(small_store)
    grid = store_grid(ds)
    ref = mni152_grid(8)
    np.testing.assert_array_equal(grid.ijk, ref.ijk)
    np.testing.assert_allclose(np.column_stack([ds[c].values for c in "xyz"]), ref.xyz)
    np.testing.assert_array_equal(ds["split_random"].values, random_split(3666, random_state=1))
    blocked = blocked_split(ref.xyz, block_mm=48, buffer_mm=16, random_state=1)  # the defaults at 8 mm
    np.testing.assert_array_equal(ds["split_blocked"].values, blocked)
    assert set(np.unique(blocked)) == {"train", "test", "buffer"}
    assert ds.attrs["provenance"]["split"]["buffer_mm"] == 16.0 and ds.attrs["provenance"]["split"]["block_mm"] == 48.0
    np.testing.assert_array_equal(ds["split"].values, ds["split_random"].values)
    assert ds.attrs["grid_shape"] == list(ref.shape) and np.allclose(ds.attrs["affine"], ref.affine)
    # grid info travels with selections
    assert ds["expression"].isel(gene=0)["i"].attrs["grid_shape"] == list(ref.shape)
    assert ds["expression"].data.chunks[0][0] == 3666  # at most one chunk of voxels
    assert {"clamp_low", "clamp_high"} <= set(ds.data_vars)


def test_blocked_split_choice(tmp_path):
    out = build_store(tmp_path / "b.zarr", resolution=8, genes=5, split="blocked", block_mm=24, random_state=5)
    ds = open_store(out)
    expected = blocked_split(mni152_grid(8).xyz, block_mm=24, buffer_mm=16, random_state=5)
    np.testing.assert_array_equal(ds["split"].values, expected)
    assert ds.attrs["provenance"]["split"] == {
        "scheme": "blocked",
        "test_fraction": 0.2,
        "seed": 5,
        "block_mm": 24.0,
        "buffer_mm": 16.0,
    }


def test_rebuild_is_a_noop_other_settings_need_overwrite(tmp_path):
    out = build_store(tmp_path / "s.zarr", resolution=8, genes=10, random_state=1)
    before = checksum(out)
    mtime = os.path.getmtime(out / "zarr.json")
    build_store(out, resolution=8, genes=10, random_state=1)
    assert os.path.getmtime(out / "zarr.json") == mtime
    with pytest.raises(StoreExistsError, match="other settings"):
        build_store(out, resolution=8, genes=10, random_state=2)
    build_store(out, resolution=8, genes=10, random_state=2, overwrite=True)
    assert checksum(out) != before
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    with pytest.raises(StoreExistsError, match="not a brainzarr store"):
        build_store(tmp_path / "junk", resolution=8, genes=10)


def test_build_under_distributed_matches_local(tmp_path):
    distributed = pytest.importorskip("distributed")
    local = build_store(tmp_path / "local.zarr", resolution=8, genes=30, random_state=4, chunks=(512, 8))
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = build_store(
            tmp_path / "remote.zarr", resolution=8, genes=30, random_state=4, chunks=(512, 8), client=client
        )
    assert checksum(local) == checksum(remote)


BUILD_SCRIPT = """
import sys
from brainzarr import build_store
build_store(sys.argv[1], resolution=4, genes=1500, seed=7, chunks=(512, 64), assignment="idw")
"""


def _done_blocks(path):
    try:
        return int(zarr.open_group(str(path), mode="r")["build_chunk_done"][:].sum())
    except Exception:
        return -1  # not created yet


@pytest.mark.parametrize("kill_after_blocks", [-1, 12])
def test_resume_after_kill_gives_identical_store(tmp_path, kill_after_blocks):
    """SIGKILL the build (during the statistics pass, or after some blocks), run it again."""
    out = tmp_path / "killed.zarr"
    proc = subprocess.Popen([sys.executable, "-c", BUILD_SCRIPT, str(out)])
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        done = _done_blocks(out)
        if (kill_after_blocks < 0 and done == 0) or (kill_after_blocks >= 0 and done >= kill_after_blocks):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_blocks = -(-29_398 // 512)
    done = _done_blocks(out)
    assert 0 <= done < n_blocks, "the build finished before it could be killed"
    with pytest.raises(Exception, match="did not finish"):
        open_store(out)
    build_store(out, resolution=4, genes=1500, random_state=7, chunks=(512, 64), assignment="idw")
    reference = build_store(
        tmp_path / "clean.zarr", resolution=4, genes=1500, random_state=7, chunks=(512, 64), assignment="idw"
    )
    assert checksum(out) == checksum(reference)
    assert not list(tmp_path.glob("*.creating"))


def test_percentiles_in_gene_groups_equal_one_pass(tmp_path, monkeypatch):
    """Large grids take the percentile pass in groups of genes (bounded memory): same store."""
    import brainzarr.build as build

    one = build_store(tmp_path / "one.zarr", resolution=8, genes=50, random_state=3, chunks=(1000, 8))
    monkeypatch.setattr(build, "_TAIL_BYTES", 1000)  # forces groups of 8 genes
    grouped = build_store(tmp_path / "grouped.zarr", resolution=8, genes=50, random_state=3, chunks=(1000, 8))
    assert checksum(one) == checksum(grouped)


def test_a_mask_evidently_not_in_mni_space_is_refused_before_anything_is_written(tmp_path, capsys):
    """The samples sit at MNI coordinates: a mask in native scanner space (voxel indices as
    millimetres) made a store whose every voxel took its nearest sample from far away."""
    from brainzarr.cli import main
    from brainzarr.exceptions import InputError

    mask = np.zeros((64, 64, 44), np.uint8)
    mask[10:50, 10:55, 5:40] = 1
    nib.save(nib.Nifti1Image(mask, np.diag([4.0, 4.0, 4.0, 1.0])), tmp_path / "native.nii.gz")
    with pytest.raises(InputError, match=r"the mask .*native.nii.gz is evidently not in MNI space: .*; register"):
        build_store(tmp_path / "s.zarr", mask=tmp_path / "native.nii.gz", genes=4)
    argv = ["build", "--mask", str(tmp_path / "native.nii.gz"), "--genes", "4", "-o", str(tmp_path / "s.zarr")]
    assert main(argv) == 1
    assert "evidently not in MNI space" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["native.nii.gz"]
    # the same mask where MNI space has it (origin at the MNI origin's voxel) builds
    placed = np.diag([4.0, 4.0, 4.0, 1.0])
    placed[:3, 3] = [-120, -140, -80]
    nib.save(nib.Nifti1Image(mask, placed), tmp_path / "mni.nii.gz")
    assert open_store(build_store(tmp_path / "s.zarr", mask=tmp_path / "mni.nii.gz", genes=4)).sizes["voxel"] == 63_000


@pytest.mark.parametrize(
    "settings, why",
    [
        ({"chunks": (100,)}, r"chunks must be \(voxels, genes\), two whole numbers, got \(100,\)"),
        ({"chunks": "big"}, r"chunks must be \(voxels, genes\)"),
        ({"chunks": (100.5, 8)}, "each of chunks must be a whole number, got 100.5"),
        ({"split": "kfold"}, "split must be one of random, blocked, got 'kfold'"),
        ({"assignment": "kriging"}, "unknown assignment 'kriging'; choose from nearest, idw, atlas$"),
        ({"assignment": "IDW"}, "unknown assignment 'IDW'; choose from nearest, idw, atlas; did you mean idw[?]"),
        ({"assignment": "inr"}, r"brainzarr.inr.render.build_inr_store\(path, source=..., model=...\) builds it"),
        ({"split": "blocks"}, "got 'blocks'; did you mean blocked[?]"),
        ({"split": "spatial"}, r"got 'spatial'; did you mean blocked \(the spatially blocked split\)[?]"),
        ({"assignment": "idw", "n_neighbors": 2.5}, "n_neighbors must be a whole number, got 2.5"),
        ({"assignment": "idw", "n_neighbors": 0}, "n_neighbors must be at least 1, got 0"),
        ({"test_fraction": 1.5}, "test fraction must be between 0 and 1"),
        ({"layout": "float16"}, "dtype must be 'uint16' or 'float32'"),
        # equal percentiles built a store of zeros that could not be read; the others stopped in numpy
        ({"clamp_percentiles": (50, 50)}, r"satisfy 0 <= low < high <= 100, got \(50, 50\)"),
        ({"clamp_percentiles": (-1, 99)}, r"satisfy 0 <= low < high <= 100, got \(-1, 99\)"),
        ({"clamp_percentiles": "0.01,99.9"}, r"must be two numbers \(low, high\), got '0.01,99.9'"),
        # float() took "48" and True as millimetres; a negative block stopped after the source was read
        ({"split": "blocked", "block_mm": "48"}, "block_mm must be above 0 or None, got '48'"),
        ({"split": "blocked", "block_mm": -8}, "block_mm must be above 0 or None, got -8"),
        ({"split": "blocked", "buffer_mm": True}, "buffer_mm must be at least 0 or None, got True"),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else "",
)
def test_bad_settings_are_refused_before_the_source_is_read(settings, why, tmp_path, monkeypatch):
    """An AHBA source reads for minutes: an IndexError (chunks), a KeyError (split) or an unknown
    assignment came after it, or after the output was prepared."""

    def read(*args, **kwargs):
        raise AssertionError("the source was read")

    monkeypatch.setattr("brainzarr.build.load_source", read)
    with pytest.raises(ValueError, match=why):
        build_store(tmp_path / "s.zarr", genes=3, **settings)
    assert list(tmp_path.iterdir()) == []


def test_a_mistyped_source_is_answered_with_the_closest(tmp_path):
    with pytest.raises(ValueError, match="choose from synthetic, abagen, parcellated; did you mean synthetic[?]"):
        build_store(tmp_path / "s.zarr", source="synth", genes=3)
    assert list(tmp_path.iterdir()) == []


def test_an_option_the_source_does_not_take_is_named_with_those_it_takes(tmp_path):
    """``dtype=`` went to the synthetic model: ``SyntheticModel.__init__() got an unexpected
    keyword argument 'dtype'``."""
    from brainzarr.exceptions import InputError

    with pytest.raises(InputError, match=r"the synthetic source takes no dtype; its options: .*noise_sd.*; a store's"):
        build_store(tmp_path / "s.zarr", genes=3, dtype="float32")
    with pytest.raises(InputError, match="the synthetic source takes no n_factors; its options: "):
        build_store(tmp_path / "s.zarr", genes=3, n_factors=2)
    # a misspelt parameter of build_store (British n_neighbours) or of the source: what was meant
    for misspelt, meant in (("n_neighbours", "n_neighbors"), ("test_fractions", "test_fraction"), ("donor", "donors")):
        with pytest.raises(InputError, match=f"unknown option {misspelt}: did you mean {meant}\\?"):
            build_store(tmp_path / "s.zarr", genes=3, assignment="idw", **{misspelt: 5})
    assert list(tmp_path.iterdir()) == []
    import inspect

    from brainzarr.build import _BUILD_PARAMETERS

    assert set(_BUILD_PARAMETERS) == set(inspect.signature(build_store).parameters) - {"out", "source_options"}
    assert open_store(build_store(tmp_path / "s.zarr", genes=3, noise_sd=0.1, layout="float32")).sizes["gene"] == 3


def test_a_sample_table_in_voxel_indices_is_warned_of_and_one_without_its_schema_refused(tmp_path):
    """A table of the researcher's own, with its x, y, z as 1 mm voxel indices (or its axes
    swapped), built a store without a word: every voxel took the nearest wrong samples."""
    import warnings

    from brainzarr.exceptions import InputError
    from brainzarr.grid import xyz_to_ijk

    table = load_synthetic(4, random_state=2)
    with warnings.catch_warnings(record=True) as caught:  # the AHBA's own sites: no warning
        warnings.simplefilter("always")
        build_store(tmp_path / "ok.zarr", source=table, resolution=8, progress=False)
    assert not [w for w in caught if "outside the MNI152 brain" in str(w.message)]
    ijk = xyz_to_ijk(np.column_stack([table[c].values for c in "xyz"]), mni152_grid(1).affine).astype(float)
    indices = table.assign_coords({c: ("sample", ijk[:, n]) for n, c in enumerate("xyz")})
    with pytest.warns(UserWarning, match=r"3,702 of 3,702 samples lie more than 10 mm outside the MNI152 brain") as w:
        build_store(tmp_path / "ijk.zarr", source=indices, resolution=8, progress=False)
    assert "not voxel indices" in str(w[0].message) and w[0].filename == __file__
    one = table["x"].values.copy()
    one[7] = 150.0  # one stray sample, 60 mm right of the brain
    with pytest.warns(UserWarning, match=r"^1 of 3,702 samples .* \(the farthest \d+ mm, at x, y, z = 150, "):
        build_store(tmp_path / "one.zarr", source=table.assign_coords(x=("sample", one)), resolution=8, progress=False)
    for broken, why in ((table.drop_vars("structure"), r"needs the coordinates \['structure'\]"),
                        (table.rename(sample="site"), "needs expression with dims")):  # fmt: skip
        with pytest.raises(InputError, match=why):  # was built, or a KeyError: 'sample'
            build_store(tmp_path / "bad.zarr", source=broken, resolution=8, progress=False)
    assert not (tmp_path / "bad.zarr").exists()


def test_a_sample_table_given_as_source_takes_the_genes_asked_for_and_no_source_options(tmp_path):
    """``genes=`` and a source's options were ignored for a table: a store of all its genes."""
    from brainzarr.exceptions import InputError, UnknownGeneError

    table = load_synthetic(10, random_state=2)
    two = [str(table["gene"].values[3]), str(table["gene"].values[0])]
    ds = open_store(build_store(tmp_path / "two.zarr", source=table, genes=two, resolution=8, progress=False))
    assert ds["gene"].values.tolist() == two
    whole = open_store(build_store(tmp_path / "all.zarr", source=table, resolution=8, progress=False))
    np.testing.assert_array_equal(ds["expression"].values, whole["expression"].sel(gene=two).values)
    three = open_store(build_store(tmp_path / "three.zarr", source=table, genes=3, resolution=8, progress=False))
    assert three["gene"].values.tolist() == [table["gene"].values[i] for i in (0, 4, 9)]  # evenly spaced
    with pytest.raises(UnknownGeneError, match=r"unknown gene\(s\): a1bg \(did you mean A1BG\?\)"):
        build_store(tmp_path / "bad.zarr", source=table, genes=["a1bg"], resolution=8)
    with pytest.raises(InputError, match=r"takes no source options \(data_dir\)"):
        build_store(tmp_path / "bad.zarr", source=table, data_dir=tmp_path, resolution=8)
    with pytest.raises(InputError, match=r"\(n_neighbours\); .*; did you mean n_neighbors\?"):
        build_store(tmp_path / "bad.zarr", source=table, assignment="idw", n_neighbours=4, resolution=8)
    assert not (tmp_path / "bad.zarr").exists()


@pytest.mark.parametrize("layout", [None, {"shard_genes": None}], ids=["sharded", "unsharded"])
def test_a_row_block_at_a_genes_minimum_is_written_and_reads_back(tmp_path, monkeypatch, layout):
    """A packed chunk of zeros (a gene at its minimum over a whole row block: here a region table
    whose left region holds G0's minimum) is the fill value, which zarr does not write by default;
    the reader takes a packed array's missing chunk for damage, so the store could not be read
    (`shard (7, 1) of expression is missing`). A fit of it reads and writes back whole."""
    import nibabel as nib
    import pandas as pd

    from brainzarr import fit_store, read_group

    grid = mni152_grid(8)
    atlas = np.zeros(grid.shape, np.int16)
    atlas[tuple(grid.ijk.T)] = 1 + (grid.ijk[:, 0] > grid.shape[0] // 2)  # left and right
    nib.save(nib.Nifti1Image(atlas, grid.affine), tmp_path / "halves.nii.gz")
    table = pd.DataFrame({"G0": [0.2, 0.7], "G1": [0.9, 0.1]}, index=[1, 2])
    common = dict(source="parcellated", table=table, atlas=tmp_path / "halves.nii.gz", resolution=8, chunks=(500, 1))
    out = build_store(tmp_path / "lr.zarr", layout=layout, progress=False, **common)
    values = open_store(out)["expression"].values
    if layout is None:  # a store built before every chunk was written: its shards mark such chunks empty
        import brainzarr.build

        monkeypatch.setattr(brainzarr.build, "every_chunk", lambda array: array)
        before = build_store(tmp_path / "before.zarr", progress=False, **common)
        np.testing.assert_array_equal(open_store(before)["expression"].values, values)
        np.testing.assert_array_equal(open_store(before)["expression"].sel(gene="G1").values, values[:, 1])
    left = atlas[tuple(grid.ijk.T)] == 1
    assert (values[left, 0] == 0).all() and (values[~left, 0] == 1).all()
    assert (values[left, 1] == 1).all() and (values[~left, 1] == 0).all()
    fit_store(out, "pca", 1)  # rank one: the reconstruction is the expression, zeros and all
    reconstruction = read_group(out, "representations/random/pca/k1")["reconstruction"].values
    np.testing.assert_allclose(reconstruction, values, atol=1e-4)
