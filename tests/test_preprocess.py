import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brainzarr.preprocess import TailAccumulator, blocked_split, clamp_scale, make_split, random_split, spatial_blocks


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 3000),
    block=st.integers(1, 700),
    lo=st.floats(0, 5),
    hi=st.floats(95, 100),
    seed=st.integers(0, 10_000),
)
def test_streamed_percentiles_equal_numpy(n, block, lo, hi, seed):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n, 3)).astype(np.float32)
    data[:, 2] = np.round(data[:, 2])  # ties
    acc = TailAccumulator(n, (lo, hi))
    order = rng.permutation(np.arange(0, n, block))  # blocks in any order
    for a in order:
        acc.add(data[a : a + block])
    low, high = acc.result()
    np.testing.assert_allclose(low, np.percentile(data.astype(np.float64), lo, axis=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(high, np.percentile(data.astype(np.float64), hi, axis=0), rtol=1e-6, atol=1e-6)


def test_accumulator_checks_rows_and_percentiles():
    acc = TailAccumulator(10)
    acc.add(np.zeros((4, 2)))
    with pytest.raises(RuntimeError, match="saw 4 rows"):
        acc.result()
    with pytest.raises(ValueError):
        TailAccumulator(10, (50, 10))


def test_clamp_scale():
    x = np.array([[0.0, 5.0, 1.0], [10.0, 5.0, 2.0], [20.0, 5.0, 3.0]], dtype=np.float32)
    out = clamp_scale(x, np.array([5.0, 5.0, 1.0]), np.array([15.0, 5.0, 3.0]))
    np.testing.assert_allclose(out, [[0, 0, 0], [0.5, 0, 0.5], [1, 0, 1]])
    assert out.dtype == np.float32


def test_random_split_is_seeded_80_20():
    a = random_split(1000, random_state=1)
    assert (a == "test").sum() == 200
    np.testing.assert_array_equal(a, random_split(1000, random_state=1))
    assert not np.array_equal(a, random_split(1000, random_state=2))
    with pytest.raises(ValueError):
        random_split(10, test_fraction=1.5)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    block_mm=st.sampled_from([8.0, 16.0, 24.0, 48.0]),
    buffer_mm=st.sampled_from([0.0, 4.0, 8.0, 16.0]),
)
def test_blocked_split_buffer_separates_train_from_test(seed, block_mm, buffer_mm):
    from scipy.spatial import cKDTree

    xyz = np.random.default_rng(seed).uniform(-60, 60, (1500, 3))
    labels = blocked_split(xyz, block_mm=block_mm, buffer_mm=buffer_mm, random_state=seed)
    unbuffered = blocked_split(xyz, block_mm=block_mm, random_state=seed)
    # the buffer only takes voxels from training; the test cubes do not move
    np.testing.assert_array_equal(labels == "test", unbuffered == "test")
    assert set(np.flatnonzero(labels == "buffer")) <= set(np.flatnonzero(unbuffered == "train"))
    tree = cKDTree(xyz[labels == "test"])
    if (labels == "train").any():
        assert tree.query(xyz[labels == "train"])[0].min() > buffer_mm
    if (labels == "buffer").any():
        assert tree.query(xyz[labels == "buffer"])[0].max() <= buffer_mm * (1 + 1e-9)
    with pytest.raises(ValueError, match="buffer_mm"):
        blocked_split(xyz, buffer_mm=-1)


def test_blocked_split_keeps_cubes_whole():
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-80, 80, (5000, 3))
    labels = blocked_split(xyz, block_mm=16, random_state=3)
    blocks = spatial_blocks(xyz, 16)
    for b in np.unique(blocks):
        assert len(set(labels[blocks == b])) == 1
    frac = (labels == "test").mean()
    assert 0.2 <= frac < 0.3
    np.testing.assert_array_equal(labels, make_split("blocked", xyz, random_state=3, block_mm=16))
    with pytest.raises(ValueError, match="unknown split"):
        make_split("diagonal", xyz)
