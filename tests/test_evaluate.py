"""Evaluation: targets, XGBoost prediction, statistics, reconstruction tables, figures, report, CLI.

Representations are real scikit-learn fits written the way the models pipeline writes them
(tests/evaluate_fixtures.py); targets are real NIfTI files on other grids.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import xarray as xr

sys.path.insert(0, str(Path(__file__).parent))
from evaluate_fixtures import write_representations  # noqa: E402

from brainzarr import build_store, open_store, read_group  # noqa: E402
from brainzarr.cli import main  # noqa: E402
from brainzarr.evaluate import (
    anova_tukey,
    find_representations,
    load_embedding,
    load_evaluation,  # noqa: E402
    load_targets,
    reconstruction_frame,
    reconstruction_table,
    run_evaluation,
    streamed_rmse,
    write_report,
    write_synthetic_targets,
)
from brainzarr.evaluate.prediction import FIXED_PARAMS, cv_folds, grid_search, parse_grid  # noqa: E402
from brainzarr.evaluate.synthetic_targets import SYNTHETIC_TARGETS, model_from_store, synthetic_target_values  # noqa: E402
from brainzarr.exceptions import InputError  # noqa: E402
from brainzarr.grid import mni152_grid  # noqa: E402
from brainzarr.nifti import to_nifti  # noqa: E402

SMALL_GRID = {"max_depth": [2, 3], "n_estimators": [20, 40]}
MNI_3MM = np.array([[-3.0, 0, 0, 90], [0, 3, 0, -126], [0, 0, 3, -72], [0, 0, 0, 1]])  # hansen_receptors' grid


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """8 mm synthetic store: PCA and NMF (with reconstructions) fitted under the random split at
    dims 2 and 4, ICA (no reconstruction, like t-SNE) at dim 2."""
    path = build_store(tmp_path_factory.mktemp("ev") / "s8.zarr", resolution=8, genes=80, random_state=3)
    write_representations(path, methods=("pca", "nmf"), dims=(2, 4))
    write_representations(path, methods=("ica",), dims=(2,), reconstruct=())
    return path


@pytest.fixture(scope="module")
def targets_dir(store, tmp_path_factory):
    return write_synthetic_targets(
        tmp_path_factory.mktemp("targets"), store=store, resolution=4, names=("receptor_gradient", "spatial_control")
    )[0].parent


@pytest.fixture(scope="module")
def evaluation(store, targets_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    return run_evaluation(store, targets_dir, out, grid=SMALL_GRID, n_splits=3, random_state=7, n_jobs=2), out


# ----------------------------------------------------------------------------------- prediction
def test_grid_search_equals_sklearn_gridsearchcv():
    """Scoring every ensemble size from one boosted fit gives GridSearchCV's numbers exactly."""
    from sklearn.model_selection import GridSearchCV
    from xgboost import XGBRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2)).astype(np.float32)
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2 + 0.3 * rng.normal(size=300)
    grid = {"max_depth": [2, 4], "learning_rate": [0.1, 0.3], "n_estimators": [10, 30, 60]}
    folds = cv_folds(300, n_splits=4, random_state=1)
    best, table = grid_search(X, y, folds, grid=grid, random_state=1)
    ref = GridSearchCV(
        XGBRegressor(**FIXED_PARAMS, random_state=1), grid, cv=folds, scoring="neg_mean_squared_error"
    ).fit(X, y)
    theirs = pd.DataFrame(ref.cv_results_["params"]).assign(rmse=np.sqrt(-ref.cv_results_["mean_test_score"]))
    merged = table.merge(theirs, on=["max_depth", "learning_rate", "n_estimators"])
    assert len(merged) == 12
    np.testing.assert_allclose(merged["cv_rmse"], merged["rmse"], rtol=1e-6)
    assert best == ref.best_params_


def test_cv_folds_random_partition_and_blocked_keep_groups_whole():
    folds = cv_folds(50, n_splits=5, random_state=0)
    assert sorted(np.concatenate([v for _, v in folds]).tolist()) == list(range(50))
    groups = np.repeat(np.arange(12), 4)
    for train, val in cv_folds(48, n_splits=5, groups=groups, random_state=0):
        assert not set(groups[train]) & set(groups[val])
    with pytest.raises(ValueError, match="too few for 5 blocked CV folds"):
        cv_folds(8, n_splits=5, groups=np.repeat([0, 1, 2], [3, 3, 2]))


def test_check_grid_asks_xgboost_which_parameters_it_uses():
    """A misspelt parameter (``depth``, ``lr``) was passed to XGBoost, which ignores it without a
    word: every candidate of the search was the same model."""
    from brainzarr.evaluate.prediction import check_grid

    assert check_grid(None) is parse_grid("default") and check_grid("large") is parse_grid("large")
    for grid in ({"max_depth": [2, 4], "n_estimators": [5]}, {"eta": [0.3], "lambda": [1.0]}, {"n_estimators": [9]}):
        assert check_grid(grid) == grid  # XGBoost's own names and aliases pass, as they are
    with pytest.raises(ValueError, match=r"parameter depth; did you mean max_depth\? \(it would ignore it,"):
        check_grid('{"depth": [2, 4]}')
    with pytest.raises(ValueError, match=r"parameters depht, lr \(it would ignore them"):
        check_grid({"max_depth": 2, "lr": [0.1], "depht": [3]})
    with pytest.raises(ValueError, match=r"refuses the grid's max_depth=deep: Invalid Parameter format for max_depth"):
        check_grid({"max_depth": [3, "deep"]})
    with pytest.raises(ValueError, match=r"refuses the grid's subsample=2: value 2 for Parameter subsample exceed"):
        check_grid({"subsample": [0.5, 2]})
    # XGBoost's own warning of unused parameters reaches Python only in the thread that imported
    # it (an evaluation's worker threads may have): the check does not rely on it
    import threading

    import xgboost  # noqa: F401  (imported here, in this thread; the check runs in another)

    said = []

    def in_a_thread():
        try:
            check_grid({"depth": [2]})
        except ValueError as error:
            said.append(str(error))

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert len(said) == 1 and "does not use the grid's parameter depth" in said[0]


def test_n_jobs_is_read_as_joblib_reads_it(monkeypatch):
    """``n_jobs=-1`` (every CPU, as scikit-learn and joblib read it) ran one thread."""
    import os

    from brainzarr.evaluate.prediction import check_cv

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert [check_cv(5, n)[1] for n in (None, -1, -2, -8, -20, 1, 3)] == [8, 8, 7, 1, 1, 1, 3]
    assert check_cv(3.0, None) == (3, 8)


def test_anova_tukey_refuses_a_percentage_and_a_column_the_results_lack():
    """``confidence=95`` was refused by scipy in its own words, and a misspelt column raised a
    KeyError naming only the column."""
    frame = pd.DataFrame({"representation": np.repeat(["a", "b"], 3), "r2": np.arange(6.0), "split": "random"})
    with pytest.raises(ValueError, match=r"^confidence must be in \(0, 1\), got 95$"):
        anova_tukey(frame, confidence=95)
    with pytest.raises(
        ValueError, match=r"^the results have no column 'R2'; did you mean r2\?; they have representation"
    ):
        anova_tukey(frame, value="R2")
    anova, tukey = anova_tukey(frame, confidence=0.9)
    assert len(anova) == len(tukey) == 1


def test_parse_grid():
    assert parse_grid("large")["max_depth"] == [2, 3, 4, 6, 8]
    assert parse_grid('{"max_depth": [3]}') == {"max_depth": [3]}
    with pytest.raises(ValueError, match="JSON object"):
        parse_grid("huge")


# ------------------------------------------------------------------------------------ statistics
def test_anova_tukey_hand_checked():
    """Groups 1,2,3 / 4,5,6 / 7,8,9: SSB = 54 (df 2), SSW = 6 (df 6), F = 27; for F(2, d2)
    the p-value is (1 + 2F/d2)^(-d2/2) = 10^-3. Tukey: adjacent means differ by 3 with standard
    error sqrt(MSW / n) = sqrt(1/3), so q = 3 sqrt(3)."""
    from scipy.stats import studentized_range

    frame = pd.DataFrame(
        {"representation": np.repeat(["a", "b", "c"], 3), "r2": np.arange(1.0, 10.0), "split": "random"}
    )
    anova, tukey = anova_tukey(frame)
    row = anova.iloc[0]
    assert (row["df_between"], row["df_within"]) == (2, 6)
    assert row["F"] == pytest.approx(27.0)
    assert row["p"] == pytest.approx(1e-3, rel=1e-9)
    ab = tukey[(tukey.group_a == "a") & (tukey.group_b == "b")].iloc[0]
    assert ab["mean_diff"] == pytest.approx(-3.0)
    assert ab["p"] == pytest.approx(studentized_range.sf(3 * np.sqrt(3), 3, 6), rel=1e-4)
    half_width = studentized_range.ppf(0.95, 3, 6) * np.sqrt(1 / 3)
    assert (ab["ci_low"], ab["ci_high"]) == (
        pytest.approx(-3 - half_width, rel=1e-4),
        pytest.approx(-3 + half_width, rel=1e-4),
    )
    ac = tukey[(tukey.group_a == "a") & (tukey.group_b == "c")].iloc[0]
    assert ac["p"] == pytest.approx(studentized_range.sf(6 * np.sqrt(3), 3, 6), rel=1e-4)


# ---------------------------------------------------------------------------------------- targets
def _image_on(grid_affine, shape, fn):
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    xyz = ijk @ grid_affine[:3, :3].T + grid_affine[:3, 3]
    return nib.Nifti1Image(fn(xyz).reshape(shape).astype(np.float32), grid_affine)


def test_load_targets_resamples_scales_and_excludes_background(store, tmp_path):
    ds = open_store(store)
    x, z = ds["x"].values, ds["z"].values

    def ramp(xyz):  # linear in x (reproduced exactly by linear interpolation); 0 above z = 40, NaN below z = -40
        v = xyz[:, 0] + 200.0
        v[xyz[:, 2] > 40] = 0.0
        v[xyz[:, 2] < -40] = np.nan
        return v

    nib.save(_image_on(MNI_3MM, (61, 73, 61), ramp), tmp_path / "ramp.nii.gz")
    t = load_targets(tmp_path, ds, interpolation="linear").sel(target="ramp")
    expected_valid = (z <= 40) & (z >= -40)
    # the 3 mm grid's planes straddle the cut-offs; the support decides voxels within 3 mm of them
    clear = (z < 37) & (z > -37)
    valid = np.isfinite(t.values)
    assert valid[clear].all() and not valid[(z > 43) | (z < -43)].any()
    assert int(t["n_excluded"]) == int((~valid).sum()) and int(t["n_valid"]) == int(valid.sum())
    assert abs(int(t["n_excluded"]) - int((~expected_valid).sum())) <= int(
        ((z >= 37) & (z <= 43)).sum() + ((z <= -37) & (z >= -43)).sum()
    )
    assert np.nanmin(t.values) == 0.0 and np.nanmax(t.values) == 1.0
    xv = x[valid]
    np.testing.assert_allclose(t.values[valid], (xv - xv.min()) / (xv.max() - xv.min()), atol=1e-5)
    image = nib.load(tmp_path / "ramp.nii.gz")  # images in a list, as the docstring offers, are named in order
    with pytest.warns(UserWarning, match="targets image_1, ramp and image_3 are one map") as said:  # thrice
        both = load_targets([image, tmp_path / "ramp.nii.gz", image], ds, interpolation="linear")
    assert len([w for w in said if "one map up to scale" in str(w.message)]) == 1
    assert list(both["target"].values) == ["image_1", "ramp", "image_3"]
    assert list(both["source"].values) == ["image", str(tmp_path / "ramp.nii.gz"), "image"]
    np.testing.assert_array_equal(both.sel(target="image_1").values, t.values)


def test_load_targets_errors(store, tmp_path):
    ds = open_store(store)
    with pytest.raises(FileNotFoundError, match="no .nii"):
        load_targets(tmp_path, ds)
    with pytest.raises(FileNotFoundError):
        load_targets(tmp_path / "missing.nii.gz", ds)
    nib.save(_image_on(MNI_3MM, (61, 73, 61), lambda xyz: np.full(len(xyz), 5.0)), tmp_path / "flat.nii.gz")
    with pytest.raises(ValueError, match="constant"):
        load_targets(tmp_path / "flat.nii.gz", ds)
    native = np.eye(4)  # voxel indices as millimetres: evidently not MNI
    nib.save(_image_on(native, (256, 256, 20), lambda xyz: xyz[:, 0] + 1), tmp_path / "native.nii.gz")
    with pytest.raises(ValueError, match="not in MNI space"):
        load_targets(tmp_path / "native.nii.gz", ds)
    with pytest.raises(ValueError, match="a target map is given twice: .*flat.nii.gz$"):
        load_targets([tmp_path / "flat.nii.gz", tmp_path / "flat.nii.gz"], ds)
    (tmp_path / "other").mkdir()
    shutil.copy(tmp_path / "flat.nii.gz", tmp_path / "other" / "flat.nii.gz")
    with pytest.raises(ValueError, match=r"repeated: flat \(.*flat.nii.gz and .*other/flat.nii.gz\): rename"):
        load_targets([tmp_path / "flat.nii.gz", tmp_path / "other"], ds)


def test_a_target_given_twice_under_two_names_is_named(store, recwarn):
    """One map under two names (a copy, or one tracer in other units) counts twice in the mean R²
    and the ANOVA's observations: the load says so, and only of that pair."""
    ds = open_store(store)
    x, y, z = (ds[c] for c in ("x", "y", "z"))
    maps = xr.Dataset({"gradient": x + 0.5 * z, "kbq": 37.0 * (x + 0.5 * z) - 4, "other": y * z, "flipped": -y * z})
    load_targets(maps, ds)
    said = sorted(str(w.message).split(" are ")[0] for w in recwarn if "one map up to scale" in str(w.message))
    assert said == ["targets gradient and kbq", "targets other and flipped"]
    recwarn.clear()
    near = xr.Dataset({"gradient": x + 0.5 * z, "gradient_and_y": x + 0.5 * z + 0.5 * y})  # r ~0.9, distinct maps
    load_targets(near, ds)
    assert not [w for w in recwarn if "one map up to scale" in str(w.message)]


def test_a_test_without_spread_says_so_and_warns_of_nothing(recwarn):
    """Each representation's R² the same on every target (targets that are one map): the F test
    has no spread to test against; the summary says that instead of numpy's divide warnings."""
    from brainzarr.evaluate import EvaluationResult

    for r2, said in (([0.5, 0.5, 0.3, 0.3], "= inf: each"), ([0.4] * 4, "undefined: each")):
        frame = pd.DataFrame({"representation": ["a", "a", "b", "b"], "r2": r2, "split": "random"})
        anova, tukey = anova_tukey(frame)
        empty = pd.DataFrame()
        text = EvaluationResult(frame, empty, anova, tukey, empty).describe()
        assert f"ANOVA across representations (random split): F(1, 2) {said} representation's R² is the same" in text
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_synthetic_targets_follow_the_truth(store, targets_dir):
    files = sorted(p.name for p in targets_dir.iterdir())
    assert files == ["receptor_gradient.nii.gz", "spatial_control.nii.gz"]
    img = nib.load(targets_dir / "receptor_gradient.nii.gz")
    grid = mni152_grid(4)
    assert img.shape == grid.shape and np.allclose(img.affine, grid.affine)
    data = np.asarray(img.dataobj)
    assert (data[~grid.mask] == 0).all() and (data[grid.mask] > 0).all()
    truth = synthetic_target_values(model_from_store(store), grid.xyz, ["receptor_gradient"])["receptor_gradient"]
    scaled = 100 * (truth - truth.min()) / (truth.max() - truth.min())
    np.testing.assert_allclose(data[tuple(grid.ijk.T)], np.maximum(scaled, 1e-3), rtol=1e-5, atol=1e-4)
    assert set(SYNTHETIC_TARGETS) >= {"receptor_gradient", "spatial_control", "myelin_like"}


# --------------------------------------------------------------------------------- reconstruction
def test_reconstruction_table_reads_group_rmse_and_streams_when_missing(store, tmp_path):
    ds = open_store(store)
    table = reconstruction_table(store)
    assert set(table["method"].values) == {"pca", "nmf"}  # ICA has no reconstruction
    frame = reconstruction_frame(table)
    assert len(frame) == 4 and set(frame["split"]) == {"random"}
    labels = ds["split_random"].values
    X = ds["expression"].values.astype(np.float64)
    R = read_group(store, "representations/pca/k2")["reconstruction"].values
    direct = {s: np.sqrt(((R - X)[labels == s] ** 2).mean()) for s in ("train", "test")}
    row = frame[(frame.method == "pca") & (frame.dim == 2)].iloc[0]
    assert row["test_rmse"] == pytest.approx(direct["test"], rel=1e-5)
    assert row["train_rmse"] == pytest.approx(direct["train"], rel=1e-5)
    streamed = streamed_rmse(store, "representations/pca/k2", labels, ds)
    assert streamed["test"] == pytest.approx(direct["test"], rel=1e-5)
    assert row["test_rmse"] > row["train_rmse"] * 0.9  # fitted on train: test is no better


def test_reconstruction_without_rmse_variable_and_other_attr_spelling(tmp_path):
    path = build_store(tmp_path / "s.zarr", resolution=8, genes=40, random_state=5, split="blocked")
    write_representations(path, methods=("pca",), dims=(3,), scheme="blocked", scheme_attr="split", with_rmse=False)
    rep = find_representations(path)[0]
    assert (rep.method, rep.dim, rep.split_scheme) == ("pca", 3, "blocked")
    frame = reconstruction_frame(reconstruction_table(path))
    ds = open_store(path)
    labels = ds["split_blocked"].values
    X = ds["expression"].values.astype(np.float64)
    R = read_group(path, rep.group)["reconstruction"].values
    assert frame.iloc[0]["split"] == "blocked"
    assert frame.iloc[0]["test_rmse"] == pytest.approx(np.sqrt(((R - X)[labels == "test"] ** 2).mean()), rel=1e-5)


# ---------------------------------------------------------------------------------- run_evaluation
def test_run_evaluation_tables_and_store(evaluation, store):
    result, out = evaluation
    pred = pd.read_csv(out / "prediction.csv")
    assert {"representation", "target", "split", "r2", "rmse"} <= set(pred.columns)
    # default dims=(2,): one row per 2-D representation x target x split scheme
    assert len(pred) == 3 * 2 * 2
    assert set(pred["representation"]) == {"pca-k2", "nmf-k2", "ica-k2"}
    assert set(pred["split"]) == {"random", "blocked"}
    assert (pred["seed"] == 7).all() and (pred.loc[pred.split == "blocked", "block_mm"] == 48).all()
    total = pred["n_train"] + pred["n_test"] + pred["n_excluded"] + pred["n_buffer"]
    assert (total == open_store(store).sizes["voxel"]).all() and (
        pred.loc[pred.split == "blocked", "n_buffer"] > 0
    ).all()
    # the genes carry the anterior-posterior and dorsal-ventral gradients: PCA predicts them
    pca = pred[(pred.representation == "pca-k2") & (pred.target == "receptor_gradient")]
    random_r2 = float(pca.loc[pca.split == "random", "r2"].iloc[0])
    blocked_r2 = float(pca.loc[pca.split == "blocked", "r2"].iloc[0])
    assert random_r2 > 0.1  # a constant prediction scores <= 0
    # the buffered blocked split removes the neighbours the random split lets the model copy:
    # the same prediction scores lower (at 8 mm its few 48 mm test cubes may even need extrapolating)
    assert np.isfinite(blocked_r2) and blocked_r2 < random_r2
    assert (pred["rmse"] > 0).all() and (pred["r2"] < 1).all()
    recon = pd.read_csv(out / "reconstruction.csv")
    assert set(recon["method"]) == {"pca", "nmf"} and set(recon["dim"]) == {2, 4}
    assert (out / "reconstruction.md").read_text().startswith("| method | dim |")
    saved, maps = load_evaluation(store)
    merged = pred.merge(saved, on=["representation", "target", "split"], suffixes=("", "_store"))
    assert len(merged) == len(pred)
    np.testing.assert_allclose(merged["r2"], merged["r2_store"])
    assert maps.sizes["target"] == 2 and maps.dims == ("voxel", "target")
    assert len(result.anova) == 2 and len(result.tukey) == 2 * 3
    record = json.loads((out / "evaluation.json").read_text())
    assert record["seed"] == 7 and record["grid"] == SMALL_GRID and record["interpolation"] == "linear"
    assert "mean test R²" in result.describe()
    written = result.describe().split("wrote:\n")[1].splitlines()  # each file with what it holds
    assert len(written) == len(result.files) == 7 and all(line.endswith(")") and " (" in line for line in written)
    assert f"  {out / 'evaluation.json'}  (the settings and inputs of this evaluation)" in written
    from brainzarr.commands.info import describe

    assert "evaluation  3 representations x 2 target maps, the latest saved" in describe(store)


def test_external_embedding_on_another_grid_matches_the_store(store, targets_dir, tmp_path):
    """An embedding exported to a 3 mm grid and read back gives the same numbers as the store's."""
    from nilearn.image import resample_img

    from brainzarr.evaluate.results import read_embedding

    ds = open_store(store)
    emb = read_embedding(store, "representations/pca/k2", ds)
    files = []
    for c in (1, 2):
        img = resample_img(
            to_nifti(emb.sel(component=c)),
            target_affine=MNI_3MM,
            target_shape=(61, 73, 61),
            interpolation="nearest",
            force_resample=True,
            copy_header=True,
        )
        files.append(tmp_path / f"c{c}.nii.gz")
        nib.save(img, files[-1])
    loaded = load_embedding(files, ds, name="mine")
    np.testing.assert_allclose(loaded.values, emb.values, rtol=1e-6)
    four_d = tmp_path / "both.nii.gz"
    nib.save(nib.concat_images([nib.load(f) for f in files]), four_d)
    np.testing.assert_allclose(load_embedding(four_d, ds).values, emb.values, rtol=1e-6)
    in_memory = load_embedding([nib.load(f) for f in files], ds)  # images, as nilearn takes them
    np.testing.assert_allclose(in_memory.values, emb.values, rtol=1e-6)
    assert in_memory.attrs["source"] == "image,image"

    images = [nib.load(f) for f in files]
    result = _predict_gradient(store, targets_dir, tmp_path / "out", methods=["pca"], embeddings={"mine": images})
    pred = result.prediction.set_index(["representation", "split"])
    assert set(result.prediction["representation"]) == {"pca-k2", "mine"}
    for split in ("random", "blocked"):
        assert pred.loc[("mine", split), "r2"] == pytest.approx(pred.loc[("pca-k2", split), "r2"], abs=1e-9)
    record = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert record["external_embeddings"] == {"mine": ["Nifti1Image", "Nifti1Image"]}  # not their repr
    assert record["targets"] == str(targets_dir / "receptor_gradient.nii.gz")


def test_arrays_on_the_store_voxels_are_aligned_by_their_voxel_coordinate(store, targets_dir, tmp_path):
    """An embedding or a target given as a DataArray is placed by its ``voxel`` coordinate, as
    xarray aligns: shuffled and transposed it predicts exactly as the store's own embedding does;
    a subset leaves the other voxels out; one from another grid, or unplaceable, is refused."""
    from brainzarr.evaluate.results import read_embedding
    from brainzarr.exceptions import InputTypeError

    ds = open_store(store)
    emb = read_embedding(store, "representations/pca/k2", ds)
    shuffled = emb.isel(voxel=np.random.default_rng(0).permutation(emb.sizes["voxel"])).transpose()
    np.testing.assert_array_equal(load_embedding(shuffled, ds, name="mine").values, emb.values)
    result = _predict_gradient(store, targets_dir, tmp_path / "out", methods=["pca"], embeddings={"mine": shuffled})
    pred = result.prediction.set_index(["representation", "split"])
    for split in ("random", "blocked"):
        assert pred.loc[("mine", split), "r2"] == pytest.approx(pred.loc[("pca-k2", split), "r2"], abs=1e-9)
    assert json.loads((tmp_path / "out" / "evaluation.json").read_text())["external_embeddings"] == {
        "mine": "DataArray"
    }

    half = emb.isel(voxel=slice(0, None, 2))
    loaded = load_embedding(half, ds).values
    assert np.isnan(loaded[1::2]).all() and np.array_equal(loaded[::2], emb.values[::2])

    maps = load_targets(targets_dir, ds)
    again = load_targets(maps.isel(voxel=slice(None, None, -1)), ds)  # reversed: placed back
    np.testing.assert_allclose(again.values, maps.values, atol=1e-6, equal_nan=True)
    for coord in ("target", "source", "n_valid"):  # maps from load_targets keep their files
        assert list(again[coord].values) == list(maps[coord].values)
    np.testing.assert_allclose(again["raw_max"], maps["raw_max"], rtol=1e-6)
    # a subset of the voxels is scaled again over its own, in the units of the files
    low = (maps.sel(target="spatial_control") < 0.5).reset_coords(drop=True)
    low_half = maps.where(low).isel(voxel=slice(0, None, 2))
    sub = load_targets(low_half, ds).sel(target="spatial_control")
    assert float(sub.max()) == 1 and float(sub.min()) == 0
    raw = maps["raw_min"] + maps * (maps["raw_max"] - maps["raw_min"])
    raw_sub = raw.sel(target="spatial_control").where(np.isfinite(sub))
    np.testing.assert_allclose([sub["raw_min"], sub["raw_max"]], [raw_sub.min(), raw_sub.max()], rtol=1e-5)
    plain = load_targets(maps.drop_vars(["source", "raw_min", "raw_max"]) * 3, ds)
    assert set(plain["source"].values) == {"DataArray"} and float(plain["raw_max"].max()) == pytest.approx(3)
    selected = load_targets(maps.sel(target="receptor_gradient").isel(voxel=slice(None, None, -1)), ds)
    kept = maps.sel(target=["receptor_gradient"])  # one map selected keeps its name, file and raw range
    assert selected["target"].values.tolist() == ["receptor_gradient"]
    assert selected["source"].values.tolist() == kept["source"].values.tolist()
    np.testing.assert_allclose([selected.raw_min, selected.raw_max], [kept.raw_min, kept.raw_max], rtol=1e-6)
    one = load_targets({"gradient": maps.sel(target="receptor_gradient").drop_vars("target")}, ds)
    assert list(one["target"].values) == ["gradient"]
    as_dataset = xr.Dataset({"a": ds["x"], "b": ds["z"] * 2})  # one target per variable
    by_variable = load_targets(as_dataset, ds)
    assert list(by_variable["target"].values) == ["a", "b"]
    np.testing.assert_allclose(by_variable.sel(target="b").values, load_targets(ds["z"], ds).values[:, 0], atol=1e-6)
    np.testing.assert_allclose(one.values[:, 0], maps.sel(target="receptor_gradient").values, atol=1e-6)

    other_grid = emb.assign_coords(i=emb["i"] + 1)
    with pytest.raises(InputError, match="another grid"):
        load_embedding(other_grid, ds)
    with pytest.raises(InputError, match="no voxel coordinate"):
        load_embedding(emb.drop_vars("voxel").isel(voxel=slice(0, 50)), ds)
    with pytest.raises(InputError, match=r"dims \(voxel,\)"):
        load_targets(emb.rename(voxel="v"), ds)
    with pytest.raises(InputTypeError, match="got ndarray"):
        load_embedding(emb.values, ds)
    from brainzarr.evaluate.prediction import predict_targets  # the low-level step matches rows by position

    with pytest.raises(InputError, match="lists the voxels in another order than the targets"):
        predict_targets({"mine": shuffled.T}, maps, {"random": ds["split"].values})
    with pytest.raises(InputError, match=r"holds labels \(split\), not values"):
        load_targets(ds["split"], ds)
    with pytest.raises(InputTypeError, match="got ndarray"):
        run_evaluation(store, maps.values, methods=["pca"], save_to_store=False)


def _predict_gradient(store, targets_dir, out, **kwargs):
    """The receptor gradient predicted from each embedding, quickly (a small grid, 3 folds)."""
    options = {"grid": SMALL_GRID, "n_splits": 3, "random_state": 1, "n_jobs": 2, "save_to_store": False}
    return run_evaluation(store, targets_dir / "receptor_gradient.nii.gz", out, **(options | kwargs))


def test_an_embedding_made_on_a_finer_grid_is_averaged_over_each_voxel_with_mean(store, targets_dir, tmp_path):
    """The embedding on a grid of a third of the store's voxel size, each store voxel holding 3 x 3
    x 3 of its voxels: the centre one is off by +d and the other 26 by -d/26 (d random, voxel by
    voxel), so their mean is the store's value. Linear interpolation samples the centre (off by
    d); "mean" gives the store's embedding back, and the evaluation predicts from that."""
    from brainzarr.evaluate.results import read_embedding
    from brainzarr.store import store_grid

    ds = open_store(store)
    grid = store_grid(ds)
    emb = read_embedding(store, "representations/pca/k2", ds)
    side = grid.affine[0, 0]
    affine = grid.affine.copy()
    affine[:3, :3] /= 3
    affine[:3, 3] -= side / 3  # fine voxel 3i + 1 is centred on store voxel i
    fine = np.zeros((*(3 * n for n in grid.shape), 2), np.float32)
    d = np.random.default_rng(0).uniform(-0.5, 0.5, (grid.n_voxels, 1))
    offsets = np.full((3, 3, 3), -1 / 26)
    offsets[1, 1, 1] = 1
    i, j, k = (grid.ijk[:, a] for a in range(3))
    for a in range(3):
        for b in range(3):
            for c in range(3):
                fine[3 * i + a, 3 * j + b, 3 * k + c] = emb.values + d * offsets[a, b, c]
    path = tmp_path / "fine.nii.gz"
    nib.save(nib.Nifti1Image(fine, affine), path)

    averaged = load_embedding(path, ds, interpolation="mean")
    np.testing.assert_allclose(averaged.values, emb.values, atol=1e-5)
    sampled = load_embedding(path, ds)  # linear: the centre voxel
    np.testing.assert_allclose(sampled.values, emb.values + d, atol=1e-5)
    assert sampled.attrs["interpolation"] == "linear" and averaged.attrs["interpolation"] == "mean"

    result = _predict_gradient(
        store,
        targets_dir,
        tmp_path / "out",
        methods=[],
        embeddings={"fine": path, "averaged": averaged, "sampled": sampled},
        embedding_interpolation="mean",
    )
    pred = result.prediction.set_index(["representation", "split"])
    for split in ("random", "blocked"):  # XGBoost tells apart embeddings that differ in the 7th digit
        assert pred.loc[("fine", split), "r2"] == pytest.approx(pred.loc[("averaged", split), "r2"], abs=1e-12)
        assert pred.loc[("fine", split), "r2"] != pytest.approx(pred.loc[("sampled", split), "r2"], abs=1e-3)
    assert json.loads((tmp_path / "out" / "evaluation.json").read_text())["embedding_interpolation"] == "mean"
    with pytest.raises(ValueError, match="embedding_interpolation must be one of continuous, linear, nearest, mean"):
        run_evaluation(store, targets_dir, None, embedding_interpolation="cubic")


def test_split_option_and_errors(store, targets_dir, tmp_path):
    result = run_evaluation(
        store,
        targets_dir / "spatial_control.nii.gz",
        None,
        methods=["ica"],
        split="blocked",
        grid=SMALL_GRID,
        n_splits=3,
        save_to_store=False,
    )
    assert set(result.prediction["split"]) == {"blocked"} and len(result.prediction) == 1
    with pytest.raises(ValueError, match=r"or 'both', got 'spatial'; did you mean blocked \(the spatially blocked"):
        run_evaluation(store, targets_dir, None, split="spatial")
    with pytest.raises(ValueError, match="no embedding of any method at dim"):
        run_evaluation(store, targets_dir, None, dims=(64,), save_to_store=False)


def test_a_method_named_but_not_fitted_is_refused_before_the_targets_are_read(store, targets_dir, tmp_path):
    # a typo or a fit not made used to leave the method's rows out without a word
    missing_targets = tmp_path / "not-there"
    with pytest.raises(ValueError, match=r"unknown method\(s\) pcaa; choose from pca, kpca"):
        run_evaluation(store, missing_targets, None, methods=["pca", "pcaa"])
    with pytest.raises(InputError, match=r"holds no fitted umap \(it holds ica-k2, nmf-k2, nmf-k4, pca-k2, pca-k4\)"):
        run_evaluation(store, None, None, methods=["pca", "umap"])
    with pytest.raises(InputError, match="holds no fitted nmf at dim 3 "):
        run_evaluation(store, missing_targets, None, methods=["nmf"], dims=(3,))
    with pytest.raises(InputError, match="holds no fitted umap"):
        write_report(store, tmp_path / "report", methods=["umap"])
    with pytest.raises(InputError, match="only used to predict target maps: give the targets too"):
        run_evaluation(store, None, None, embeddings={"mine": [targets_dir / "spatial_control.nii.gz"]})
    assert not (tmp_path / "report").exists()
    # a method the store holds, though brainzarr does not fit it, names in a string, one dim
    result = run_evaluation(
        store,
        targets_dir / "spatial_control.nii.gz",
        None,
        methods="ica,nmf",
        dims=2,  # tuple(2): a TypeError
        split="random",
        grid=SMALL_GRID,
        n_splits=3,
        save_to_store=False,
    )
    assert sorted(result.prediction["representation"]) == ["ica-k2", "nmf-k2"]


def test_embeddings_and_targets_that_cannot_be_used_are_refused_before_anything_is_written(
    store, targets_dir, tmp_path
):
    """The store's saved reconstruction table and the output folder (or report) are left as they were."""
    copy = shutil.copytree(store, tmp_path / "copy.zarr")
    native = tmp_path / "native.nii.gz"  # voxel indices as millimetres: evidently not MNI
    nib.save(_image_on(np.eye(4), (256, 256, 20), lambda xyz: xyz[:, 0] + 1), native)
    split = tmp_path / "split.nii.gz"  # a label image: codes, not values
    open_store(copy)["split_blocked"].brain.to_nifti(split)
    with pytest.raises(ValueError, match="split.nii.gz is a label image .* not an embedding"):
        load_embedding(split, open_store(copy))
    codes = nib.load(split)  # the same codes as another tool writes an atlas: int16, no intent
    atlas = tmp_path / "atlas.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(codes.dataobj).astype(np.int16), codes.affine), atlas)
    with pytest.warns(UserWarning, match="atlas.nii.gz looks like an atlas .* parcellate takes an atlas"):
        load_targets(atlas, open_store(copy))
    out = tmp_path / "eval"
    files = {path: path.stat().st_mtime_ns for path in Path(copy).rglob("*")}
    for targets, dims, grid, why in (
        (
            targets_dir,
            (7,),
            SMALL_GRID,
            r"holds no embedding of any method at dim 7, .* holds representations/.*pca/k2",
        ),
        (native, (2,), SMALL_GRID, "native.nii.gz is evidently not in MNI space"),
        (split, (2,), SMALL_GRID, "split.nii.gz is a label image .* not a target map"),
        (targets_dir, (2,), {"depth": [2]}, "XGBoost does not use the grid's parameter depth; did you mean max_depth"),
        (targets_dir, (2,), {"learning_rate": [0.1, -1]}, "XGBoost refuses the grid's learning_rate=-1: value -1"),
    ):
        with pytest.raises(ValueError, match=why):
            run_evaluation(copy, targets, out, dims=dims, grid=grid, n_splits=3)
        with pytest.raises(ValueError, match=why):
            write_report(copy, out, targets, dims=dims, grid=grid, n_splits=3)
        assert not out.exists()
        assert {path: path.stat().st_mtime_ns for path in Path(copy).rglob("*")} == files
    # scikit-learn refused 1 or 2.5 folds once the reconstruction table was written
    for options, why in (
        ({"n_splits": 1}, r"n_splits must be at least 2 \(a whole number\), got 1$"),
        ({"n_splits": 2.5}, r"n_splits must be at least 2 \(a whole number\), got 2.5$"),
        ({"n_jobs": 0}, "n_jobs must be a positive number of threads, or -1 for every CPU"),
    ):
        with pytest.raises(ValueError, match=why):
            run_evaluation(copy, targets_dir, out, grid=SMALL_GRID, **options)
        assert not out.exists()
        assert {path: path.stat().st_mtime_ns for path in Path(copy).rglob("*")} == files


@pytest.mark.parametrize("command", ["evaluate", "report"])
def test_dims_are_positive_integers_or_all(store, targets_dir, tmp_path, capsys, command):
    """``--dims 2.5`` said ``invalid literal for int() with base 10``, and ``--dims 0`` was taken."""
    for dims in ("2.5", "0", "2,x"):
        out = tmp_path / "eval"
        argv = [command, str(store), "--targets", str(targets_dir), "--dims", dims, "--no-store", "-o", str(out)]
        assert main(argv) == 1
        bad = dims.split(",")[-1]
        assert f"--dims takes positive integers, or all, got '{bad}'" in capsys.readouterr().err
        assert not out.exists()


@pytest.mark.parametrize("command", ["evaluate", "report"])
def test_synthetic_targets_made_for_a_job_that_refuses_are_taken_back(store, tmp_path, capsys, command):
    """``--targets synthetic`` writes its maps into OUT/synthetic_targets before the job's own
    checks; a refusal removes them and the folders made for them, and nothing a user had."""
    argv = [command, str(store), "--targets", "synthetic", "--dims", "7", "--no-store"]
    out = tmp_path / "eval"
    assert main([*argv, "-o", str(out)]) == 1
    assert "holds no embedding of any method at dim 7, and no external embedding" in capsys.readouterr().err
    assert not out.exists()
    earlier = tmp_path / "earlier"
    (earlier / "synthetic_targets").mkdir(parents=True)
    (earlier / "notes.txt").write_text("a user's")
    (earlier / "synthetic_targets" / "mine.nii.gz").write_bytes(b"a user's")
    assert main([*argv, "-o", str(earlier)]) == 1
    assert sorted(p.name for p in earlier.rglob("*")) == [
        "expression_program.nii.gz",  # in a folder that was there: kept, as an earlier run's would be
        "field_interaction.nii.gz",
        "mine.nii.gz",
        "myelin_like.nii.gz",
        "notes.txt",
        "receptor_gradient.nii.gz",
        "spatial_control.nii.gz",
        "synthetic_targets",
    ]
    assert (earlier / "notes.txt").read_text() == "a user's"


def test_a_report_of_a_gene_the_store_lacks_names_the_one_meant(store, tmp_path):
    from brainzarr.exceptions import UnknownGeneError

    first = str(open_store(store)["gene"].values[0])
    with pytest.raises(UnknownGeneError, match=f"unknown gene\\(s\\): {first.lower()} \\(did you mean {first}"):
        write_report(store, tmp_path / "report", gene=first.lower())
    assert not (tmp_path / "report").exists()


def test_an_output_folder_inside_the_store_is_refused_in_python_too(store, tmp_path):
    from brainzarr.evaluate import reproduce_study

    before = sorted(store.rglob("*"))
    for write, out in (
        (lambda out: run_evaluation(store, None, out), store / "eval"),
        (lambda out: write_report(store, out), store),
        (lambda out: reproduce_study(store, out, methods=("pca",), dims=(2,)), store / "repro"),
    ):
        with pytest.raises(InputError, match="which holds only what brainzarr writes there: write elsewhere"):
            write(out)
    assert sorted(store.rglob("*")) == before


def test_files_of_ones_own_in_the_output_folder_are_never_written_over(store, targets_dir, tmp_path, capsys):
    """A folder holding a researcher's own prediction.csv or index.html is refused, before
    anything is written (they were replaced); a folder brainzarr evaluated into is written again."""
    from brainzarr.exceptions import StoreExistsError

    mine = tmp_path / "analysis"
    mine.mkdir()
    (mine / "prediction.csv").write_text("a user's\n")
    (mine / "index.html").write_text("<html>a user's</html>\n")
    with pytest.raises(StoreExistsError, match="holds prediction.csv, which brainzarr did not write"):
        run_evaluation(store, targets_dir, mine, methods=["pca"], progress=False)
    with pytest.raises(StoreExistsError, match="holds index.html, which brainzarr did not write"):
        write_report(store, mine, progress=False)
    argv = ["evaluate", str(store), "--targets", "synthetic", "--methods", "pca", "--no-store", "-o", str(mine)]
    assert main(argv) == 1 and "give another folder" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["index.html", "prediction.csv"]  # its synthetic maps taken back
    assert (mine / "prediction.csv").read_text() == "a user's\n"
    ours = tmp_path / "ours"
    for _ in range(2):  # brainzarr's own evaluation and report: written over when run again
        run_evaluation(store, targets_dir, ours, methods=["pca"], save_to_store=False, progress=False)
        write_report(store, ours, progress=False)
    assert "GeneratedBy" in json.loads((ours / "evaluation.json").read_text())
    (ours / "evaluation.json").unlink()  # stopped before its last file: its own tables are known by their heads
    run_evaluation(store, targets_dir, ours, methods=["pca"], save_to_store=False, progress=False)
    (ours / "evaluation.json").unlink()
    (ours / "tukey.csv").write_text("a user's\n")  # beside one table that is not brainzarr's: refused
    with pytest.raises(StoreExistsError, match="which brainzarr did not write"):
        run_evaluation(store, targets_dir, ours, methods=["pca"], save_to_store=False, progress=False)


# --------------------------------------------------------------------------------- report and CLI
def test_report_links_existing_figures_and_names_both_splits(evaluation, store):
    _, out = evaluation
    index = write_report(store, out)
    page = index.read_text()
    sources = re.findall(r"<img src='([^']+)'", page)
    expected = {
        "figures/rmse_vs_dim.png",
        "figures/reconstruction_hist.png",
        "figures/embedding_density.png",
        "figures/r2_bars.png",
        "figures/brain_pca-k2.png",
        "figures/targets_1.png",
        "figures/embedding_by_receptor_gradient.png",
        "figures/split_random.png",
        "figures/split_blocked.png",
    }
    assert expected <= set(sources)
    for src in sources:
        png = plt_image(out / src)
        assert png.shape[0] > 200 and png.shape[1] > 200 and png.std() > 0.05, src
    from matplotlib.colors import to_rgb

    from brainzarr.plots import LABEL_COLOURS as SPLIT_COLOURS

    def pixels_of(scheme, label):  # drawn in the label's colour, blended with the template
        png = plt_image(out / f"figures/split_{scheme}.png")[..., :3]
        return int((np.abs(png - np.asarray(to_rgb(SPLIT_COLOURS[label]))).sum(axis=2) < 0.25).sum())

    assert min(pixels_of(scheme, label) for scheme in ("random", "blocked") for label in ("train", "test")) > 1000
    assert pixels_of("blocked", "buffer") > 5 * pixels_of("random", "buffer")  # the random split has none
    assert "random split</b>: the reference study" in page and "blocked split</b>: the honest split" in page
    assert "Test R² per target (random / blocked)" in page
    labels = store_split_labels(store)
    n_buffer = int((labels == "buffer").sum())
    assert n_buffer > 0 and f"{n_buffer:,} in the buffer" in page and "voxels within 16 mm of a test voxel" in page
    pred = pd.read_csv(out / "prediction.csv")
    mean = pred[(pred.representation == "pca-k2") & (pred.split == "blocked")]["r2"].mean()
    assert f"{mean:.3f}" in page


def test_report_viewers_hover_scatters_and_error_maps(evaluation, store, tmp_path, capsys):
    """The interactive parts without a browser (the browser test is tests/test_evaluate_report.py):
    every frame's page exists and is standalone, the scatters' hover titles are real voxel
    coordinates, and the error map is each voxel's RMSE."""
    from brainzarr.evaluate import reconstruction_histogram
    from brainzarr.evaluate.viewers import MAX_SCATTER_POINTS
    from brainzarr.exceptions import UnknownGeneError

    _, out = evaluation
    ds = open_store(store)
    gene = str(ds["gene"].values[5])
    page = write_report(store, out, gene=gene).read_text()
    frames = re.findall(r"<iframe src='([^']+)'", page)
    assert sorted(frames) == sorted(
        [f"viewers/{rep}_c{c}.html" for rep in ("pca-k2", "nmf-k2", "ica-k2") for c in (1, 2)]
        + [f"viewers/gene_{gene}.html"]
        + [f"viewers/error_{rep}_random_split.html" for rep in ("pca-k2", "nmf-k2")]
    )
    for src in frames:
        viewer = (out / src).read_text()
        assert "brainsprite" in viewer and 'rel="icon"' not in viewer and 'src="http' not in viewer, src
    assert f"{gene} expression" in (out / f"viewers/gene_{gene}.html").read_text()

    voxels = {tuple(v) for v in np.column_stack([ds[c].values for c in ("x", "y", "z")]).tolist()}
    scatters = re.findall(r"<svg class='scatter'.*?</svg>", page, re.S)
    assert len(scatters) == 3
    for svg in scatters:
        hovered = [tuple(map(float, t)) for t in re.findall(r"MNI x=(\S+) y=(\S+) z=(\S+) mm", svg)]
        assert len(hovered) == len(set(hovered)) == min(ds.sizes["voxel"], MAX_SCATTER_POINTS)
        assert set(hovered) <= voxels

    _, _, voxel_rmse = reconstruction_histogram(store, "representations/pca/k2", return_voxel_rmse=True)
    recon = read_group(store, "representations/pca/k2")["reconstruction"].values
    expected = np.sqrt(np.mean((recon.astype(np.float64) - ds["expression"].values) ** 2, axis=1))
    np.testing.assert_allclose(voxel_rmse.values, expected, rtol=1e-4, atol=1e-6)
    assert voxel_rmse.dims == ("voxel",) and "x" in voxel_rmse.coords

    with pytest.raises(UnknownGeneError, match="NOT_A_GENE"):
        write_report(store, tmp_path / "r", gene="NOT_A_GENE")
    assert main(["report", str(store), "-o", str(tmp_path / "r"), "--gene", "NOT_A_GENE"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NOT_A_GENE" in err[0] and not (tmp_path / "r" / "index.html").exists()


def store_split_labels(store):
    from brainzarr.evaluate.results import split_labels

    return split_labels(open_store(store), "blocked")


def plt_image(path):
    import matplotlib.image

    return matplotlib.image.imread(path)


def test_cli_evaluate_and_report(store, targets_dir, tmp_path, capsys):
    grid = json.dumps(SMALL_GRID)
    rc = main(
        [
            "evaluate",
            str(store),
            "--targets",
            str(targets_dir),
            "--methods",
            "pca",
            "nmf",
            "--grid",
            grid,
            "--folds",
            "3",
            "--no-store",
            "--interpolation",
            "mean",  # the 4 mm maps averaged over each 8 mm voxel
            "-o",
            str(tmp_path / "e"),
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0
    assert json.loads((tmp_path / "e" / "evaluation.json").read_text())["interpolation"] == "mean"
    pred = pd.read_csv(tmp_path / "e" / "prediction.csv")
    assert set(pred["representation"]) == {"pca-k2", "nmf-k2"} and len(pred) == 2 * 2 * 2
    assert "pca-k2" in printed and "blocked" in printed and "ANOVA" in printed

    rc = main(["evaluate", str(store), "--targets", str(targets_dir), "--embedding", "oops", "-o", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 1 and "NAME=file1.nii.gz" in err and len(err.strip().splitlines()) == 1

    rc = main(["report", str(store), "-o", str(tmp_path / "r"), "--methods", "pca"])
    assert rc == 0 and (tmp_path / "r" / "index.html").exists()
    assert "figures/brain_pca-k2.png" in (tmp_path / "r" / "index.html").read_text()


def test_a_partial_evaluation_that_replaces_the_saved_one_says_so(evaluation, store, targets_dir, tmp_path, capsys):
    """The store keeps one evaluation, the last (the report shows it): `evaluate --methods pca`
    after a full evaluation replaced it silently, leaving the report with PCA alone."""

    from brainzarr.evaluate.run import saved_representations

    copy = shutil.copytree(store, tmp_path / "s8.zarr")  # the fixture's store holds the full evaluation
    assert {"pca-k2", "nmf-k2", "ica-k2"} <= set(saved_representations(copy))
    options = ["--targets", str(targets_dir), "--grid", json.dumps(SMALL_GRID), "--folds", "2"]

    def warning():
        return [line for line in capsys.readouterr().err.splitlines() if "saved evaluation" in line]

    assert main(["evaluate", str(copy), *options, "--methods", "pca", "--no-store", "-o", str(tmp_path / "a")]) == 0
    assert not warning()  # nothing replaced
    assert main(["evaluate", str(copy), *options, "--methods", "pca,nmf", "-o", str(tmp_path / "b")]) == 0
    (line,) = warning()
    assert "also held ica-k2; it now holds this one's 2 representation(s)" in line
    assert main(["report", str(copy), *options, "--methods", "pca", "-o", str(tmp_path / "c")]) == 0
    (line,) = warning()
    assert "also held nmf-k2; it now holds this one's 1 representation(s)" in line
    assert saved_representations(copy) == ["pca-k2"]
