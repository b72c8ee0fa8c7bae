"""Old names keep working for one release, with a FutureWarning that names the new one."""

import numpy as np
import pytest

import brainzarr
from brainzarr.models import AutoEncoder
from brainzarr.preprocess import random_split


def test_old_keyword_names_warn_and_work(tmp_path):
    with pytest.warns(FutureWarning, match=r"random_split\(seed=...\) is renamed random_state"):
        old = random_split(50, seed=3)
    np.testing.assert_array_equal(old, random_split(50, random_state=3))
    with pytest.warns(FutureWarning, match=r"build_store\(k=...\) is renamed n_neighbors"):
        brainzarr.build_store(tmp_path / "a.zarr", genes=4, assignment="idw", k=4)
    assert brainzarr.open_store(tmp_path / "a.zarr").attrs["provenance"]["assignment"]["n_neighbors"] == 4
    with pytest.raises(TypeError, match="both seed= .* and random_state="):
        random_split(10, seed=1, random_state=1)
    with pytest.warns(FutureWarning) as said:  # one warning for each old name
        result = brainzarr.fit_store(tmp_path / "a.zarr", "pca", dim=2, seed=5)
    assert sorted(str(w.message).split(" is ")[0] for w in said) == ["fit_store(dim=...)", "fit_store(seed=...)"]
    assert result.attrs["dim"] == 2 and result.attrs["seed"] == 5


def test_estimator_renames_keep_get_params_clean():
    pytest.importorskip("torch")
    with pytest.warns(FutureWarning, match="renamed learning_rate"):
        model = AutoEncoder(2, lr=0.01)
    assert model.learning_rate == 0.01 and "lr" not in model.get_params()
    with pytest.warns(FutureWarning, match="set_options"):
        AutoEncoder(2, progress=False)


def test_old_module_path_warns():
    import importlib
    import sys

    sys.modules.pop("brainzarr.models.pipeline", None)
    with pytest.warns(FutureWarning, match="store_fitting"):
        module = importlib.import_module("brainzarr.models.pipeline")
    assert module.fit_store is brainzarr.fit_store
