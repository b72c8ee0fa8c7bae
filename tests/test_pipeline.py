"""fit_store / load_model / rmse_table and ``brainzarr fit``: results written back into the store."""

import json
import warnings

import numpy as np
import pytest
import xarray as xr
from conftest import CHUNKS
from hypothesis import given, settings
from hypothesis import strategies as st

from brainzarr.cli import main
from brainzarr.commands.fit import OWN_OPTIONS
from brainzarr.exceptions import InputError
from brainzarr.models import JOB_PARAMS, METHODS
from brainzarr.models.pca import PCA
from brainzarr.models.store_fitting import (
    MethodUnavailableError,
    as_n_components,
    fit_store,
    load_model,
    make_model,
    model_class,
    rmse_table,
)
from brainzarr.store import ResultExistsError, list_groups, open_store


@pytest.fixture
def store(chunked_store, tmp_path):
    """A private copy per test: these tests write results into it (any order, no shared state)."""
    import shutil

    path = tmp_path / "c8.zarr"
    shutil.copytree(chunked_store, path)
    return path


@pytest.fixture
def pca8(store):
    return fit_store(store, "pca", 8)


def _np_rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a, dtype=np.float64) - b) ** 2)))


def test_result_opens_with_plain_xarray(store, pca8):
    result = xr.open_zarr(store, group="representations/random/pca/k8", consolidated=False)
    ds = open_store(store)
    assert result["embedding"].dims == ("voxel", "component")
    assert result["embedding"].shape == (ds.sizes["voxel"], 8)
    assert result["reconstruction"].dims == ("voxel", "gene")
    assert result["reconstruction"].encoding["chunks"] == CHUNKS  # the store's chunking
    assert result["rmse"].dims == ("split",) and list(result["split"].values) == ["train", "test"]
    assert {"param_components", "param_mean", "param_explained_variance"} <= set(result.data_vars)
    np.testing.assert_array_equal(result["gene"].values, ds["gene"].values)
    np.testing.assert_array_equal(result["x"].values, ds["x"].values)
    # the grid travels with the voxels (the affine row by row: netCDF attributes are 1-D)
    np.testing.assert_array_equal(np.reshape(result["i"].attrs["affine"], (4, 4)), ds.attrs["affine"])
    attrs = result.attrs
    assert attrs["method"] == "pca" and attrs["dim"] == 8 and attrs["seed"] == 0 and attrs["split"] == "random"
    assert attrs["params"]["n_components"] == 8 and attrs["fit_seconds"] > 0 and attrs["transform_seconds"] > 0
    assert attrs["n_train"] == int((ds["split"] == "train").sum())
    json.dumps(attrs)


def test_rmse_and_reconstruction_agree_with_a_recomputation(store, pca8):
    ds = open_store(store)
    X = ds["expression"].values
    split = ds["split"].values
    R = pca8["reconstruction"].values
    for name, value in zip(pca8["split"].values, pca8["rmse"].values):
        assert value == pytest.approx(_np_rmse(R[split == name], X[split == name]), rel=1e-5)
    np.testing.assert_allclose(pca8["voxel_rmse"].values, np.sqrt(np.mean((R - X) ** 2, axis=1)), rtol=1e-4)
    # the fit saw the training voxels only: an in-memory PCA on them gives the same reconstruction
    ref = PCA(8).fit(X[split == "train"])
    np.testing.assert_allclose(R, ref.inverse_transform(ref.transform(X)), atol=2e-4)


def test_load_model_round_trip(store, pca8):
    model = load_model(store, "pca", 8)
    X = open_store(store)["expression"].values
    np.testing.assert_allclose(model.transform(X), pca8["embedding"].values, atol=1e-5)
    # the likelihood comes back too: labelled by voxel on the store's DataArray
    left_out = min(model.n_samples_, X.shape[1]) - 8
    assert model.noise_variance_ == pytest.approx((model.total_variance_ - model.explained_variance_.sum()) / left_out)
    scores = model.score_samples(open_store(store)["expression"])
    assert scores.dims == ("voxel",) and "x" in scores.coords
    np.testing.assert_allclose(scores.values, model.score_samples(X), rtol=1e-9)
    # the stored reconstruction is packed (uint16 over [-0.5, 1.5]: step 2/65535, error <= 1/65535)
    np.testing.assert_allclose(
        model.inverse_transform(pca8["embedding"].values), pca8["reconstruction"].values, atol=1 / 65535 + 1e-6
    )


def test_a_model_takes_a_dataarrays_genes_by_label(store, pca8):
    """The same genes in another order (a store built from another gene list, a ``.sel`` by a
    sorted list) embed as the fit's genes, not by position; extra genes are left out and a
    missing one is named. A NumPy array is taken by position, as scikit-learn does."""
    expression = open_store(store)["expression"]
    model = load_model(store, "pca", 8)
    shuffled = expression.isel(gene=np.random.default_rng(0).permutation(expression.sizes["gene"]))
    np.testing.assert_allclose(model.transform(shuffled).values, pca8["embedding"].values, atol=1e-5)
    by_position = model.transform(shuffled.values)  # no labels: the columns are taken as they come
    assert np.abs(by_position - pca8["embedding"].values).max() > 0.1
    fitted = PCA(n_components=3, random_state=0).fit(expression.isel(gene=slice(0, 30)))
    on_all = fitted.transform(expression)  # the 30 genes of the fit among all the store's
    np.testing.assert_allclose(on_all.values, fitted.transform(expression.isel(gene=slice(0, 30)).values), atol=1e-5)
    lacking = expression.isel(gene=slice(2, None))
    gone = ", ".join(expression["gene"].values[:2])
    with pytest.raises(
        InputError, match=f"X lacks 2 of the {expression.sizes['gene']} genes PCA was fitted on: {gone}$"
    ):
        model.transform(lacking)
    with pytest.raises(InputError, match="X repeats genes"):
        model.transform(expression.isel(gene=[0, *range(expression.sizes["gene"])]))
    with pytest.raises(InputError, match=r"X has dims \('gene', 'voxel'\); .*: give X.transpose\('voxel', 'gene'\)$"):
        model.transform(expression.T)
    unlabelled = xr.DataArray(shuffled.values, dims=("voxel", "gene"))  # genes without a coordinate
    np.testing.assert_allclose(model.transform(unlabelled).values, by_position, atol=1e-6)


@pytest.mark.parametrize("method, params", [("nmf", {"max_epochs": 3}), ("kpca", {"n_landmarks": 300})])
def test_other_linear_methods_write_back_and_reload(store, method, params):
    result = fit_store(store, method, 4, **params)
    X = open_store(store)["expression"].values
    model = load_model(store, method, 4)
    np.testing.assert_allclose(model.transform(X[:200]), result["embedding"].values[:200], atol=1e-5)
    train, test = result["rmse"].values
    assert 0 < train < 0.3 and 0 < test < 0.3
    if method == "nmf":
        assert float(result["reconstruction"].min()) >= 0


def test_reconstruction_rmse_and_writes_share_one_pass(store, monkeypatch):
    calls = {"transform": 0, "inverse": 0}
    transform, inverse = PCA._transform_block, PCA._inverse_block

    def counting(name, fn):
        def wrapped(self, A):
            calls[name] += 1
            return fn(self, A)

        return wrapped

    monkeypatch.setattr(PCA, "_transform_block", counting("transform", transform))
    monkeypatch.setattr(PCA, "_inverse_block", counting("inverse", inverse))
    fit_store(store, "pca", 7)
    n_blocks = len(open_store(store)["expression"].chunks[0])
    assert n_blocks > 4 and calls == {"transform": n_blocks, "inverse": n_blocks}


def test_refit_without_overwrite_raises_before_fitting(store, pca8, monkeypatch):
    monkeypatch.setattr(PCA, "_fit", lambda self, X: pytest.fail("fitted before checking"))
    with pytest.raises(ResultExistsError, match="overwrite"):
        fit_store(store, "pca", 8)


def test_interrupted_fit_keeps_the_previous_result(store, pca8, monkeypatch):
    before = xr.open_zarr(store, group="representations/random/pca/k8", consolidated=False)
    embedding = before["embedding"].values
    calls = {"n": 0}
    original = PCA._inverse_block

    def failing(self, Z):
        calls["n"] += 1
        if calls["n"] == 3:  # in the middle of the writing pass
            raise RuntimeError("interrupted")
        return original(self, Z)

    monkeypatch.setattr(PCA, "_inverse_block", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        fit_store(store, "pca", 8, overwrite=True, random_state=5)
    assert calls["n"] >= 3
    after = xr.open_zarr(store, group="representations/random/pca/k8", consolidated=False)
    np.testing.assert_array_equal(after["embedding"].values, embedding)
    assert after.attrs["seed"] == 0
    leftovers = [p.name for p in (store / "representations" / "random" / "pca").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert "representations/random/pca/k8" in list_groups(store)
    open_store(store)  # the store itself is fine


def test_overwrite_replaces(store, pca8):
    result = fit_store(store, "pca", 8, overwrite=True, random_state=3, n_power_iter=2)
    assert result.attrs["seed"] == 3 and result.attrs["params"]["n_power_iter"] == 2
    assert result.attrs["params"]["random_state"] == 3


def test_blocked_split_is_used_and_recorded(store):
    result = fit_store(store, "pca", 2, split="blocked", write_reconstruction=False)
    ds = open_store(store)
    blocked = ds["split_blocked"].values
    assert result.attrs["split"] == "blocked" and result.attrs["split_coordinate"] == "split_blocked"
    assert result.attrs["n_train"] == int((blocked == "train").sum())
    assert "reconstruction" not in result
    ref = PCA(2).fit(ds["expression"].values[blocked == "train"])
    X = ds["expression"].values
    test_rmse = _np_rmse(ref.inverse_transform(ref.transform(X[blocked == "test"])), X[blocked == "test"])
    assert float(result["rmse"].sel(split="test")) == pytest.approx(test_rmse, rel=1e-4)
    # its reconstruction asked for: how to get it, and the Python it names gives it
    from brainzarr.commands.export import select_variable
    from brainzarr.exceptions import ResultNotFoundError

    with pytest.raises(ResultNotFoundError, match="fitted without its reconstruction") as missing:
        select_variable(store, "representations/blocked/pca/k2/reconstruction", ["G1"])
    assert "--methods pca --dims 2 --overwrite --split blocked" in str(missing.value)
    assert "brainzarr.load_model(store, 'pca', 2, split='blocked').inverse_transform(" in str(missing.value)
    model = __import__("brainzarr").load_model(store, "pca", 2, split="blocked")
    rebuilt = model.inverse_transform(result["embedding"].values[:3])
    np.testing.assert_allclose(rebuilt, ref.inverse_transform(ref.transform(X[:3])), atol=1e-4)


def test_rmse_table(store, pca8):
    table = rmse_table(store)
    assert list(table.columns[:6]) == ["method", "dim", "split", "reading", "train_rmse", "test_rmse"]
    rows = table[(table["method"] == "pca") & (table["dim"] == 8)]
    assert len(rows) == 1  # PCA has one reading: its own inverse transform
    row = rows.iloc[0]
    result = xr.open_zarr(store, group="representations/random/pca/k8", consolidated=False)
    assert row["test_rmse"] == pytest.approx(float(result["rmse"].sel(split="test")))
    assert list(rmse_table(store, methods=["pca"], dims=[8])["dim"]) == [8]


def test_a_selection_of_methods_is_names_not_letters(store, pca8):
    """``methods="kpca"`` was taken for a collection of letters: ``"pca" in "kpca"`` kept PCA's
    rows; ``"PCA"`` (scikit-learn's spelling) gave an empty table; ``dims=8`` a TypeError."""
    from brainzarr.evaluate.reconstruction import reconstruction_table

    fit_store(store, "nmf", 2, max_epochs=2)
    assert rmse_table(store, methods="nmf")["method"].tolist() == ["nmf"]
    assert rmse_table(store, methods="nmf,pca")["method"].tolist() == ["pca", "nmf"]
    assert rmse_table(store, dims=8)[["method", "dim"]].values.tolist() == [["pca", 8]]
    assert rmse_table(store, methods=["kpca"]).empty  # a method not fitted: no row
    with pytest.raises(InputError, match=r"unknown method\(s\) PCA \(method names are lower case: pca\)"):
        rmse_table(store, methods=["PCA"])
    kpca = fit_store(store, "kpca", 2)
    assert reconstruction_table(store, methods="kpca")["method"].values.tolist() == ["kpca"]
    assert float(reconstruction_table(store, methods="kpca").sel(set="test").squeeze()) == pytest.approx(
        float(kpca["rmse"].sel(split="test")), rel=1e-6
    )


def test_on_a_dask_cluster_gives_the_local_result(store, pca8):
    distributed = pytest.importorskip("distributed")
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        result = fit_store(store, "pca", 3, client=client)
    local = PCA(3).fit(open_store(store)["expression"].values[open_store(store)["split"].values == "train"])
    np.testing.assert_allclose(result["param_components"].values, local.components_, atol=1e-4)


def test_parameter_errors_are_clear(store):
    with pytest.raises(ValueError, match="does not take bogus; its parameters: "):
        make_model("pca", 2, bogus=1)
    for method, misspelt, meant in (("umap", "n_neighbours", "n_neighbors"), ("tsne", "perplexty", "perplexity")):
        with pytest.raises(ValueError, match=f"{method} does not take {misspelt} \\(did you mean {meant}\\?\\)"):
            make_model(method, 2, **{misspelt: 5})
    # a value of another kind than the default's is refused before the fit, named
    for method, params, kind in [
        ("pca", {"n_power_iter": "x"}, "an integer"),
        ("pca", {"n_power_iter": True}, "an integer"),
        ("nmf", {"tol": "small"}, "a number"),
        ("ae", {"mixed_precision": 1}, "true or false"),
    ]:
        (name,) = params
        with pytest.raises(ValueError, match=f"{method}'s {name} takes {kind} \\(default "):
            make_model(method, 2, **params)
    assert make_model("pca", 2, cache_bytes=2e8, n_oversamples=np.int64(4)).get_params()["cache_bytes"] == 200_000_000
    assert make_model("nmf", 2, tol=1).tol == 1 and make_model("tsne", 2, learning_rate=200).learning_rate == 200
    assert make_model("pca", 2, cache_bytes=None).cache_bytes is None  # None: no cache
    code = main(["fit", str(store), "--methods", "pca", "--dims", "2", "--option", "pca.n_power_iter=x"])
    assert code == 1
    with pytest.raises(ValueError, match="unknown method"):
        fit_store(store, "svd", 2)
    with pytest.raises(TypeError, match=r"method is one name such as 'pca', got list \['pca', 'nmf'\]"):
        fit_store(store, ["pca", "nmf"], 2)
    with pytest.raises(ValueError, match="split"):
        fit_store(store, "pca", 5, split="diagonal")


class _Checkpointing(PCA):
    """A PCA that says it checkpoints, to see what fit_store hands such estimators."""

    method = "ckpt"

    def __init__(self, n_components=2, *, checkpoint_dir=None, fail=False, random_state=0):
        super().__init__(n_components, random_state=random_state)
        self.checkpoint_dir = checkpoint_dir
        self.fail = fail

    def _fit(self, X):
        from pathlib import Path

        Path(self.checkpoint_dir).mkdir(parents=True, exist_ok=True)
        (Path(self.checkpoint_dir) / "checkpoint.pt").write_text("epoch 1")
        if self.fail:
            raise KeyboardInterrupt
        super()._fit(X)


def test_checkpointing_estimators_get_a_folder_kept_until_the_result_is_written(store, monkeypatch):
    import sys
    import types

    module = types.ModuleType("brainzarr.models.ckpt_for_tests")
    module.Checkpointing = _Checkpointing
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(METHODS, "ckpt", ("ckpt_for_tests", "Checkpointing"))
    folder = store / ".checkpoints" / "random" / "ckpt" / "k2"
    with pytest.raises(KeyboardInterrupt):
        fit_store(store, "ckpt", 2, fail=True)
    assert (folder / "checkpoint.pt").exists()  # an interrupted fit leaves its checkpoint to resume from
    result = fit_store(store, "ckpt", 2)
    assert result.attrs["params"]["checkpoint_dir"] == str(folder)
    assert not folder.exists()
    assert not any("checkpoints" in g for g in list_groups(store))
    # nor the folders above it, which plain zarr and xarray warn about when they open the store
    assert not (store / ".checkpoints").exists()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        xr.open_zarr(store, consolidated=False)
    assert not [w for w in caught if ".checkpoints" in str(w.message)]


def test_a_fits_checkpoint_folders_go_only_when_empty(tmp_path):
    from brainzarr.models.store_fitting import _remove_checkpoints

    root = tmp_path / "s.zarr" / ".checkpoints"
    mine, other = root / "random" / "ae" / "k2", root / "random" / "ae" / "k3"
    for folder in (mine, other):
        folder.mkdir(parents=True)
        (folder / "checkpoint.pt").write_text("epoch 1")
    _remove_checkpoints(mine, root)
    assert not mine.exists() and (other / "checkpoint.pt").exists()  # another fit's, still resumable
    _remove_checkpoints(other, root)
    assert not root.exists() and (tmp_path / "s.zarr").is_dir()  # never above brainzarr's own folder


def test_unavailable_method_is_reported(monkeypatch):
    monkeypatch.setitem(METHODS, "later", ("not_written_yet", "Later"))
    with pytest.raises(MethodUnavailableError, match="not available"):
        model_class("later")


def test_cli_fit_prints_the_table_and_writes(store, capsys):
    assert (
        main(
            [
                "fit",
                str(store),
                "--methods",
                "pca,nmf",
                "--dims",
                "5,6",
                "--max-epochs",
                "2",
                "--option",
                "pca.n_power_iter=2",
                "--no-reconstruction",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "test_rmse" in out and "nmf" in out
    assert {"representations/random/pca/k6", "representations/random/nmf/k6"} <= set(list_groups(store))
    nmf = xr.open_zarr(store, group="representations/random/nmf/k6", consolidated=False)
    assert nmf.attrs["params"]["max_epochs"] == 2  # generic flag reached the method that takes it
    pca = xr.open_zarr(store, group="representations/random/pca/k6", consolidated=False)
    assert pca.attrs["params"]["n_power_iter"] == 2


def test_cli_fit_errors_are_one_line(store, pca8, capsys):
    assert main(["fit", str(store), "--methods", "pca", "--dims", "8"]) == 1  # exists
    err = capsys.readouterr().err
    assert "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert main(["fit", str(store), "--methods", "pca,svd", "--dims", "2"]) == 1
    assert "unknown method" in capsys.readouterr().err
    assert main(["fit", str(store), "--methods", "pca", "--dims", "2", "--option", "pca.bogus=1"]) == 1
    assert "bogus" in capsys.readouterr().err
    # the dims' and the seed's own parameters: a TypeError from inside before
    for option, flag in (("n_components=3", "--dims"), ("pca.random-state=3", "--seed")):
        assert main(["fit", str(store), "--methods", "pca", "--dims", "2", "--option", option]) == 1
        err = capsys.readouterr().err
        assert (
            err.startswith(f"brainzarr fit: error: --option {option.split('=')[0]}=...: ") and f"set by {flag}" in err
        )
    assert set(OWN_OPTIONS) == set(JOB_PARAMS)  # fit refuses what reproduce refuses
    assert main(["fit", str(store), "--methods", "pca", "--dims", "8,9", "--skip-existing", "--no-reconstruction"]) == 0
    assert "pca k8: exists, skipped" in capsys.readouterr().err


def test_a_result_not_in_the_store_names_those_it_holds(store, pca8):
    """ds.brain.read / .model of a fit not made said only 'no group representations/...'."""
    from brainzarr import ResultNotFoundError

    ds = open_store(store)
    fit_store(store, "pca", 2, write_reconstruction=False)
    for call, message in (
        (
            lambda: ds.brain.read("pca", 3),
            "holds no pca k3 fitted on the random split: fit it first "
            "(fit_store(store, 'pca', 3)); it holds representations/random: pca k2, k8",
        ),
        (
            lambda: ds.brain.model("pca", 8, split="blocked"),
            "holds no pca k8 fitted on the blocked split: fit it first (fit_store(store, 'pca', 8, split='blocked'))",
        ),
        (
            lambda: ds.brain.read("PCA", 8),
            "holds no PCA k8 fitted on the random split (method names are lower case: pca)",
        ),
    ):
        with pytest.raises(ResultNotFoundError) as info:
            call()
        assert message in str(info.value)
        assert isinstance(info.value, KeyError)  # `except KeyError` still catches it
    assert ds.brain.read("pca", 8)["embedding"].shape[1] == 8


@settings(max_examples=40, deadline=None)
@given(
    st.one_of(
        st.integers(1, 10_000),
        st.integers(1, 10_000).map(np.int64),
        st.integers(1, 10_000).map(float),
    )
)
def test_n_components_is_any_whole_number(value):
    assert as_n_components(value) == int(value)


@settings(max_examples=40, deadline=None)
@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not float(v).is_integer()),
        st.booleans(),
        st.text(max_size=6),
        st.none(),
    )
)
def test_n_components_that_is_not_a_whole_number_is_refused(value):
    """int() took 2.5 as 2 and True as 1: another result than the one named was fitted or read."""
    with pytest.raises(InputError, match="n_components must be a whole number, got "):
        as_n_components(value)


def test_a_fit_or_read_named_with_a_group_name_or_in_the_wrong_order_says_so(store):
    ds = open_store(store)
    for call, hint in (
        (lambda: fit_store(store, "pca", 2.5), "got 2.5$"),
        (lambda: ds.brain.fit("pca", "k8"), r"got 'k8' \(k8 in a group's name is n_components=8\)"),
        (lambda: ds.brain.read("pca", "k8"), r"got 'k8' \(k8 in a group's name is n_components=8\)"),
        (lambda: fit_store(store, 8, "pca"), r"got 'pca' \(the method comes before n_components\)"),
        (lambda: rmse_table(store, dims=[2, 2.5]), r"^dims must be a whole number, got 2.5$"),  # not n_components
        (lambda: fit_store(store, "pca", 2, split="Random"), r"got 'Random'; did you mean random\?$"),
        (lambda: fit_store(store, "pca", 2, split="spatial"), r"did you mean blocked \(the spatially blocked split\)"),
    ):
        with pytest.raises(ValueError, match=hint):
            call()
    assert list_groups(store, "representations") == []


def test_a_job_without_a_seed_is_refused_before_it_writes(store, tmp_path):
    from brainzarr import build_store
    from brainzarr.evaluate import reproduce_study, run_evaluation
    from brainzarr.inr import GeneINR
    from brainzarr.sources import load_source

    for call in (
        lambda: fit_store(store, "pca", 2, random_state=None),
        lambda: build_store(tmp_path / "s.zarr", genes=3, random_state=None),
        lambda: run_evaluation(store, None, tmp_path / "eval", random_state=None),
        lambda: reproduce_study(store, tmp_path / "repro", random_state=None),
        lambda: GeneINR(random_state=None).fit(load_source("synthetic", genes=3)),
    ):
        with pytest.raises(ValueError, match=r"random_state must be a whole number, got None \(a seed"):
            call()
    assert list_groups(store, "representations") == [] and list(tmp_path.iterdir()) == [store]
