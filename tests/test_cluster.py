"""Every pass over a store on a dask.distributed cluster of 2 process workers (started and
stopped here, on 127.0.0.1): build, the PCA fit, export and evaluation's reconstruction pass
give the local results; the Python API finds the client the standard ways."""

import numpy as np
import pytest

import brainzarr
from brainzarr.cli import main

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as cluster:
        yield cluster


@pytest.fixture
def local(tmp_path):
    store = brainzarr.build_store(tmp_path / "local.zarr", genes=40, random_state=3, chunks=(1024, 16))
    brainzarr.fit_store(store, "pca", 4)
    return store


def test_cli_build_fit_export_on_a_cluster_give_the_local_results(cluster, local, tmp_path, capsys):
    remote = tmp_path / "remote.zarr"
    at = ["--scheduler", cluster.scheduler_address]
    build = ["build", "--genes", "40", "--seed", "3", "--chunks", "1024,16", "--out", str(remote), *at]
    assert main(build) == 0
    np.testing.assert_array_equal(
        brainzarr.open_store(remote)["expression"].values, brainzarr.open_store(local)["expression"].values
    )
    assert main(["fit", str(remote), "--methods", "pca", "--dims", "4", *at]) == 0
    a = brainzarr.read_group(remote, "representations/pca/k4")
    b = brainzarr.read_group(local, "representations/pca/k4")
    np.testing.assert_allclose(a["rmse"].values, b["rmse"].values, rtol=1e-5)
    np.testing.assert_allclose(np.abs(a["embedding"].values), np.abs(b["embedding"].values), atol=1e-4)
    out = tmp_path / "pca.nii.gz"
    assert main(["export", str(remote), "representations/pca/k4/embedding", "-o", str(out), *at]) == 0
    import nibabel as nib

    assert nib.load(out).shape[-1] == 4


def test_python_api_uses_the_client_the_standard_ways(cluster, local):
    from brainzarr.evaluate.reconstruction import streamed_rmse
    from brainzarr.options import current_client

    ds = brainzarr.open_store(local)
    expected = streamed_rmse(local, "representations/pca/k4", ds["split"].values)
    with distributed.Client(cluster) as client:
        assert current_client() is client  # `with Client(...)`: the default client
        on_cluster = streamed_rmse(local, "representations/pca/k4", ds["split"].values)
        with brainzarr.set_options(client=client):
            again = brainzarr.fit_store(local, "pca", 4, overwrite=True)
    assert on_cluster == pytest.approx(expected, rel=1e-9)
    local_fit = brainzarr.read_group(local, "representations/pca/k4")
    np.testing.assert_allclose(again["rmse"].values, local_fit["rmse"].values, rtol=1e-6)


def _reused_blocks():
    from brainzarr.streaming import reader

    return len(reader._BUFFERS._buffers)


def test_the_workers_let_their_reused_blocks_go_when_a_job_ends(cluster, local):
    """A worker reuses its output blocks from task to task (each task one read); they used to
    stay with it after the job (~490 MiB a worker after a 4 mm all-gene PCA fit)."""
    with distributed.Client(cluster) as client:
        client.run(brainzarr.streaming.release_buffers)
        X = brainzarr.streaming.expression_rows(local)
        client.compute(X.sum(axis=0)).result()  # reads by hand: the workers keep their blocks ...
        assert sum(client.run(_reused_blocks).values()) > 0
        brainzarr.fit_store(local, "pca", 3, write_reconstruction=False, progress=False)
        assert client.run(_reused_blocks) == dict.fromkeys(client.run(_reused_blocks), 0)  # ... a job's go


def test_a_many_volume_export_reads_on_the_cluster(cluster, local, tmp_path):
    """Four volumes one at a time (the scratch copy): read by the client's workers, the file the
    local threads write."""
    from brainzarr.commands.export import select_variable
    from brainzarr.nifti import write_nifti

    emb = select_variable(local, "representations/pca/k4/embedding")
    write_nifti(emb, tmp_path / "local.nii", max_memory=1)
    with distributed.Client(cluster) as client, distributed.get_task_stream(client) as tasks:
        write_nifti(emb, tmp_path / "cluster.nii", max_memory=1)
    assert len(tasks.data) > 0  # the reads ran on the workers
    assert (tmp_path / "cluster.nii").read_bytes() == (tmp_path / "local.nii").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster.nii", "local.nii", "local.zarr"]


@pytest.mark.parametrize("strategy", ["mean", "variance", "maximum"])
def test_parcellate_maps_its_blocks_on_the_workers_and_gives_the_local_table(cluster, local, tmp_path, strategy):
    """Each row block's task carries its own columns of the region weights, its partial table
    is made on a worker, and the parts merge in a tree (sums added, extremes compared)."""
    import nibabel as nib

    grid = brainzarr.store_grid(local)
    atlas = np.zeros(grid.shape, np.int16)
    atlas[tuple(grid.ijk.T)] = 1 + np.digitize(grid.xyz[:, 1], [-40, 0, 30]) + 10 * (grid.xyz[:, 0] > 0)
    atlas = nib.Nifti1Image(atlas, grid.affine)
    X = brainzarr.open_store(local)["expression"]
    assert len(X.data.chunks[0]) > 1
    expected = brainzarr.parcellate(X, atlas, strategy=strategy)
    with distributed.Client(cluster) as client, distributed.get_task_stream(client) as tasks:
        on_cluster = brainzarr.parcellate(X, atlas, strategy=strategy)
    assert any("of_block" in str(t["key"]) for t in tasks.data)  # the blocks ran on the workers
    np.testing.assert_allclose(on_cluster.values, expected.values, rtol=1e-6, atol=1e-12)
    np.testing.assert_array_equal(on_cluster["n_voxels"].values, expected["n_voxels"].values)


def test_cli_parcellate_on_a_cluster(cluster, local, tmp_path):
    import nibabel as nib
    import pandas as pd

    grid = brainzarr.store_grid(local)
    atlas = np.zeros(grid.shape, np.int16)
    atlas[tuple(grid.ijk.T)] = 1 + (grid.xyz[:, 2] > 10)
    nib.save(nib.Nifti1Image(atlas, grid.affine), tmp_path / "halves.nii.gz")
    argv = ["parcellate", str(local), "expression", "--atlas", str(tmp_path / "halves.nii.gz")]
    assert main([*argv, "-o", str(tmp_path / "local.csv"), "--strategy", "minimum"]) == 0
    at = ["--scheduler", cluster.scheduler_address]
    assert main([*argv, "-o", str(tmp_path / "cluster.csv"), "--strategy", "minimum", *at]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cluster.csv"), pd.read_csv(tmp_path / "local.csv"))


def test_the_cluster_and_options_guides_python_runs_on_a_cluster(cluster, tmp_path, monkeypatch):
    """The Python of docs/guide/cluster.md (its scheduler address and ``Client(n_workers=4)``
    pointed at this module's cluster) and of docs/guide/options.md, as written, on stores of the
    names they use: the fits they make are in the stores."""
    import re

    from test_quality import _python_blocks

    monkeypatch.chdir(tmp_path)
    brainzarr.build_store("store/s1.zarr", genes=130, random_state=0)  # PCA k = 128 needs 128 genes
    brainzarr.build_store("store/s4.zarr", genes=20, random_state=0)
    opening, *_ = _python_blocks("docs/guide/cluster.md")
    address = cluster.scheduler_address
    code = opening.replace('"tcp://scheduler:8786"', repr(address))
    code = re.sub(r"Client\(n_workers=\d+\)", f"Client({address!r})", code)
    assert code != opening and "n_workers" not in code
    (options,) = _python_blocks("docs/guide/options.md")
    saved = brainzarr.get_options()
    names = {}
    try:
        exec(compile(code, "docs/guide/cluster.md", "exec"), names)
        names["client"] = names["brainzarr"].get_options()["client"]  # the guide's own client
        exec(compile(options, "docs/guide/options.md", "exec"), names)
    finally:
        client = brainzarr.get_options()["client"]
        brainzarr.set_options(**saved)
        if client is not None:
            client.close()
    assert brainzarr.list_groups("store/s1.zarr") == ["representations/random/pca/k128"]
    assert brainzarr.list_groups("store/s4.zarr") == ["representations/random/pca/k16"]
    # the workers run in a folder of their own: a path relative to this one is sent as the folder it names
    with distributed.Client(cluster) as client:
        assert set(client.run(lambda: __import__("os").getcwd()).values()) != {str(tmp_path)}
        brainzarr.build_store("store/remote.zarr", genes=20, random_state=0)
    np.testing.assert_array_equal(
        brainzarr.open_store("store/remote.zarr")["expression"].values,
        brainzarr.open_store("store/s4.zarr")["expression"].values,
    )
