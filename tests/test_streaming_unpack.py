import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from brainzarr.streaming import RowBlockReader
from brainzarr.streaming.unpack import unpack_chunks


def _reference(src, width, c0s, scale, offset, r0, r1, dest, out):
    """What CF decoding gives (float32 multiply, then float32 add), placed row by row."""
    scale, offset = np.float32(scale), np.float32(offset)
    for s, c0 in enumerate(c0s):
        n = min(src.shape[2], width - c0)
        for i in range(r0, r1):
            d = dest[i - r0]
            if d >= 0:
                values = src[s, i, :n].astype(np.float32) * scale
                out[d, c0 : c0 + n] = values + offset
    return out


@settings(max_examples=80, deadline=None)
@given(
    k=st.integers(1, 4),
    rows=st.integers(1, 150),
    cols=st.integers(1, 20),
    clip=st.integers(0, 19),
    span=st.tuples(st.integers(0, 150), st.integers(0, 150)),
    kept=st.floats(0, 1),
    packing=st.sampled_from([(1 / 65535, 0.0), (2 / 65535, -0.5), (0.37, 3.25)]),
    seed=st.integers(0, 2**16),
    use_numba=st.booleans(),
)
def test_unpacking_places_every_kept_row_as_cf_decoding_does(k, rows, cols, clip, span, kept, packing, seed, use_numba):
    if use_numba:
        pytest.importorskip("numba")
    rng = np.random.default_rng(seed)
    r0, r1 = sorted(min(s, rows) for s in span)
    src = rng.integers(0, 65536, (k, rows, cols), dtype=np.uint16)
    width = max(1, k * cols - min(clip, cols - 1))  # the last chunk may reach past the columns
    c0s = np.arange(k, dtype=np.int64) * cols
    keep = rng.random(r1 - r0) < kept
    dest = np.where(keep, np.cumsum(keep) - 1, -1)
    got = np.full((int(keep.sum()), width), np.nan, dtype=np.float32)
    unpack_chunks(src, got, c0s, *packing, r0, r1, dest, use_numba=use_numba)
    want = _reference(src, width, c0s, *packing, r0, r1, dest, np.full_like(got, np.nan))
    np.testing.assert_array_equal(got, want)  # bit for bit, every kept row written


def test_a_packed_array_with_an_offset_reads_as_xarray_decodes_it(tmp_path):
    """Reconstructions are packed over (-0.5, 1.5): add_offset is not zero."""
    data = np.random.default_rng(1).uniform(-0.5, 1.5, (70, 30)).astype(np.float32)
    scale, offset = 2 / 65535, -0.5
    z = zarr.create_array(
        str(tmp_path / "packed"), shape=data.shape, chunks=(32, 8), shards=(32, 16), dtype="uint16",
        fill_value=0, zarr_format=3, attributes={"scale_factor": scale, "add_offset": offset},
    )  # fmt: skip
    z[:] = np.rint((data - offset) / scale).astype(np.uint16)
    want = z[:].astype(np.float32) * np.float32(scale) + np.float32(offset)
    reader = RowBlockReader(tmp_path / "packed")
    got = np.concatenate([reader(a, min(a + 32, 70)) for a in range(0, 70, 32)])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got, data, atol=scale / 2 + 1e-6)  # half a step
    keep = np.arange(32) % 3 == 0
    np.testing.assert_array_equal(reader(32, 64, keep), want[32:64][keep])


def test_a_pass_without_numba_reads_the_same_numbers(tmp_path, monkeypatch):
    pytest.importorskip("numba")
    data = np.random.default_rng(2).random((50, 40), dtype=np.float32)
    z = zarr.create_array(
        str(tmp_path / "packed"), shape=data.shape, chunks=(20, 8), shards=(20, 24), dtype="uint16",
        fill_value=0, zarr_format=3, attributes={"scale_factor": 1 / 65535, "add_offset": 0.0},
    )  # fmt: skip
    z[:] = np.rint(data * 65535).astype(np.uint16)
    keep = np.random.default_rng(3).random(20) < 0.5
    compiled = [RowBlockReader(tmp_path / "packed")(a, min(a + 20, 50)).copy() for a in (0, 20, 40)]
    kept = RowBlockReader(tmp_path / "packed")(20, 40, keep).copy()
    monkeypatch.setattr("brainzarr.streaming.unpack.numba", None)
    plain = [RowBlockReader(tmp_path / "packed")(a, min(a + 20, 50)) for a in (0, 20, 40)]
    for c, p in zip(compiled, plain, strict=True):
        np.testing.assert_array_equal(c, p)
    np.testing.assert_array_equal(kept, RowBlockReader(tmp_path / "packed")(20, 40, keep))


def test_the_kernel_compiles_where_no_cache_folder_is_writable(monkeypatch):
    pytest.importorskip("numba")
    import brainzarr.streaming.unpack as unpack

    real_jit = unpack._jit

    def jit(**options):  # numba itself is left alone: its registries are global
        if options.get("cache"):  # what numba raises when no cache locator is usable
            raise RuntimeError("cannot cache function '_kernel': no locator available")
        return real_jit(**options)

    monkeypatch.setattr(unpack, "_compiled", None)
    monkeypatch.setattr(unpack, "_jit", jit)
    src = np.arange(24, dtype=np.uint16).reshape(2, 4, 3)
    out = np.zeros((4, 6), np.float32)
    unpack_chunks(src, out, np.array([0, 3]), 0.5, 1.0, 0, 4, np.arange(4))
    np.testing.assert_array_equal(out, np.concatenate([src[0], src[1]], axis=1) * np.float32(0.5) + 1)


def test_asking_for_the_kernel_without_numba_says_what_to_install(monkeypatch):
    monkeypatch.setattr("brainzarr.streaming.unpack.numba", None)
    src, out = np.zeros((1, 2, 2), np.uint16), np.zeros((2, 2), np.float32)
    with pytest.raises(ImportError, match=r"brainzarr\[fast\]"):
        unpack_chunks(src, out, [0], 1.0, 0.0, 0, 2, np.arange(2), use_numba=True)
    unpack_chunks(src, out, [0], 1.0, 0.0, 0, 2, np.arange(2))  # the default falls back to numpy
