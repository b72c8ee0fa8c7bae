"""The auto-encoder and its loaders: streaming vs in-memory, determinism, resume, persistence."""

import subprocess
import sys
import warnings

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from brainzarr.cli import error_message  # noqa: E402
from brainzarr.models import AutoEncoder, _bench, get_model_class, loaders  # noqa: E402
from brainzarr.models import autoencoder as ae_mod  # noqa: E402
from brainzarr.models.loaders import MemoryLoader, StreamingLoader  # noqa: E402
from brainzarr.streaming import row_spans  # noqa: E402


def make_spans(n, chunks, *, read_rows, block_rows):
    """The loaders' reads (see brainzarr.models.loaders.loader_spans)."""
    if read_rows is None and not chunks:
        read_rows = 1024
    return row_spans(n, chunks, read_rows=read_rows, align=block_rows, group=True)


FAST = dict(hidden=(16, 8), batch_size=32, max_epochs=4, patience=10, device="cpu")


def _data(n=300, g=12, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.uniform(-1, 1, (n, 2))
    w = rng.normal(0, 1, (2, g))
    return (1 / (1 + np.exp(-(np.tanh(z) @ w))) + rng.normal(0, 0.02, (n, g))).astype(np.float32)


def _state(model):
    return {k: v.detach().cpu().clone() for k, v in model.net_.state_dict().items()}


def _same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class RecordingArray:
    """A chunked array that records every row range read from it."""

    def __init__(self, data, row_chunk):
        self.data, self.shape, self.reads = data, data.shape, []
        self.chunks = (row_chunk, data.shape[1])

    def __getitem__(self, key):
        assert isinstance(key, slice) and key.step is None, f"non-contiguous read {key!r}"
        self.reads.append((key.start, key.stop))
        return self.data[key]


# ---------------------------------------------------------------------------------- loaders
def test_streaming_and_memory_loaders_give_each_selected_row_once_per_epoch():
    n = 1000
    X = np.column_stack([np.arange(n), np.random.default_rng(0).random((n, 4))]).astype(np.float32)
    mask = np.random.default_rng(1).random(n) < 0.8
    stream = StreamingLoader(
        da.from_array(X, chunks=(256, 2)),
        64,
        mask=mask,
        block_rows=32,
        read_rows=64,
        shuffle_buffer=256,
        random_state=3,
    )
    memory = MemoryLoader(X, 64, rows=np.flatnonzero(mask), random_state=3)
    orders = []
    for loader in (stream, memory):
        for epoch in (0, 1):
            batches = list(loader.epoch(epoch))
            rows = np.concatenate(batches)
            assert all(len(b) == 64 for b in batches[:-1]) and 0 < len(batches[-1]) <= 64
            np.testing.assert_array_equal(np.sort(rows[:, 0]), np.flatnonzero(mask))
            np.testing.assert_array_equal(rows[np.argsort(rows[:, 0])], X[mask])  # rows intact
            orders.append(rows[:, 0])
    # shuffled, differently each epoch, and reproducibly
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[0], np.sort(orders[0]))
    np.testing.assert_array_equal(np.concatenate(list(stream.epoch(0)))[:, 0], orders[0])
    # a batch mixes rows from several reads (the shuffle buffer pools 4 spans of 64 rows)
    first = np.concatenate(list(stream.epoch(0)))[:64, 0] // 64
    assert len(np.unique(first)) > 1
    # epochs reuse one shuffle buffer; epochs drawn at the same time do not share it
    a, b = stream.epoch(0), stream.epoch(1)
    interleaved = [np.concatenate(x) for x in zip(*((next(a), next(b)) for _ in range(3)))]
    np.testing.assert_array_equal(interleaved[0][:, 0], orders[0][:192])
    np.testing.assert_array_equal(interleaved[1][:, 0], orders[1][:192])


def test_streaming_loader_holds_no_masked_copy_of_a_block():
    """The selected rows of a read go straight into the shuffle buffer: an epoch's traced peak is
    the buffer and the batches, not one more block-sized array (at all genes a block is 256 MB)."""
    import tracemalloc

    X = np.random.default_rng(0).random((4096, 1024), dtype=np.float32)  # one 16 MB read, in memory
    mask = np.random.default_rng(1).random(len(X)) < 0.8
    loader = StreamingLoader(X, 256, mask=mask, read_rows=4096, shuffle_buffer=1024, random_state=0)
    buffer = loader.buffer_rows * X.shape[1] * 4  # the pool (at least one read) and one read
    tracemalloc.start()
    try:
        n = sum(len(batch) for batch in loader.epoch(0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == mask.sum()
    assert peak < buffer + 4 * 256 * X.shape[1] * 4, (peak, buffer)  # a masked copy would add 13 MB


def _pools_as_defined(loader, X, epoch):
    """The batches the loader's docs define: the selected rows of its reads, in the epoch's read
    order, poured into a pool of ``shuffle_buffer + batch_size`` rows; a read that brings the pool
    to ``shuffle_buffer`` rows drains it (permuted, full batches out, the rest kept)."""
    rng = np.random.default_rng([loader.random_state, epoch, 2])
    spans = [loader.spans[i] for i in rng.permutation(len(loader.spans))]
    bs, pool = loader.batch_size, X[:0]

    def drain(pool, last):
        order = rng.permutation(len(pool))
        full = len(pool) // bs * bs
        batches = [pool[order[i : i + bs]] for i in range(0, full, bs)]
        if last and full < len(pool) and not loader.drop_last:
            batches.append(pool[order[full:]])
        return batches, pool[order[full:]]

    out = []
    for a, b in spans:
        rows = X[a:b] if loader.mask is None else X[a:b][loader.mask[a:b]]
        while len(rows):
            take = min(len(rows), loader.shuffle_buffer + bs - len(pool))
            pool, rows = np.concatenate([pool, rows[:take]]), rows[take:]
            if len(pool) >= loader.shuffle_buffer:
                batches, pool = drain(pool, last=False)
                out += batches
    return out + drain(pool, last=True)[0]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 300),
    chunk=st.integers(1, 70),
    batch_size=st.integers(1, 24),
    block_rows=st.integers(1, 9),
    shuffle_buffer=st.one_of(st.none(), st.integers(1, 150)),
    prefetch=st.integers(0, 3),
    keep=st.one_of(st.none(), st.floats(0.05, 1)),
    drop_last=st.booleans(),
    lazy=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_streamed_batches_are_the_pools_the_docs_define(
    n, chunk, batch_size, block_rows, shuffle_buffer, prefetch, keep, drop_last, lazy, seed
):
    """Reads land in the shuffle buffer, some of them ahead (while a pool trains): where and
    when rows were read never changes a batch."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.arange(n), rng.random((n, 2))]).astype(np.float32)
    mask = None if keep is None else rng.random(n) < keep
    if mask is not None and not mask.any():
        mask[n // 2] = True
    loader = StreamingLoader(
        da.from_array(X, chunks=(chunk, 3)) if lazy else X,
        batch_size,
        mask=mask,
        block_rows=block_rows,
        shuffle_buffer=shuffle_buffer,
        prefetch=prefetch,
        random_state=seed,
        drop_last=drop_last,
    )
    for epoch in (0, 1):
        got, want = list(loader.epoch(epoch)), _pools_as_defined(loader, X, epoch)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_streaming_from_a_store_decodes_into_the_shuffle_buffer(tmp_path, monkeypatch):
    """Over a store's row blocks (what fit_store streams) every read is decoded straight into
    the loader's buffer, or the validation rows' array: no block is allocated beside them
    (at all genes one is 256 MB; the reader's pool used to hold three during an epoch)."""
    import brainzarr
    from brainzarr.streaming import expression_rows
    from brainzarr.streaming import reader as reader_mod

    store = brainzarr.build_store(tmp_path / "s.zarr", resolution=8, genes=24, chunks=(512, 24))
    train = (brainzarr.open_store(store).split == "train").values
    X = expression_rows(store, mask=train)
    values = X.compute()
    fit_rows = np.random.default_rng(0).random(len(values)) < 0.9

    def no_block(*args, **kwargs):
        raise AssertionError("a block was allocated outside the loader's buffer")

    monkeypatch.setattr(reader_mod._BUFFERS, "get", no_block)
    loader = StreamingLoader(X, 64, mask=fit_rows, shuffle_buffer=700, prefetch=2, random_state=5)
    assert len(loader.spans) > 3
    for epoch in (0, 1):
        got, want = list(loader.epoch(epoch)), _pools_as_defined(loader, values, epoch)
        assert len(got) == len(want) > 1
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(loaders.load_rows(X, ~fit_rows), values[~fit_rows])


def test_an_abandoned_epoch_leaves_no_read_writing_into_the_buffer():
    X = da.from_array(np.random.default_rng(0).random((2000, 5), dtype=np.float32), chunks=(100, 5))
    loader = StreamingLoader(X, 10, shuffle_buffer=150, prefetch=3, random_state=1)
    whole = list(loader.epoch(0))
    first = loader.epoch(0)
    next(first)
    first.close()  # stopped while reads ahead were under way: they finish before the buffer is reused
    again = list(loader.epoch(0))
    assert len(again) == len(whole)
    for g, w in zip(again, whole):
        np.testing.assert_array_equal(g, w)


def test_streaming_reads_whole_aligned_blocks_never_single_rows():
    X = np.random.default_rng(0).random((1000, 3)).astype(np.float32)
    rec = RecordingArray(X, row_chunk=200)
    loader = StreamingLoader(rec, 16, block_rows=32, read_rows=64, shuffle_buffer=128, random_state=0)
    n_rows = sum(len(b) for b in loader.epoch(0))
    assert n_rows == 1000
    reads = sorted(rec.reads)
    assert reads == make_spans(1000, (200,) * 5, read_rows=64, block_rows=32)
    for a, b in reads:
        assert (a % 200) % 32 == 0  # aligned to blocks within a chunk
        assert a // 200 == (b - 1) // 200  # never crosses a chunk boundary
        assert b - a == 64 or b % 200 == 0  # whole reads (a chunk's tail may be shorter)
    assert rec.reads != reads  # in random order
    # the default read is one row of chunks (each chunk decoded once per epoch)
    rec.reads.clear()
    list(StreamingLoader(rec, 16, random_state=0).epoch(0))
    assert sorted(rec.reads) == [(a, a + 200) for a in range(0, 1000, 200)]


def test_spans_merge_small_chunks_up_to_read_rows():
    assert make_spans(100, (30, 30, 40), read_rows=64, block_rows=10) == [(0, 60), (60, 100)]
    assert make_spans(10, None, read_rows=None, block_rows=4) == [(0, 10)]
    # a chunk's tail is never merged with the next chunk
    assert make_spans(230, (200, 30), read_rows=64, block_rows=32) == [
        (0, 64),
        (64, 128),
        (128, 192),
        (192, 200),
        (200, 230),
    ]


def test_load_rows_fills_a_tensor_with_the_selected_rows():
    X = np.random.default_rng(0).random((500, 6)).astype(np.float32)
    mask = np.zeros(500, bool)
    mask[[3, 100, 101, 499]] = True
    out = torch.empty((4, 6))
    loaders.load_rows(da.from_array(X, chunks=(128, 4)), mask, out=out)
    np.testing.assert_array_equal(out.numpy(), X[mask])


# ---------------------------------------------------------------------------------- devices
def test_device_and_precision_choices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ae_mod.resolve_device("auto").type == "cpu"
    with pytest.raises(ValueError, match="CUDA is not available") as err:
        ae_mod.resolve_device("cuda")
    assert str(err.value).endswith("pass device='cpu'") and error_message(err.value).endswith("pass --device cpu")
    with pytest.raises(ValueError, match="unsupported device"):
        ae_mod.resolve_device("meta")
    with pytest.raises(ValueError, match="unknown device 'gpu'.*; did you mean cuda"):
        ae_mod.resolve_device("gpu")
    assert ae_mod._amp_dtype(torch.device("cpu"), True) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert ae_mod.resolve_device("auto").type == "cuda"
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert ae_mod._amp_dtype(cuda, True) is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert ae_mod._amp_dtype(cuda, True) is torch.float16
    assert ae_mod._amp_dtype(cuda, False) is None


def test_in_memory_decision_follows_available_memory(monkeypatch):
    model = AutoEncoder(2, **FAST)
    cpu = torch.device("cpu")
    monkeypatch.setattr(ae_mod, "available_memory", lambda: 4_000)
    assert model._plan_in_memory(999, cpu) and not model._plan_in_memory(1_001, cpu)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10_000, 20_000))
    assert model._plan_in_memory(4_000, torch.device("cuda")) and not model._plan_in_memory(6_000, torch.device("cuda"))
    assert not AutoEncoder(2, in_memory=False)._plan_in_memory(1, cpu)
    # streaming chosen automatically when the rows do not fit: training still works
    X = _data()
    fitted = AutoEncoder(2, **FAST).fit(da.from_array(X, chunks=(64, 5)))
    assert not fitted.in_memory_ and len(fitted.history_["train_loss"]) == 4


# ---------------------------------------------------------------------------------- training
def test_same_seed_same_weights_on_cpu():
    X = _data()
    a = AutoEncoder(2, random_state=5, **FAST).fit(X)
    b = AutoEncoder(2, random_state=5, **FAST).fit(X)
    c = AutoEncoder(2, random_state=6, **FAST).fit(X)
    assert _same_state(_state(a), _state(b))
    assert a.history_ == b.history_
    assert not _same_state(_state(a), _state(c))


@pytest.mark.parametrize("in_memory", [True, False])
def test_streamed_and_in_memory_training_agree_in_quality(in_memory):
    X = _data(600)
    model = AutoEncoder(2, in_memory=in_memory, **{**FAST, "max_epochs": 25}).fit(da.from_array(X, chunks=(128, 12)))
    assert model.in_memory_ is in_memory
    rmse = np.sqrt(np.mean((model.inverse_transform(model.transform(X)) - X) ** 2))
    mean_rmse = np.sqrt(np.mean((X - X.mean(0)) ** 2))
    assert rmse < 0.6 * mean_rmse


def test_resume_after_interrupt_between_epochs_equals_uninterrupted(tmp_path):
    X = _data()
    params = {**FAST, "max_epochs": 5}
    full = AutoEncoder(2, **params).fit(X)

    def interrupt(model, info):
        if info["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        AutoEncoder(2, checkpoint_dir=tmp_path, **params).fit(X, callback=interrupt)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and not ckpt["stopped"] and len(ckpt["history"]["train_loss"]) == 2
    assert {"model", "optimizer", "best_state", "bad_epochs", "best_val"} <= set(ckpt)
    assert "rng" not in ckpt  # training draws nothing from torch's global generator: it is the caller's
    epochs = []
    resumed = AutoEncoder(2, checkpoint_dir=tmp_path, **params).fit(X, callback=lambda m, i: epochs.append(i["epoch"]))
    assert epochs == [3, 4, 5]
    assert _same_state(_state(full), _state(resumed))
    assert full.history_ == resumed.history_


def test_resume_after_a_failed_read_mid_epoch_equals_uninterrupted(tmp_path):
    X = _data(400)
    reads = {"n": 0, "fail_at": None}

    def block(b):
        reads["n"] += 1
        if reads["n"] == reads["fail_at"]:
            raise OSError("disk went away")
        return b

    lazy = da.from_array(X, chunks=(64, 12)).map_blocks(block, dtype=np.float32)
    params = {**FAST, "max_epochs": 4, "in_memory": False, "read_rows": 32, "shuffle_buffer": 64}
    full = AutoEncoder(2, **params).fit(lazy)
    reads_per_epoch = len(make_spans(400, (64,) * 6 + (16,), read_rows=32, block_rows=32))
    reads.update(n=0, fail_at=reads["n"] // 2 + 3)  # during the third epoch or so
    with pytest.raises(OSError, match="disk went away"):
        AutoEncoder(2, checkpoint_dir=tmp_path, **params).fit(lazy)
    done = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"]
    assert 1 <= done < 4 and reads_per_epoch > 1
    resumed = AutoEncoder(2, checkpoint_dir=tmp_path, **params).fit(lazy)
    assert _same_state(_state(full), _state(resumed))
    # a finished run in the same folder is not trained again
    again = AutoEncoder(2, checkpoint_dir=tmp_path, **params).fit(lazy, callback=lambda *a: pytest.fail("trained"))
    assert _same_state(_state(full), _state(again))


def test_checkpoint_for_other_settings_is_refused(tmp_path):
    X = _data()
    AutoEncoder(2, checkpoint_dir=tmp_path, **{**FAST, "max_epochs": 1}).fit(X)
    with pytest.raises(ValueError, match="other data or settings"):
        AutoEncoder(2, checkpoint_dir=tmp_path, **{**FAST, "learning_rate": 0.01}).fit(X)


def test_early_stopping_keeps_the_best_epoch():
    X = _data()
    stops, current = [], []

    def record(m, info):
        stops.append(info["bad_epochs"])
        current.append(np.mean((m.inverse_transform(m.transform(X)) - X) ** 2))  # the current weights

    model = AutoEncoder(2, **{**FAST, "max_epochs": 30, "patience": 2, "learning_rate": 0.05}).fit(X, callback=record)
    assert len(set(np.round(current, 8))) == len(current)  # the weights change every epoch
    val = model.history_["val_loss"]
    assert model.best_epoch_ == int(np.argmin(val)) + 1
    assert model.n_epochs_ < 30  # it stopped early
    assert stops[-1] == 2 and model.n_epochs_ == model.best_epoch_ + 2
    # the kept weights are the best epoch's: their validation loss is the recorded best
    ae_val_idx, _ = model._split_rows(len(X), X.shape[1])
    recon = model.inverse_transform(model.transform(X[ae_val_idx]))
    assert np.mean((recon - X[ae_val_idx]) ** 2) == pytest.approx(min(val), rel=1e-4)


# ---------------------------------------------------------------------------------- persistence
def test_arrays_round_trip_through_a_zarr_group(tmp_path):
    X = _data()
    model = get_model_class("ae")(3, **FAST).fit(X)
    ds = model.to_dataset()
    assert ds["param_net_encoder_0_weight"].dims == ("units_1", "gene")
    assert ds["param_net_encoder_7_running_var"].dims == ("component",)
    assert ds["param_net_decoder_0_weight"].dims == ("units_4", "component")
    assert "param_history_val_loss" in ds
    ds.to_zarr(tmp_path / "ae.zarr", zarr_format=3, consolidated=False)
    back = AutoEncoder.from_dataset(xr.open_zarr(tmp_path / "ae.zarr", consolidated=False))
    assert _same_state(_state(model), _state(back))
    np.testing.assert_array_equal(back.transform(X), model.transform(X))
    np.testing.assert_array_equal(
        back.inverse_transform(model.transform(X)), model.inverse_transform(model.transform(X))
    )
    assert back.history_ == model.history_


def test_weights_load_with_torch_weights_only(tmp_path):
    X = _data()
    model = AutoEncoder(2, checkpoint_dir=tmp_path, **FAST).fit(X)
    payload = torch.load(tmp_path / "weights.pt", weights_only=True)
    assert payload["config"]["n_features_in"] == X.shape[1]
    back = AutoEncoder.load_weights(tmp_path / "weights.pt")
    np.testing.assert_array_equal(back.transform(X), model.transform(X))
    again = AutoEncoder.from_dataset(back.to_dataset())  # no history: still round-trips
    np.testing.assert_array_equal(again.transform(X), model.transform(X))
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["stopped"]


def test_dask_and_labelled_inputs_give_labelled_lazy_outputs():
    X = _data(200)
    model = AutoEncoder(2, **FAST).fit(X)
    arr = xr.DataArray(
        da.from_array(X, chunks=(64, 5)),
        dims=("voxel", "gene"),
        coords={"voxel": np.arange(200), "gene": [f"g{i}" for i in range(12)]},
    )
    Z = model.transform(arr)
    assert Z.dims == ("voxel", "component") and isinstance(Z.data, da.Array)
    np.testing.assert_allclose(Z.values, model.transform(X), rtol=1e-5, atol=1e-6)
    assert model.inverse_transform(Z).shape == (200, 12)


def test_written_back_by_the_pipeline_and_reloaded(small_store, tmp_path):
    import shutil

    from brainzarr.models.store_fitting import fit_store, load_model
    from brainzarr.store import open_store

    store = tmp_path / "s8.zarr"
    shutil.copytree(small_store, store)
    result = fit_store(store, "ae", 3, hidden=(32, 16), max_epochs=3, device="cpu")
    assert result["embedding"].dims == ("voxel", "component") and result.sizes["component"] == 3
    assert result["param_net_encoder_1_running_mean"].dims == ("units_1",)
    assert not (store / ".checkpoints" / "random" / "ae" / "k3").exists()  # removed once the result is written
    X = open_store(store)["expression"].values
    model = load_model(store, "ae", 3)
    np.testing.assert_allclose(model.transform(X), result["embedding"].values, atol=1e-5)
    train, test = result["rmse"].values
    mean = np.sqrt(np.mean((X - X.mean(0)) ** 2))
    assert 0 < train < mean and 0 < test < mean


def test_a_model_fitted_on_a_gpu_loads_on_a_laptop_without_the_fits_checkpoint_folder(
    small_store, tmp_path, monkeypatch
):
    """load_model of an auto-encoder fitted with device='cuda' stopped where CUDA is missing,
    telling the user to pass device='cpu', which load_model does not take; and the loaded model
    kept the fit's checkpoint folder (``<store>/.checkpoints/...``, relative to where the fit ran),
    so a refit of it elsewhere wrote a stray ``s8.zarr/.checkpoints`` into the working directory."""
    import shutil

    import zarr

    from brainzarr.models.store_fitting import fit_store, load_model

    store = tmp_path / "fitted" / "s8.zarr"
    shutil.copytree(small_store, store)
    result = fit_store(store, "ae", 2, hidden=(16,), max_epochs=2, device="cpu")
    group = zarr.open_group(store / "representations" / "random" / "ae" / "k2", mode="r+")
    params = dict(group.attrs["params"])
    assert params["checkpoint_dir"].endswith("k2")  # the fit's own folder, recorded
    group.attrs["params"] = params | {"device": "cuda"}  # as a fit on a GPU machine records it
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match=r"trained with device='cuda', which this machine lacks; it runs on cpu"):
        model = load_model(store, "ae", 2)
    assert model.device_ == "cpu" and model.checkpoint_dir is None
    from brainzarr.store import open_store

    data = open_store(store)["expression"].values
    np.testing.assert_allclose(model.transform(data), result["embedding"].values, atol=1e-5)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    model.set_params(max_epochs=1).fit(data)
    assert list(elsewhere.iterdir()) == []


def test_pipeline_discards_its_own_stale_checkpoint_but_not_the_callers(small_store, tmp_path):
    import shutil

    from brainzarr.models.base import CheckpointMismatchError
    from brainzarr.models.store_fitting import fit_store
    from brainzarr.store import open_store
    from brainzarr.streaming import expression_rows

    store = tmp_path / "s8.zarr"
    shutil.copytree(small_store, store)
    train = open_store(store)["split"].values == "train"
    folder = store / ".checkpoints" / "random" / "ae" / "k2"
    # what an interrupted fit with other settings leaves in brainzarr's folder
    AutoEncoder(2, hidden=(8,), max_epochs=1, checkpoint_dir=folder, device="cpu").fit(
        expression_rows(store, mask=train)
    )
    assert (folder / "checkpoint.pt").exists()
    with pytest.warns(UserWarning, match="discarding a checkpoint"):
        result = fit_store(store, "ae", 2, hidden=(16,), max_epochs=2, device="cpu")
    assert result["param_net_encoder_0_weight"].shape == (16, result.sizes["gene"])
    assert result.sizes["epoch"] == 2  # trained afresh, both epochs
    assert not folder.exists()
    # a folder the caller chose is theirs: a mismatch there is refused, not cleared
    mine = tmp_path / "mine"
    AutoEncoder(2, hidden=(8,), max_epochs=1, checkpoint_dir=mine, device="cpu").fit(expression_rows(store, mask=train))
    with pytest.raises(CheckpointMismatchError, match="other data or settings"):
        fit_store(store, "ae", 2, hidden=(16,), max_epochs=1, device="cpu", checkpoint_dir=str(mine), overwrite=True)
    assert (mine / "checkpoint.pt").exists()


# ---------------------------------------------------------------------------------- quality
def _manifold(n, seed, genes=30):
    """A curved 2-D sheet in gene space: PCA's best plane misses its curvature."""
    t = np.random.default_rng(seed).uniform(0, 1, (n, 2))
    feats = np.column_stack(
        [np.cos(3 * t[:, 0]), np.sin(3 * t[:, 0]), np.cos(4 * t[:, 1]), np.sin(4 * t[:, 1]), t[:, 0] * t[:, 1]]
    )
    w = np.random.default_rng(99).normal(0, 1, (5, genes))
    noise = np.random.default_rng(seed + 1).normal(0, 0.01, (n, genes))
    return (1 / (1 + np.exp(-(feats @ w))) + noise).astype(np.float32)


def test_learns_a_nonlinear_2d_manifold_better_than_pca_and_the_mean():
    from sklearn.decomposition import PCA

    train, test = _manifold(2000, 0), _manifold(500, 10)
    model = AutoEncoder(2, hidden=(64, 32), batch_size=64, max_epochs=40, patience=8, device="cpu").fit(train)
    ae = np.sqrt(np.mean((model.inverse_transform(model.transform(test)) - test) ** 2))
    pca = PCA(2).fit(train)
    lin = np.sqrt(np.mean((pca.inverse_transform(pca.transform(test)) - test) ** 2))
    mean = np.sqrt(np.mean((test - train.mean(0)) ** 2))
    assert ae < 0.5 * lin < mean


# ---------------------------------------------------------------------------------- misc
def test_bad_parameters_and_inputs():
    X = _data(50)
    with pytest.raises(ValueError, match="val_fraction"):
        AutoEncoder(2, val_fraction=1.0).fit(X)
    with pytest.raises(ValueError, match="in_memory"):
        AutoEncoder(2, in_memory="yes").fit(X)
    with pytest.raises(ValueError, match="at least 3"):
        AutoEncoder(2, **FAST).fit(X[:2])
    with pytest.raises(ValueError, match="2-D|2D"):
        AutoEncoder(2, **FAST).fit(X[0])


def test_throughput_reports_loader_and_training_rates():
    X = da.from_array(_data(1000, g=40), chunks=(256, 16))
    rows = _bench.throughput(X, n_components=2, hidden=(16, 8), batch_size=32, train_batches=3)
    assert [r["mode"] for r in rows] == ["memory", "stream"]
    for r in rows:
        assert r["rows"] == 1000 and r["loader_rows_per_s"] > 0 and r["train_rows_per_s"] > 0
        assert r["ratio"] == pytest.approx(r["loader_rows_per_s"] / r["train_rows_per_s"])
    table = _bench.throughput_rows(X, dims=(2, 4), hidden=(16, 8), batch_size=32, train_batches=3, device="cpu")
    assert [(r["method"], r["dim"]) for r in table] == [
        ("ae[train]", 2),
        ("ae[train]", 4),
        ("ae[loader:memory]", None),
        ("ae[loader:stream]", None),
    ]
    fastest = max(r["rows_per_s"] for r in table[:2])
    assert table[3]["ratio"] == pytest.approx(table[3]["rows_per_s"] / fastest)
    rate = _bench.loader_rate(X, "stream", batch_size=32, epochs=3)
    assert rate["rows"] == 1000 and rate["rows_per_s"] > 0 and rate["first_epoch_rows_per_s"] > 0
    with pytest.raises(ValueError, match="epochs"):
        _bench.loader_rate(X, "stream", epochs=0)


def test_models_import_without_torch():
    code = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('no torch here')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "import numpy as np\n"
        "import brainzarr.models as m\n"
        "cls = m.get_model_class('ae')\n"
        "assert 'torch' not in sys.modules\n"
        "try:\n    cls(2).fit(np.ones((5, 2)))\nexcept ImportError as e:\n    print('needs', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'brainzarr[models]'" in out


def test_float_tensor_shares_a_writable_array_and_copies_a_read_only_one():
    """torch.from_numpy of a read-only array (a DataFrame's values under pandas' copy-on-write, a
    read-only memmap) warns and hands out a tensor whose writes would change the user's data."""
    from brainzarr._torch import float_tensor

    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    assert np.shares_memory(float_tensor(X).numpy(), X)
    X.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = float_tensor(X)
    assert not np.shares_memory(t.numpy(), X) and t.numpy().flags.writeable
    np.testing.assert_array_equal(t.numpy(), X)
    assert float_tensor(X[:, 1]).dtype == torch.float32  # a strided column: a contiguous copy


def test_set_output_pandas_round_trips_through_the_auto_encoder():
    import pandas as pd

    X = np.random.default_rng(4).random((90, 7)).astype(np.float32)
    model = AutoEncoder(2, hidden=(8,), max_epochs=2, device="cpu", random_state=0)
    Z = model.set_output(transform="pandas").fit_transform(X)
    assert isinstance(Z, pd.DataFrame) and list(Z.columns) == ["autoencoder0", "autoencoder1"]
    np.testing.assert_array_equal(model.inverse_transform(Z), model.inverse_transform(Z.to_numpy()))
