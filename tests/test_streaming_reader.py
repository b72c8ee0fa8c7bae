import gc
import pickle
import sys

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brainzarr.exceptions import ChunkError
from brainzarr.streaming import (
    RowBlockReader,
    block_reduce,
    expression_rows,
    iter_row_blocks,
    release_buffers,
    reusing_buffers,
)


def _array(path, data, chunks, compressors="zstd", fill=np.nan, skip_chunk=None, shards=None):
    kwargs = {} if compressors == "zstd" else {"compressors": compressors}
    if shards is not None:
        kwargs["shards"] = shards
    z = zarr.create_array(
        str(path), shape=data.shape, chunks=chunks, dtype=data.dtype, fill_value=fill, zarr_format=3, **kwargs
    )
    z[:] = data
    if skip_chunk is not None:  # a chunk lost after writing
        (path / z.metadata.encode_chunk_key(skip_chunk)).unlink()
    return z


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    root = tmp_path_factory.mktemp("rowblocks")
    data = np.random.default_rng(0).random((103, 45), dtype=np.float32)
    direct = _array(root / "zstd", data, (16, 7))
    _array(root / "blosc", data, (16, 7), compressors=zarr.codecs.BloscCodec())
    _array(root / "crc", data, (16, 7), compressors=[zarr.codecs.ZstdCodec(), zarr.codecs.Crc32cCodec()])
    _array(root / "gzip", data, (16, 7), compressors=zarr.codecs.GzipCodec())
    checked = [zarr.codecs.ZstdCodec(), zarr.codecs.Crc32cCodec()]
    _array(root / "sharded", data, (16, 7), compressors=checked, shards=(16, 21))  # 3 inner chunks a shard
    packed = zarr.create_array(
        str(root / "packed"), shape=data.shape, chunks=(16, 7), shards=(16, 14), dtype="uint16",
        fill_value=0, zarr_format=3, compressors=checked, attributes={"scale_factor": 1 / 65535, "add_offset": 0.0},
    )  # fmt: skip
    packed[:] = np.rint(data * 65535).astype(np.uint16)
    expected = direct[:]
    np.testing.assert_array_equal(expected, data)
    return root, expected


def test_direct_decoding_is_used_only_for_the_stores_format(arrays):
    root, _ = arrays
    assert RowBlockReader(root / "zstd")._direct(0, 16) is not None
    assert RowBlockReader(root / "zstd")._direct(10, 20) is None  # crosses a row of chunks: zarr
    assert RowBlockReader(root / "zstd", direct=False)._direct(0, 16) is None
    assert RowBlockReader(root / "blosc")._direct(0, 16) is not None  # blosc frames say how they were packed
    assert RowBlockReader(root / "gzip")._direct(0, 16) is None  # not a format brainzarr writes: zarr reads it
    assert RowBlockReader(root / "crc")._direct(0, 16) is not None  # zstd + crc32c: direct, verified


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    a=st.integers(0, 103),
    length=st.integers(0, 40),
    seed=st.integers(0, 2**16),
    name=st.sampled_from(["zstd", "blosc", "crc", "gzip", "sharded", "packed"]),
    masked=st.booleans(),
    direct=st.booleans(),
)
def test_reads_match_zarr(arrays, a, length, seed, name, masked, direct):
    root, _ = arrays
    b = min(a + length, 103)
    reader = RowBlockReader(root / name, direct=direct)
    z = zarr.open_array(str(root / name), mode="r")
    want = z[a:b]  # zarr's own read is the reference
    if name == "packed":  # unpacked as xarray decodes CF scale_factor
        want = (want * np.float32(z.attrs["scale_factor"])).astype(np.float32)
    keep = np.random.default_rng(seed).random(b - a) < 0.5 if masked else None
    got = reader(a, b, keep)
    np.testing.assert_array_equal(got, want if keep is None else want[keep])
    assert got.flags.c_contiguous and got.dtype == np.float32
    # into a caller's rows (e.g. a loader's shuffle buffer): the same values, nothing around them touched
    rows = len(got)
    around = np.full((rows + 4, got.shape[1]), -1.0, dtype=np.float32)
    assert reader(a, b, keep, out=around[2 : 2 + rows]).base is around
    np.testing.assert_array_equal(around[2 : 2 + rows], got)
    assert (around[:2] == -1).all() and (around[2 + rows :] == -1).all()


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
    with pytest.raises(ValueError, match=r"out must be a C-contiguous float32 array of shape \(16, 45\)"):
        reader(0, 16, out=np.empty((15, 45), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        reader(0, 16, out=np.empty((16, 90), np.float32)[:, ::2])
    again = pickle.loads(pickle.dumps(reader))
    np.testing.assert_array_equal(again(0, 103), expected)


@pytest.mark.parametrize("direct", [True, False])
def test_a_missing_chunk_fails_naming_the_array_and_the_chunk(tmp_path, direct):
    data = np.random.default_rng(1).random((40, 20), dtype=np.float32)
    _array(tmp_path / "lost", data, (16, 7), skip_chunk=(1, 2))
    reader = RowBlockReader(tmp_path / "lost", direct=direct)
    np.testing.assert_array_equal(reader(0, 16), data[:16])  # other rows of chunks still read
    with pytest.raises(ChunkError, match=r"chunk \(1, 2\) of lost is missing"):
        reader(16, 32)
    with pytest.raises(ChunkError, match=r"chunk \(1, 2\) of lost"):
        reader(20, 24, np.array([True, False, True, False]))


@pytest.mark.parametrize("name", ["zstd", "crc"])
@pytest.mark.parametrize("direct", [True, False])
def test_a_damaged_chunk_fails_naming_the_array_and_the_chunk(tmp_path, name, direct):
    data = np.random.default_rng(2).random((40, 20), dtype=np.float32)
    compressors = "zstd" if name == "zstd" else [zarr.codecs.ZstdCodec(), zarr.codecs.Crc32cCodec()]
    z = _array(tmp_path / name, data, (16, 7), compressors=compressors)
    chunk = tmp_path / name / z.metadata.encode_chunk_key((0, 1))
    raw = chunk.read_bytes()
    chunk.write_bytes(raw[: len(raw) // 2])  # truncated, as by a full disk
    reader = RowBlockReader(tmp_path / name, direct=direct)
    np.testing.assert_array_equal(reader(16, 32), data[16:32])
    if direct or name == "crc":  # the direct reader names every damaged chunk; zarr names it when checksummed
        with pytest.raises(ChunkError, match=rf"chunk \(0, 1\) of {name}"):
            reader(0, 16)
    else:
        with pytest.raises(Exception):  # noqa: B017 - zarr's own codec error, unnamed (no checksum)
            reader(0, 16)


def test_a_flipped_byte_is_caught_by_the_checksum(tmp_path):
    data = np.random.default_rng(3).random((16, 7), dtype=np.float32)
    z = _array(tmp_path / "crc", data, (16, 7), compressors=[zarr.codecs.ZstdCodec(), zarr.codecs.Crc32cCodec()])
    chunk = tmp_path / "crc" / z.metadata.encode_chunk_key((0, 0))
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    with pytest.raises(ChunkError, match="checksum"):
        RowBlockReader(tmp_path / "crc")(0, 16)


def test_packed_reads_are_within_half_a_step_of_the_floats(arrays):
    root, expected = arrays
    got = RowBlockReader(root / "packed")(0, 103)
    assert got.dtype == np.float32
    assert np.abs(got - expected).max() <= 0.5 / 65535 + 1e-7  # max error of uint16 packing: 1/131070


def test_a_missing_shard_and_a_damaged_shard_index_are_named(tmp_path):
    data = np.random.default_rng(4).random((32, 28), dtype=np.float32)
    checked = [zarr.codecs.ZstdCodec(), zarr.codecs.Crc32cCodec()]
    z = _array(tmp_path / "sh", data, (16, 7), compressors=checked, shards=(16, 14))
    shard = tmp_path / "sh" / z.metadata.encode_chunk_key((1, 1))
    raw = bytearray(shard.read_bytes())
    raw[-10] ^= 0xFF  # inside the index
    shard.write_bytes(bytes(raw))
    reader = RowBlockReader(tmp_path / "sh")
    np.testing.assert_array_equal(reader(0, 16), data[:16])
    with pytest.raises(ChunkError, match=r"\(1, 1\) of sh"):
        reader(16, 32)
    shard.unlink()
    with pytest.raises(ChunkError, match=r"shard \(1, 1\) of sh is missing"):
        reader(16, 32)


@pytest.mark.parametrize("damage", ["truncated", "empty", "flipped"])
def test_a_damaged_checksummed_shard_is_named(tmp_path, damage):
    data = np.random.default_rng(6).random((32, 28), dtype=np.float32)
    checked = [zarr.codecs.ZstdCodec(), zarr.codecs.Crc32cCodec()]
    z = _array(tmp_path / "sh", data, (16, 7), compressors=checked, shards=(16, 14))
    shard = tmp_path / "sh" / z.metadata.encode_chunk_key((0, 1))
    raw = bytearray(shard.read_bytes())
    if damage == "flipped":
        raw[5] ^= 0xFF  # inside the first inner chunk's bytes
    shard.write_bytes(bytes(raw[: len(raw) // 2] if damage == "truncated" else b"" if damage == "empty" else raw))
    reader = RowBlockReader(tmp_path / "sh")
    np.testing.assert_array_equal(reader(16, 32), data[16:])
    with pytest.raises(ChunkError, match=r"\(0, [1-3]\) of sh"):
        reader(0, 16)


@settings(max_examples=40, deadline=None)
@given(payload=st.binary(min_size=0, max_size=5000), cut=st.integers(0, 64))
def test_every_crc32c_implementation_gives_zarrs_checksum(payload, cut):
    import google_crc32c

    from brainzarr import _zarr

    crc32c = pytest.importorskip("crc32c")
    data = np.frombuffer(payload, np.uint8)[cut:]  # views at any offset, as inside a mapped shard
    assert crc32c.crc32c(data) == google_crc32c.value(data.tobytes())
    framed = np.concatenate([data, np.frombuffer(np.uint32(google_crc32c.value(data.tobytes())).tobytes(), np.uint8)])
    np.testing.assert_array_equal(_zarr.verify_crc32c(framed, "x", (0, 0)), data)


def test_without_the_crc32c_package_checksums_come_from_zarrs_google_crc32c(monkeypatch):
    import google_crc32c

    from brainzarr import _zarr

    monkeypatch.setitem(sys.modules, "crc32c", None)  # import crc32c raises ImportError
    monkeypatch.setattr(_zarr, "_CRC32C", None)
    assert _zarr.crc32c_function() is google_crc32c.value
    payload = np.frombuffer(b"brainzarr" * 100, np.uint8)
    framed = np.concatenate([payload, np.frombuffer(np.uint32(google_crc32c.value(payload)).tobytes(), np.uint8)])
    np.testing.assert_array_equal(_zarr.verify_crc32c(framed, "x", 0), payload)
    framed[3] ^= 1
    with pytest.raises(ChunkError, match="checksum mismatch"):
        _zarr.verify_crc32c(framed, "x", 0)


def test_a_read_through_zarr_keeps_rows_without_a_block_sized_copy(tmp_path, monkeypatch):
    """The fallback (formats brainzarr does not decode itself) picks the kept rows out of its
    reused scratch straight into the output (np.compress would buffer a copy of it)."""
    import tracemalloc

    data = np.random.default_rng(1).random((512, 300), dtype=np.float32)
    _array(tmp_path / "gzip", data, (128, 100), compressors=zarr.codecs.GzipCodec())
    reader = RowBlockReader(tmp_path / "gzip")
    keep = np.random.default_rng(2).random(512) < 0.7
    out = np.empty((int(keep.sum()), 300), dtype=np.float32)
    reader(0, 512, keep, out=out)  # the first read allocates the thread's scratch
    np.testing.assert_array_equal(out, data[keep])
    out[:] = 0
    monkeypatch.setattr(reader, "_read_zarr", lambda a, b, into: into)  # zarr's own buffers aside
    tracemalloc.start()
    try:
        reader(0, 512, keep, out=out)  # the scratch still holds the rows read above
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(out, data[keep])
    assert peak < out.nbytes / 4, f"{peak:,} bytes allocated to pick the rows of a {out.nbytes:,}-byte read"


def _empty_pool():
    """The reader's pool, emptied of what earlier tests left (passes abandoned in reference
    cycles close their scope only when collected)."""
    from brainzarr.streaming import reader as reader_module

    gc.collect()
    release_buffers()
    return reader_module._BUFFERS


def _one_pass(X):
    for block in iter_row_blocks(X, depth=0):  # one block read at a time: allocations are exact
        assert np.isfinite(block).all()


def test_a_pass_reuses_the_readers_blocks_and_lets_them_go_when_it_ends(tmp_path):
    import brainzarr

    store = brainzarr.build_store(tmp_path / "s.zarr", genes=20, chunks=(256, 20))
    X = expression_rows(store)
    assert X.numblocks[0] >= 6
    pool = _empty_pool()
    before = pool.allocated
    _one_pass(X)
    assert pool.allocated - before == 2  # the block being read and the one before it, then reused
    assert pool._buffers == []  # nothing held once the pass is over
    with reusing_buffers():  # passes inside one scope (a fit's) share the blocks
        before = pool.allocated
        _one_pass(X)
        between = pool.allocated
        _one_pass(X)
        assert (between - before, pool.allocated - between) == (2, 0)
        block_reduce(X, lambda b: (b.sum(axis=0),))  # a pass in a pass's scope keeps them too
        assert len(pool._buffers) >= 2
    assert pool._buffers == []


def test_reads_keeping_more_and_more_of_their_blocks_rows_reuse_the_same_blocks(tmp_path):
    """The training voxels of each block differ in number; a block made for the first must
    serve the larger ones after it (it is a whole row of chunks large)."""
    import brainzarr

    store = brainzarr.build_store(tmp_path / "s.zarr", genes=20, chunks=(256, 20))
    n = brainzarr.open_store(store).sizes["voxel"]
    mask = np.zeros(n, dtype=bool)
    for i, a in enumerate(range(0, n, 256)):
        mask[a : a + 100 + 20 * i] = True  # 100, 120, 140, ... rows of each 256
    X = expression_rows(store, mask=mask)
    pool = _empty_pool()
    before = pool.allocated
    _one_pass(X)
    assert pool.allocated - before == 2


def test_an_estimators_fit_lets_the_readers_blocks_go_once_after_all_its_passes(tmp_path, monkeypatch):
    import brainzarr
    from brainzarr.models import PCA

    store = brainzarr.build_store(tmp_path / "s.zarr", genes=20, chunks=(256, 20))
    X = expression_rows(store)
    pool = _empty_pool()
    released = []
    real_clear = pool.clear
    monkeypatch.setattr(pool, "clear", lambda: (released.append(len(pool._buffers)), real_clear()))
    PCA(n_components=3, n_power_iter=3, cache_bytes=None, random_state=0).fit(X)  # 4 passes
    assert released[0] >= 2 and len(released) == 1  # kept from pass to pass, let go at the end
    assert pool._buffers == []


def test_reads_by_hand_keep_no_block_unless_made_in_a_scope(tmp_path):
    """A dask computation over expression_rows by hand used to fill the pool and keep it (489 MiB
    after a 4 mm all-gene column sum); outside a scope each read now gets a block of its own."""
    import brainzarr

    store = brainzarr.build_store(tmp_path / "s.zarr", genes=20, chunks=(256, 20))
    X = expression_rows(store)
    pool = _empty_pool()
    before = pool.allocated
    total = X.sum(axis=0).compute()
    assert pool.allocated - before == X.numblocks[0]  # one block per read, none kept
    assert pool._buffers == []
    with reusing_buffers():  # the same computation in a scope reuses them ...
        np.testing.assert_allclose(X.sum(axis=0).compute(), total, rtol=1e-6)
        assert 0 < len(pool._buffers) < X.numblocks[0]
    assert pool._buffers == []  # ... and lets them go with it


def test_a_dask_distributed_worker_keeps_its_blocks_from_task_to_task(tmp_path):
    import brainzarr

    distributed = pytest.importorskip("distributed")
    store = brainzarr.build_store(tmp_path / "s.zarr", genes=20, chunks=(256, 20))
    X = expression_rows(store)
    pool = _empty_pool()
    # a worker thread in this process: its reads go through the same pool
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        total = client.compute(X.sum(axis=0)).result()
    assert pool._buffers  # kept for the worker's next task, after the computation
    np.testing.assert_allclose(total, expression_rows(store).sum(axis=0).compute(), rtol=1e-6)
    release_buffers()  # what client.run(release_buffers) does on a worker
    assert pool._buffers == []
