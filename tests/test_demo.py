import pandas as pd
import pytest

from brainzarr import build_store, list_groups, open_store
from brainzarr.commands.demo import run_demo
from brainzarr.exceptions import StoreExistsError


def _check(written, methods):
    ds = open_store(written["store"])
    assert ds.sizes["voxel"] == 3666
    assert all(p.exists() and p.stat().st_size > 0 for p in written["maps"] + written["embeddings"])
    assert len(written["embeddings"]) == len(methods)
    prediction = pd.read_csv(written["evaluation"] / "prediction.csv")
    assert set(prediction["split"]) == {"random", "blocked"}
    assert {f"{m}-k2" for m in methods} <= set(prediction["representation"])
    assert prediction["r2"].notna().all()
    html = written["report"].read_text()
    assert "<img" in html and "blocked" in html


def test_demo_pipeline_small(tmp_path):
    methods = ("pca", "nmf")
    written = run_demo(tmp_path, genes=40, methods=methods, dims=(2,), log=lambda *a: None)
    _check(written, methods)
    # a second run reuses the store and the fitted results
    again = run_demo(tmp_path, genes=40, methods=methods, dims=(2,), log=lambda *a: None)
    assert again["store"] == written["store"]
    # with another seed the store is the demo's to replace, with its fits, when asked
    with pytest.raises(StoreExistsError, match="built with other settings") as info:
        run_demo(tmp_path, genes=40, random_state=1, methods=("pca",), dims=(2,), log=lambda *a: None)
    assert info.value.options == {"overwrite": True}  # a flag the demo takes: --overwrite
    other = run_demo(
        tmp_path, genes=40, random_state=1, methods=("pca",), dims=(2,), overwrite=True, log=lambda *a: None
    )
    assert open_store(other["store"]).attrs["provenance"]["split"]["seed"] == 1
    assert list_groups(other["store"]) == ["representations/random/pca/k2"]


def test_a_demo_that_cannot_work_is_refused_before_anything_is_written(tmp_path):
    # without dim 2 it fitted every method, then found no 2-D embedding to predict the targets from
    with pytest.raises(ValueError, match=r"its dims must include 2, got \(8,\)"):
        run_demo(tmp_path / "demo", genes=40, methods=("pca",), dims=(8,), log=lambda *a: None)
    assert not (tmp_path / "demo").exists()
    # with fewer genes than a dim it built, exported and fitted, then stopped at PCA k8
    with pytest.raises(ValueError, match="pca with 8 components needs at least as many genes; the demo's store has 4"):
        run_demo(tmp_path / "demo", genes=1, methods=("pca",), dims=(2, 8), log=lambda *a: None)
    assert not (tmp_path / "demo").exists()
    store = build_store(tmp_path / "s.zarr", resolution=8, genes=5, random_state=0)
    with pytest.raises(ValueError, match="inside the store .*write elsewhere"):  # a folder in a store
        run_demo(store / "demo", genes=40, methods=("pca",), dims=(2,), log=lambda *a: None)
    assert not (store / "demo").exists()


@pytest.mark.slow
def test_full_demo(tmp_path):
    from brainzarr.commands.demo import DEMO_METHODS

    written = run_demo(tmp_path, log=lambda *a: None)
    _check(written, DEMO_METHODS)
