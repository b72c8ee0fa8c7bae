"""The gene-conditioned INR: fitting, new genes, persistence, checkpoints, devices, rendering."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

import brainzarr
from brainzarr import open_store
from brainzarr._torch import resolve_device
from brainzarr.exceptions import InputError
from brainzarr.grid import mni152_grid
from brainzarr.inr import GeneINR
from brainzarr.inr.inputs import location_inputs, scale_coordinates
from brainzarr.inr.render import INRBlockSource, render_store, table_from_model
from brainzarr.preprocess import clamp_scale
from brainzarr.sources.synthetic import SyntheticModel, load_synthetic

SMALL = dict(width=64, depth=2, n_features=16, max_epochs=40, n_ensemble=1, device="cpu")


@pytest.fixture(scope="module")
def table():
    # two donors (833 samples), 120 genes: small enough to fit in seconds
    return load_synthetic(120, random_state=3, donors=["12876", "15496"])


@pytest.fixture(scope="module")
def fitted(table):
    return GeneINR(random_state=0, **SMALL).fit(table)


def _xyz(table):
    return np.column_stack([table[c].values for c in "xyz"])


def _truth(table, genes=None):
    return SyntheticModel(random_state=3).expression(_xyz(table), table["gene"].values if genes is None else genes)


def test_inputs_scale_the_template_box_into_unit_cube():
    corners = np.array([[-90, -126, -72], [90, 90, 108]], dtype=float)
    scaled = scale_coordinates(corners)
    assert np.all(np.abs(scaled) <= 1.0 + 1e-6) and np.isclose(np.abs(scaled).max(), 1.0)
    inputs = location_inputs(np.array([[0.0, 0.0, 0.0], [-30.0, 10.0, 60.0], [500.0, 0.0, 0.0]]))
    assert inputs.shape == (3, 5)
    assert inputs[2, 3:].sum() == 0  # outside the template: neither grey nor white matter
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        scale_coordinates(np.zeros((4, 2)))


def test_fit_denoises_towards_the_true_field(table, fitted):
    values = table["expression"].values
    truth = _truth(table)
    noise = np.sqrt(np.mean((values - truth) ** 2))
    err = np.sqrt(np.mean((fitted.predict(_xyz(table)) - truth) ** 2))
    assert err < 0.6 * noise
    assert fitted.solver_ == "projected"
    assert fitted.history_[-1] < fitted.history_[0]
    assert fitted.embeddings_.shape == (16, table.sizes["gene"])


def test_predict_selects_genes_and_donors(table, fitted):
    xyz = _xyz(table)[:50]
    genes = list(table["gene"].values[[5, 2]])
    full = fitted.predict(xyz)
    np.testing.assert_allclose(fitted.predict(xyz, genes), full[:, [5, 2]], rtol=1e-5, atol=1e-6)
    donor_aware = fitted.predict(xyz, donor="12876")
    assert not np.allclose(donor_aware, full)
    with pytest.warns(UserWarning, match="donor\\(s\\) unknown-donor not among the model's"):
        np.testing.assert_allclose(fitted.predict(xyz, donor="unknown-donor"), full, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # expected unknown (a held-out donor): silent
        np.testing.assert_allclose(fitted.predict(xyz, donor="unknown-donor", warn_unknown=False), full, atol=1e-6)
    np.testing.assert_allclose(fitted.features(xyz, batch_rows=7), fitted.features(xyz), rtol=1e-5, atol=1e-5)
    each = fitted.predict(xyz[:3], donor=["12876", "15496", "12876"])
    np.testing.assert_allclose(each[[0, 2]], fitted.predict(xyz[[0, 2]], donor="12876"), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(each[1], fitted.predict(xyz[1], donor=["15496"])[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="donor has 2 labels for 3 locations: give one donor, or one per location"):
        fitted.predict(xyz[:3], donor=["12876", "15496"])


def test_a_gene_seen_at_few_samples_borrows_structure_from_the_others(table):
    """Hide three genes at 90% of the samples each: fitted with the other genes they are far
    closer to the truth at their hidden samples than INRs fitted on each gene alone, and nearly
    as close as when they are seen everywhere."""
    hidden = [7, 30, 77]
    n, n_genes = table.sizes["sample"], table.sizes["gene"]
    rng = np.random.default_rng(0)
    mask = np.ones((n, n_genes), dtype=bool)
    for g in hidden:
        mask[rng.permutation(n)[: n - n // 10], g] = False
    truth = _truth(table)
    xyz = _xyz(table)

    def error(pred, g):  # at the samples where gene g was hidden
        return np.sqrt(np.mean((pred[~mask[:, g]] - truth[~mask[:, g], g]) ** 2))

    joint = GeneINR(random_state=0, **SMALL).fit(table, mask=mask)
    assert joint.solver_ == "projected"
    err_joint = np.mean([error(joint.predict(xyz)[:, g], g) for g in hidden])
    alone = [GeneINR(random_state=0, **SMALL).fit(table.isel(gene=[g]), mask=mask[:, [g]]) for g in hidden]
    assert alone[0].solver_ == "masked"
    err_alone = np.mean([error(m.predict(xyz)[:, 0], g) for m, g in zip(alone, hidden)])
    seen_everywhere = GeneINR(random_state=0, **SMALL).fit(table)
    err_seen = np.mean([error(seen_everywhere.predict(xyz)[:, g], g) for g in hidden])
    assert err_joint < 0.75 * err_alone
    assert err_joint < 1.3 * err_seen
    # masked training (every gene in the loss, the hidden entries masked out) borrows too
    masked = GeneINR(random_state=0, solver="masked", **SMALL).fit(table, mask=mask)
    err_masked = np.mean([error(masked.predict(xyz)[:, g], g) for g in hidden])
    assert err_masked < 0.75 * err_alone


def test_nan_values_count_as_unobserved(table):
    t = table.copy(deep=True)
    t["expression"].values[:400, 0] = np.nan
    model = GeneINR(random_state=0, **(SMALL | {"max_epochs": 5})).fit(t)
    assert np.isfinite(model.predict(_xyz(t)[:10])).all()
    t["expression"].values[:, 1] = np.nan
    with pytest.raises(ValueError, match="no observed value"):
        GeneINR(random_state=0, **(SMALL | {"max_epochs": 2})).fit(t)


def test_the_projected_solver_without_a_complete_gene_says_which_solver_to_use(table):
    from brainzarr.cli import error_message

    t = table.isel(gene=slice(0, 4)).copy(deep=True)
    for g in range(4):  # every gene missing at some sample
        t["expression"].values[g, g] = np.nan
    with pytest.raises(ValueError, match="needs genes observed at every sample") as err:
        GeneINR(random_state=0, solver="projected", **(SMALL | {"max_epochs": 1})).fit(t)
    assert str(err.value).endswith("pass solver='masked'") and error_message(err.value).endswith("pass --solver masked")


def test_save_load_roundtrip_without_pickles(tmp_path, table, fitted):
    path = fitted.save(tmp_path / "model")
    config = json.loads((path / "config.json").read_text())
    assert config["genes"] == list(table["gene"].values) and config["source"]["name"] == "synthetic"
    state = torch.load(path / "weights.pt", weights_only=True)  # tensors only
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    with np.load(path / "sites.npz", allow_pickle=False) as sites:
        assert sites["xyz"].shape == (table.sizes["sample"], 3)
    loaded = GeneINR.load(path, device="cpu")
    xyz = _xyz(table)[:100]
    np.testing.assert_array_equal(loaded.predict(xyz), fitted.predict(xyz))
    assert loaded.weights_sha1() == fitted.weights_sha1()
    with pytest.raises(FileExistsError, match="holds a fitted model; pass overwrite=True"):
        fitted.save(path)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("a user's")
    with pytest.raises(FileExistsError, match="not a brainzarr INR model"):
        fitted.save(tmp_path / "notes", overwrite=True)
    assert (tmp_path / "notes" / "mine.txt").read_text() == "a user's"
    with pytest.raises(FileNotFoundError, match="no INR model"):
        GeneINR.load(tmp_path / "nothing")


def test_seeded_and_resumable_from_a_checkpoint(tmp_path, table):
    small = table.isel(gene=slice(0, 30))
    params = SMALL | {"max_epochs": 6, "checkpoint_every": 2}
    reference = GeneINR(random_state=4, **params).fit(small)
    again = GeneINR(random_state=4, **params).fit(small)
    np.testing.assert_array_equal(again.embeddings_, reference.embeddings_)
    other = GeneINR(random_state=5, **params).fit(small)
    assert not np.allclose(other.embeddings_, reference.embeddings_)

    def interrupt(epoch, loss):
        if epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        GeneINR(random_state=4, checkpoint_dir=tmp_path, **params).fit(small, callback=interrupt)
    assert (tmp_path / "checkpoint.pt").exists()
    epochs_run = []
    resumed = GeneINR(random_state=4, checkpoint_dir=tmp_path, **params).fit(
        small, callback=lambda epoch, loss: epochs_run.append(epoch)
    )
    assert epochs_run == [4, 5]  # picked up after the checkpoint of epoch 3
    np.testing.assert_allclose(resumed.embeddings_, reference.embeddings_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(resumed.history_, reference.history_, rtol=1e-5)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_an_ensemble_averages_its_members_and_renders_as_one_model(tmp_path, table):
    small = table.isel(gene=slice(0, 30))
    params = SMALL | {"max_epochs": 8}
    members = [GeneINR(random_state=s, **params).fit(small) for s in (7, 8)]
    ensemble = GeneINR(random_state=7, **(params | {"n_ensemble": 2})).fit(small)
    xyz = _xyz(small)[:200]
    mean = np.mean([m.predict(xyz) for m in members], axis=0)
    np.testing.assert_allclose(ensemble.predict(xyz), mean, rtol=1e-4, atol=1e-5)
    donors = small["donor"].values[:200]
    np.testing.assert_allclose(
        ensemble.predict(xyz, donor=donors),
        np.mean([m.predict(xyz, donor=donors) for m in members], axis=0),
        rtol=1e-4,
        atol=1e-5,
    )
    assert ensemble.features(xyz).shape == (200, 2 * SMALL["n_features"])
    assert ensemble.embeddings_.shape == (2 * SMALL["n_features"], 30)
    np.testing.assert_allclose(ensemble.history_, np.mean([m.history_ for m in members], axis=0), rtol=1e-5)
    loaded = GeneINR.load(ensemble.save(tmp_path / "ens"), device="cpu")
    assert loaded.n_ensemble == 2
    np.testing.assert_array_equal(loaded.predict(xyz), ensemble.predict(xyz))
    # a model saved before ensembles existed (no n_ensemble in its config) loads as one network
    single = members[0].save(tmp_path / "single")
    config = json.loads((single / "config.json").read_text())
    del config["params"]["n_ensemble"]
    (single / "config.json").write_text(json.dumps(config))
    old = GeneINR.load(single, device="cpu")
    assert old.n_ensemble == 1
    np.testing.assert_array_equal(old.predict(xyz), members[0].predict(xyz))


def test_an_interrupted_ensemble_resumes_without_retraining_finished_members(tmp_path, table):
    small = table.isel(gene=slice(0, 30))
    params = SMALL | {"max_epochs": 4, "checkpoint_every": 2, "n_ensemble": 2}
    reference = GeneINR(random_state=4, **params).fit(small)
    calls = []

    def interrupt(epoch, loss):
        calls.append(epoch)
        if len(calls) == 7:  # member 2's epoch 2 (0-based; its checkpoint after epoch 1 is saved)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        GeneINR(random_state=4, checkpoint_dir=tmp_path, **params).fit(small, callback=interrupt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-0.pt", "checkpoint-1.pt"]
    epochs_run = []
    resumed = GeneINR(random_state=4, checkpoint_dir=tmp_path, **params).fit(
        small, callback=lambda epoch, loss: epochs_run.append(epoch)
    )
    assert epochs_run == [2, 3]  # member 1 was done; member 2 picked up after its checkpoint
    np.testing.assert_allclose(resumed.embeddings_, reference.embeddings_, rtol=1e-5, atol=1e-6)
    assert not any(tmp_path.iterdir())


def test_device_resolution(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto").type == "cuda"
    with pytest.raises(ValueError, match="only 1 CUDA"):
        resolve_device("cuda:3")


def test_samples_outside_the_brain_are_warned_of(table):
    swapped = table.assign_coords(y=table["z"], z=table["y"])  # two axes swapped
    with pytest.warns(UserWarning, match=r"of 833 samples lie more than 10 mm outside the MNI152 brain") as w:
        GeneINR(random_state=0, **(SMALL | {"max_epochs": 1})).fit(swapped)
    assert w[0].filename == __file__


def test_bad_parameters_are_clear(table):
    with pytest.raises(ValueError, match="backbone"):
        GeneINR(backbone="mlp").fit(table)
    with pytest.raises(ValueError, match="epochs"):
        GeneINR(max_epochs=0).fit(table)
    with pytest.raises(ValueError, match="mask has shape"):
        GeneINR(**SMALL).fit(table, mask=np.ones((3, 3), dtype=bool))


def test_numeric_parameters_outside_their_range_are_refused_naming_them(table):
    """``float()`` took ``True`` as 1 and stopped with Python's message on text; a negative
    ``weight_decay`` or ``feature_penalty`` was used as given."""
    import re

    from brainzarr.exceptions import InputError

    defaults = GeneINR().get_params()
    assert set(GeneINR._bounds) <= set(defaults)
    for name, bound in GeneINR._bounds.items():
        assert bound.holds(defaults[name]), name
        for value in (True, "x", float("nan"), bound.low - 1, *([bound.low] if bound.low_open else [])):
            with pytest.raises(InputError, match=rf"^{name} must be .+, got {re.escape(repr(value))}$"):
                GeneINR(**{name: value}).fit(table)


def test_siren_backbone_trains(table):
    model = GeneINR(backbone="siren", omega=10.0, random_state=0, **(SMALL | {"max_epochs": 15})).fit(
        table.isel(gene=slice(0, 40))
    )
    assert model.history_[-1] < 0.8 * model.history_[0]


def test_render_streams_the_population_map_into_a_store(tmp_path, table, fitted):
    genes = list(table["gene"].values[:20])
    out = render_store(fitted, tmp_path / "inr8.zarr", resolution=8, genes=genes, chunks=(1024, 8))
    ds = open_store(out)
    assert list(ds["gene"].values) == genes
    assert ds.attrs["provenance"]["assignment"]["method"] == "inr"
    assert ds.attrs["provenance"]["source"]["name"] == "synthetic"
    raw = fitted.predict(mni152_grid(8).xyz, genes)
    expected = clamp_scale(raw, ds["clamp_low"].values, ds["clamp_high"].values)
    np.testing.assert_allclose(ds["expression"].values, expected, atol=1e-5)
    np.testing.assert_allclose(ds["clamp_high"].values, np.percentile(raw, 99.9, axis=0), rtol=1e-5)
    # the same render again is complete already; another model is refused
    assert render_store(fitted, out, resolution=8, genes=genes, chunks=(1024, 8)) == out
    other = GeneINR(random_state=1, **(SMALL | {"max_epochs": 3})).fit(table)
    with pytest.raises(FileExistsError, match="other settings"):
        render_store(other, out, resolution=8, genes=genes, chunks=(1024, 8))


def test_block_source_and_table_from_model(fitted):
    source = INRBlockSource(fitted, fitted.genes_[:10])
    xyz = mni152_grid(8).xyz[:300]
    state = source.prepare({"xyz": xyz, "hemisphere": None, "labels": None})
    np.testing.assert_allclose(source.compute(state, None, slice(2, 6)), fitted.predict(xyz)[:, 2:6], atol=1e-5)
    table = table_from_model(fitted, 5)
    assert table.sizes["gene"] == 5 and table.sizes["sample"] == fitted.n_samples_
    assert table.attrs["source"] == "synthetic"


def test_cli_fit_render_and_build(tmp_path, capsys):
    from brainzarr.cli import main

    model = tmp_path / "m"
    assert main(["inr", "fit", "--genes", "12", "--epochs", "3", "--width", "32", "--out", str(model)]) == 0
    assert "fitted in" in capsys.readouterr().out
    assert main(["inr", "fit", "--genes", "12", "--epochs", "3", "--out", str(model)]) == 1
    assert f"brainzarr inr fit: error: {model} holds a fitted model; pass --overwrite" in capsys.readouterr().err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("a user's")  # refused before the fit, even with --overwrite
    assert main(["inr", "fit", "--genes", "12", "--epochs", "3", "--out", str(tmp_path / "notes"), "--overwrite"]) == 1
    assert "not a brainzarr INR model" in capsys.readouterr().err
    assert not (tmp_path / "notes.checkpoint").exists()  # no fit began
    assert main(["inr", "render", str(model), "--resolution", "8", "--out", str(tmp_path / "r.zarr")]) == 0
    assert open_store(tmp_path / "r.zarr").sizes["gene"] == 12
    capsys.readouterr()
    assert main(["info", str(tmp_path / "r.zarr")]) == 0  # the model's settings named, not dumped as dicts
    (assignment,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("assignment")]
    assert f"inr, model={model}, weights_sha1=" in assignment and "{" not in assignment
    assert assignment.endswith("params, trained_on: in the store's provenance")
    # rendered again with other settings over a store holding a fit: the flag named is one render takes
    render = ["inr", "render", str(model), "--resolution", "8", "--seed", "1", "--out", str(tmp_path / "r.zarr")]
    brainzarr.fit_store(tmp_path / "r.zarr", "pca", 2)
    assert main([*render, "--overwrite"]) == 1
    assert "removes the 1 result(s) it holds" in (err := capsys.readouterr().err) and "--discard-results" in err
    assert main([*render, "--overwrite", "--discard-results"]) == 0
    assert brainzarr.list_groups(tmp_path / "r.zarr") == []
    genes = ",".join(json.loads((model / "config.json").read_text())["genes"][:3])
    assert (
        main(
            [
                "build",
                "--assignment",
                "inr",
                "--inr-model",
                str(model),
                "--genes",
                genes,
                "--resolution",
                "8",
                "--out",
                str(tmp_path / "b.zarr"),
            ]
        )
        == 0
    )
    assert list(open_store(tmp_path / "b.zarr")["gene"].values) == genes.split(",")
    assert (
        main(
            [
                "build",
                "--assignment",
                "inr",
                "--inr-model",
                str(model),
                "--genes",
                "5",
                "--resolution",
                "8",
                "--out",
                str(tmp_path / "c.zarr"),
            ]
        )
        == 1
    )
    assert "does not know" in capsys.readouterr().err
    # without --genes: the model's own (all of the source's, 15,633, are more than it knows)
    argv = [
        "build",
        "--assignment",
        "inr",
        "--inr-model",
        str(model),
        "--resolution",
        "8",
        "-o",
        str(tmp_path / "d.zarr"),
    ]
    assert main(argv) == 0, capsys.readouterr().err
    assert (
        list(open_store(tmp_path / "d.zarr")["gene"].values) == json.loads((model / "config.json").read_text())["genes"]
    )
    assert main(["inr", "render", str(tmp_path / "nope"), "--out", str(tmp_path / "x.zarr")]) == 1
    assert "no INR model" in capsys.readouterr().err
    assert main(["inr", "render", str(tmp_path / "d.zarr"), "--out", str(tmp_path / "x.zarr")]) == 1
    assert "d.zarr is a brainzarr store, not an INR model: give the folder an INR fit wrote" in capsys.readouterr().err


def test_build_inr_store_fits_and_renders_in_one_step(tmp_path, table):
    from brainzarr.inr.render import build_inr_store

    small = table.isel(gene=slice(0, 6))
    out = build_inr_store(
        tmp_path / "one.zarr", source=small, inr_params=SMALL | {"max_epochs": 5}, resolution=8, progress=False
    )
    ds = open_store(out)
    assert ds.sizes["gene"] == 6 and ds.attrs["provenance"]["assignment"]["method"] == "inr"
    assert ds.attrs["provenance"]["source"]["n_samples"] == small.sizes["sample"]
    values = ds["expression"].values
    assert np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1


def test_cli_fit_from_a_store(tmp_path, capsys):
    from brainzarr import build_store
    from brainzarr.cli import main

    store = build_store(tmp_path / "s8.zarr", resolution=8, genes=10, random_state=1)
    model = tmp_path / "from-store"
    assert (
        main(
            [
                "inr",
                "fit",
                "--store",
                str(store),
                "--max-samples",
                "600",
                "--epochs",
                "3",
                "--width",
                "32",
                "--out",
                str(model),
            ]
        )
        == 0
    )
    assert "600 samples x 10 genes" in capsys.readouterr().err
    loaded = GeneINR.load(model)
    assert loaded.source_["name"] == "store" and loaded.n_samples_ == 600
    # --genes picks the store's genes (it was ignored: every gene was fitted)
    some = ["inr", "fit", "--store", str(store), "--max-samples", "300", "--max-epochs", "2", "--width", "16"]
    assert main([*some, "--genes", "3", "--out", str(tmp_path / "three")]) == 0
    assert list(GeneINR.load(tmp_path / "three").genes_) == list(open_store(store)["gene"].values[[0, 4, 9]])
    # --max-samples draws a store's voxels: without --store it was ignored
    capsys.readouterr()
    assert main(["inr", "fit", "--genes", "4", "--max-samples", "10", "--out", str(tmp_path / "no")]) == 1
    assert "--max-samples draws voxels of a store: it goes with --store" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_cli_a_device_it_cannot_use_stops_before_the_source_is_loaded(tmp_path, capsys, monkeypatch):
    """``--device cuda`` where torch sees no GPU stops fit, evaluate and render before a source is
    read (an AHBA source takes minutes); 'gpu' is answered with 'cuda'."""
    import torch

    from brainzarr.cli import main
    from brainzarr.commands import inr as inr_command

    loaded = []
    monkeypatch.setattr(inr_command, "_load_table", lambda args: loaded.append(args) or pytest.fail("loaded"))
    with pytest.raises(SystemExit) as stopped:
        main(["inr", "fit", "--genes", "4", "--device", "gpu", "-o", str(tmp_path / "m")])
    assert stopped.value.code == 2
    assert "got 'gpu'; did you mean cuda?" in capsys.readouterr().err
    if torch.cuda.is_available():
        return
    for argv in (
        ["inr", "fit", "--genes", "4", "--device", "cuda", "-o", str(tmp_path / "m")],
        ["inr", "evaluate", "--genes", "4", "--device", "cuda:0", "-o", str(tmp_path / "e")],
        ["inr", "render", str(tmp_path / "m"), "--device", "cuda", "-o", str(tmp_path / "r.zarr")],
    ):
        assert main(argv) == 1
        assert "CUDA is not available" in capsys.readouterr().err
    assert loaded == [] and not (tmp_path / "r.zarr").exists()
