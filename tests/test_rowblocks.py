import pickle

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brainzarr.rowblocks import RowBlockReader


def _array(path, data, chunks, compressors="zstd", fill=np.nan, skip_chunk=None):
    kwargs = {} if compressors == "zstd" else {"compressors": compressors}
    z = zarr.create_array(
        str(path), shape=data.shape, chunks=chunks, dtype=data.dtype, fill_value=fill, zarr_format=3, **kwargs
    )
    z[:] = data
    if skip_chunk is not None:  # a chunk never written: reads give the fill value
        (path / z.metadata.encode_chunk_key(skip_chunk)).unlink()
    return z


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    root = tmp_path_factory.mktemp("rowblocks")
    data = np.random.default_rng(0).random((103, 45), dtype=np.float32)
    direct = _array(root / "zstd", data, (16, 7), skip_chunk=(2, 3))
    _array(root / "blosc", data, (16, 7), compressors=zarr.codecs.BloscCodec())
    expected = direct[:]
    assert np.isnan(expected[32:48, 21:28]).all()
    return root, expected


def test_direct_decoding_is_used_only_for_the_stores_format(arrays):
    root, _ = arrays
    assert RowBlockReader(root / "zstd")._direct(0, 16) is not None
    assert RowBlockReader(root / "zstd")._direct(10, 20) is None  # crosses a row of chunks: zarr
    assert RowBlockReader(root / "zstd", direct=False)._direct(0, 16) is None
    assert RowBlockReader(root / "blosc")._direct(0, 16) is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    a=st.integers(0, 103),
    length=st.integers(0, 40),
    seed=st.integers(0, 2**16),
    name=st.sampled_from(["zstd", "blosc"]),
    masked=st.booleans(),
    direct=st.booleans(),
)
def test_reads_match_zarr(arrays, a, length, seed, name, masked, direct):
    root, _ = arrays
    b = min(a + length, 103)
    reader = RowBlockReader(root / name, direct=direct)
    want = zarr.open_array(str(root / name), mode="r")[a:b]  # zarr's own read is the reference
    keep = np.random.default_rng(seed).random(b - a) < 0.5 if masked else None
    got = reader(a, b, keep)
    np.testing.assert_array_equal(got, want if keep is None else want[keep])
    assert got.flags.c_contiguous and got.dtype == np.float32


def test_read_into_and_errors(arrays):
    root, expected = arrays
    reader = RowBlockReader(root / "zstd")
    out = np.empty((16, 45), np.float32)
    assert reader.read_into(32, 48, out) is out
    np.testing.assert_array_equal(out, expected[32:48])
    with pytest.raises(IndexError, match="out of range"):
        reader(90, 110)
    with pytest.raises(ValueError, match="keep has shape"):
        reader(0, 16, np.ones(3, bool))
    again = pickle.loads(pickle.dumps(reader))
    np.testing.assert_array_equal(again(0, 103), expected)
