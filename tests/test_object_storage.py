"""Stores on object storage: a real S3-compatible server (moto's server mode) on 127.0.0.1,
started and stopped by the fixture; build, info, fit, export, evaluate and report on
``s3://`` URLs, resume after an interruption, and one clear line for each kind of bad input."""

import socket

import numpy as np
import pytest
import xarray as xr

import brainzarr
from brainzarr.cli import main

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")


def _start_moto():
    """A moto S3 server on a free port of 127.0.0.1: (server, endpoint URL)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def s3_endpoint():
    server, endpoint = _start_moto()
    yield endpoint
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """Dummy credentials (restored after the test) and a fresh bucket; the storage options."""
    import uuid

    import s3fs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    options = {"endpoint_url": s3_endpoint}
    bucket = f"b{uuid.uuid4().hex[:12]}"
    # fsspec caches filesystem instances with the credentials they were made with: a test that
    # ran without credentials must not hand its instances to the next one
    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem(**options).mkdir(bucket)
    s3fs.S3FileSystem.clear_instance_cache()
    yield bucket, options
    s3fs.S3FileSystem.clear_instance_cache()


def _url(s3, name):
    bucket, options = s3
    return f"s3://{bucket}/{name}", options


def test_build_open_fit_and_read_back_on_s3(s3, tmp_path):
    url, options = _url(s3, "s8.zarr")
    brainzarr.build_store(url, genes=24, random_state=1, storage_options=options, chunks=(1024, 8))
    local = brainzarr.build_store(tmp_path / "s8.zarr", genes=24, random_state=1, chunks=(1024, 8))
    store = brainzarr.Store(url, storage_options=options)
    assert store.remote and store.complete
    ds = brainzarr.open_store(store)
    np.testing.assert_array_equal(ds["expression"].values, brainzarr.open_store(local)["expression"].values)
    result = brainzarr.fit_store(store, "pca", 3)
    expected = brainzarr.fit_store(local, "pca", 3)
    np.testing.assert_allclose(result["rmse"].values, expected["rmse"].values, rtol=1e-6)
    assert brainzarr.list_groups(store) == ["representations/random/pca/k3"]
    # consolidated metadata is current: plain xarray opens any group in one read, without a warning
    import warnings

    import zarr

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        plain = xr.open_zarr(
            zarr.storage.FsspecStore.from_url(url, storage_options=options, read_only=True),
            group="representations/random/pca/k3",
        )
    assert plain["embedding"].shape == (ds.sizes["voxel"], 3)
    root = zarr.open_group(zarr.storage.FsspecStore.from_url(url, storage_options=options), mode="r")
    assert root.metadata.consolidated_metadata is not None
    assert "representations/random/pca/k3/embedding" in root.metadata.consolidated_metadata.flattened_metadata


def test_cli_on_s3_info_fit_export_evaluate_report(s3, tmp_path, capsys):
    url, options = _url(s3, "cli.zarr")
    opt = ["--storage-option", f"endpoint_url={options['endpoint_url']}"]
    assert main(["build", "--genes", "12", "--seed", "2", "--out", url, *opt]) == 0
    assert main(["info", url, *opt]) == 0
    info = capsys.readouterr().out
    assert "3,666 voxels x 12 genes" in info and "zstd + crc32c, chunks of 3,666 voxels x 12 genes" in info
    assert main(["fit", url, "--methods", "pca,nmf", "--dims", "2", "--max-epochs", "2", *opt]) == 0
    out = tmp_path / "pca.nii.gz"
    assert main(["export", url, "representations/random/pca/k2/embedding", "-o", str(out), *opt]) == 0
    import nibabel as nib

    assert nib.load(out).shape[-1] == 2
    report = tmp_path / "report"
    code = main(["report", url, "--targets", "synthetic", "--methods", "pca", "nmf", "-o", str(report), *opt])
    assert code == 0 and (report / "index.html").exists()
    assert main(["check", url, *opt]) == 0


def test_an_interrupted_build_on_s3_resumes_to_the_same_store(s3, monkeypatch):
    from brainzarr import build as build_module

    url, options = _url(s3, "resume.zarr")
    whole_url, _ = _url(s3, "whole.zarr")
    brainzarr.build_store(whole_url, genes=16, chunks=(512, 8), storage_options=options)
    real, calls = build_module._write_block, []

    def failing(*args, **kwargs):
        if len(calls) >= 3:
            raise KeyboardInterrupt
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(build_module, "_write_block", failing)
    with pytest.raises(KeyboardInterrupt):
        brainzarr.build_store(url, genes=16, chunks=(512, 8), storage_options=options)
    monkeypatch.setattr(build_module, "_write_block", real)
    with pytest.raises(brainzarr.StoreError, match="did not finish"):
        brainzarr.open_store(brainzarr.Store(url, storage_options=options, allow_incomplete=True).path)
    brainzarr.build_store(url, genes=16, chunks=(512, 8), storage_options=options)
    a = brainzarr.open_store(brainzarr.Store(url, storage_options=options))["expression"].values
    b = brainzarr.open_store(brainzarr.Store(whole_url, storage_options=options))["expression"].values
    np.testing.assert_array_equal(a, b)


def test_bad_object_storage_input_is_one_line(s3, s3_endpoint, monkeypatch, capsys):
    bucket, options = s3
    opt = ["--storage-option", f"endpoint_url={s3_endpoint}"]

    def one_line(argv, text):
        code = main(argv)
        err = capsys.readouterr().err
        assert code != 0 and text in err and len(err.strip().splitlines()) == 1, err

    one_line(["info", "s3://no-such-bucket/x.zarr", *opt], "no bucket 'no-such-bucket'")
    one_line(["info", f"s3://{bucket}/nothing.zarr", *opt], "no store at")
    import s3fs

    s3fs.S3FileSystem(**options).pipe(f"{bucket}/plain.zarr/zarr.json", b'{"zarr_format": 3, "node_type": "group"}')
    one_line(["info", f"s3://{bucket}/plain.zarr", *opt], "not a brainzarr store")
    fast = ["--storage-option", 'config_kwargs={"connect_timeout": 1, "retries": {"max_attempts": 1}}']
    one_line(
        ["info", f"s3://{bucket}/x.zarr", "--storage-option", "endpoint_url=http://127.0.0.1:9", *fast], "cannot reach"
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    s3fs.S3FileSystem.clear_instance_cache()
    one_line(["info", f"s3://{bucket}/x.zarr", *opt], "credentials")
    one_line(["build", "--genes", "4", "--out", f"s3://{bucket}/y.zarr", *opt], "credentials")


def test_an_endpoint_lost_mid_build_is_one_line(monkeypatch, capsys):
    """The S3 server stops after the build has written two row blocks: botocore's error is told
    as one line that says what happened, as at the start of a job."""
    import uuid

    import s3fs

    from brainzarr import build as build_module

    server, endpoint = _start_moto()
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"b{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem(endpoint_url=endpoint).mkdir(bucket)
    real, written = build_module._write_block, []

    def then_stop(*args, **kwargs):
        if len(written) == 2:
            server.stop()
        written.append(real(*args, **kwargs))

    monkeypatch.setattr(build_module, "_write_block", then_stop)
    fast = 'config_kwargs={"connect_timeout": 1, "retries": {"max_attempts": 1}}'
    argv = ["build", "--genes", "8", "--chunks", "512,8", "--out", f"s3://{bucket}/lost.zarr"]
    try:
        code = main([*argv, "--storage-option", f"endpoint_url={endpoint}", "--storage-option", fast])
    finally:
        if len(written) <= 2:
            server.stop()
        s3fs.S3FileSystem.clear_instance_cache()
    err = capsys.readouterr().err
    assert len(written) == 2 and code == 1, err
    assert "error: cannot reach the object store: Could not connect to the endpoint URL" in err, err
    assert "--debug" not in err and len(err.strip().splitlines()) == 1, err


def test_an_unreachable_scheduler_is_one_line(tmp_path, capsys):
    code = main(["build", "--genes", "4", "--scheduler", "tcp://127.0.0.1:9", "--out", str(tmp_path / "x.zarr")])
    err = capsys.readouterr().err
    assert code == 1 and "cannot reach the dask scheduler at tcp://127.0.0.1:9" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "x.zarr").exists()
    code = main(["build", "--genes", "4", "--scheduler", "localhost", "--out", str(tmp_path / "x.zarr")])
    err = capsys.readouterr().err  # no port: said in one line, with what an address looks like
    assert code == 1 and err.startswith("brainzarr build: error: --scheduler localhost: ")
    assert err.strip().endswith("e.g. tcp://127.0.0.1:8786") and not (tmp_path / "x.zarr").exists()
    # the clients that failed to connect are not left as dask's default: a later job in the same
    # process (the next test) ran on the broken one ('missing port number in address')
    import dask
    from distributed import default_client

    with pytest.raises(ValueError, match="No clients found"):
        default_client()
    assert dask.config.get("scheduler", None) is None


def test_a_memory_url_is_a_store_too():
    url = "memory://brainzarr-tests/m.zarr"
    brainzarr.build_store(url, genes=6)
    ds = brainzarr.open_store(url)
    assert ds.sizes["gene"] == 6 and np.isfinite(ds["expression"].values).all()
    brainzarr.fit_store(url, "pca", 2)
    assert brainzarr.list_groups(url) == ["representations/random/pca/k2"]
    import xarray as xr

    mine = xr.Dataset({"score": ("voxel", np.zeros(ds.sizes["voxel"], "float32"))})
    brainzarr.write_group(url, "analyses/zeros", mine)  # a group of one's own, listed with the others
    assert brainzarr.list_groups(url, prefix=None) == ["analyses/zeros", "representations/random/pca/k2"]
