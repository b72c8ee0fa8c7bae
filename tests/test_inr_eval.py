"""Held-out evaluation of the INR and its baselines: folds, baselines, scores, maps, CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from brainzarr.assign import Assignment
from brainzarr.exceptions import InputError
from brainzarr.grid import mni152_grid
from brainzarr.inr import IDWInterpolator, KrigingInterpolator, NearestInterpolator
from brainzarr.inr.baselines import kernel_matrix
from brainzarr.inr.evaluate import cross_validate, make_folds, map_scores, summarize, synthetic_truth
from brainzarr.preprocess import spatial_blocks
from brainzarr.sources import make_sample_table
from brainzarr.sources.synthetic import load_synthetic


@pytest.fixture(scope="module")
def table():
    return load_synthetic(40, random_state=2, donors=["12876", "15496", "15697"])


def _xyz(t):
    return np.column_stack([t[c].values for c in "xyz"])


def test_block_folds_keep_whole_blocks_and_balance_sizes(table):
    folds = make_folds(table, "blocks", n_folds=5, block_mm=16, random_state=1)
    n = table.sizes["sample"]
    tests = np.concatenate([t for _, _, t in folds])
    assert np.array_equal(np.sort(tests), np.arange(n))  # a partition
    block = spatial_blocks(_xyz(table), 16)
    for _name, train, test in folds:
        assert not set(block[train]) & set(block[test])  # no cube on both sides
        assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == n
    sizes = [len(t) for _, _, t in folds]
    assert max(sizes) - min(sizes) <= np.bincount(block).max()
    again = make_folds(table, "blocks", n_folds=5, block_mm=16, random_state=1)
    assert all(np.array_equal(a[2], b[2]) for a, b in zip(folds, again))
    donors = make_folds(table, "donors")
    assert [name for name, _, _ in donors] == ["donor12876", "donor15496", "donor15697"]
    for name, train, test in donors:
        assert set(table["donor"].values[test]) == {name[len("donor") :]}
        assert name[len("donor") :] not in set(table["donor"].values[train])
    with pytest.raises(ValueError, match="unknown cv"):
        make_folds(table, "random")


def test_idw_and_nearest_are_the_builds_weights(table):
    xyz, values = _xyz(table), table["expression"].values
    train, new = np.arange(0, len(xyz), 2), _xyz(table)[1::2] + 0.5
    sub = table.isel(sample=train)
    idw = IDWInterpolator(n_neighbors=10).fit(sub)
    weights = Assignment("idw", xyz[train], n_neighbors=10).weights(new)
    np.testing.assert_allclose(idw.predict(new), weights @ values[train], rtol=1e-6)
    np.testing.assert_allclose(idw.predict(xyz[train[:5]]), values[train[:5]], rtol=1e-6)  # exact at a sample
    nearest = NearestInterpolator().fit(sub)
    nn = np.argmin(cdist(new, xyz[train]), axis=1)
    far = cdist(new, xyz[train]).min(axis=1) > 2  # not sharing a 1 mm voxel with any sample
    np.testing.assert_allclose(nearest.predict(new)[far], values[train][nn][far], rtol=1e-6)


def test_kriging_is_gp_regression_with_one_shared_kernel():
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-50, 50, size=(300, 3))
    length, noise = 20.0, 0.1
    k = kernel_matrix(cdist(xyz, xyz), length, "matern32")
    chol = np.linalg.cholesky(k + noise * np.eye(len(xyz)))
    values = (chol @ rng.normal(size=(len(xyz), 150))).astype(np.float32) * 0.1 + 0.5
    t = make_sample_table(values, [f"g{i}" for i in range(150)], xyz, donor=np.zeros(len(xyz)), source="test")
    train, test = np.arange(250), np.arange(250, 300)
    fixed = KrigingInterpolator(length_scale_mm=length, noise=noise).fit(t.isel(sample=train))
    # the textbook predictive mean, gene by gene
    mean, sd = values[train].mean(0), values[train].std(0)
    kt = kernel_matrix(cdist(xyz[train], xyz[train]), length, "matern32") + noise * np.eye(len(train))
    ks = kernel_matrix(cdist(xyz[test], xyz[train]), length, "matern32")
    expected = ks @ np.linalg.solve(kt, (values[train] - mean) / sd) * sd + mean
    np.testing.assert_allclose(fixed.predict(xyz[test]), expected, rtol=1e-4, atol=1e-5)
    fitted = KrigingInterpolator().fit(t.isel(sample=train))  # hyperparameters by marginal likelihood
    assert 0.6 * length < fitted.length_scale_mm_ < 1.6 * length
    assert 0.4 * noise < fitted.noise_ < 2.5 * noise
    assert fitted.alpha_.shape == (250, 150)


@pytest.mark.parametrize("cls", [NearestInterpolator, IDWInterpolator, KrigingInterpolator])
def test_baselines_take_locations_as_the_inr_does(table, cls):
    model = cls().fit(table)
    xyz = _xyz(table)[:4] + 1.5
    expected = model.predict(xyz)
    np.testing.assert_allclose(model.predict(list(xyz[2])), expected[2:3], rtol=1e-5, atol=1e-6)  # one point (x, y, z)
    with pytest.raises(InputError, match=r"\(n, 3\) array .* got shape \(3, 4\); .* xyz\.T"):
        model.predict(xyz.T)  # rows of x, y and z
    with pytest.raises(InputError, match=r"got shape \(4, 2\)$"):
        model.predict(xyz[:, :2])
    nan = xyz.copy()
    nan[1, 0] = np.nan  # kriging gave a row of NaN, the others scipy's message
    with pytest.raises(InputError, match="locations must be finite"):
        model.predict(nan)


def test_cross_validate_scores_every_method_gene_and_fold(table):
    df = cross_validate(
        table,
        methods=("inr", "idw", "nearest"),
        cv="blocks",
        n_folds=3,
        random_state=0,
        inr_params={"max_epochs": 20, "width": 32, "n_features": 16, "n_ensemble": 1},
    )
    assert {"cv", "method", "gene", "fold", "rmse", "pearson_r", "n_test"} <= set(df.columns)
    assert set(df["method"]) == {"inr", "inr_donor", "idw", "nearest", "true_field"}
    assert len(df) == 5 * table.sizes["gene"] * 3
    assert df["rmse"].gt(0).all() and df["pearson_r"].between(-1, 1).all()
    # the noise floor: the true field scored against the held-out samples themselves
    folds = make_folds(table, "blocks", n_folds=3, random_state=0)
    truth = synthetic_truth(table)
    name, _, test = folds[1]
    obs = table["expression"].values[test]
    floor = np.sqrt(np.mean((truth(_xyz(table)[test], table["gene"].values) - obs) ** 2, axis=0))
    got = df[(df["method"] == "true_field") & (df["fold"] == name)]["rmse"].to_numpy()
    np.testing.assert_allclose(got, floor, rtol=1e-5)
    summary = summarize(df).set_index("method")
    assert summary.loc["idw", "vs_idw_pct"] == 0
    assert summary.loc["true_field", "rmse_mean"] < summary.loc["nearest", "rmse_mean"]
    assert summary.loc["inr", "rmse_mean"] < summary.loc["nearest", "rmse_mean"]


def test_cross_validate_takes_one_method_by_name_and_checks_its_folds(table):
    """``methods="idw"`` was read letter by letter (``unknown method(s) ['i', 'd', 'w']``), and
    ``n_folds=2.5`` stopped in numpy."""
    one = cross_validate(table, methods="idw", n_folds=2, random_state=0)
    assert set(one["method"]) == {"idw", "true_field"} and set(one["fold"]) == {"block0", "block1"}
    assert set(cross_validate(table, methods="nearest, idw", n_folds=2)["method"]) == {"idw", "nearest", "true_field"}
    with pytest.raises(InputError, match=r"unknown method\(s\) \['krigging'\]; .*did you mean kriging\?"):
        cross_validate(table, methods="idw,krigging")
    for bad in (2.5, 1, True):
        with pytest.raises(InputError, match=rf"n_folds must be at least 2 \(a whole number\), got {bad!r}$"):
            cross_validate(table, methods="idw", n_folds=bad)


def test_summary_pools_each_gene_over_folds():
    df = pd.DataFrame(
        {
            "cv": "blocks",
            "method": ["a", "a", "idw", "idw"],
            "gene": "g",
            "fold": ["f0", "f1"] * 2,
            "rmse": [1.0, 2.0, 2.0, 2.0],
            "pearson_r": [0.5, 0.0, 0.1, 0.1],
            "n_test": [3, 1, 3, 1],
        }
    )
    s = summarize(df).set_index("method")
    assert np.isclose(s.loc["a", "rmse_mean"], np.sqrt((3 * 1 + 1 * 4) / 4))
    assert np.isclose(s.loc["a", "pearson_r_mean"], (0.5 * 3 + 0) / 4)
    assert np.isclose(s.loc["a", "vs_idw_pct"], 100 * (np.sqrt(7 / 4) / 2 - 1))
    assert s.loc["a", "genes_better_than_idw"] == 1.0


def test_map_scores_against_truth_and_idw(table):
    genes = table["gene"].values
    idw = IDWInterpolator().fit(table)
    grid = mni152_grid(8)
    maps = map_scores(
        {"idw": idw},
        grid,
        genes,
        truth=lambda xyz, g: idw.predict(xyz, genes=list(g)),
        block_rows=1000,
        gene_block=16,
    )
    np.testing.assert_allclose(maps["rmse_vs_truth"], 0, atol=1e-6)
    np.testing.assert_allclose(maps["r_vs_idw_secondary"], 1, atol=1e-6)
    assert (maps["n_voxels"] == grid.n_voxels).all()
    truth = synthetic_truth(table)
    near = NearestInterpolator().fit(table)
    maps = map_scores({"idw": idw, "nearest": near}, grid, genes, truth=truth).set_index(["method", "gene"])
    xyz = grid.xyz
    expected = np.sqrt(np.mean((near.predict(xyz) - truth(xyz, genes)) ** 2, axis=0))
    np.testing.assert_allclose(maps.loc["nearest", "rmse_vs_truth"].to_numpy(), expected, rtol=1e-4)


def test_cli_evaluate_writes_heldout_csv(tmp_path, capsys):
    from brainzarr.cli import main

    out = tmp_path / "ev"
    assert (
        main(
            [
                "inr",
                "evaluate",
                "--genes",
                "8",
                "--cv",
                "donors",
                "--methods",
                "inr,idw,nearest",
                "--epochs",
                "3",
                "--width",
                "32",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "true_field: the noise-free" in printed and "idw" in printed
    assert "inr_donor" not in printed  # leave-one-donor-out has no donor-aware rows to explain
    df = pd.read_csv(out / "heldout.csv")
    assert set(df["method"]) == {"inr", "idw", "nearest", "true_field"}
    assert df["fold"].nunique() == 6 and df["gene"].nunique() == 8
    assert (out / "summary.csv").exists() and (out / "heldout.png").stat().st_size > 10_000
    assert main(["inr", "evaluate", "--methods", "inr,magic", "-o", str(out)]) == 1
    assert "unknown method" in capsys.readouterr().err
    # a folder of one's own holding a summary.csv is refused before anything is fitted or written
    mine = tmp_path / "analysis"
    mine.mkdir()
    (mine / "summary.csv").write_text("a user's\n")
    assert main(["inr", "evaluate", "--genes", "4", "--methods", "idw", "--folds", "2", "-o", str(mine)]) == 1
    assert "holds summary.csv, which brainzarr did not write" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["summary.csv"] and (mine / "summary.csv").read_text() == "a user's\n"
    # its own folder is written again
    assert main(["inr", "evaluate", "--genes", "4", "--methods", "idw", "--folds", "2", "-o", str(out)]) == 0
