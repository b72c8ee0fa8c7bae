"""Nothing lost, nothing silent (issue #15): overwrite safety, results kept on rebuild, damaged
chunks named, one writer at a time, checks before computing, leftovers of dead writers."""

import json
import os
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
import zarr

import brainzarr
from brainzarr.cli import main
from brainzarr.exceptions import ChunkError, StoreExistsError, StoreLockedError
from brainzarr.integrity import check_store
from brainzarr.store import store_lock


def _build(path, **kw):
    return brainzarr.build_store(path, resolution=8, genes=kw.pop("genes", 12), random_state=1, **kw)


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------------------- 1. overwrite
def test_overwrite_never_removes_a_folder_brainzarr_did_not_write(tmp_path, capsys):
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "thesis.txt").write_text("four years")
    code, _, err = _run(["build", "--genes", "4", "--overwrite", "--out", str(folder)], capsys)
    assert code == 1 and "not a brainzarr store" in err and len(err.strip().splitlines()) == 1
    assert (folder / "thesis.txt").read_text() == "four years"


def test_overwrite_never_removes_the_working_directory_or_a_parent(tmp_path, monkeypatch, capsys):
    store = _build(tmp_path / "s.zarr")
    (tmp_path / "notes.txt").write_text("keep")
    monkeypatch.chdir(store)
    code, _, err = _run(["build", "--genes", "5", "--overwrite", "--out", "."], capsys)
    assert code == 1 and "current directory" in err
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreExistsError):
        _build(tmp_path, overwrite=True, genes=5)  # a parent of nothing, but not a store either
    assert (tmp_path / "notes.txt").exists() and (store / "zarr.json").exists()


def test_overwrite_refuses_a_store_holding_foreign_files(tmp_path):
    store = _build(tmp_path / "s.zarr")
    (store / "my-analysis.csv").write_text("1,2,3")
    with pytest.raises(StoreExistsError, match="did not write.*my-analysis.csv"):
        _build(store, genes=5, overwrite=True)
    assert (store / "my-analysis.csv").exists()


def test_overwrite_replaces_an_unfinished_store_brainzarr_started(tmp_path):
    store = _build(tmp_path / "s.zarr")
    root = zarr.open_group(str(store), mode="r+")
    root.attrs["build_complete"] = False  # an interrupted build, recognisably brainzarr's
    _build(store, genes=5, overwrite=True)
    assert brainzarr.open_store(store).sizes["gene"] == 5


# ------------------------------------------------------------------------- 2. results kept
def test_rebuild_with_results_needs_discard_results_and_same_settings_keep_them(tmp_path, capsys):
    store = _build(tmp_path / "s.zarr")
    brainzarr.fit_store(store, "pca", 2)
    brainzarr.fit_store(store, "pca", 3)
    with pytest.raises(StoreExistsError, match=r"removes the 2 result\(s\) it holds.*pca/k2") as info:
        _build(store, genes=5, overwrite=True)
    assert "discard_results=True" in str(info.value)
    assert brainzarr.list_groups(store) == ["representations/random/pca/k2", "representations/random/pca/k3"]
    _build(store, overwrite=True)  # the same settings: nothing rebuilt, results kept
    assert brainzarr.list_groups(store) == ["representations/random/pca/k2", "representations/random/pca/k3"]
    code, _, err = _run(["build", "--genes", "5", "--seed", "1", "--overwrite", "--out", str(store)], capsys)
    assert code == 1 and "--discard-results" in err
    _build(store, genes=5, overwrite=True, discard_results=True)
    assert brainzarr.list_groups(store) == [] and brainzarr.open_store(store).sizes["gene"] == 5


def test_a_group_of_ones_own_is_a_result_a_rebuild_keeps_and_info_lists(tmp_path, capsys):
    """A group written with write_group under a name of one's own (not representations/) is a
    result like a fit: a rebuild with other settings does not remove it unasked, ``info`` lists
    it, and a misspelt name of it is answered with it."""
    import xarray as xr

    store = _build(tmp_path / "s.zarr")
    n_voxels = brainzarr.open_store(store).sizes["voxel"]
    gradient = xr.Dataset({"score": ("voxel", np.linspace(0, 1, n_voxels, dtype="float32"))})
    brainzarr.write_group(store, "analyses/gradient", gradient)
    assert brainzarr.list_groups(store) == []  # the fitted representations only, as before
    assert brainzarr.list_groups(store, prefix=None) == ["analyses/gradient"]
    assert main(["info", str(store)]) == 0
    assert "results     analyses/gradient" in capsys.readouterr().out
    with pytest.raises(brainzarr.ResultNotFoundError, match="did you mean analyses/gradient"):
        brainzarr.read_group(store, "analyses/gradent")
    with pytest.raises(StoreExistsError, match=r"removes the 1 result\(s\) it holds \(analyses/gradient\)"):
        _build(store, genes=5, overwrite=True)
    np.testing.assert_array_equal(brainzarr.read_group(store, "analyses/gradient")["score"], gradient["score"])
    _build(store, genes=5, overwrite=True, discard_results=True)
    assert brainzarr.list_groups(store, prefix=None) == []


# ------------------------------------------------------------------ 4. damaged chunks named
@pytest.fixture(params=["shards", "chunks"])
def damaged(tmp_path, request):
    """A store in the default layout (a shard per row block) or one file per chunk, and the file
    holding gene 17 of rows 1024-2047 and the one holding gene 0 of rows 3072-4095."""
    from brainzarr.layout import Layout

    layout = Layout() if request.param == "shards" else Layout(shard_genes=None)
    store = _build(tmp_path / "s.zarr", genes=20, chunks=(1024, 8), layout=layout)
    expression = zarr.open_array(str(store / "expression"))
    assert "crc32c" in json.dumps(expression.metadata.to_dict()["codecs"])  # new stores carry checksums
    column = 0 if request.param == "shards" else 2
    lost = store / "expression" / expression.metadata.encode_chunk_key((1, column))
    cut = store / "expression" / expression.metadata.encode_chunk_key((3, 0))
    return store, lost, cut, layout


def test_a_missing_chunk_fails_every_read_naming_it(damaged, tmp_path, capsys):
    store, lost, _, _ = damaged
    lost.unlink()
    ds = brainzarr.open_store(store)
    where = rf"(chunk|shard) \(1, {lost.name}\) of expression"
    with pytest.raises(ChunkError, match=where + " is missing"):
        _ = ds["expression"].isel(gene=17).values  # the gene whose file is gone
    np.testing.assert_array_less(-1, ds["expression"].isel(voxel=slice(0, 1024)).values)  # other files read
    code, _, err = _run(["export", str(store), "expression", "--gene", str(ds["gene"].values[17]),
                         "-o", str(tmp_path / "g.nii.gz")], capsys)  # fmt: skip
    assert code == 1 and "of expression is missing" in err and not (tmp_path / "g.nii.gz").exists()
    with pytest.raises(ChunkError, match=where):
        brainzarr.fit_store(store, "pca", 2)  # was "SVD did not converge"


def test_a_truncated_chunk_fails_naming_it(damaged):
    store, _, cut, _ = damaged
    cut.write_bytes(cut.read_bytes()[:50])
    with pytest.raises(ChunkError, match=r"(chunk|shard) \(3, 0\) of expression"):
        _ = brainzarr.open_store(store)["expression"].isel(gene=0).values
    from brainzarr.streaming import expression_rows

    with pytest.raises(ChunkError, match=r"\(3, 0\) of expression"):
        expression_rows(store).compute()


def test_check_finds_the_damage_and_a_repaired_build_restores_it(damaged, capsys):
    store, lost, cut, layout = damaged
    before = zarr.open_array(str(store / "expression"))[:]
    lost.unlink()
    cut.write_bytes(cut.read_bytes()[:50])
    code, out, _ = _run(["check", str(store)], capsys)
    assert code == 2
    assert "DAMAGED expression" in out and f"(1, {lost.name})" in out and "(3, 0)" in out
    assert "brainzarr build" in out and "--genes 20" in out  # the command that rebuilds it
    report = check_store(store, repair=True)
    assert "marked row block(s) [1, 3]" in report.describe()
    _build(store, genes=20, chunks=(1024, 8), layout=layout)  # the same build resumes the marked blocks
    np.testing.assert_array_equal(zarr.open_array(str(store / "expression"))[:], before)
    assert check_store(store).ok


def test_check_finds_damage_in_a_group_of_ones_own(tmp_path, capsys):
    """``brainzarr check`` read the fits' arrays only: a damaged array of a group written with
    write_group (values in memory, which it wrote without checksums) went unnoticed."""
    import xarray as xr

    store = _build(tmp_path / "s.zarr")
    n = brainzarr.open_store(store).sizes["voxel"]
    values = np.random.default_rng(0).random(n, dtype=np.float32)
    brainzarr.write_group(store, "analyses/gradient", xr.Dataset({"score": ("voxel", values)}))
    assert check_store(store).ok
    score = store / "analyses" / "gradient" / "score"
    assert "crc32c" in json.dumps(json.loads((score / "zarr.json").read_text())["codecs"])
    (chunk,) = [p for p in score.rglob("*") if p.is_file() and p.name != "zarr.json"]
    damaged = bytearray(chunk.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # one flipped byte
    chunk.write_bytes(bytes(damaged))
    code, out, _ = _run(["check", str(store)], capsys)
    assert code == 2 and "DAMAGED analyses/gradient/score" in out
    brainzarr.write_group(store, "analyses/gradient", xr.Dataset({"score": ("voxel", values)}), overwrite=True)

    # a damaged fit of the other split: the command given refits it on that split, and mends it
    brainzarr.fit_store(store, "pca", 2, split="blocked")
    embedding = store / "representations" / "blocked" / "pca" / "k2" / "embedding"
    chunk = next(p for p in embedding.rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(chunk.read_bytes()[:20])
    code, out, _ = _run(["check", str(store)], capsys)
    (command,) = [line.strip() for line in out.splitlines() if line.strip().startswith("brainzarr fit")]
    assert code == 2 and command.endswith("--methods pca --dims 2 --overwrite --split blocked")
    assert _run(shlex.split(command)[1:], capsys)[0] == 0
    assert check_store(store).ok and brainzarr.list_groups(store) == ["representations/blocked/pca/k2"]


def test_an_array_read_where_the_store_is_not_fails_instead_of_reading_fill_values(tmp_path):
    """A lazy array read after its store moved (or by a dask worker that does not see the store's
    folder) read as its fill value, zeros, without a word: it fails, saying why."""
    import xarray as xr

    store = _build(tmp_path / "s.zarr")
    n = brainzarr.open_store(store).sizes["voxel"]
    brainzarr.write_group(store, "analyses/ints", xr.Dataset({"a": ("voxel", np.arange(1, n + 1, dtype="int32"))}))
    lazy = brainzarr.read_group(store, "analyses/ints")["a"]
    np.testing.assert_array_equal(lazy.values[:3], [1, 2, 3])
    lazy = brainzarr.read_group(store, "analyses/ints")["a"]
    store.rename(tmp_path / "moved.zarr")
    with pytest.raises(ChunkError, match=r"analyses/ints/a is not in .*s\.zarr as seen here .*does not see the folder"):
        _ = lazy.values


def test_check_tells_a_stopped_build_from_damage(damaged, capsys):
    # the row blocks a stopped build has not written yet were all reported DAMAGED (missing)
    store, lost, _, layout = damaged
    before = zarr.open_array(str(store / "expression"))[:]
    root = zarr.open_group(str(store), mode="r+")
    root["build_chunk_done"][3] = 0  # as a build stopped before its last row block leaves it
    root.attrs.update({"build_complete": False})
    shutil.rmtree(store / "expression" / "c" / "3")
    code, out, _ = _run(["check", str(store)], capsys)
    assert code == 2 and "DAMAGED" not in out
    assert "UNFINISHED build: 1 row block(s) of expression not written yet" in out
    assert "to finish the build, run:\n  brainzarr build " in out
    lost.unlink()  # and a block the build had finished loses a file: that one is damage
    code, out, _ = _run(["check", str(store)], capsys)
    assert code == 2 and "UNFINISHED build: 1 row block(s)" in out
    assert "DAMAGED expression: 1 chunk(s) or shard(s)" in out and f"(1, {lost.name})" in out
    report = check_store(store, repair=True)
    assert report.unfinished == [3] and "marked row block(s) [1] of expression as not built" in report.describe()
    _build(store, genes=20, chunks=(1024, 8), layout=layout)
    np.testing.assert_array_equal(zarr.open_array(str(store / "expression"))[:], before)
    assert check_store(store).ok


# ----------------------------------------------------------------------- 5. one writer
def test_a_second_writer_gets_one_line(tmp_path, capsys):
    store = _build(tmp_path / "s.zarr")
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from brainzarr.store import store_lock\nimport time\n"
         f"with store_lock({str(store)!r}, what='built'):\n    print('held', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreLockedError, match=f"being built by pid {holder.pid}"):
            _build(store, genes=5, overwrite=True)
        code, _, err = _run(["fit", str(store), "--dims", "2"], capsys)
        assert code == 1 and f"pid {holder.pid}" in err and len(err.strip().splitlines()) == 1
    finally:
        holder.kill()
        holder.wait()
    brainzarr.fit_store(store, "pca", 2)  # the dead holder's lock is gone with it: never stale
    with store_lock(store, exclusive=False), store_lock(store, exclusive=False):
        pass  # fits share it


def test_the_lock_file_goes_with_the_last_holder(tmp_path):
    with store_lock(tmp_path / "x.zarr"):
        assert (tmp_path / ".x.zarr.lock").exists()
        assert json.loads((tmp_path / ".x.zarr.lock").read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".x.zarr.lock").exists()


# ---------------------------------------------------------------- 6. checks before compute
def test_fit_fails_before_computing(tmp_path, capsys, monkeypatch):
    store = _build(tmp_path / "s.zarr", genes=6)
    fitted = []
    from brainzarr.models import store_fitting

    real = store_fitting._fit_store
    monkeypatch.setattr(store_fitting, "_fit_store", lambda *a, **k: fitted.append(a) or real(*a, **k))
    code, _, err = _run(["fit", str(store), "--methods", "pca", "--dims", "2,4,8"], capsys)
    assert code == 1 and "8 components needs at least as many genes" in err and fitted == []
    assert "the store has 6: give --dims 2,4 (those of 2,4,8 that fit)" in err  # what to type instead
    assert brainzarr.list_groups(store) == []  # k2 and k4 were not written first
    import importlib.util

    if importlib.util.find_spec("torch") and not __import__("torch").cuda.is_available():  # said before PCA's fit
        code, _, err = _run(["fit", str(store), "--methods", "pca,ae", "--dims", "2", "--device", "cuda:0"], capsys)
        assert code == 1 and "CUDA is not available" in err and fitted == []
    code, _, err = _run(["fit", str(store), "--methods", "ae", "--dims", "2", "--device", "gpu"], capsys)
    assert code == 2 and "expected auto, cpu, cuda or cuda:N, got 'gpu'; did you mean cuda?" in err
    code, _, err = _run(["fit", str(store), "--methods", "umap,nmf"], capsys)  # the study's dims, 2 to 128
    assert code == 1 and "nmf with 8 components" in err and "give --dims 2,4 (those of 2,4,8,16,32,64,128" in err
    brainzarr.fit_store(store, "pca", 2)
    code, _, err = _run(["fit", str(store), "--methods", "pca,nmf", "--dims", "2,3"], capsys)
    assert code == 1 and "pca/k2 exist" in err and len(fitted) == 1
    if os.geteuid() != 0:  # root writes anywhere
        os.chmod(store, 0o555)
        try:
            code, _, err = _run(["fit", str(store), "--methods", "nmf", "--dims", "2"], capsys)
            assert code == 1 and "read-only" in err and len(fitted) == 1
        finally:
            os.chmod(store, 0o755)


def test_read_only_store_is_refused_before_fitting(tmp_path, monkeypatch):
    store = _build(tmp_path / "s.zarr", genes=6)
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as for an unprivileged user
    with pytest.raises(PermissionError, match="read-only"):
        brainzarr.fit_store(store, "pca", 2)
    assert brainzarr.list_groups(store) == []


# ------------------------------------------------------------------ 7. leftovers of writers
def test_leftovers_of_dead_writers_are_reported_and_removed(tmp_path, capsys):
    from brainzarr._atomic import HOST

    store = _build(tmp_path / "s.zarr")
    brainzarr.fit_store(store, "pca", 2)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    leftover = store / "representations" / "random" / "pca" / f".k3.partial-{HOST}-{pid}-deadbeef"
    leftover.mkdir()
    (leftover / "zarr.json").write_text("{}")
    live = store / "representations" / "random" / "pca" / f".k4.partial-{HOST}-{os.getpid()}-cafecafe"
    live.mkdir()  # a writer that is still running (this process): left alone
    code, out, _ = _run(["info", str(store)], capsys)
    assert code == 0 and "1 scratch folder(s) of interrupted writers" in out
    code, out, _ = _run(["check", str(store)], capsys)
    assert code == 2 and "LEFTOVER" in out
    brainzarr.fit_store(store, "pca", 3)  # the next writer there removes the dead one's folder
    assert not leftover.exists() and live.exists()
    live.rmdir()
    assert check_store(store).ok


@pytest.mark.parametrize("name", ["prediction.csv", "figure.png", "index.html", "map.nii.gz"])
def test_output_files_appear_whole_or_not_at_all(tmp_path, name):
    """Every table, figure and page brainzarr writes goes through write_file: the writer sees a
    scratch name with the same format suffix, and a failure mid-write leaves the earlier file."""
    from brainzarr._atomic import write_file, write_text

    path = write_text(tmp_path / name, "earlier\n")
    seen = []

    def half_then_fail(tmp):
        seen.append(tmp.name)
        tmp.write_text("half of the new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_file(path, half_then_fail)
    assert path.read_text() == "earlier\n" and sorted(tmp_path.iterdir()) == [path]
    assert seen[0].endswith(name.split(".", 1)[1]) and seen[0] != name  # same format, another name
    write_file(path, lambda tmp: tmp.write_text("new\n"))
    assert path.read_text() == "new\n" and sorted(tmp_path.iterdir()) == [path]


def test_a_figure_whose_drawing_fails_leaves_the_earlier_one(tmp_path, monkeypatch):
    import matplotlib.figure

    from brainzarr import mni152_grid
    from brainzarr.nifti import from_nifti

    grid = mni152_grid(8)
    import nibabel as nib

    da = from_nifti(nib.Nifti1Image(np.random.default_rng(0).random(grid.shape, dtype=np.float32), grid.affine), grid)
    path = da.brain.plot(tmp_path / "map.png")
    before = path.read_bytes()

    def broken(self, fname, *args, **kwargs):
        open(fname, "wb").write(before[:100])  # a truncated PNG, then the error
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        da.brain.plot(tmp_path / "map.png")
    assert path.read_bytes() == before and sorted(tmp_path.iterdir()) == [path]
