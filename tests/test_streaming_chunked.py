"""Packed arrays read chunk by chunk by brainzarr (open_store's expression and reconstruction)."""

import pickle

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import brainzarr
from brainzarr import store as store_module
from brainzarr.exceptions import ChunkError
from brainzarr.streaming import reusing_buffers, stream_blocks
from brainzarr.streaming.chunked import PackedChunks, packed_dask_array
from brainzarr.streaming.direct import direct_reads

CHECKED = [zarr.codecs.ZstdCodec(), zarr.codecs.Crc32cCodec()]


def _packed(path, values, offset, shards):
    scale = (values.max() - offset) / 65535 if values.size else 1.0
    z = zarr.create_array(
        str(path), shape=values.shape, chunks=(16, 7), shards=shards, dtype="uint16", fill_value=0,
        zarr_format=3, compressors=CHECKED, attributes={"scale_factor": float(scale), "add_offset": float(offset)},
    )  # fmt: skip
    z[:] = np.rint((values - offset) / scale).astype(np.uint16)
    return z


def _reference(z, key):
    """What brainzarr.layout.unpack computes from zarr's own read: float32 multiply, float32 add."""
    out = z[:][key].astype(np.float32) * np.float32(z.attrs["scale_factor"])
    return out + np.float32(z.attrs["add_offset"]) if np.float32(z.attrs["add_offset"]) else out


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    root = tmp_path_factory.mktemp("chunked")
    values = np.random.default_rng(0).random((61, 45), dtype=np.float32)
    return {
        "sharded": _packed(root / "sharded", values, 0.0, (16, 21)),  # 3 inner chunks a shard, last one clipped
        "offset": _packed(root / "offset", values * 2 - 0.5, -0.5, (16, 14)),  # the reconstructions' packing
        "unsharded": _packed(root / "unsharded", values, 0.0, None),
    }


_index = st.one_of(
    st.integers(-45, 44),
    st.builds(slice, st.none() | st.integers(-50, 50), st.none() | st.integers(-50, 50)),
    st.builds(slice, st.none() | st.integers(0, 50), st.none() | st.integers(0, 50), st.integers(1, 5)),
    st.lists(st.integers(0, 44), min_size=1, max_size=5).map(np.array),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["sharded", "offset", "unsharded"]), rows=_index, cols=_index)
def test_any_selection_equals_zarrs_read_unpacked(arrays, name, rows, cols):
    z = arrays[name]
    if isinstance(rows, int):
        rows = max(min(rows, 60), -61)
    chunked = PackedChunks(z.store_path.store.root / z.store_path.path)
    want = _reference(z, (rows, cols)) if not isinstance(cols, np.ndarray) else _reference(z, (rows,))[..., cols]
    got = chunked[rows, cols]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_a_dask_array_of_it_reads_the_same_and_pickles(arrays):
    z = arrays["offset"]
    path = z.store_path.store.root / z.store_path.path
    dask_array = packed_dask_array(path, ((16, 16, 16, 13), (7,) * 6 + (3,)))
    np.testing.assert_array_equal(dask_array.compute(), _reference(z, slice(None)))
    np.testing.assert_array_equal(dask_array[:, 9].compute(), _reference(z, (slice(None), 9)))
    again = pickle.loads(pickle.dumps(PackedChunks(path)))  # what a dask.distributed worker gets
    np.testing.assert_array_equal(again[3:40, 2:30], _reference(z, (slice(3, 40), slice(2, 30))))


@pytest.mark.parametrize("name", ["sharded", "offset", "unsharded"])
def test_a_pass_over_the_whole_array_reads_row_blocks_with_one_reader_call_each(arrays, name, monkeypatch):
    """What an estimator's fit or parcellate streams from ds.expression: whole row blocks from the
    store's reader, never dask's chunk by chunk reads, with the same values."""
    z = arrays[name]
    path = z.store_path.store.root / z.store_path.path
    dask_array = packed_dask_array(path, ((16, 16, 16, 13), (7,) * 6 + (3,)))
    assert direct_reads(dask_array) is not None

    def by_chunk(self, key):
        raise AssertionError("read chunk by chunk")

    with monkeypatch.context() as m:
        m.setattr(PackedChunks, "__getitem__", by_chunk)
        with reusing_buffers():
            blocks = [block.copy() for block in stream_blocks(dask_array)]
    assert [len(b) for b in blocks] == [16, 16, 16, 13]
    np.testing.assert_array_equal(np.concatenate(blocks), _reference(z, slice(None)))
    # a selection is another array: dask reads it, with the same values
    part = dask_array[:, 5:30]
    assert direct_reads(part) is None
    np.testing.assert_array_equal(np.concatenate(list(stream_blocks(part))), _reference(z, (slice(None), slice(5, 30))))


def test_formats_it_does_not_decode_are_left_to_zarr(tmp_path):
    gzip = zarr.codecs.GzipCodec()
    z = zarr.create_array(
        str(tmp_path / "gz"), shape=(20, 9), chunks=(16, 7), dtype="uint16", fill_value=0,
        zarr_format=3, compressors=gzip, attributes={"scale_factor": 0.5},
    )  # fmt: skip
    z[:] = 3
    assert packed_dask_array(tmp_path / "gz", ((16, 4), (7, 2))) is None
    assert PackedChunks(tmp_path / "gz")[0:20, 0:9].tolist() == [[1.5] * 9] * 20  # still readable, through zarr


def test_a_damaged_inner_chunk_is_named(tmp_path):
    z = _packed(tmp_path / "sh", np.random.default_rng(1).random((32, 28), dtype=np.float32), 0.0, (16, 14))
    intact = _reference(z, (slice(16, 32), slice(7, 14)))
    shard = tmp_path / "sh" / z.metadata.encode_chunk_key((1, 0))
    raw = bytearray(shard.read_bytes())
    raw[3] ^= 0xFF  # inside inner chunk (1, 0)
    shard.write_bytes(bytes(raw))
    chunked = PackedChunks(tmp_path / "sh")
    np.testing.assert_array_equal(chunked[16:32, 7:14], intact)  # inner chunk (1, 1) is not read
    with pytest.raises(ChunkError, match=r"chunk \(1, 0\) of sh"):
        chunked[16:32, 0:7]
    shard.unlink()
    with pytest.raises(ChunkError, match=r"shard \(1, 0\) of sh is missing"):
        chunked[20, 3]


def test_open_store_reads_packed_arrays_itself_with_zarrs_values(tmp_path, monkeypatch):
    path = brainzarr.build_store(tmp_path / "s.zarr", resolution=8, genes=20, random_state=0, progress=False)
    ds = brainzarr.open_store(path)
    assert ds["expression"].data.name.startswith("brainzarr-packed-")
    fast = ds["expression"].values
    one_gene = ds["expression"].isel(gene=3).values
    monkeypatch.setattr(store_module, "_local_root", lambda *args, **kwargs: None)  # zarr's reading
    slow = brainzarr.open_store(path)
    assert not slow["expression"].data.name.startswith("brainzarr-packed-")
    np.testing.assert_array_equal(fast, slow["expression"].values)
    np.testing.assert_array_equal(one_gene, slow["expression"].isel(gene=3).values)
    assert ds["expression"].encoding["scale_factor"] == slow["expression"].encoding["scale_factor"]
    assert ds["expression"].attrs == slow["expression"].attrs
