import warnings

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brainzarr.grid import Grid, grid_from_mask, ijk_to_xyz, mni152_grid, xyz_to_ijk


@pytest.mark.parametrize("resolution, n_voxels", [(8, 3_666), (4, 29_398), (2, 235_375), (1, 1_882_989)])
def test_mni152_voxel_counts(resolution, n_voxels):
    grid = mni152_grid(resolution)
    assert grid.n_voxels == n_voxels
    assert grid.resolution_mm == resolution
    assert grid.ijk.shape == (n_voxels, 3)


def test_a_grid_prints_what_it_is_not_its_mask():
    text = repr(mni152_grid(1))  # the dataclass's repr printed the mask, a 197 x 233 x 189 array
    assert text == (
        "Grid(name='nilearn MNI152 brain mask 1mm', shape=(197, 233, 189), resolution_mm=1, "
        "n_voxels=1882989, space='MNI152NLin2009cAsym')"
    )


def test_voxels_are_in_c_order_and_inside_the_mask():
    grid = mni152_grid(8)
    flat = grid.flat_index()
    assert np.all(np.diff(flat) > 0)
    assert grid.mask[tuple(grid.ijk.T)].all()


def test_hemispheres_follow_x():
    grid = mni152_grid(2)
    x = grid.xyz[:, 0]
    hemi = grid.hemisphere
    assert set(hemi[x < 0]) == {"L"} and set(hemi[x > 0]) == {"R"} and set(hemi[x == 0]) == {"M"}
    assert (hemi == "M").sum() > 0  # 2 mm voxels sit on the midline


def test_bad_resolution_and_masks(tmp_path):
    from brainzarr.exceptions import InputError

    # int() read "2mm" with Python's own message, None as a TypeError, and True as 1 mm
    for bad in (2.5, "2mm", "2", None, True, 0, -4, float("nan")):
        with pytest.raises(InputError, match=rf"resolution must be a positive integer number of mm, got {bad!r}$"):
            mni152_grid(bad)
    assert mni152_grid(8.0).shape == mni152_grid(np.int64(8)).shape == (26, 30, 25)
    # of the template's brain probability: -1 made the whole box the brain, "0.2" stopped in numpy
    for bad in (-1, 1, 1.5, "0.2", True, None):
        with pytest.raises(InputError, match=rf"^threshold must be in \[0, 1\), got {bad!r}$"):
            mni152_grid(8, threshold=bad)
    assert mni152_grid(8, threshold=0).n_voxels > mni152_grid(8).n_voxels == 3666
    with pytest.raises(ValueError, match="no voxels"):
        Grid(np.zeros((3, 3, 3)), np.eye(4))
    with pytest.raises(FileNotFoundError, match="mask file not found"):
        grid_from_mask(tmp_path / "missing.nii.gz")
    img2d = nib.Nifti1Image(np.ones((4, 4), dtype=np.uint8), np.eye(4))
    with pytest.raises(ValueError, match="3-D"):
        grid_from_mask(img2d)


def test_user_mask_from_file(tmp_path):
    data = np.zeros((5, 6, 7), dtype=np.int16)
    data[1:3, 2:5, 3] = 1
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = [-10, -20, -30]
    path = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    grid = grid_from_mask(path)
    assert grid.n_voxels == 6 and grid.shape == (5, 6, 7)
    np.testing.assert_allclose(grid.xyz[0], [-7, -14, -21])


def test_a_probability_map_or_an_image_given_as_mask_is_warned_of():
    # a T1 template given for its brain mask made a store of the head, skull and scalp, silently
    rng = np.random.default_rng(0)
    inside = np.zeros((16, 16, 16), bool)
    inside[1:15, 1:15, 1:15] = True  # 2,744 voxels: more than an atlas has labels
    probability = np.where(inside, rng.uniform(0.01, 1, inside.shape), 0).astype(np.float32)
    intensity = np.where(inside, rng.integers(1, 4000, inside.shape), 0).astype(np.int16)
    for data, what in ((probability, "fractional values"), (intensity, r"\d,?\d* distinct values")):
        with pytest.warns(
            UserWarning, match=rf"holds {what}, as a probability map .* all 2,744 of its non-zero voxels"
        ):
            assert grid_from_mask(nib.Nifti1Image(data, np.eye(4))).n_voxels == 2744
    labels = np.where(inside, rng.integers(1, 400, inside.shape), 0).astype(np.int16)  # an atlas
    for data in (inside.astype(np.uint8), inside.astype(np.float32), labels, labels.astype(np.float64)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert grid_from_mask(nib.Nifti1Image(data, np.eye(4))).n_voxels == 2744


affines = st.builds(
    lambda scale, perm, flips, origin: _affine(scale, perm, flips, origin),
    st.floats(0.5, 8.0),
    st.permutations([0, 1, 2]),
    st.lists(st.booleans(), min_size=3, max_size=3),
    st.lists(st.floats(-200, 200), min_size=3, max_size=3),
)


def _affine(scale, perm, flips, origin):
    a = np.zeros((4, 4))
    for row, col in enumerate(perm):
        a[row, col] = -scale if flips[row] else scale
    a[:3, 3] = origin
    a[3, 3] = 1
    return a


@settings(max_examples=200, deadline=None)
@given(affine=affines, ijk=st.lists(st.tuples(*[st.integers(0, 250)] * 3), min_size=1, max_size=20))
def test_ijk_xyz_round_trip(affine, ijk):
    ijk = np.array(ijk)
    xyz = ijk_to_xyz(ijk, affine)
    np.testing.assert_array_equal(xyz_to_ijk(xyz, affine), ijk)
    np.testing.assert_allclose(xyz_to_ijk(xyz, affine, rounded=False), ijk, atol=1e-6)


@settings(max_examples=100, deadline=None)
@given(affine=affines, jitter=st.floats(-0.49, 0.49))
def test_points_map_to_their_voxel(affine, jitter):
    rng = np.random.default_rng(0)
    mask = rng.random((6, 5, 4)) > 0.5
    mask[0, 0, 0] = True
    grid = Grid(mask, affine)
    # points moved less than half a voxel along the grid axes stay in their voxel
    shifted = ijk_to_xyz(grid.ijk + jitter, affine)
    np.testing.assert_array_equal(grid.voxel_of(shifted), np.arange(grid.n_voxels))
    assert grid.voxel_of(ijk_to_xyz([[-5, -5, -5]], affine))[0] == -1


def test_from_ijk_round_trip():
    grid = mni152_grid(8)
    again = Grid.from_ijk(grid.ijk, grid.shape, grid.affine)
    np.testing.assert_array_equal(again.mask, grid.mask)
    with pytest.raises(ValueError, match="C order"):
        Grid.from_ijk(grid.ijk[::-1], grid.shape, grid.affine)
