import numpy as np
import pytest
from scipy.spatial import cKDTree

from brainzarr.assign import Assignment

AFFINE = np.diag([4.0, 4.0, 4.0, 1.0])


def _samples():
    xyz = np.array([[0.4, 0.1, 0.0], [-0.5, 0.3, 0.2], [20.0, 0.0, 0.0], [-21.0, 1.0, 0.0], [40.0, 8.0, 4.0]])
    hemi = np.where(xyz[:, 0] < 0, "L", "R")
    return xyz, hemi


def test_nearest_averages_samples_inside_the_voxel_else_takes_the_nearest():
    xyz, hemi = _samples()
    a = Assignment("nearest", xyz, hemi, affine=AFFINE)
    voxels = np.array([[0.0, 0.0, 0.0], [24.0, 0.0, 0.0], [-8.0, 4.0, 0.0]])
    w = a.weights(voxels).toarray()
    np.testing.assert_allclose(w[0], [0.5, 0.5, 0, 0, 0])  # two samples inside voxel (0,0,0)
    np.testing.assert_allclose(w[1], [0, 0, 1, 0, 0])  # none inside: nearest
    assert w[2].argmax() == 1 and w[2].sum() == pytest.approx(1)


def test_idw_matches_abagen_formula_and_exact_hits():
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-50, 50, (200, 3))
    values = rng.random((200, 4)).astype(np.float32)
    a = Assignment("idw", xyz, n_neighbors=10)
    voxels = rng.uniform(-40, 40, (30, 3))
    voxels[0] = xyz[17]
    got = a.compute(a.prepare({"xyz": voxels, "hemisphere": None, "labels": None}), values, slice(None))
    dist, idx = cKDTree(xyz).query(voxels, k=10)
    w = 1 / dist[1:]
    expected = (values[idx[1:]] * w[..., None]).sum(1) / w.sum(1, keepdims=True)
    np.testing.assert_allclose(got[1:], expected, rtol=1e-5)
    np.testing.assert_allclose(got[0], values[17])


def test_same_hemisphere_restricts_sources():
    xyz, hemi = _samples()
    a = Assignment("idw", xyz, hemi, n_neighbors=3, same_hemisphere=True)
    voxels = np.array([[-4.0, 0, 0], [4.0, 0, 0], [0.0, 0, 0]])
    w = a.weights(voxels, np.array(["L", "R", "M"])).toarray()
    left = hemi == "L"
    assert w[0, ~left].sum() == 0 and w[1, left].sum() == 0
    assert (w[2] > 0).sum() == 3  # midline voxels use every sample
    unrestricted = Assignment("idw", xyz, hemi, n_neighbors=3).weights(voxels[:1]).toarray()
    assert unrestricted[0, ~left].sum() > 0


def test_atlas_and_bad_arguments():
    a = Assignment("atlas", region_labels=np.array([3, 7, 9]))
    w = a.weights(None, None, np.array([7, 7, 9, 3])).toarray()
    np.testing.assert_array_equal(w.argmax(1), [1, 1, 2, 0])
    with pytest.raises(ValueError, match="no row"):
        a.weights(None, None, np.array([5]))
    with pytest.raises(ValueError, match="unknown assignment"):
        Assignment("kriging", np.zeros((2, 3)))
    with pytest.raises(ValueError, match="n_neighbors must be a whole number, got 2.5"):
        Assignment("idw", np.zeros((2, 3)), n_neighbors=2.5)
    with pytest.raises(ValueError, match="n_neighbors must be at least 1, got 0"):
        Assignment("idw", np.zeros((2, 3)), n_neighbors=0)
    with pytest.raises(ValueError, match="affine"):
        Assignment("nearest", np.zeros((2, 3)))
